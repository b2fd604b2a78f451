//! `hearth bench log`: the transparency log at scale: append rate, and
//! proof generation and verification latency at a million entries.

use std::process::ExitCode;

use anyhow::Result;
use hearth_ledger::bench;

use crate::args::BenchLogArgs;

pub fn run(args: BenchLogArgs) -> Result<ExitCode> {
    let b = bench::log_in_memory(args.entries, args.samples)?;
    println!(
        "bench log: {} entries (64-byte leaves, in memory), {} samples",
        b.entries, b.samples
    );
    println!(
        "  append               {:.3?} in all, {:.0} entries/s",
        b.append_total, b.appends_per_sec
    );
    println!("  root at a past size  {:.2?}", b.root_at);
    println!(
        "  inclusion proof      {:.2?} to make, {:.2?} to verify ({:.1} hashes)",
        b.inclusion_proof, b.inclusion_verify, b.inclusion_proof_len
    );
    println!(
        "  consistency proof    {:.2?} to make, {:.2?} to verify ({:.1} hashes)",
        b.consistency_proof, b.consistency_verify, b.consistency_proof_len
    );
    Ok(ExitCode::SUCCESS)
}
