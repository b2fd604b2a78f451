//! Lineage: what an adapter was trained on, answerable and provable.
//!
//! Every run records the sha256 of each item it trained on and, when it
//! starts, a Merkle commitment to that set (hearth-ledger's item-set
//! commitment: RFC 9162 hashing over the sorted hashes). An adapter's PEFT
//! file carries a lineage hash over its base model, configuration and item
//! hashes, so the link survives export and import. From these:
//!
//! - [`adapter_lineage`]: the chain items -> run -> adapter (-> the global
//!   adapter a federated round started from), with the lineage hash
//!   recomputed and compared with the file's;
//! - [`prove_item`]: a Merkle proof that an item was, or was not, in the
//!   data an adapter was trained on, checked against the run's root;
//! - [`photo_tagger_lineage`]: the same chain for a photo tagger, with its
//!   head file's hash recomputed and compared with the one recorded.

use std::path::Path;

use hearth_ledger::{Hash, ItemSetRoot, Membership, SetProof};
use hearth_store::{Adapter, AdapterId, ItemId, Library, PhotoTagger, Run, RunId, TaggerId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{PersonalizeError, Result};

/// A hash binding an adapter to what produced it: base model, configuration
/// and the sorted hashes of the items it learned from.
pub(crate) fn lineage_hash(base_sha256: &str, config: &str, item_hashes: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(base_sha256.as_bytes());
    hasher.update(b"\n");
    hasher.update(config.as_bytes());
    for hash in item_hashes {
        hasher.update(b"\n");
        hasher.update(hash.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// One item an adapter learned from.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LineageItem {
    /// Its content hash (what the run recorded).
    pub sha256: String,
    /// The library item with that content now, if it is still there.
    pub item: Option<(ItemId, String)>,
}

/// Where an adapter came from.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AdapterLineage {
    /// The adapter.
    pub adapter: Adapter,
    /// The run that trained it (found by id, or by lineage hash for an
    /// imported copy of an adapter trained in this library).
    pub run: Option<Run>,
    /// The run's commitment to its items.
    pub items_root: Option<ItemSetRoot>,
    /// The items, sorted by hash.
    pub items: Vec<LineageItem>,
    /// The lineage hash in the adapter's file.
    pub file_lineage: Option<String>,
    /// Whether recomputing it from the run gives the file's value.
    pub lineage_matches: Option<bool>,
}

/// The chain from items to `adapter`.
pub fn adapter_lineage(library: &Library, adapter: AdapterId) -> Result<AdapterLineage> {
    let adapter = library.adapter(adapter)?;
    let files = hearth_ml::peft::read_files(Path::new(&library.adapter_path(&adapter)))?;
    let file_lineage = files.lineage.clone();
    let recompute = |run: &Run| -> Result<String> {
        let mut hashes = library.run_item_hashes(run.id)?;
        hashes.sort();
        Ok(lineage_hash(&run.base_model_sha256, &run.config, &hashes))
    };
    let run = match adapter.run_id {
        Some(id) => Some(library.run(id)?),
        // An imported adapter: its lineage hash names the run, if that run
        // is in this library.
        None => match &file_lineage {
            Some(lineage) => {
                let mut found = None;
                for run in library.runs()? {
                    if recompute(&run)? == *lineage {
                        found = Some(run);
                        break;
                    }
                }
                found
            }
            None => None,
        },
    };
    let (items_root, items, lineage_matches) = match &run {
        Some(run) => {
            let (root, items) = run_items(library, run.id)?;
            let matches = file_lineage
                .as_ref()
                .map(|lineage| recompute(run).map(|r| r == *lineage))
                .transpose()?;
            (Some(root), items, matches)
        }
        None => (None, Vec::new(), None),
    };
    Ok(AdapterLineage {
        adapter,
        run,
        items_root,
        items,
        file_lineage,
        lineage_matches,
    })
}

/// A run's commitment to its items (checked against the root it recorded
/// when it started) and the items, sorted by hash.
fn run_items(library: &Library, run: RunId) -> Result<(ItemSetRoot, Vec<LineageItem>)> {
    let commitment = library.run_commitment(run)?;
    let items = commitment
        .items()
        .iter()
        .map(|hash| {
            let sha256 = hash.to_string();
            let item = library
                .item_by_sha256(&sha256)?
                .map(|item| (item.id, item.path));
            Ok(LineageItem { sha256, item })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((commitment.root(), items))
}

/// Where a photo tagger came from.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TaggerLineage {
    /// The tagger.
    pub tagger: PhotoTagger,
    /// The run that trained it.
    pub run: Run,
    /// The run's commitment to its items.
    pub items_root: ItemSetRoot,
    /// The items, sorted by hash.
    pub items: Vec<LineageItem>,
    /// sha256 of the head file now (None when it is gone).
    pub file_sha256: Option<String>,
    /// Whether that is the hash recorded when it was trained.
    pub file_matches: bool,
}

/// The chain from items to a photo tagger: the run that trained it (its
/// items checked against the root it recorded when it started) and its
/// head file, hashed again.
pub fn photo_tagger_lineage(library: &Library, tagger: TaggerId) -> Result<TaggerLineage> {
    let tagger = library.photo_tagger(tagger)?;
    let run = library.run(tagger.run_id)?;
    let (items_root, items) = run_items(library, run.id)?;
    let path = library.root().join(&tagger.path);
    let file_sha256 = match std::fs::read(&path) {
        Ok(bytes) => Some(hex::encode(Sha256::digest(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(PersonalizeError::Io { path, source }),
    };
    let file_matches = file_sha256.as_deref() == Some(tagger.sha256.as_str());
    Ok(TaggerLineage {
        tagger,
        run,
        items_root,
        items,
        file_sha256,
        file_matches,
    })
}

/// A checked answer to "was this item in that adapter's training data?".
#[derive(Debug, Clone, Serialize)]
pub struct ItemProofReport {
    /// The adapter.
    pub adapter: AdapterId,
    /// The run it came from.
    pub run: i64,
    /// The item's sha256.
    pub item_sha256: String,
    /// The run's commitment.
    pub set: ItemSetRoot,
    /// The proof (inclusion, or the neighbours that show absence).
    pub proof: SetProof,
    /// What the proof shows, verified against the commitment.
    pub membership: Membership,
}

/// Proves whether the item with `item_sha256` was in `adapter`'s training
/// data, and checks the proof against the run's recorded root.
pub fn prove_item(
    library: &Library,
    adapter: AdapterId,
    item_sha256: &str,
) -> Result<ItemProofReport> {
    let lineage = adapter_lineage(library, adapter)?;
    let Some(run) = lineage.run else {
        return Err(PersonalizeError::NoData(format!(
            "adapter {adapter} has no training run in this library (imported from elsewhere?)"
        )));
    };
    let item = Hash::from_hex(item_sha256).map_err(|_| {
        PersonalizeError::NoData(format!("{item_sha256:?} is not a sha256 (64 hex digits)"))
    })?;
    let commitment = library.run_commitment(run.id)?;
    let set = commitment.root();
    let proof = commitment.prove(&item);
    let membership = proof
        .verify(&item, &set)
        .map_err(|e| PersonalizeError::Inconsistent(format!("the proof does not verify: {e}")))?;
    Ok(ItemProofReport {
        adapter,
        run: run.id,
        item_sha256: item_sha256.to_owned(),
        set,
        proof,
        membership,
    })
}

/// The adapters trained on the item with this sha256: what removing it
/// would leave trained on data the person no longer keeps.
pub fn adapters_trained_on(library: &Library, item_sha256: &str) -> Result<Vec<Adapter>> {
    Ok(library.adapters_trained_on(item_sha256)?)
}

/// The photo taggers trained on the item with this sha256 (as
/// [`adapters_trained_on`] for adapters).
pub fn photo_taggers_trained_on(library: &Library, item_sha256: &str) -> Result<Vec<PhotoTagger>> {
    Ok(library.photo_taggers_trained_on(item_sha256)?)
}
