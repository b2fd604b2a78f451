//! `hearth import`: bring folders of photos and notes into the library.
//!
//! Three stages. [`discover`] walks the paths and classifies files.
//! [`examine`] runs on every core (rayon): read, hash, decode, write the
//! thumbnail. One writer (the calling thread) owns the database and commits
//! results in small transactions, so a kill at any moment loses at most the
//! uncommitted batch and never leaves a row without its thumbnail.
//!
//! Re-import is idempotent: content already in the library is recognised by
//! its sha256 before any decoding, and a file found at a new path while its
//! old path is gone is recorded as moved.

mod discover;
mod examine;
mod photo;
mod problem;
mod text;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use rusqlite::{Transaction, params};
use serde::Serialize;

pub use problem::FileProblem;

use crate::db::Library;
use crate::error::Result;
use crate::items::{ItemId, ItemKind};
use discover::{Settled, discover};
use examine::{Examined, NewItem, examine};
use hearth_progress::{CancelToken, Progress};

/// Limits that keep one hostile or huge file from hurting the import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Files larger than this are refused (default 100 MB).
    pub max_file_bytes: u64,
    /// Images whose header claims more pixels are refused before decoding
    /// (default 100 megapixels).
    pub max_pixels: u64,
    /// Follow symbolic links that lead outside every imported folder
    /// (default false: such links are reported and skipped, so a link such
    /// as `notes.txt -> ~/.ssh/id_ed25519` is never read as a note).
    pub follow_links_outside: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_file_bytes: 100_000_000,
            max_pixels: 100_000_000,
            follow_links_outside: false,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Added to the library.
    Imported,
    /// The library already had this content.
    AlreadyPresent,
    /// The library had this content under a path that no longer exists; the
    /// path was updated.
    Moved,
    /// Not a kind of file Hearth imports.
    Skipped,
    /// A photo or text that could not be imported; `reason` says why.
    Failed,
}

/// One file's line in the report.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FileReport {
    /// The file's path (lossily shown if not UTF-8).
    pub path: String,
    /// What happened.
    pub outcome: Outcome,
    /// Photo or text, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub kind: Option<ItemKind>,
    /// The library item it is (or already was).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub item_id: Option<ItemId>,
    /// Why it was skipped or failed, or what it duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub reason: Option<String>,
}

/// The summary of an import, with every file's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// New items.
    pub imported: u64,
    /// Files whose content the library already had (moved ones included).
    pub already_present: u64,
    /// Of those, how many had moved (their path was updated).
    pub moved: u64,
    /// Files that are not photos or text Hearth imports.
    pub skipped: u64,
    /// Photos and texts that could not be imported.
    pub failed: u64,
    /// Whether the import was cancelled before it finished.
    pub cancelled: bool,
    /// Every file seen, sorted by path.
    pub files: Vec<FileReport>,
}

impl ImportReport {
    fn record(&mut self, file: FileReport) {
        match file.outcome {
            Outcome::Imported => self.imported += 1,
            Outcome::AlreadyPresent => self.already_present += 1,
            Outcome::Moved => {
                self.already_present += 1;
                self.moved += 1;
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
        self.files.push(file);
    }
}

/// Commit at least this often, so a kill loses little and readers see
/// progress.
const BATCH_ITEMS: usize = 64;
const BATCH_TIME: Duration = Duration::from_millis(250);

impl Library {
    /// Imports every photo and text under `paths`. Files that cannot be
    /// imported are reported in the result, never as an error; an error
    /// means the library itself failed (or another import holds it).
    pub fn import(
        &mut self,
        paths: &[PathBuf],
        options: &ImportOptions,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<ImportReport> {
        let _lock = self.lock_for_import()?;
        crate::thumbnails::remove_leftovers(self.root())
            .map_err(|e| crate::StoreError::io(self.root().join("thumbnails"), e))?;

        progress.begin("Scanning", None);
        let (candidates, settled) = discover(
            paths,
            self.root(),
            options.follow_links_outside,
            cancel,
            |n| {
                if n % 256 == 0 {
                    progress.advance(n as u64);
                }
            },
        );
        progress.end();

        let mut report = ImportReport::default();
        for outcome in settled {
            report.record(match outcome {
                Settled::Skipped { path, reason } => FileReport {
                    path,
                    outcome: Outcome::Skipped,
                    kind: None,
                    item_id: None,
                    reason: Some(reason),
                },
                Settled::Failed { path, problem } => {
                    progress.note(&format!("{path}: {problem}"));
                    FileReport {
                        path,
                        outcome: Outcome::Failed,
                        kind: None,
                        item_id: None,
                        reason: Some(problem.to_string()),
                    }
                }
            });
        }

        let mut known = self.known_items()?;
        let known_hashes: HashSet<String> = known.keys().cloned().collect();
        let root = self.root().to_path_buf();
        progress.begin("Importing", Some(candidates.len() as u64));

        let (sender, receiver) = mpsc::sync_channel::<Examined>(2 * BATCH_ITEMS);
        std::thread::scope(|scope| -> Result<()> {
            scope.spawn(|| {
                candidates
                    .par_iter()
                    .for_each_with(sender, |sender, candidate| {
                        if !cancel.is_cancelled() {
                            // The writer only stops receiving after a database
                            // error; the import is failing anyway then.
                            let _ = sender.send(examine(candidate, options, &known_hashes, &root));
                        }
                    });
            });

            let mut batch = Vec::with_capacity(BATCH_ITEMS);
            let mut last_commit = Instant::now();
            let mut done = 0u64;
            for examined in receiver.iter() {
                batch.push(examined);
                done += 1;
                progress.advance(done);
                if batch.len() >= BATCH_ITEMS || last_commit.elapsed() >= BATCH_TIME {
                    self.commit_batch(&mut batch, &mut known, &mut report, progress)?;
                    last_commit = Instant::now();
                }
            }
            self.commit_batch(&mut batch, &mut known, &mut report, progress)
        })?;
        progress.end();

        report.cancelled = cancel.is_cancelled();
        report.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(report)
    }

    /// sha256 -> (id, path) of every item.
    fn known_items(&self) -> Result<HashMap<String, (ItemId, String)>> {
        let mut stmt = self.conn.prepare("SELECT sha256, id, path FROM items")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes a batch in one transaction; reports its files only once it is
    /// committed.
    fn commit_batch(
        &mut self,
        batch: &mut Vec<Examined>,
        known: &mut HashMap<String, (ItemId, String)>,
        report: &mut ImportReport,
        progress: &dyn Progress,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        let mut files = Vec::with_capacity(batch.len());
        let mut added = Vec::new();
        for examined in batch.drain(..) {
            let file = match examined {
                Examined::New(item) => match known.get(&item.sha256) {
                    // The same content twice in one import.
                    Some((id, stored)) => already_present(&tx, *id, stored, item.path, item.kind)?,
                    None => {
                        let id = insert_item(&tx, &item)?;
                        added.push((item.sha256, (id, item.path.clone())));
                        FileReport {
                            path: item.path,
                            outcome: Outcome::Imported,
                            kind: Some(item.kind),
                            item_id: Some(id),
                            reason: None,
                        }
                    }
                },
                Examined::Known { path, kind, sha256 } => match known.get_mut(&sha256) {
                    Some((id, stored)) => {
                        let file = already_present(&tx, *id, stored, path, kind)?;
                        if file.outcome == Outcome::Moved {
                            stored.clone_from(&file.path);
                        }
                        file
                    }
                    // Removed from the library while this import ran.
                    None => FileReport {
                        path,
                        outcome: Outcome::Skipped,
                        kind: Some(kind),
                        item_id: None,
                        reason: Some(
                            "removed from the library during this import; import it again".into(),
                        ),
                    },
                },
                Examined::Skipped { path, kind, reason } => FileReport {
                    path,
                    outcome: Outcome::Skipped,
                    kind: Some(kind),
                    item_id: None,
                    reason: Some(reason),
                },
                Examined::Failed {
                    path,
                    kind,
                    problem,
                } => {
                    progress.note(&format!("{path}: {problem}"));
                    FileReport {
                        path,
                        outcome: Outcome::Failed,
                        kind: Some(kind),
                        item_id: None,
                        reason: Some(problem.to_string()),
                    }
                }
            };
            // Later duplicates in this same batch must see earlier inserts.
            known.extend(added.drain(..));
            files.push(file);
        }
        tx.commit()?;
        for file in files {
            report.record(file);
        }
        Ok(())
    }
}

fn insert_item(tx: &Transaction<'_>, item: &NewItem) -> Result<ItemId> {
    tx.prepare_cached(
        "INSERT INTO items (kind, sha256, path, size_bytes, media_type, width, height, \
         captured_at, thumbnail, text_chars) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        item.kind.as_str(),
        item.sha256,
        item.path,
        item.size_bytes,
        item.media_type,
        item.width,
        item.height,
        item.captured_at,
        item.thumbnail,
        item.text.as_ref().map(|text| text.chars().count() as u64),
    ])?;
    let id = tx.last_insert_rowid();
    if let Some(text) = &item.text {
        tx.prepare_cached("INSERT INTO item_texts (item_id, body) VALUES (?1, ?2)")?
            .execute(params![id, text])?;
    }
    Ok(id)
}

/// Content the library already has at `stored`, found again at `path`.
/// If the stored path is gone, the file moved: remember the new path.
fn already_present(
    tx: &Transaction<'_>,
    id: ItemId,
    stored: &str,
    path: String,
    kind: ItemKind,
) -> Result<FileReport> {
    let (outcome, reason) = if stored == path {
        (Outcome::AlreadyPresent, None)
    } else if Path::new(stored).exists() {
        (
            Outcome::AlreadyPresent,
            Some(format!("same content as item {id} ({stored})")),
        )
    } else {
        tx.prepare_cached("UPDATE items SET path = ?1 WHERE id = ?2")?
            .execute(params![path, id])?;
        (Outcome::Moved, Some(format!("moved from {stored}")))
    };
    Ok(FileReport {
        path,
        outcome,
        kind: Some(kind),
        item_id: Some(id),
        reason,
    })
}
