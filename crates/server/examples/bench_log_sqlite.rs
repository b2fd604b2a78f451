//! Times the transparency log over the server's SQLite store (the same
//! figures as hearth-ledger's `bench_log` example, which uses memory):
//! `cargo run --release -p hearth-server --example bench_log_sqlite [ENTRIES] [SAMPLES] [DIR]`.
//! Without DIR the database is in memory; with it, a database file in DIR
//! (created if needed) whose log is left as it was: the synthetic entries
//! are rolled back.

use std::process::ExitCode;

use hearth_server::storage::{SqliteStorage, bench_sqlite_log};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let entries = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let samples = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let figures = match args.next() {
        None => bench_sqlite_log(entries, samples),
        Some(dir) => SqliteStorage::open(std::path::Path::new(&dir))
            .and_then(|s| s.bench_log(entries, samples)),
    };
    match figures {
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
