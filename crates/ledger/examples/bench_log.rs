//! Times the transparency log at a given size (default 1 million entries):
//! `cargo run --release -p hearth-ledger --example bench_log [ENTRIES] [SAMPLES]`.

use std::process::ExitCode;

use hearth_ledger::bench;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let entries = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(bench::DEFAULT_ENTRIES);
    let samples = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    match bench::log_in_memory(entries, samples) {
        Ok(b) => {
            println!("entries              {}", b.entries);
            println!("append total         {:.3?}", b.append_total);
            println!("appends/s            {:.0}", b.appends_per_sec);
            println!("root_at(past size)   {:.2?}", b.root_at);
            println!(
                "inclusion proof      {:.2?}  ({:.1} hashes)",
                b.inclusion_proof, b.inclusion_proof_len
            );
            println!("inclusion verify     {:.2?}", b.inclusion_verify);
            println!(
                "consistency proof    {:.2?}  ({:.1} hashes)",
                b.consistency_proof, b.consistency_proof_len
            );
            println!("consistency verify   {:.2?}", b.consistency_verify);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
