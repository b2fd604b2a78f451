//! Compiling checked sets to SQL. Every statement is a `SELECT` assembled
//! from fixed fragments in this file; every value that came from the query
//! (labels, words, dates, ids, limits) is a bound parameter, never spliced
//! into the text. The executor also asks SQLite whether each statement is
//! read-only before running it, on a connection that cannot write anyway.
//!
//! An item's date: a photo's is when it was taken (EXIF), and a photo
//! without one has none (never matched by a date range, never first or
//! last); a note's is when it was added to the library (notes carry no date
//! of their own yet). Dates compare as the calendar day written, in the
//! time zone the camera recorded.

use serde::Serialize;

use crate::ast::{Filter, Producer, Set, Source};
use crate::check::Checked;
use crate::dates::resolve;
use crate::error::CheckError;

/// The item's timestamp: EXIF time for photos, import time for notes.
pub(crate) const ITEM_TIME: &str =
    "(CASE items.kind WHEN 'photo' THEN items.captured_at ELSE items.imported_at END)";

/// A value bound to a statement's parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// A statement and its parameters, in order (`?` placeholders).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// One value per `?`.
    pub params: Vec<Param>,
}

/// Which end of a set to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Oldest first (undated last).
    Oldest,
    /// Newest first, dated items only.
    Newest,
}

/// The columns of an item in an answer, in [`crate::run::SourceItem`] order.
const ITEM_COLUMNS: &str = "items.id, items.kind, items.path, items.sha256, \
     (CASE items.kind WHEN 'photo' THEN items.captured_at ELSE items.imported_at END), \
     (SELECT group_concat(l.name, char(31) ORDER BY l.name) FROM item_labels il \
      JOIN labels l ON l.id = il.label_id WHERE il.item_id = items.id)";

/// An FTS5 query matching notes that contain every word of `text`: each
/// word quoted as its own string, so FTS5's operators in what the person
/// wrote (`OR`, `NEAR`, `*`, `col:`) are just words.
pub(crate) fn fts_words(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| format!("\"{word}\""))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `run_items ri` rows of the run behind `producer` (a `FROM` tail
/// with one parameter, the producer's id).
fn run_items_of(producer: Producer) -> (&'static str, i64) {
    match producer {
        Producer::Run(id) => ("run_items ri WHERE ri.run_id = ?", id),
        Producer::Adapter(id) => (
            "run_items ri JOIN adapters a ON a.run_id = ri.run_id WHERE a.id = ?",
            id,
        ),
        Producer::Tagger(id) => (
            "run_items ri JOIN photo_taggers t ON t.run_id = ri.run_id WHERE t.id = ?",
            id,
        ),
    }
}

/// How many items the run behind `producer` trained on are no longer in
/// the library.
pub(crate) fn missing_lineage(producer: Producer) -> Statement {
    let (from, id) = run_items_of(producer);
    Statement {
        sql: format!(
            "SELECT count(*) FROM {from} AND ri.item_sha256 NOT IN (SELECT sha256 FROM items)"
        ),
        params: vec![Param::Int(id)],
    }
}

fn conditions(
    set: &Set,
    today: chrono::NaiveDate,
    params: &mut Vec<Param>,
) -> Result<String, CheckError> {
    let mut parts = Vec::new();
    match set.source {
        Source::Photos => parts.push("items.kind = 'photo'".to_owned()),
        Source::Notes => parts.push("items.kind = 'text'".to_owned()),
        Source::Items => {}
    }
    for filter in &set.filters {
        match filter {
            Filter::Label(name) => {
                parts.push(
                    "EXISTS (SELECT 1 FROM item_labels il JOIN labels l ON l.id = il.label_id \
                     WHERE il.item_id = items.id AND l.name = ?)"
                        .to_owned(),
                );
                params.push(Param::Text(name.clone()));
            }
            Filter::In(range) => {
                let span = resolve(range, today)
                    .map_err(|_| CheckError::DateOverflow(range.to_string()))?;
                parts.push(format!("substr({ITEM_TIME}, 1, 10) BETWEEN ? AND ?"));
                params.push(Param::Text(span.from.format("%Y-%m-%d").to_string()));
                params.push(Param::Text(span.to.format("%Y-%m-%d").to_string()));
            }
            Filter::Text(words) => {
                parts.push(
                    "items.id IN (SELECT rowid FROM note_fts WHERE note_fts MATCH ?)".to_owned(),
                );
                params.push(Param::Text(fts_words(words)));
            }
            Filter::TrainedOn(producer) => {
                let (from, id) = run_items_of(*producer);
                parts.push(format!(
                    "items.sha256 IN (SELECT ri.item_sha256 FROM {from})"
                ));
                params.push(Param::Int(id));
            }
        }
    }
    if parts.is_empty() {
        Ok("TRUE".to_owned())
    } else {
        Ok(parts.join(" AND "))
    }
}

/// `SELECT count(*)` of the set.
pub(crate) fn count(set: &Set, today: chrono::NaiveDate) -> Result<Statement, CheckError> {
    let mut params = Vec::new();
    let cond = conditions(set, today, &mut params)?;
    Ok(Statement {
        sql: format!("SELECT count(*) FROM items WHERE {cond}"),
        params,
    })
}

/// The set's ids, for a semantic index to rank.
pub(crate) fn ids(set: &Set, today: chrono::NaiveDate) -> Result<Statement, CheckError> {
    let mut params = Vec::new();
    let cond = conditions(set, today, &mut params)?;
    Ok(Statement {
        sql: format!("SELECT items.id FROM items WHERE {cond} ORDER BY items.id"),
        params,
    })
}

/// Up to `limit` of the set's items in `order`.
pub(crate) fn items(
    set: &Set,
    today: chrono::NaiveDate,
    order: Order,
    dated_only: bool,
    limit: u32,
) -> Result<Statement, CheckError> {
    let mut params = Vec::new();
    let mut cond = conditions(set, today, &mut params)?;
    if dated_only {
        cond.push_str(&format!(" AND {ITEM_TIME} IS NOT NULL"));
    }
    let order = match order {
        Order::Oldest => format!("{ITEM_TIME} ASC NULLS LAST, items.id ASC"),
        Order::Newest => format!("{ITEM_TIME} DESC NULLS LAST, items.id DESC"),
    };
    params.push(Param::Int(i64::from(limit)));
    Ok(Statement {
        sql: format!("SELECT {ITEM_COLUMNS} FROM items WHERE {cond} ORDER BY {order} LIMIT ?"),
        params,
    })
}

/// The items with these ids (for semantic results), in no order.
pub(crate) fn items_by_id(ids: &[i64]) -> Statement {
    let marks = vec!["?"; ids.len()].join(", ");
    Statement {
        sql: format!("SELECT {ITEM_COLUMNS} FROM items WHERE items.id IN ({marks})"),
        params: ids.iter().copied().map(Param::Int).collect(),
    }
}

/// Every statement running `checked` may execute (with a semantic index
/// given): per set its count, its oldest and newest items and its ids, and
/// the lineage checks.
pub(crate) fn all_statements(checked: &Checked) -> Result<Vec<Statement>, CheckError> {
    let today = checked.today();
    let mut out = Vec::new();
    for set in checked.query().sets() {
        out.push(count(set, today)?);
        out.push(items(set, today, Order::Oldest, false, 1)?);
        out.push(items(set, today, Order::Newest, true, 1)?);
        out.push(ids(set, today)?);
    }
    let mut producers = Vec::new();
    crate::run::collect_producers(checked.query(), &mut producers);
    out.extend(producers.into_iter().map(missing_lineage));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{NamedRange, Range, Season};

    #[test]
    fn values_are_parameters_never_text() {
        let set = Set {
            source: Source::Notes,
            filters: vec![
                Filter::Label("x' OR 1=1; DROP TABLE items; --".into()),
                Filter::In(Range::Named(NamedRange::Last(Season::Summer))),
                Filter::Text("lisbon OR \"porto\" NEAR(a b)".into()),
                Filter::TrainedOn(Producer::Adapter(3)),
            ],
        };
        let today = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
        let statement = items(&set, today, Order::Oldest, false, 10).expect("compiles");
        assert!(statement.sql.starts_with("SELECT "));
        assert!(!statement.sql.contains("DROP") && !statement.sql.contains("lisbon"));
        assert_eq!(statement.sql.matches('?').count(), statement.params.len());
        assert_eq!(
            statement.params,
            vec![
                Param::Text("x' OR 1=1; DROP TABLE items; --".into()),
                Param::Text("2023-06-01".into()),
                Param::Text("2023-08-31".into()),
                Param::Text(r#""lisbon" "OR" "porto" "NEAR" "a" "b""#.into()),
                Param::Int(3),
                Param::Int(10),
            ]
        );
    }
}
