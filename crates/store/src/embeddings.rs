//! Cached photo embeddings, keyed by (photo sha256, model sha256), and the
//! person's accept/reject verdicts on suggested labels.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};
use crate::items::{Item, ItemFilter, ItemId, ItemKind};

/// One photo's embedding under one model.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoEmbedding {
    /// The photo.
    pub item_id: ItemId,
    /// Its content hash.
    pub item_sha256: String,
    /// The vector.
    pub vector: Vec<f32>,
}

/// What to store for one photo.
#[derive(Debug, Clone)]
pub enum EmbeddingResult {
    /// The photo's embedding.
    Vector(Vec<f32>),
    /// Why the photo could not be embedded (it no longer decodes).
    Failed(String),
}

/// A verdict on a suggested label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The person agreed: the item now carries the label.
    Accepted,
    /// The person disagreed: a negative example.
    Rejected,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
        }
    }
}

fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl Library {
    /// Photos with neither an embedding nor a recorded failure for `model_sha256`.
    pub fn photos_without_embedding(&self, model_sha256: &str) -> Result<Vec<Item>> {
        let photos = self.items(&ItemFilter {
            kind: Some(ItemKind::Photo),
            label: None,
        })?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM photo_embeddings WHERE item_sha256 = ?1 AND model_sha256 = ?2",
        )?;
        let mut missing = Vec::new();
        for photo in photos {
            let seen: Option<i64> = stmt
                .query_row(params![photo.sha256, model_sha256], |row| row.get(0))
                .optional()?;
            if seen.is_none() {
                missing.push(photo);
            }
        }
        Ok(missing)
    }

    /// Stores a batch of results in one transaction.
    pub fn put_embeddings(
        &mut self,
        model_sha256: &str,
        results: &[(String, EmbeddingResult)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO photo_embeddings (item_sha256, model_sha256, vector, dim, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (sha, result) in results {
                match result {
                    EmbeddingResult::Vector(vector) => insert.execute(params![
                        sha,
                        model_sha256,
                        encode(vector),
                        vector.len() as u64,
                        None::<String>
                    ])?,
                    EmbeddingResult::Failed(error) => {
                        insert.execute(params![sha, model_sha256, None::<Vec<u8>>, 0u64, error])?
                    }
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every photo embedding under `model_sha256` (photos that failed are
    /// left out), by item id.
    pub fn photo_embeddings(&self, model_sha256: &str) -> Result<Vec<PhotoEmbedding>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT items.id, items.sha256, e.vector FROM items \
             JOIN photo_embeddings e ON e.item_sha256 = items.sha256 AND e.model_sha256 = ?1 \
             WHERE items.kind = 'photo' AND e.vector IS NOT NULL ORDER BY items.id",
        )?;
        let rows = stmt.query_map([model_sha256], |row| {
            let bytes: Vec<u8> = row.get(2)?;
            Ok(PhotoEmbedding {
                item_id: row.get(0)?,
                item_sha256: row.get(1)?,
                vector: decode(&bytes),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Photos that could not be embedded under `model_sha256`, with why.
    pub fn embedding_failures(&self, model_sha256: &str) -> Result<Vec<(ItemId, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT items.id, e.error FROM items JOIN photo_embeddings e \
             ON e.item_sha256 = items.sha256 AND e.model_sha256 = ?1 WHERE e.error IS NOT NULL ORDER BY items.id",
        )?;
        let rows = stmt.query_map([model_sha256], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a verdict on a suggested label; accepting also puts the
    /// label on the item, rejecting takes it off.
    pub fn record_verdict(&mut self, item: ItemId, label: &str, verdict: Verdict) -> Result<()> {
        match verdict {
            Verdict::Accepted => {
                self.add_label(item, label)?;
            }
            Verdict::Rejected => {
                self.item(item)?;
                self.conn.execute(
                    "INSERT INTO labels (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
                    [label.trim()],
                )?;
                self.remove_label_link(item, label)?;
            }
        }
        let changed = self.conn.execute(
            "INSERT OR REPLACE INTO label_feedback (item_id, label_id, verdict) \
             SELECT ?1, id, ?3 FROM labels WHERE name = ?2",
            params![item, label.trim(), verdict.as_str()],
        )?;
        if changed == 0 {
            return Err(StoreError::InvalidLabel(label.to_owned()));
        }
        Ok(())
    }

    /// Items rejected for `label` (negative examples).
    pub fn rejected_items(&self, label: &str) -> Result<Vec<ItemId>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.item_id FROM label_feedback f JOIN labels l ON l.id = f.label_id \
             WHERE l.name = ?1 AND f.verdict = 'rejected' ORDER BY f.item_id",
        )?;
        let rows = stmt.query_map([label.trim()], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn remove_label_link(&mut self, item: ItemId, label: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM item_labels WHERE item_id = ?1 AND label_id = (SELECT id FROM labels WHERE name = ?2)",
            params![item, label.trim()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library_with_photo() -> (tempfile::TempDir, Library, ItemId, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::open(dir.path()).expect("open");
        let sha = "a".repeat(64);
        library
            .conn
            .execute(
                "INSERT INTO items (kind, sha256, path, size_bytes, media_type, width, height, thumbnail) \
                 VALUES ('photo', ?1, '/p/rex.jpg', 10, 'image/jpeg', 4, 3, 'thumbnails/aa/x.jpg')",
                [&sha],
            )
            .expect("insert");
        let id = library.conn.last_insert_rowid();
        (dir, library, id, sha)
    }

    #[test]
    fn embeddings_round_trip_and_failures_are_remembered() {
        let (_dir, mut library, id, sha) = library_with_photo();
        let model = "m".repeat(64);
        assert_eq!(
            library
                .photos_without_embedding(&model)
                .expect("missing")
                .len(),
            1
        );
        library
            .put_embeddings(
                &model,
                &[(sha.clone(), EmbeddingResult::Vector(vec![0.5, -1.0, 2.0]))],
            )
            .expect("put");
        assert!(
            library
                .photos_without_embedding(&model)
                .expect("missing")
                .is_empty()
        );
        let stored = library.photo_embeddings(&model).expect("get");
        assert_eq!(
            stored,
            vec![PhotoEmbedding {
                item_id: id,
                item_sha256: sha.clone(),
                vector: vec![0.5, -1.0, 2.0]
            }]
        );
        library
            .put_embeddings(
                &model,
                &[(sha, EmbeddingResult::Failed("truncated JPEG".into()))],
            )
            .expect("put failure");
        assert!(library.photo_embeddings(&model).expect("get").is_empty());
        assert_eq!(
            library.embedding_failures(&model).expect("failures"),
            vec![(id, "truncated JPEG".to_owned())]
        );
        assert_eq!(
            library
                .photos_without_embedding(&"n".repeat(64))
                .expect("other model")
                .len(),
            1
        );
    }

    #[test]
    fn verdicts_label_and_unlabel() {
        let (_dir, mut library, id, _) = library_with_photo();
        library
            .record_verdict(id, "Rex", Verdict::Accepted)
            .expect("accept");
        assert_eq!(library.item(id).expect("item").labels, vec!["Rex"]);
        library
            .record_verdict(id, "rex", Verdict::Rejected)
            .expect("reject");
        assert!(library.item(id).expect("item").labels.is_empty());
        assert_eq!(library.rejected_items("REX").expect("rejected"), vec![id]);
        assert!(
            library
                .record_verdict(999, "Rex", Verdict::Accepted)
                .is_err()
        );
    }
}
