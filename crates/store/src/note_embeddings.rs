//! Cached sentence embeddings of notes, for Ask's semantic search.
//!
//! Vectors are computed by the model side (`hearth-ml`) the first time a
//! search needs them and kept here, keyed by (note, model weights sha256),
//! with the sha256 of the text they were computed from: a note whose text
//! changed reads as needing a new vector, never as its old one. The store
//! only keeps vectors; it never computes them.

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::db::Library;
use crate::error::Result;
use crate::items::ItemId;

/// A note's embedding under one model, as far as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum NoteEmbeddingState {
    /// A vector computed from the note's current text.
    Fresh {
        /// The note.
        item_id: ItemId,
        /// Its vector.
        vector: Vec<f32>,
    },
    /// No vector for the current text (none yet, or the text changed
    /// since): embed `text` and store it with [`Library::put_note_embeddings`].
    Needed(NoteToEmbed),
}

/// A note whose vector is missing or stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteToEmbed {
    /// The note.
    pub item_id: ItemId,
    /// Its current text.
    pub text: String,
    /// sha256 of that text (store it with the vector).
    pub text_sha256: String,
}

/// A vector computed for a note, to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNoteEmbedding {
    /// The note.
    pub item_id: ItemId,
    /// sha256 of the text it was computed from ([`NoteToEmbed::text_sha256`]).
    pub text_sha256: String,
    /// The vector.
    pub vector: Vec<f32>,
}

/// sha256 of a note's text, lower-case hex: what a stored vector is
/// checked against.
pub fn text_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
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
    /// For each of `items` that is a note (other ids are left out), its
    /// vector under `model_sha256` if one was computed from its current
    /// text, or its text to embed; in the order given.
    pub fn note_embedding_states(
        &self,
        model_sha256: &str,
        items: &[ItemId],
    ) -> Result<Vec<NoteEmbeddingState>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.body, e.text_sha256, e.vector FROM item_texts t \
             LEFT JOIN note_embeddings e ON e.item_id = t.item_id AND e.model_sha256 = ?2 \
             WHERE t.item_id = ?1",
        )?;
        let mut states = Vec::with_capacity(items.len());
        for &item_id in items {
            let row: Option<(String, Option<String>, Option<Vec<u8>>)> = stmt
                .query_row(params![item_id, model_sha256], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((text, stored_sha256, vector)) = row else {
                continue;
            };
            let current = text_sha256(&text);
            states.push(match (stored_sha256, vector) {
                (Some(stored), Some(bytes)) if stored == current => NoteEmbeddingState::Fresh {
                    item_id,
                    vector: decode(&bytes),
                },
                _ => NoteEmbeddingState::Needed(NoteToEmbed {
                    item_id,
                    text,
                    text_sha256: current,
                }),
            });
        }
        Ok(states)
    }

    /// Stores vectors computed by `model` (its name) with weights
    /// `model_sha256`, replacing older ones of the same notes and model,
    /// in one transaction. A note deleted meanwhile is skipped.
    pub fn put_note_embeddings(
        &mut self,
        model_sha256: &str,
        model: &str,
        embeddings: &[NewNoteEmbedding],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO note_embeddings \
                 (item_id, model_sha256, model, text_sha256, vector, dim) \
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM item_texts WHERE item_id = ?1)",
            )?;
            for embedding in embeddings {
                insert.execute(params![
                    embedding.item_id,
                    model_sha256,
                    model,
                    embedding.text_sha256,
                    encode(&embedding.vector),
                    embedding.vector.len() as u64,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many notes have a stored vector under `model_sha256` (fresh or
    /// not).
    pub fn note_embedding_count(&self, model_sha256: &str) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM note_embeddings WHERE model_sha256 = ?1",
            [model_sha256],
            |row| row.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library_with_note(body: &str) -> (tempfile::TempDir, Library, ItemId) {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::open(dir.path()).expect("open");
        library
            .conn
            .execute(
                "INSERT INTO items (kind, sha256, path, size_bytes, media_type, text_chars) \
                 VALUES ('text', ?1, '/n/taxes.txt', 10, 'text/plain', 10)",
                [&"c".repeat(64)],
            )
            .expect("insert");
        let id = library.conn.last_insert_rowid();
        library
            .conn
            .execute(
                "INSERT INTO item_texts (item_id, body) VALUES (?1, ?2)",
                params![id, body],
            )
            .expect("text");
        (dir, library, id)
    }

    #[test]
    fn vectors_are_cached_until_the_text_changes() {
        let (_dir, mut library, id) = library_with_note("receipts for taxes");
        let model = "m".repeat(64);
        let states = library
            .note_embedding_states(&model, &[id, 999])
            .expect("states");
        let [NoteEmbeddingState::Needed(needed)] = states.as_slice() else {
            panic!("one note to embed, the unknown id left out: {states:?}");
        };
        assert_eq!(needed.text, "receipts for taxes");
        assert_eq!(needed.text_sha256, text_sha256("receipts for taxes"));
        library
            .put_note_embeddings(
                &model,
                "minilm",
                &[NewNoteEmbedding {
                    item_id: id,
                    text_sha256: needed.text_sha256.clone(),
                    vector: vec![0.6, -0.8],
                }],
            )
            .expect("put");
        assert_eq!(library.note_embedding_count(&model).expect("count"), 1);
        assert_eq!(
            library.note_embedding_states(&model, &[id]).expect("fresh"),
            vec![NoteEmbeddingState::Fresh {
                item_id: id,
                vector: vec![0.6, -0.8]
            }]
        );
        // Another model has nothing yet.
        assert!(matches!(
            library
                .note_embedding_states(&"n".repeat(64), &[id])
                .expect("other")
                .as_slice(),
            [NoteEmbeddingState::Needed(_)]
        ));
        // The text changes: the old vector is stale.
        library
            .conn
            .execute(
                "UPDATE item_texts SET body = 'beach day' WHERE item_id = ?1",
                [id],
            )
            .expect("update");
        assert!(matches!(
            library.note_embedding_states(&model, &[id]).expect("stale").as_slice(),
            [NoteEmbeddingState::Needed(NoteToEmbed { text, .. })] if text == "beach day"
        ));
        // Removing the note removes its vectors; storing for a gone note
        // is a no-op.
        library.remove_item(id).expect("remove");
        assert_eq!(library.note_embedding_count(&model).expect("count"), 0);
        library
            .put_note_embeddings(
                &model,
                "minilm",
                &[NewNoteEmbedding {
                    item_id: id,
                    text_sha256: text_sha256("x"),
                    vector: vec![1.0],
                }],
            )
            .expect("put for a gone note");
        assert_eq!(library.note_embedding_count(&model).expect("count"), 0);
    }
}
