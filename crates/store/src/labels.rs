//! Labels: the person's own names for their things ("Rex", "receipts"),
//! attached to items. A label exists while at least one item carries it.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};
use crate::items::ItemId;

/// Longest label name accepted, in characters.
const MAX_LABEL_CHARS: usize = 100;

/// A label and how many items carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LabelSummary {
    /// The label as first written.
    pub name: String,
    /// Items carrying it.
    pub items: u64,
}

fn clean_label(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_LABEL_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(StoreError::InvalidLabel(name.to_owned()));
    }
    Ok(name)
}

/// Fails with [`StoreError::NoSuchItem`] unless the item exists.
fn ensure_item(conn: &rusqlite::Connection, item: ItemId) -> Result<()> {
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM items WHERE id = ?1", [item], |row| {
            row.get(0)
        })
        .optional()?;
    exists.map(|_| ()).ok_or(StoreError::NoSuchItem(item))
}

impl Library {
    /// Puts label `name` on an item, creating the label if it is new.
    /// Names compare case-insensitively. Returns false if the item already
    /// had it.
    pub fn add_label(&mut self, item: ItemId, name: &str) -> Result<bool> {
        let name = clean_label(name)?;
        let tx = self.conn.transaction()?;
        ensure_item(&tx, item)?;
        tx.execute(
            "INSERT INTO labels (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
            [name],
        )?;
        let added = tx.execute(
            "INSERT INTO item_labels (item_id, label_id) SELECT ?1, id FROM labels WHERE name = ?2 \
             ON CONFLICT DO NOTHING",
            params![item, name],
        )?;
        tx.commit()?;
        Ok(added == 1)
    }

    /// Takes label `name` off an item; a label no item carries any more (and
    /// with no accept/reject verdicts) is forgotten. Returns false if the item did not have it.
    pub fn remove_label(&mut self, item: ItemId, name: &str) -> Result<bool> {
        let name = clean_label(name)?;
        let tx = self.conn.transaction()?;
        ensure_item(&tx, item)?;
        let removed = tx.execute(
            "DELETE FROM item_labels WHERE item_id = ?1 \
             AND label_id = (SELECT id FROM labels WHERE name = ?2)",
            params![item, name],
        )?;
        tx.execute(
            "DELETE FROM labels WHERE name = ?1 \
             AND NOT EXISTS (SELECT 1 FROM item_labels WHERE label_id = labels.id) \
             AND NOT EXISTS (SELECT 1 FROM label_feedback WHERE label_id = labels.id)",
            [name],
        )?;
        tx.commit()?;
        Ok(removed == 1)
    }

    /// Every label with its item count, by name.
    pub fn labels(&self) -> Result<Vec<LabelSummary>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.name, count(il.item_id) FROM labels l \
             LEFT JOIN item_labels il ON il.label_id = l.id \
             GROUP BY l.id ORDER BY l.name",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(LabelSummary {
                name: row.get(0)?,
                items: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_validated() {
        assert_eq!(clean_label("  Rex ").expect("valid"), "Rex");
        assert!(clean_label("   ").is_err());
        assert!(clean_label("a\nb").is_err());
        assert!(clean_label(&"x".repeat(101)).is_err());
    }
}
