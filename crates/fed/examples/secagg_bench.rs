//! Prints the SecAgg+ benchmark figures (what `hearth bench secagg` will
//! show). Run in release:
//!
//! ```text
//! cargo run --release -p hearth-fed --example secagg_bench [params] [clients...]
//! ```
//!
//! Defaults: 1,000,000 parameters; a client with 16 neighbours; servers of
//! 100 and 1000 clients with 10% dropping out after sharing.

use std::process::ExitCode;

use hearth_fed::bench::{client_masking, server_unmask};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let params = match args.next() {
        Some(Ok(p)) => p,
        None => 1_000_000,
        Some(Err(e)) => {
            eprintln!("params: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cohorts: Vec<usize> = args.filter_map(Result::ok).collect();
    if cohorts.is_empty() {
        cohorts = vec![100, 1000];
    }
    match client_masking(params, 16) {
        Ok(figures) => println!("{figures}"),
        Err(e) => {
            eprintln!("client bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    for clients in cohorts {
        match server_unmask(clients, params, 0.1) {
            Ok(figures) => println!("{figures}"),
            Err(e) => {
                eprintln!("server bench ({clients} clients): {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
