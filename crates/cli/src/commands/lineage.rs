//! `hearth lineage`: where an adapter came from, and proofs about its data
//! (`hearth photos lineage` does the same for photo taggers).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hearth_ledger::Membership;
use hearth_personalize::lineage::{LineageItem, adapter_lineage, prove_item};
use hearth_store::Library;
use sha2::{Digest, Sha256};

use crate::args::{LineageArgs, LineageCommand};
use crate::output;

pub fn lineage(library: Library, args: LineageArgs) -> Result<ExitCode> {
    match (args.command, args.adapter) {
        (
            Some(LineageCommand::Prove {
                adapter,
                item,
                json,
            }),
            _,
        ) => {
            let sha = item_sha256(&library, &item)?;
            let report = prove_item(&library, adapter, &sha)?;
            if json {
                output::json(&report)?;
            } else {
                let verdict = match report.membership {
                    Membership::Present => "WAS in",
                    _ => "was NOT in",
                };
                println!(
                    "item {sha} {verdict} the training data of adapter {adapter} (run {})",
                    report.run
                );
                println!(
                    "proof verified against the run's commitment: root {} over {} items",
                    report.set.root, report.set.count
                );
            }
        }
        (None, Some(adapter)) => {
            let lineage = adapter_lineage(&library, adapter)?;
            if args.json {
                output::json(&lineage)?;
                return Ok(ExitCode::SUCCESS);
            }
            let a = &lineage.adapter;
            println!(
                "adapter {} {:?} ({}), sha256 {}",
                a.id, a.name, a.source, a.sha256
            );
            match &lineage.run {
                Some(run) => {
                    println!(
                        "  trained by run {} ({}, {}), base {} ({})",
                        run.id, run.kind, run.status, run.base_model, run.base_model_sha256
                    );
                    println!("  configuration {}", run.config);
                    if let Some(parent) = &run.parent_sha256 {
                        println!("  started from global adapter {parent}");
                    }
                }
                None => println!("  no training run in this library (imported from elsewhere)"),
            }
            if let Some(root) = &lineage.items_root {
                println!("  items: {} (Merkle root {})", root.count, root.root);
            }
            print_items(&lineage.items);
            match (&lineage.file_lineage, lineage.lineage_matches) {
                (Some(hash), Some(true)) => println!("  file lineage {hash}: matches the run"),
                (Some(hash), Some(false)) => {
                    println!("  file lineage {hash}: DOES NOT match the run's record")
                }
                (Some(hash), None) => println!("  file lineage {hash}"),
                (None, _) => println!("  the adapter file records no lineage"),
            }
        }
        (None, None) => bail!("name an adapter: hearth lineage ADAPTER (see hearth adapters list)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The items a run learned from, one line each.
pub fn print_items(items: &[LineageItem]) {
    for item in items {
        match &item.item {
            Some((id, path)) => println!("    {}  item {id}  {path}", &item.sha256[..16]),
            None => println!("    {}  (no longer in the library)", &item.sha256[..16]),
        }
    }
}

/// An item given as a library id, a sha256, or a file to hash.
fn item_sha256(library: &Library, item: &str) -> Result<String> {
    if item.len() == 64 && item.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(item.to_ascii_lowercase());
    }
    if let Ok(id) = item.parse::<i64>()
        && let Ok(found) = library.item(id)
    {
        return Ok(found.sha256);
    }
    let bytes = std::fs::read(item)
        .with_context(|| format!("{item} is not an item id, a sha256 or a readable file"))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
