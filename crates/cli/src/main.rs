//! `hearth`: the command-line face of Hearth. Every capability lives in the
//! library crates; this binary parses arguments, renders progress and
//! reports errors.

mod args;
mod bench;
mod commands;
mod output;
mod progress_bar;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            // `hearth library list | head` closing the pipe early is fine.
            if error
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors often name their
/// cause in their own message too (`{path}: {source}`), so a cause already
/// said is not repeated.
fn report(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}
