//! One module per area of commands; each opens what it needs, calls the
//! library crates, and prints the result.

mod ask;
mod fed;
mod library;
mod lineage;
mod model;
mod photos;
mod sim;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use hearth_store::Library;

use crate::args::{BenchCommand, Cli, Command, EvalCommand};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let location = cli.library;
    let open = || open_library(location.clone());
    match cli.command {
        Command::Import(args) => library::import(open()?, args),
        Command::Library(command) => library::library(open()?, command),
        Command::Label(command) => library::label(open()?, command),
        Command::Photos(command) => photos::photos(open()?, command),
        Command::Model(command) => model::model(command),
        Command::Train(command) => text::train(open()?, command),
        Command::Runs(command) => text::runs(open()?, command),
        Command::Adapters(command) => text::adapters(open()?, command),
        Command::Generate(args) => text::generate(open()?, args),
        Command::Lineage(args) => lineage::lineage(open()?, args),
        Command::Ask(args) => ask::ask(open()?, args),
        Command::Fed(command) => fed::fed(open()?, command),
        Command::Audit => fed::audit(open()?),
        Command::Sim(args) => sim::sim(args),
        Command::Eval(EvalCommand::Text(args)) => text::eval(open()?, args),
        Command::Eval(EvalCommand::Photos(args)) => photos::eval(args),
        Command::Eval(EvalCommand::Ask(args)) => ask::eval(args),
        Command::Bench(BenchCommand::Import { photos, megapixels }) => {
            crate::bench::import::run(photos, megapixels)
        }
        Command::Bench(BenchCommand::Train(args)) => crate::bench::train::run(args),
        Command::Bench(BenchCommand::Generate(args)) => crate::bench::generate::run(args),
        Command::Bench(BenchCommand::Embed(args)) => crate::bench::embed::run(args),
        Command::Bench(BenchCommand::Secagg(args)) => crate::bench::secagg::run(args),
        Command::Bench(BenchCommand::Log(args)) => crate::bench::log::run(args),
    }
}

fn open_library(location: Option<PathBuf>) -> Result<Library> {
    let location = match location {
        Some(path) => path,
        None => Library::default_location().context(
            "no data directory on this platform; pass --library PATH or set HEARTH_LIBRARY",
        )?,
    };
    Library::open(&location)
        .with_context(|| format!("opening the library at {}", location.display()))
}
