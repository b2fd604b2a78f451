//! `hearth bench secagg`: what secure aggregation costs. A client's
//! masking of a 1M-parameter update with 16 neighbours, the server's
//! unmasking and aggregation for 100 and 1,000 clients (in process, with
//! dropouts), and the bytes a client sends against a plain f32 upload.
//! Neighbourhoods are sized as `hearth-server` sizes them by default
//! (against 1% colluders and 5% dropouts, Bell et al.'s bounds);
//! `--log2-neighbourhoods` gives the older `k ≈ log2 n` for comparison.
//! Goals on the 2-core reference machine: client < 0.5 s, server for 1,000
//! clients < 10 s, expansion <= 1.1x (Bonawitz et al. 2017 report 1.73x).

use std::process::ExitCode;

use anyhow::Result;
use hearth_fed::bench::{client_masking, server_unmask};
use hearth_fed::graph::ThreatModel;

use crate::args::BenchSecaggArgs;

pub fn run(args: BenchSecaggArgs) -> Result<ExitCode> {
    println!(
        "bench secagg: {} parameters, {} threads",
        args.params,
        rayon::current_num_threads()
    );
    let client = client_masking(args.params, args.neighbours)?;
    println!("{client}");
    for clients in &args.clients {
        let model = (!args.log2_neighbourhoods).then_some(ThreatModel {
            corrupt_fraction: args.corrupt_fraction,
            dropout_fraction: args.dropout_fraction,
        });
        let server = server_unmask(*clients, args.params, args.dropout, model)?;
        println!("{server}");
    }
    Ok(ExitCode::SUCCESS)
}
