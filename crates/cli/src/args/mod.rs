//! Command-line arguments: the top level ([`Cli`], [`Command`]) here, each
//! family of subcommands in its own file, and the value parsers they share.
//! Everything is re-exported, so `crate::args::X` names any of them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hearth_ml::{DeviceChoice, Target};

mod ask;
mod bench;
mod fed;
mod library;
mod models;
mod sim;

pub use ask::*;
pub use bench::*;
pub use fed::*;
pub use library::*;
pub use models::*;
pub use sim::*;

/// Hearth: personalize a small model on your own photos and text, on your
/// own device.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, propagate_version = true)]
pub struct Cli {
    /// The library folder [default: the platform data directory, e.g.
    /// ~/.local/share/hearth].
    #[arg(long, global = true, env = "HEARTH_LIBRARY", value_name = "PATH")]
    pub library: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import photos (JPEG, PNG, WebP, GIF, BMP, TIFF) and notes (.txt, .md)
    /// from files and folders. Originals are never modified.
    Import(ImportArgs),
    /// Look at and tidy the library.
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Put labels on items and take them off.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Personal photo tags: embed photos, learn your labels, get
    /// suggestions and look-alikes.
    #[command(subcommand)]
    Photos(PhotosCommand),
    /// Base models: what is known, what is on this machine, fetch one.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Personalize a model on your library.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Training runs: history, status, results.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Adapters (what training produces): list, export, import (PEFT format).
    #[command(subcommand)]
    Adapters(AdaptersCommand),
    /// Write with the base model or a personalized adapter (streams tokens).
    Generate(GenerateArgs),
    /// Measure how well personalization works: held-out perplexity on
    /// your texts, few-shot photo tagging on a labelled dataset.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// What an adapter was trained on: `hearth lineage ADAPTER`, and
    /// `hearth lineage prove ADAPTER ITEM` for a Merkle proof that an item
    /// was (or was not) in its training data.
    Lineage(LineageArgs),
    /// Ask about your library: a query in the Ask language (docs/ask.md)
    /// runs read-only and shows its answer and the items it came from;
    /// `hearth ask correct ID QUERY` keeps what an ask should have run.
    Ask(AskArgs),
    /// Federation, opt-in and off by default: join one, take part in rounds
    /// when this device is eligible, see everything that was shared.
    #[command(subcommand)]
    Fed(FedCommand),
    /// Re-verify, from what this device stored, that every federation
    /// server's transparency log is consistent and holds its uploads.
    Audit,
    /// Simulate federated learning on this machine: a real server on
    /// 127.0.0.1 and N real clients over HTTPS, each with its own library
    /// holding one speaking role of a public text (LEAF-style), with
    /// dropouts; one line per round.
    Sim(SimArgs),
    /// Measure Hearth's speed and memory (not a test).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// A device name (`auto`, `cpu`, `cuda`, `metal`), for `--device`.
pub(crate) fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// A comma-separated list of LoRA targets.
#[derive(Debug, Clone)]
pub struct Targets(pub Vec<Target>);

impl std::fmt::Display for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: Vec<&str> = self
            .0
            .iter()
            .map(|t| t.name().trim_end_matches("_proj"))
            .collect();
        f.write_str(&short.join(","))
    }
}

pub(crate) fn parse_targets(s: &str) -> Result<Targets, String> {
    s.split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map(Targets)
}
