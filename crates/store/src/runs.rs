//! Training runs and the adapters they produce: what was trained, on which
//! items (by content hash), from which base model, with what result.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use hearth_ledger::{Hash, ItemSetCommitment};

use crate::db::Library;
use crate::error::{Result, StoreError};
use crate::items::{Item, ItemFilter, ItemKind};

/// A run's row id.
pub type RunId = i64;
/// An adapter's row id.
pub type AdapterId = i64;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Training now, or interrupted without a chance to say so (resumable).
    Running,
    /// Paused at a checkpoint (resumable).
    Paused,
    /// All steps done.
    Completed,
    /// Stopped when validation stopped improving.
    EarlyStopped,
    /// Stopped by an error (see `error`).
    Failed,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Completed => "completed",
            RunStatus::EarlyStopped => "early_stopped",
            RunStatus::Failed => "failed",
        }
    }

    /// Whether `--resume` can continue it.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            RunStatus::Running | RunStatus::Paused | RunStatus::Failed
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RunStatus::Running,
            RunStatus::Paused,
            RunStatus::Completed,
            RunStatus::EarlyStopped,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown run status {s:?}"))
    }
}

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A LoRA adapter on texts.
    Text,
    /// The photo tagger (head, and fine-tuned last blocks).
    Photos,
    /// Local training for a federation round.
    Federated,
    /// An adapter for translating questions into Ask queries, trained on
    /// the person's corrected pairs.
    Ask,
}

impl RunKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Text => "text",
            RunKind::Photos => "photos",
            RunKind::Federated => "federated",
            RunKind::Ask => "ask",
        }
    }
}

/// The Merkle commitment to a set of item sha256s (hex), as runs record it.
pub fn items_commitment(item_sha256s: &[String]) -> Result<ItemSetCommitment> {
    let hashes = item_sha256s
        .iter()
        .map(|sha| {
            Hash::from_hex(sha).map_err(|_| StoreError::Corrupt(format!("{sha:?} is not a sha256")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ItemSetCommitment::new(hashes))
}

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// What it trains.
    pub kind: RunKind,
    /// The base model as the person named it.
    pub base_model: String,
    /// Its sha256.
    pub base_model_sha256: String,
    /// Training configuration, JSON.
    pub config: String,
    /// Data selection label, if any.
    pub label: Option<String>,
    /// sha256 of every item trained on.
    pub item_sha256s: Vec<String>,
    /// Tokens of text.
    pub token_count: u64,
    /// Device name.
    pub device: String,
    /// For a federated round, the sha256 of the global adapter it started
    /// from.
    pub parent_sha256: Option<String>,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Run {
    /// Row id.
    pub id: RunId,
    /// `text`, `photos`, `federated` or `ask`.
    pub kind: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The base model as named.
    pub base_model: String,
    /// Its sha256.
    pub base_model_sha256: String,
    /// Training configuration, JSON.
    pub config: String,
    /// Data selection label.
    pub label: Option<String>,
    /// Items trained on.
    pub item_count: u64,
    /// Tokens of text.
    pub token_count: u64,
    /// Device.
    pub device: String,
    /// Optimizer steps done.
    pub steps_done: u64,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Held-out loss of the base model.
    pub base_validation_loss: Option<f64>,
    /// Held-out loss with the adapter.
    pub validation_loss: Option<f64>,
    /// Training throughput.
    pub tokens_per_second: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Start time (UTC).
    pub started_at: String,
    /// Last update (UTC).
    pub updated_at: String,
    /// Merkle root (hex) of the sorted sha256s of the items trained on.
    pub items_root: Option<String>,
    /// The global adapter a federated round started from.
    pub parent_sha256: Option<String>,
}

/// A progress update for a run.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    /// New status.
    pub status: Option<RunStatus>,
    /// Steps done.
    pub steps_done: Option<u64>,
    /// Last training loss.
    pub train_loss: Option<f64>,
    /// Base held-out loss.
    pub base_validation_loss: Option<f64>,
    /// Held-out loss.
    pub validation_loss: Option<f64>,
    /// Throughput.
    pub tokens_per_second: Option<f64>,
    /// Error message (set with `Failed`).
    pub error: Option<String>,
}

/// An adapter about to be recorded; its files are already in the library.
#[derive(Debug, Clone)]
pub struct NewAdapter {
    /// A name for people.
    pub name: String,
    /// The run that trained it.
    pub run_id: Option<RunId>,
    /// `trained` or `imported`.
    pub imported: bool,
    /// Base model name.
    pub base_model: Option<String>,
    /// Base model sha256, when known.
    pub base_model_sha256: Option<String>,
    /// sha256 of its weights file.
    pub sha256: String,
    /// LoRA rank.
    pub rank: u32,
    /// LoRA alpha.
    pub alpha: f64,
    /// Adapted projections.
    pub targets: Vec<String>,
    /// Folder relative to the library.
    pub path: String,
}

/// A recorded adapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Adapter {
    /// Row id.
    pub id: AdapterId,
    /// Name.
    pub name: String,
    /// Training run.
    pub run_id: Option<RunId>,
    /// `trained` or `imported`.
    pub source: String,
    /// Base model name.
    pub base_model: Option<String>,
    /// Base model sha256.
    pub base_model_sha256: Option<String>,
    /// Weights sha256.
    pub sha256: String,
    /// LoRA rank.
    pub rank: u32,
    /// LoRA alpha.
    pub alpha: f64,
    /// Adapted projections (`q_proj`, ...), as the adapter names them.
    pub targets: Vec<String>,
    /// Folder relative to the library.
    pub path: String,
    /// When it was recorded.
    pub created_at: String,
}

const RUN_COLUMNS: &str = "id, kind, status, base_model, base_model_sha256, config, label, item_count, \
     token_count, device, steps_done, train_loss, base_validation_loss, validation_loss, \
     tokens_per_second, error, started_at, updated_at, items_root, parent_sha256";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(2)?;
    Ok(Run {
        id: row.get(0)?,
        kind: row.get(1)?,
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        base_model: row.get(3)?,
        base_model_sha256: row.get(4)?,
        config: row.get(5)?,
        label: row.get(6)?,
        item_count: row.get(7)?,
        token_count: row.get(8)?,
        device: row.get(9)?,
        steps_done: row.get(10)?,
        train_loss: row.get(11)?,
        base_validation_loss: row.get(12)?,
        validation_loss: row.get(13)?,
        tokens_per_second: row.get(14)?,
        error: row.get(15)?,
        started_at: row.get(16)?,
        updated_at: row.get(17)?,
        items_root: row.get(18)?,
        parent_sha256: row.get(19)?,
    })
}

const ADAPTER_COLUMNS: &str = "id, name, run_id, source, base_model, base_model_sha256, sha256, rank, alpha, targets, path, created_at";

fn adapter_from_row(row: &Row<'_>) -> rusqlite::Result<Adapter> {
    Ok(Adapter {
        id: row.get(0)?,
        name: row.get(1)?,
        run_id: row.get(2)?,
        source: row.get(3)?,
        base_model: row.get(4)?,
        base_model_sha256: row.get(5)?,
        sha256: row.get(6)?,
        rank: row.get(7)?,
        alpha: row.get(8)?,
        // Stored comma-joined (projection names have no commas).
        targets: row
            .get::<_, String>(9)?
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        path: row.get(10)?,
        created_at: row.get(11)?,
    })
}

impl Library {
    /// Text items with their text, for training: every text, or those with
    /// `label`.
    pub fn texts_for_training(&self, label: Option<&str>) -> Result<Vec<(Item, String)>> {
        let items = self.items(&ItemFilter {
            kind: Some(ItemKind::Text),
            label: label.map(str::to_owned),
        })?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM item_texts WHERE item_id = ?1")?;
        items
            .into_iter()
            .map(|item| {
                let body: String = stmt.query_row([item.id], |row| row.get(0))?;
                Ok((item, body))
            })
            .collect()
    }

    /// Records a new run (status `running`) with the items it trains on and
    /// its commitment to them (see [`items_commitment`]).
    pub fn create_run(&mut self, run: &NewRun) -> Result<RunId> {
        let root = items_commitment(&run.item_sha256s)?.root();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (kind, status, base_model, base_model_sha256, config, label, item_count, \
             token_count, device, items_root, parent_sha256) \
             VALUES (?8, 'running', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?10)",
            params![
                run.base_model,
                run.base_model_sha256,
                run.config,
                run.label,
                root.count,
                run.token_count,
                run.device,
                run.kind.as_str(),
                root.root.to_string(),
                run.parent_sha256
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO run_items (run_id, item_sha256) VALUES (?1, ?2)",
            )?;
            for sha in &run.item_sha256s {
                insert.execute(params![id, sha])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    /// The commitment to the items a run trained on, rebuilt from its
    /// recorded item hashes and checked against the root recorded when it
    /// started (runs from before lineage roots have none to check).
    pub fn run_commitment(&self, id: RunId) -> Result<ItemSetCommitment> {
        let run = self.run(id)?;
        let commitment = items_commitment(&self.run_item_hashes(id)?)?;
        if let Some(recorded) = &run.items_root
            && *recorded != commitment.root().root.to_string()
        {
            return Err(StoreError::Corrupt(format!(
                "run {id}: its item list no longer matches the root recorded when it started \
                 ({recorded}); the library was changed outside Hearth"
            )));
        }
        Ok(commitment)
    }

    /// Adapters whose runs trained on the item with this sha256.
    pub fn adapters_trained_on(&self, item_sha256: &str) -> Result<Vec<Adapter>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {ADAPTER_COLUMNS} FROM adapters WHERE run_id IN \
             (SELECT run_id FROM run_items WHERE item_sha256 = ?1) ORDER BY id"
        ))?;
        let rows = statement.query_map([item_sha256], adapter_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Applies an update to a run.
    pub fn update_run(&mut self, id: RunId, update: &RunUpdate) -> Result<()> {
        let changed = self.conn.execute(
            "UPDATE runs SET status = coalesce(?2, status), steps_done = coalesce(?3, steps_done), \
             train_loss = coalesce(?4, train_loss), base_validation_loss = coalesce(?5, base_validation_loss), \
             validation_loss = coalesce(?6, validation_loss), tokens_per_second = coalesce(?7, tokens_per_second), \
             error = ?8, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            params![
                id,
                update.status.map(RunStatus::as_str),
                update.steps_done,
                update.train_loss,
                update.base_validation_loss,
                update.validation_loss,
                update.tokens_per_second,
                update.error
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchRun(id));
        }
        Ok(())
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<Run>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC"))?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The run with this id.
    pub fn run(&self, id: RunId) -> Result<Run> {
        self.conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
            .query_row([id], run_from_row)
            .optional()?
            .ok_or(StoreError::NoSuchRun(id))
    }

    /// sha256 of every item a run trained on, sorted.
    pub fn run_item_hashes(&self, id: RunId) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT item_sha256 FROM run_items WHERE run_id = ?1 ORDER BY item_sha256",
        )?;
        let rows = stmt.query_map([id], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The folder where a run keeps its checkpoints.
    pub fn run_dir(&self, id: RunId) -> PathBuf {
        self.root().join("runs").join(id.to_string())
    }

    /// The folder adapters are kept in.
    pub fn adapters_dir(&self) -> PathBuf {
        self.root().join("adapters")
    }

    /// Records an adapter whose files are already under the library folder.
    pub fn add_adapter(&mut self, adapter: &NewAdapter) -> Result<AdapterId> {
        self.conn.execute(
            "INSERT INTO adapters (name, run_id, source, base_model, base_model_sha256, sha256, rank, alpha, targets, path) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                adapter.name,
                adapter.run_id,
                if adapter.imported { "imported" } else { "trained" },
                adapter.base_model,
                adapter.base_model_sha256,
                adapter.sha256,
                adapter.rank,
                adapter.alpha,
                adapter.targets.join(","),
                adapter.path
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every adapter, newest first.
    pub fn adapters(&self) -> Result<Vec<Adapter>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ADAPTER_COLUMNS} FROM adapters ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([], adapter_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The adapter with this id.
    pub fn adapter(&self, id: AdapterId) -> Result<Adapter> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {ADAPTER_COLUMNS} FROM adapters WHERE id = ?1"
            ))?
            .query_row([id], adapter_from_row)
            .optional()?
            .ok_or(StoreError::NoSuchAdapter(id))
    }

    /// The adapter with this weights sha256, if recorded.
    pub fn adapter_by_sha256(&self, sha256: &str) -> Result<Option<Adapter>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {ADAPTER_COLUMNS} FROM adapters WHERE sha256 = ?1"
            ))?
            .query_row([sha256], adapter_from_row)
            .optional()?)
    }

    /// The absolute folder of an adapter.
    pub fn adapter_path(&self, adapter: &Adapter) -> PathBuf {
        self.root().join(&adapter.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_adapters_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        let id = library
            .create_run(&NewRun {
                kind: RunKind::Text,
                parent_sha256: None,
                base_model: "stories260k".into(),
                base_model_sha256: "b".repeat(64),
                config: "{}".into(),
                label: Some("diary".into()),
                item_sha256s: vec!["2".repeat(64), "1".repeat(64)],
                token_count: 1234,
                device: "cpu".into(),
            })
            .expect("run");
        assert_eq!(library.run(id).expect("run").status, RunStatus::Running);
        assert_eq!(
            library.run_item_hashes(id).expect("items"),
            vec!["1".repeat(64), "2".repeat(64)]
        );
        library
            .update_run(
                id,
                &RunUpdate {
                    status: Some(RunStatus::Completed),
                    steps_done: Some(50),
                    validation_loss: Some(1.5),
                    ..RunUpdate::default()
                },
            )
            .expect("update");
        let run = library.run(id).expect("run");
        assert_eq!(
            (run.status, run.steps_done, run.validation_loss),
            (RunStatus::Completed, 50, Some(1.5))
        );
        assert!(matches!(
            library.update_run(99, &RunUpdate::default()),
            Err(StoreError::NoSuchRun(99))
        ));

        let adapter = library
            .add_adapter(&NewAdapter {
                name: "diary".into(),
                run_id: Some(id),
                imported: false,
                base_model: Some("stories260k".into()),
                base_model_sha256: Some("b".repeat(64)),
                sha256: "c".repeat(64),
                rank: 8,
                alpha: 16.0,
                targets: vec!["q_proj".into(), "v_proj".into()],
                path: "adapters/cccc".into(),
            })
            .expect("adapter");
        let stored = library.adapter(adapter).expect("adapter");
        assert_eq!(
            (stored.source.as_str(), stored.targets.as_slice()),
            (
                "trained",
                ["q_proj".to_owned(), "v_proj".to_owned()].as_slice()
            )
        );
        assert_eq!(
            library
                .adapter_by_sha256(&"c".repeat(64))
                .expect("by sha")
                .map(|a| a.id),
            Some(adapter)
        );
        assert!(matches!(
            library.adapter(7),
            Err(StoreError::NoSuchAdapter(7))
        ));
    }
}
