//! The photo taggers photo runs produce: which run, which network, which
//! head file (by hash), so that a tagger's lineage is answerable as an
//! adapter's is (`runs.rs` keeps the runs and their items).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};
use crate::runs::RunId;

/// A photo tagger's row id.
pub type TaggerId = i64;

/// A photo tagger to record.
#[derive(Debug, Clone)]
pub struct NewPhotoTagger {
    /// The run that trained it.
    pub run_id: RunId,
    /// The network its embeddings come from (base, or base + tail).
    pub model_sha256: String,
    /// sha256 of the head file's bytes.
    pub sha256: String,
    /// The labels it suggests, in output order.
    pub labels: Vec<String>,
    /// The head file, relative to the library folder.
    pub path: String,
}

/// A recorded photo tagger.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PhotoTagger {
    /// Row id.
    pub id: TaggerId,
    /// The run that trained it.
    pub run_id: RunId,
    /// The network its embeddings come from.
    pub model_sha256: String,
    /// sha256 of the head file's bytes when it was written.
    pub sha256: String,
    /// The labels it suggests.
    pub labels: Vec<String>,
    /// The head file, relative to the library folder.
    pub path: String,
    /// When it was recorded.
    pub created_at: String,
}

const COLUMNS: &str = "id, run_id, model_sha256, sha256, labels, path, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<PhotoTagger> {
    let labels: String = row.get(4)?;
    Ok(PhotoTagger {
        id: row.get(0)?,
        run_id: row.get(1)?,
        model_sha256: row.get(2)?,
        sha256: row.get(3)?,
        labels: serde_json::from_str(&labels).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
        })?,
        path: row.get(5)?,
        created_at: row.get(6)?,
    })
}

impl Library {
    /// Records the tagger a run produced. A run finished again (resumed
    /// after a crash between writing its head and recording it, or a
    /// killed run resumed later) replaces its record with a new, newest
    /// one: the newest tagger over a network is always the one finished
    /// last, which is the one tagging uses.
    pub fn record_photo_tagger(&mut self, tagger: &NewPhotoTagger) -> Result<TaggerId> {
        let labels = serde_json::to_string(&tagger.labels)
            .map_err(|e| StoreError::Corrupt(format!("tagger labels: {e}")))?;
        Ok(self.conn.query_row(
            "INSERT OR REPLACE INTO photo_taggers (run_id, model_sha256, sha256, labels, path) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            params![
                tagger.run_id,
                tagger.model_sha256,
                tagger.sha256,
                labels,
                tagger.path
            ],
            |row| row.get(0),
        )?)
    }

    /// Every photo tagger, newest first.
    pub fn photo_taggers(&self) -> Result<Vec<PhotoTagger>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM photo_taggers ORDER BY id DESC"
        ))?;
        let rows = statement.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The photo tagger with this id.
    pub fn photo_tagger(&self, id: TaggerId) -> Result<PhotoTagger> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM photo_taggers WHERE id = ?1"
            ))?
            .query_row([id], from_row)
            .optional()?
            .ok_or(StoreError::NoSuchTagger(id))
    }

    /// The newest tagger over the network with this hash, if any.
    pub fn latest_photo_tagger(&self, model_sha256: &str) -> Result<Option<PhotoTagger>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM photo_taggers WHERE model_sha256 = ?1 \
                 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([model_sha256], from_row)
            .optional()?)
    }

    /// Photo taggers whose runs learned from the item with this sha256.
    pub fn photo_taggers_trained_on(&self, item_sha256: &str) -> Result<Vec<PhotoTagger>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM photo_taggers WHERE run_id IN \
             (SELECT run_id FROM run_items WHERE item_sha256 = ?1) ORDER BY id"
        ))?;
        let rows = statement.query_map([item_sha256], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{NewRun, RunKind};

    fn run(library: &mut Library, items: &[&str]) -> RunId {
        library
            .create_run(&NewRun {
                kind: RunKind::Photos,
                parent_sha256: None,
                base_model: "efficientnet-lite0".into(),
                base_model_sha256: "b".repeat(64),
                config: "{}".into(),
                label: None,
                item_sha256s: items.iter().map(|s| (*s).to_owned()).collect(),
                token_count: 0,
                device: "Cpu".into(),
            })
            .expect("run")
    }

    #[test]
    fn taggers_round_trip_and_a_run_finished_again_is_recorded_as_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        let (cat, cup) = ("c".repeat(64), "d".repeat(64));
        let first_run = run(&mut library, &[&cat, &cup]);
        let second_run = run(&mut library, &[&cup]);
        let tagger = |run_id, sha: char| NewPhotoTagger {
            run_id,
            model_sha256: "b".repeat(64),
            sha256: sha.to_string().repeat(64),
            labels: vec!["Rex".into(), "receipts".into()],
            path: format!("taggers/run-{run_id}.json"),
        };
        let latest = |library: &Library| {
            library
                .latest_photo_tagger(&"b".repeat(64))
                .expect("latest")
                .map(|t| t.run_id)
        };
        let replaced = library
            .record_photo_tagger(&tagger(first_run, 'e'))
            .expect("record");
        let second = library
            .record_photo_tagger(&tagger(second_run, 'a'))
            .expect("second");
        assert_eq!(latest(&library), Some(second_run));
        // The first run, finished again, is the newest: one record per run.
        let first = library
            .record_photo_tagger(&tagger(first_run, 'f'))
            .expect("again");
        assert_eq!(latest(&library), Some(first_run));
        assert!(matches!(
            library.photo_tagger(replaced),
            Err(StoreError::NoSuchTagger(_))
        ));
        assert_eq!(
            library.photo_tagger(first).expect("get").sha256,
            "f".repeat(64)
        );

        let all = library.photo_taggers().expect("list");
        assert_eq!(
            all.iter().map(|t| t.id).collect::<Vec<_>>(),
            [first, second]
        );
        assert_eq!(all[0].labels, ["Rex", "receipts"]);
        assert_eq!(
            library.latest_photo_tagger(&"0".repeat(64)).expect("none"),
            None
        );
        let on_cat: Vec<TaggerId> = library
            .photo_taggers_trained_on(&cat)
            .expect("trained on")
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(on_cat, [first]);
        assert!(matches!(
            library.photo_tagger(99),
            Err(StoreError::NoSuchTagger(99))
        ));
    }
}
