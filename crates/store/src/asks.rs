//! Asks: the questions a person asked about their library, the checked
//! queries that answered them, and the corrections they made. The pairs
//! (question, corrected query) are what the translation from words to
//! queries will learn from, so they are kept as the person left them.
//!
//! The store only records; parsing, checking and running queries is
//! `hearth-ask`'s job, on its own read-only connection.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};

/// An ask's row id.
pub type AskId = i64;

/// One answered ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AskRecord {
    /// Row id.
    pub id: AskId,
    /// The question in the person's words; `None` when they wrote the
    /// query themselves.
    pub question: Option<String>,
    /// The query that ran, in canonical form.
    pub query: String,
    /// When (UTC, ISO 8601).
    pub asked_at: String,
}

/// A correction: the query an ask should have run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AskCorrection {
    /// Row id.
    pub id: i64,
    /// The ask corrected.
    pub ask_id: AskId,
    /// That ask's question, if it had one.
    pub question: Option<String>,
    /// The corrected query, canonical.
    pub query: String,
    /// When (UTC, ISO 8601).
    pub corrected_at: String,
}

impl Library {
    /// Records an answered ask and returns its id.
    pub fn record_ask(&mut self, question: Option<&str>, query: &str) -> Result<AskId> {
        self.conn
            .prepare_cached("INSERT INTO asks (question, query) VALUES (?1, ?2)")?
            .execute(params![question, query])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The ask with this id.
    pub fn ask_record(&self, id: AskId) -> Result<AskRecord> {
        self.conn
            .prepare_cached("SELECT id, question, query, asked_at FROM asks WHERE id = ?1")?
            .query_row([id], |row| {
                Ok(AskRecord {
                    id: row.get(0)?,
                    question: row.get(1)?,
                    query: row.get(2)?,
                    asked_at: row.get(3)?,
                })
            })
            .optional()?
            .ok_or(StoreError::NoSuchAsk(id))
    }

    /// Every ask, oldest first.
    pub fn asks(&self) -> Result<Vec<AskRecord>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, question, query, asked_at FROM asks ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok(AskRecord {
                id: row.get(0)?,
                question: row.get(1)?,
                query: row.get(2)?,
                asked_at: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores `query` (already checked by the caller) as the correction of
    /// ask `ask`, returning the correction's id.
    pub fn add_ask_correction(&mut self, ask: AskId, query: &str) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM asks WHERE id = ?1", [ask], |row| row.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(StoreError::NoSuchAsk(ask));
        }
        tx.execute(
            "INSERT INTO ask_corrections (ask_id, query) VALUES (?1, ?2)",
            params![ask, query],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Every correction with its ask's question, oldest first: the
    /// training pairs for the translation.
    pub fn ask_corrections(&self) -> Result<Vec<AskCorrection>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.id, c.ask_id, a.question, c.query, c.corrected_at \
             FROM ask_corrections c JOIN asks a ON a.id = c.ask_id ORDER BY c.id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(AskCorrection {
                id: row.get(0)?,
                ask_id: row.get(1)?,
                question: row.get(2)?,
                query: row.get(3)?,
                corrected_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(library: &Library, sha: char, body: &str) -> i64 {
        library
            .conn
            .execute(
                "INSERT INTO items (kind, sha256, path, size_bytes, media_type, text_chars) \
                 VALUES ('text', ?1, '/n.txt', 1, 'text/plain', 1)",
                [sha.to_string().repeat(64)],
            )
            .expect("item");
        let id = library.conn.last_insert_rowid();
        library
            .conn
            .execute(
                "INSERT INTO item_texts (item_id, body) VALUES (?1, ?2)",
                params![id, body],
            )
            .expect("text");
        id
    }

    fn search(library: &Library, words: &str) -> Vec<i64> {
        let mut stmt = library
            .conn
            .prepare("SELECT rowid FROM note_fts WHERE note_fts MATCH ?1 ORDER BY rowid")
            .expect("prepare");
        stmt.query_map([words], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn sqlite_has_fts5() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::open(dir.path()).expect("open");
        let fts5: bool = library
            .conn
            .query_row(
                "SELECT sqlite_compileoption_used('ENABLE_FTS5')",
                [],
                |row| row.get(0),
            )
            .expect("compile option");
        assert!(fts5, "this SQLite was built without FTS5");
    }

    #[test]
    fn the_full_text_index_follows_inserts_updates_and_removals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        let lisbon = note(&library, 'a', "Trams in Lisbon, pastéis de nata.");
        let porto = note(&library, 'b', "Port wine tasting in Porto.");
        assert_eq!(search(&library, "lisbon"), vec![lisbon]);
        // Stemming and folded diacritics.
        assert_eq!(search(&library, "tram"), vec![lisbon]);
        assert_eq!(search(&library, "pasteis"), vec![lisbon]);
        library
            .conn
            .execute(
                "UPDATE item_texts SET body = 'Now about Lisbon too' WHERE item_id = ?1",
                [porto],
            )
            .expect("update");
        assert_eq!(search(&library, "lisbon"), vec![lisbon, porto]);
        assert!(search(&library, "porto").is_empty());
        // Removing the item cascades to its text, and the trigger follows.
        library.remove_item(lisbon).expect("remove");
        assert_eq!(search(&library, "lisbon"), vec![porto]);
        library
            .conn
            .execute(
                "INSERT INTO note_fts (note_fts) VALUES ('integrity-check')",
                [],
            )
            .expect("index consistent with its content");
    }

    #[test]
    fn asks_and_corrections_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        let asked = library
            .record_ask(Some("how many photos of rex?"), "count photos")
            .expect("ask");
        let direct = library.record_ask(None, "count notes").expect("ask");
        assert_eq!(library.asks().expect("asks").len(), 2);
        assert_eq!(library.ask_record(direct).expect("record").question, None);
        library
            .add_ask_correction(asked, "count photos label \"Rex\"")
            .expect("correct");
        assert!(matches!(
            library.add_ask_correction(99, "count photos"),
            Err(StoreError::NoSuchAsk(99))
        ));
        let corrections = library.ask_corrections().expect("corrections");
        assert_eq!(corrections.len(), 1);
        assert_eq!(
            corrections[0].question.as_deref(),
            Some("how many photos of rex?")
        );
        assert_eq!(corrections[0].query, "count photos label \"Rex\"");
    }
}
