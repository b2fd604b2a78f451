//! Items: one row per distinct photo or text the person imported, keyed by
//! the sha256 of its bytes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};

/// An item's row id.
pub type ItemId = i64;

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// A still image.
    Photo,
    /// A plain-text or Markdown note.
    Text,
}

impl ItemKind {
    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Photo => "photo",
            ItemKind::Text => "text",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "photo" => Ok(ItemKind::Photo),
            "text" => Ok(ItemKind::Text),
            other => Err(format!(
                "unknown item kind {other:?} (expected photo or text)"
            )),
        }
    }
}

/// One photo or text in the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Item {
    /// Row id, stable for the life of the item.
    pub id: ItemId,
    /// Photo or text.
    pub kind: ItemKind,
    /// sha256 of the original's bytes, lower-case hex.
    pub sha256: String,
    /// Where the original was last seen.
    pub path: String,
    /// Size of the original in bytes.
    pub size_bytes: u64,
    /// IANA media type (`image/jpeg`, `text/markdown`, ...).
    pub media_type: String,
    /// Photos: displayed width in pixels (EXIF orientation applied).
    pub width: Option<u32>,
    /// Photos: displayed height in pixels.
    pub height: Option<u32>,
    /// Photos: EXIF capture time (ISO 8601, offset when known).
    pub captured_at: Option<String>,
    /// Photos: thumbnail file relative to the library folder.
    pub thumbnail: Option<String>,
    /// Text: length in characters.
    pub text_chars: Option<u64>,
    /// When the item entered the library (UTC, ISO 8601).
    pub imported_at: String,
    /// The item's labels, sorted by name.
    pub labels: Vec<String>,
}

/// Which items to list; the default lists everything.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    /// Only items of this kind.
    pub kind: Option<ItemKind>,
    /// Only items carrying this label (case-insensitive).
    pub label: Option<String>,
}

/// Counts and sizes for `hearth library stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LibraryStats {
    /// Number of photos.
    pub photos: u64,
    /// Number of texts.
    pub texts: u64,
    /// Total size of the photo originals.
    pub photo_bytes: u64,
    /// Total size of the text originals.
    pub text_bytes: u64,
    /// Total characters of text.
    pub text_chars: u64,
    /// Distinct labels.
    pub labels: u64,
    /// Items with at least one label.
    pub labelled_items: u64,
    /// Bytes used by the database (including its write-ahead log).
    pub database_bytes: u64,
    /// Bytes used by thumbnails.
    pub thumbnail_bytes: u64,
}

const ITEM_COLUMNS: &str = "items.id, items.kind, items.sha256, items.path, items.size_bytes, \
     items.media_type, items.width, items.height, items.captured_at, items.thumbnail, \
     items.text_chars, items.imported_at, \
     (SELECT group_concat(l.name, char(31) ORDER BY l.name) FROM item_labels il \
      JOIN labels l ON l.id = il.label_id WHERE il.item_id = items.id)";

fn item_from_row(row: &Row<'_>) -> rusqlite::Result<Item> {
    let kind: String = row.get(1)?;
    let kind = kind.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    })?;
    let labels: Option<String> = row.get(12)?;
    Ok(Item {
        id: row.get(0)?,
        kind,
        sha256: row.get(2)?,
        path: row.get(3)?,
        size_bytes: row.get(4)?,
        media_type: row.get(5)?,
        width: row.get(6)?,
        height: row.get(7)?,
        captured_at: row.get(8)?,
        thumbnail: row.get(9)?,
        text_chars: row.get(10)?,
        imported_at: row.get(11)?,
        labels: labels
            .map(|names| names.split('\u{1f}').map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

impl Library {
    /// Items matching `filter`, oldest first.
    pub fn items(&self, filter: &ItemFilter) -> Result<Vec<Item>> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items \
             WHERE (?1 IS NULL OR items.kind = ?1) \
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM item_labels il JOIN labels l ON l.id = il.label_id \
                                          WHERE il.item_id = items.id AND l.name = ?2)) \
             ORDER BY items.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let kind = filter.kind.map(ItemKind::as_str);
        let rows = stmt.query_map(
            params![kind, filter.label.as_deref().map(str::trim)],
            item_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The item with this id.
    pub fn item(&self, id: ItemId) -> Result<Item> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE items.id = ?1");
        self.conn
            .prepare_cached(&sql)?
            .query_row([id], item_from_row)
            .optional()?
            .ok_or(StoreError::NoSuchItem(id))
    }

    /// The item with this content, if the library has it.
    pub fn item_by_sha256(&self, sha256: &str) -> Result<Option<Item>> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE items.sha256 = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([sha256], item_from_row)
            .optional()?)
    }

    /// The stored text of a text item (`None` for photos).
    pub fn item_text(&self, id: ItemId) -> Result<Option<String>> {
        self.item(id)?;
        Ok(self
            .conn
            .prepare_cached("SELECT body FROM item_texts WHERE item_id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?)
    }

    /// The absolute path of an item's thumbnail, if it has one.
    pub fn thumbnail_path(&self, item: &Item) -> Option<PathBuf> {
        item.thumbnail.as_ref().map(|rel| self.root().join(rel))
    }

    /// Removes an item, its labels and its thumbnail from the library. The
    /// original file is never touched.
    pub fn remove_item(&mut self, id: ItemId) -> Result<Item> {
        let item = self.item(id)?;
        self.conn.execute("DELETE FROM items WHERE id = ?1", [id])?;
        // The row is gone first: a thumbnail without a row is harmless (it is
        // reused if the same content comes back); a row without one is not.
        if let Some(path) = self.thumbnail_path(&item) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(path, e)),
            }
        }
        Ok(item)
    }

    /// Counts and sizes of everything in the library.
    pub fn stats(&self) -> Result<LibraryStats> {
        let mut stats = self.conn.query_row(
            "SELECT \
               (SELECT count(*) FROM items WHERE kind = 'photo'), \
               (SELECT count(*) FROM items WHERE kind = 'text'), \
               (SELECT coalesce(sum(size_bytes), 0) FROM items WHERE kind = 'photo'), \
               (SELECT coalesce(sum(size_bytes), 0) FROM items WHERE kind = 'text'), \
               (SELECT coalesce(sum(text_chars), 0) FROM items), \
               (SELECT count(*) FROM labels), \
               (SELECT count(DISTINCT item_id) FROM item_labels)",
            [],
            |row| {
                Ok(LibraryStats {
                    photos: row.get(0)?,
                    texts: row.get(1)?,
                    photo_bytes: row.get(2)?,
                    text_bytes: row.get(3)?,
                    text_chars: row.get(4)?,
                    labels: row.get(5)?,
                    labelled_items: row.get(6)?,
                    ..LibraryStats::default()
                })
            },
        )?;
        let db = self.root().join(crate::db::DATABASE_FILE);
        stats.database_bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
            .map(|m| m.len())
            .sum();
        stats.thumbnail_bytes = crate::thumbnails::total_bytes(self.root());
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_through_its_name() {
        for kind in [ItemKind::Photo, ItemKind::Text] {
            assert_eq!(kind.as_str().parse::<ItemKind>(), Ok(kind));
        }
        assert!("video".parse::<ItemKind>().is_err());
    }

    #[test]
    fn missing_item_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        assert!(matches!(library.item(42), Err(StoreError::NoSuchItem(42))));
        assert!(matches!(
            library.remove_item(42),
            Err(StoreError::NoSuchItem(42))
        ));
        assert_eq!(library.stats().expect("stats").photos, 0);
    }
}
