//! Running checked queries on a connection that cannot write.
//!
//! [`AskDb`] opens the library's database with `SQLITE_OPEN_READ_ONLY` and
//! sets `PRAGMA query_only`, and refuses any statement SQLite does not
//! report as read-only: a query cannot change the library, and it cannot
//! reach outside it (the SQL comes only from [`crate::sql`]'s fragments,
//! with every value bound). Arithmetic and dates are computed here, in
//! Rust, from what the statements return; every answer carries the items
//! it came from.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDate;
use hearth_store::{DATABASE_FILE, ItemKind};
use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, Row, ToSql, params_from_iter};
use serde::Serialize;

use crate::ast::{DateExpr, Filter, Listing, Number, Producer, Query, Set};
use crate::check::{Checked, LibraryFacts, ResolvedRange, check};
use crate::error::{AskError, SemanticError};
use crate::parse::parse;
use crate::sql::{self, Order, Param, Statement};

/// Items shown by `list` without a `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Items shown as the sources of one count.
pub const SOURCES_PER_COUNT: u32 = 100;

/// A semantic index over the library's items (sentence embeddings for
/// notes, image embeddings for photos), provided by the model side.
pub trait SemanticIndex {
    /// Ranks `candidates` (item ids) by closeness in meaning to `text`,
    /// best first, at most `limit` of them.
    fn rank(
        &self,
        text: &str,
        candidates: &[i64],
        limit: usize,
    ) -> Result<Vec<Scored>, SemanticError>;
}

/// An item and how close it is to what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    /// The item's id.
    pub item: i64,
    /// Similarity, higher is closer.
    pub score: f32,
}

/// One library item an answer came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SourceItem {
    /// Its id in the library.
    pub id: i64,
    /// Photo or text.
    pub kind: ItemKind,
    /// Where the original was last seen.
    pub path: String,
    /// Its content hash.
    pub sha256: String,
    /// Its date and time (photos: when taken; notes: when added).
    pub date: Option<String>,
    /// Its labels.
    pub labels: Vec<String>,
    /// For semantic search: how close it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub score: Option<f32>,
}

/// What a query computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", ts(rename = "AskValue"))]
#[non_exhaustive]
pub enum Value {
    /// `cannot_answer`.
    Refusal,
    /// A whole number.
    Number {
        /// It.
        value: i64,
    },
    /// A date.
    Date {
        /// It, `YYYY-MM-DD`.
        #[cfg_attr(feature = "ts", ts(type = "string"))]
        date: NaiveDate,
    },
    /// Items (listed in the answer's sources).
    Items {
        /// How many match in all (the sources may show fewer).
        total: u64,
    },
    /// The library holds no answer (a first photo of an empty set).
    Unknown {
        /// Why.
        reason: String,
    },
}

/// A query's answer, computed by code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The query that ran, canonical.
    pub canonical: String,
    /// The result.
    pub value: Value,
    /// The items it came from (at most [`SOURCES_PER_COUNT`] per count).
    pub sources: Vec<SourceItem>,
    /// Each date range and the days it meant.
    pub ranges: Vec<ResolvedRange>,
    /// Things worth knowing about the answer.
    pub notes: Vec<String>,
}

/// A value or the reason there is none.
enum Known<T> {
    Value(T),
    Unknown(String),
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Int(n) => ToSqlOutput::Owned(SqlValue::Integer(*n)),
            Param::Text(text) => ToSqlOutput::Borrowed(text.as_str().into()),
        })
    }
}

/// A read-only view of a library's database.
#[derive(Debug)]
pub struct AskDb {
    conn: Connection,
}

impl AskDb {
    /// Opens the database of the library in `root`, read-only. The library
    /// must already exist (opened once with `hearth_store::Library::open`,
    /// which brings its schema up to date).
    pub fn open(root: &Path) -> Result<Self, AskError> {
        let path = root.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(AskError::NoLibrary(path.display().to_string()));
        }
        let conn = hearth_store::open_read_only(&path)?;
        Ok(AskDb { conn })
    }

    /// What the checker needs to know about the library.
    pub fn facts(&self) -> Result<LibraryFacts, AskError> {
        let column = |sql: &str| -> Result<Vec<i64>, AskError> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        let mut stmt = self.conn.prepare("SELECT name FROM labels ORDER BY name")?;
        let labels = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = self
            .conn
            .prepare("SELECT id, run_id FROM adapters ORDER BY id")?;
        let adapters = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(LibraryFacts {
            labels,
            adapters,
            runs: column("SELECT id FROM runs ORDER BY id")?,
            taggers: column("SELECT id FROM photo_taggers ORDER BY id")?,
        })
    }

    /// Parses, checks and runs `text` as asked on `today`.
    pub fn ask(
        &self,
        text: &str,
        today: NaiveDate,
        semantic: Option<&dyn SemanticIndex>,
    ) -> Result<Outcome, AskError> {
        let query = parse(text)?;
        let checked = check(query, &self.facts()?, today)?;
        self.run(&checked, semantic)
    }

    /// Runs a checked query.
    pub fn run(
        &self,
        checked: &Checked,
        semantic: Option<&dyn SemanticIndex>,
    ) -> Result<Outcome, AskError> {
        let mut run = Run {
            db: self,
            today: checked.today(),
            sources: Vec::new(),
            seen: BTreeSet::new(),
            notes: Vec::new(),
        };
        let value = match checked.query() {
            Query::CannotAnswer => Value::Refusal,
            Query::Number(number) => match run.number(number)? {
                Known::Value(value) => Value::Number { value },
                Known::Unknown(reason) => Value::Unknown { reason },
            },
            Query::Date(date) => match run.date(date)? {
                Known::Value(date) => Value::Date { date },
                Known::Unknown(reason) => Value::Unknown { reason },
            },
            Query::Items(Listing::List { set, limit }) => {
                let total = run.count(set)?;
                let limit = limit.unwrap_or(DEFAULT_LIMIT);
                let items = run.items(set, Order::Oldest, false, limit)?;
                if total > items.len() as u64 {
                    run.notes.push(format!(
                        "showing the first {} of {total} items (add `limit N` for more)",
                        items.len()
                    ));
                }
                run.add_sources(items);
                Value::Items { total }
            }
            Query::Items(Listing::Similar { set, to, limit }) => {
                let Some(index) = semantic else {
                    return Err(AskError::SemanticUnavailable);
                };
                let items = run.similar(index, set, to, limit.unwrap_or(DEFAULT_LIMIT))?;
                let total = items.len() as u64;
                run.add_sources(items);
                Value::Items { total }
            }
        };
        run.lineage_notes(checked.query())?;
        Ok(Outcome {
            canonical: checked.canonical(),
            value,
            sources: run.sources,
            ranges: checked.ranges().to_vec(),
            notes: run.notes,
        })
    }

    fn prepare(&self, statement: &Statement) -> Result<rusqlite::CachedStatement<'_>, AskError> {
        let stmt = self.conn.prepare_cached(&statement.sql)?;
        if !stmt.readonly() {
            return Err(AskError::NotReadOnly(statement.sql.clone()));
        }
        Ok(stmt)
    }

    fn scalar(&self, statement: &Statement) -> Result<i64, AskError> {
        let mut stmt = self.prepare(statement)?;
        Ok(stmt.query_row(params_from_iter(&statement.params), |row| row.get(0))?)
    }

    fn rows(&self, statement: &Statement) -> Result<Vec<SourceItem>, AskError> {
        let mut stmt = self.prepare(statement)?;
        let rows = stmt.query_map(params_from_iter(&statement.params), source_item)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn source_item(row: &Row<'_>) -> rusqlite::Result<SourceItem> {
    let kind: String = row.get(1)?;
    let kind = kind.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    })?;
    let labels: Option<String> = row.get(5)?;
    Ok(SourceItem {
        id: row.get(0)?,
        kind,
        path: row.get(2)?,
        sha256: row.get(3)?,
        date: row.get(4)?,
        labels: labels
            .map(|names| names.split('\u{1f}').map(str::to_owned).collect())
            .unwrap_or_default(),
        score: None,
    })
}

/// One query's evaluation: the sources it gathers on the way.
struct Run<'a> {
    db: &'a AskDb,
    today: NaiveDate,
    sources: Vec<SourceItem>,
    seen: BTreeSet<i64>,
    notes: Vec<String>,
}

impl Run<'_> {
    fn add_sources(&mut self, items: Vec<SourceItem>) {
        for item in items {
            if self.seen.insert(item.id) {
                self.sources.push(item);
            }
        }
    }

    fn count(&mut self, set: &Set) -> Result<u64, AskError> {
        let n = self.db.scalar(&sql::count(set, self.today)?)?;
        u64::try_from(n).map_err(|_| AskError::Overflow)
    }

    fn items(
        &mut self,
        set: &Set,
        order: Order,
        dated_only: bool,
        limit: u32,
    ) -> Result<Vec<SourceItem>, AskError> {
        self.db
            .rows(&sql::items(set, self.today, order, dated_only, limit)?)
    }

    fn number(&mut self, number: &Number) -> Result<Known<i64>, AskError> {
        Ok(match number {
            Number::Count(set) => {
                let total = self.count(set)?;
                let shown = self.items(set, Order::Oldest, false, SOURCES_PER_COUNT)?;
                if total > shown.len() as u64 {
                    self.notes.push(format!(
                        "`{set}`: {total} items, the first {} shown as sources",
                        shown.len()
                    ));
                }
                self.add_sources(shown);
                Known::Value(i64::try_from(total).map_err(|_| AskError::Overflow)?)
            }
            Number::DaysBetween(a, b) => match (self.date(a)?, self.date(b)?) {
                (Known::Value(a), Known::Value(b)) => {
                    Known::Value((b - a).num_days().checked_abs().ok_or(AskError::Overflow)?)
                }
                (Known::Unknown(reason), _) | (_, Known::Unknown(reason)) => Known::Unknown(reason),
            },
            Number::Plus(a, b) | Number::Minus(a, b) => match (self.number(a)?, self.number(b)?) {
                (Known::Value(x), Known::Value(y)) => Known::Value(
                    if matches!(number, Number::Plus(..)) {
                        x.checked_add(y)
                    } else {
                        x.checked_sub(y)
                    }
                    .ok_or(AskError::Overflow)?,
                ),
                (Known::Unknown(reason), _) | (_, Known::Unknown(reason)) => Known::Unknown(reason),
            },
        })
    }

    fn date(&mut self, date: &DateExpr) -> Result<Known<NaiveDate>, AskError> {
        let (set, order) = match date {
            DateExpr::Today => return Ok(Known::Value(self.today)),
            DateExpr::Literal(date) => return Ok(Known::Value(*date)),
            DateExpr::First(set) => (set, Order::Oldest),
            DateExpr::Last(set) => (set, Order::Newest),
        };
        let mut found = self.items(set, order, true, 1)?;
        let Some(item) = found.pop() else {
            return Ok(Known::Unknown(format!("no item of `{set}` has a date")));
        };
        let day = item
            .date
            .as_deref()
            .and_then(|date| date.get(..10))
            .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok());
        let known = match day {
            Some(day) => Known::Value(day),
            None => Known::Unknown(format!(
                "item {} has a date the library cannot read ({:?})",
                item.id, item.date
            )),
        };
        self.add_sources(vec![item]);
        Ok(known)
    }

    fn similar(
        &mut self,
        index: &dyn SemanticIndex,
        set: &Set,
        to: &str,
        limit: u32,
    ) -> Result<Vec<SourceItem>, AskError> {
        let statement = sql::ids(set, self.today)?;
        let candidates: Vec<i64> = {
            let mut stmt = self.db.prepare(&statement)?;
            let rows = stmt.query_map(params_from_iter(&statement.params), |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let allowed: BTreeSet<i64> = candidates.iter().copied().collect();
        // Only candidates count, whatever the index returns.
        let ranked: Vec<Scored> = index
            .rank(to, &candidates, limit as usize)?
            .into_iter()
            .filter(|scored| allowed.contains(&scored.item))
            .take(limit as usize)
            .collect();
        let ids: Vec<i64> = ranked.iter().map(|scored| scored.item).collect();
        let mut items = if ids.is_empty() {
            Vec::new()
        } else {
            self.db.rows(&sql::items_by_id(&ids))?
        };
        for item in &mut items {
            item.score = ranked.iter().find(|s| s.item == item.id).map(|s| s.score);
        }
        items.sort_by(|a, b| {
            b.score
                .unwrap_or(f32::MIN)
                .total_cmp(&a.score.unwrap_or(f32::MIN))
                .then(a.id.cmp(&b.id))
        });
        Ok(items)
    }

    /// For `trained_on`: how many of the run's items are no longer here.
    fn lineage_notes(&mut self, query: &Query) -> Result<(), AskError> {
        let mut producers = Vec::new();
        collect_producers(query, &mut producers);
        for producer in producers {
            let statement = sql::missing_lineage(producer);
            let gone = self.db.scalar(&statement)?;
            if gone > 0 {
                self.notes.push(format!(
                    "{gone} of the items {producer} trained on are no longer in the library (their hashes are kept; see `hearth lineage`)"
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn collect_producers(query: &Query, out: &mut Vec<Producer>) {
    for set in query.sets() {
        for filter in &set.filters {
            if let Filter::TrainedOn(p) = filter
                && !out.contains(p)
            {
                out.push(*p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_store::Library;

    #[test]
    fn the_connection_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Library::open(dir.path()).expect("library"));
        let db = AskDb::open(dir.path()).expect("read-only");
        for sql in [
            "INSERT INTO labels (name) VALUES ('sneaky')",
            "DELETE FROM items",
            "CREATE TABLE t (x)",
            "PRAGMA user_version = 99",
        ] {
            assert!(db.conn.execute(sql, []).is_err(), "{sql} must fail");
        }
        // Even with query_only switched off again, the file is read-only.
        db.conn
            .pragma_update(None, "query_only", false)
            .expect("pragma");
        assert!(
            db.conn
                .execute("INSERT INTO labels (name) VALUES ('sneaky')", [])
                .is_err()
        );
        // And the executor's own guard refuses a writing statement.
        let statement = Statement {
            sql: "DELETE FROM items".into(),
            params: vec![],
        };
        assert!(matches!(
            db.prepare(&statement),
            Err(AskError::NotReadOnly(_))
        ));
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            AskDb::open(dir.path()),
            Err(AskError::NoLibrary(_))
        ));
    }
}
