//! The query language's syntax tree and its canonical printed form.
//!
//! Types are part of the tree: a [`Number`] can only be built from counts
//! and arithmetic, a [`DateExpr`] only from dates, so "subtract a date from
//! a count" cannot even be written. Everything a context-free grammar can
//! say lives here and in the parser (where constrained decoding enforces
//! it); the checker ([`crate::check`]) does what needs the library.
//!
//! `Display` prints the canonical form: lowercase keywords, one space
//! between words, `f(a, b)` for arithmetic, strings in double quotes with
//! `"` and `\` escaped. Printing and parsing back gives the same tree.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

/// A whole query: what the person wants back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// `cannot_answer`: the library cannot answer the question.
    CannotAnswer,
    /// A number (a count, or arithmetic over counts and dates).
    Number(Number),
    /// A date (the first or last dated item of a set).
    Date(DateExpr),
    /// Items (a listing or a semantic search).
    Items(Listing),
}

/// An expression whose value is a whole number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Number {
    /// `count SET`: how many items.
    Count(Set),
    /// `days_between(DATE, DATE)`: whole days between two dates (never
    /// negative).
    DaysBetween(Box<DateExpr>, Box<DateExpr>),
    /// `plus(NUMBER, NUMBER)`.
    Plus(Box<Number>, Box<Number>),
    /// `minus(NUMBER, NUMBER)`: the first less the second (may be negative).
    Minus(Box<Number>, Box<Number>),
}

/// An expression whose value is a calendar date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DateExpr {
    /// `first SET`: the date of the set's earliest dated item.
    First(Set),
    /// `last SET`: the date of the set's latest dated item.
    Last(Set),
    /// `today`: the date the question is asked (given by the caller).
    Today,
    /// `YYYY-MM-DD`.
    Literal(NaiveDate),
}

/// Items to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// `list SET [limit N]`: the items, oldest first.
    List {
        /// The items.
        set: Set,
        /// At most this many shown (the total is always reported).
        limit: Option<u32>,
    },
    /// `similar SET to "TEXT" [limit N]`: the items of the set nearest in
    /// meaning to the text (needs an embedding index).
    Similar {
        /// The candidates.
        set: Set,
        /// What they should be like.
        to: String,
        /// At most this many.
        limit: Option<u32>,
    },
}

/// A set of library items: a source narrowed by filters (all must hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Set {
    /// Which kind of items.
    pub source: Source,
    /// Conditions every item must meet.
    pub filters: Vec<Filter>,
}

/// The kinds of items a set starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `photos`.
    Photos,
    /// `notes` (text items).
    Notes,
    /// `items`: photos and notes.
    Items,
}

impl Source {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Source::Photos => "photos",
            Source::Notes => "notes",
            Source::Items => "items",
        }
    }
}

/// One condition on items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `label "NAME"`: carries this label (case-insensitive).
    Label(String),
    /// `in RANGE`: the item's date falls in the range.
    In(Range),
    /// `text "WORDS"`: a note containing every word (full-text search).
    /// Not allowed after `photos`.
    Text(String),
    /// `trained_on adapter N` / `run N` / `tagger N`: items the producing
    /// training run learned from.
    TrainedOn(Producer),
}

/// Something a training run produced, or the run itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Producer {
    /// An adapter, by id.
    Adapter(i64),
    /// A run, by id.
    Run(i64),
    /// A photo tagger, by id.
    Tagger(i64),
}

/// A span of days, resolved to concrete dates by code from `today`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    /// A named range relative to today (`last_summer`).
    Named(NamedRange),
    /// `YYYY`: a calendar year.
    Year(i32),
    /// `YYYY-MM`: a calendar month.
    Month(i32, u32),
    /// `YYYY-MM-DD`: one day.
    Day(NaiveDate),
    /// `between DATE and DATE`: both days included.
    Between(NaiveDate, NaiveDate),
    /// `last N days|weeks|months`: the span of that length ending today.
    Past(u32, Unit),
}

/// Units of `last N ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// `days`.
    Days,
    /// `weeks`.
    Weeks,
    /// `months`.
    Months,
}

impl Unit {
    /// Every unit with its keyword.
    pub const ALL: [(Unit, &'static str); 3] = [
        (Unit::Days, "days"),
        (Unit::Weeks, "weeks"),
        (Unit::Months, "months"),
    ];

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Unit::Days => "days",
            Unit::Weeks => "weeks",
            Unit::Months => "months",
        }
    }
}

/// Meteorological seasons of the northern hemisphere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    /// March to May.
    Spring,
    /// June to August.
    Summer,
    /// September to November.
    Autumn,
    /// December to February.
    Winter,
}

/// Ranges named relative to today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedRange {
    /// `today`.
    Today,
    /// `yesterday`.
    Yesterday,
    /// `this_week` (Monday to Sunday).
    ThisWeek,
    /// `last_week`.
    LastWeek,
    /// `this_month`.
    ThisMonth,
    /// `last_month`.
    LastMonth,
    /// `this_year`.
    ThisYear,
    /// `last_year`.
    LastYear,
    /// `this_spring`, `this_summer`, ...
    This(Season),
    /// `last_spring`, `last_summer`, ...
    Last(Season),
}

impl NamedRange {
    /// Every named range with its keyword.
    pub const ALL: [(NamedRange, &'static str); 16] = [
        (NamedRange::Today, "today"),
        (NamedRange::Yesterday, "yesterday"),
        (NamedRange::ThisWeek, "this_week"),
        (NamedRange::LastWeek, "last_week"),
        (NamedRange::ThisMonth, "this_month"),
        (NamedRange::LastMonth, "last_month"),
        (NamedRange::ThisYear, "this_year"),
        (NamedRange::LastYear, "last_year"),
        (NamedRange::This(Season::Spring), "this_spring"),
        (NamedRange::This(Season::Summer), "this_summer"),
        (NamedRange::This(Season::Autumn), "this_autumn"),
        (NamedRange::This(Season::Winter), "this_winter"),
        (NamedRange::Last(Season::Spring), "last_spring"),
        (NamedRange::Last(Season::Summer), "last_summer"),
        (NamedRange::Last(Season::Autumn), "last_autumn"),
        (NamedRange::Last(Season::Winter), "last_winter"),
    ];

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(named, _)| *named == self)
            .map_or("today", |(_, keyword)| keyword)
    }

    /// The range with this keyword.
    pub fn from_keyword(word: &str) -> Option<NamedRange> {
        Self::ALL
            .iter()
            .find(|(_, keyword)| *keyword == word)
            .map(|(named, _)| *named)
    }
}

impl Query {
    /// Every set the query mentions, in the order written.
    pub fn sets(&self) -> Vec<&Set> {
        fn date<'a>(d: &'a DateExpr, out: &mut Vec<&'a Set>) {
            if let DateExpr::First(s) | DateExpr::Last(s) = d {
                out.push(s);
            }
        }
        fn number<'a>(n: &'a Number, out: &mut Vec<&'a Set>) {
            match n {
                Number::Count(s) => out.push(s),
                Number::DaysBetween(a, b) => {
                    date(a, out);
                    date(b, out);
                }
                Number::Plus(a, b) | Number::Minus(a, b) => {
                    number(a, out);
                    number(b, out);
                }
            }
        }
        let mut out = Vec::new();
        match self {
            Query::CannotAnswer => {}
            Query::Number(n) => number(n, &mut out),
            Query::Date(d) => date(d, &mut out),
            Query::Items(Listing::List { set, .. } | Listing::Similar { set, .. }) => out.push(set),
        }
        out
    }
}

/// Writes a string literal: double quotes, `"` and `\` escaped.
pub(crate) fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::CannotAnswer => f.write_str("cannot_answer"),
            Query::Number(number) => number.fmt(f),
            Query::Date(date) => date.fmt(f),
            Query::Items(listing) => listing.fmt(f),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Count(set) => write!(f, "count {set}"),
            Number::DaysBetween(a, b) => write!(f, "days_between({a}, {b})"),
            Number::Plus(a, b) => write!(f, "plus({a}, {b})"),
            Number::Minus(a, b) => write!(f, "minus({a}, {b})"),
        }
    }
}

impl fmt::Display for DateExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateExpr::First(set) => write!(f, "first {set}"),
            DateExpr::Last(set) => write!(f, "last {set}"),
            DateExpr::Today => f.write_str("today"),
            DateExpr::Literal(date) => write!(f, "{}", date.format("%Y-%m-%d")),
        }
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = match self {
            Listing::List { set, limit } => {
                write!(f, "list {set}")?;
                limit
            }
            Listing::Similar { set, to, limit } => {
                write!(f, "similar {set} to ")?;
                write_string(f, to)?;
                limit
            }
        };
        match limit {
            Some(n) => write!(f, " limit {n}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source.keyword())?;
        for filter in &self.filters {
            write!(f, " {filter}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Label(name) => {
                f.write_str("label ")?;
                write_string(f, name)
            }
            Filter::In(range) => write!(f, "in {range}"),
            Filter::Text(words) => {
                f.write_str("text ")?;
                write_string(f, words)
            }
            Filter::TrainedOn(producer) => write!(f, "trained_on {producer}"),
        }
    }
}

impl fmt::Display for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Producer::Adapter(id) => write!(f, "adapter {id}"),
            Producer::Run(id) => write!(f, "run {id}"),
            Producer::Tagger(id) => write!(f, "tagger {id}"),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Named(named) => f.write_str(named.keyword()),
            Range::Year(year) => write!(f, "{year:04}"),
            Range::Month(year, month) => write!(f, "{year:04}-{month:02}"),
            Range::Day(day) => write!(f, "{}", day.format("%Y-%m-%d")),
            Range::Between(from, to) => write!(
                f,
                "between {} and {}",
                from.format("%Y-%m-%d"),
                to.format("%Y-%m-%d")
            ),
            Range::Past(n, unit) => write!(f, "last {n} {}", unit.keyword()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_range_has_its_own_keyword() {
        for (named, keyword) in NamedRange::ALL {
            assert_eq!(named.keyword(), keyword);
            assert_eq!(NamedRange::from_keyword(keyword), Some(named));
        }
    }

    #[test]
    fn prints_canonically() {
        let rex = Set {
            source: Source::Photos,
            filters: vec![Filter::Label("Rex \"the\" dog\\".into())],
        };
        let query = Query::Number(Number::DaysBetween(
            Box::new(DateExpr::First(rex.clone())),
            Box::new(DateExpr::Last(rex)),
        ));
        assert_eq!(
            query.to_string(),
            r#"days_between(first photos label "Rex \"the\" dog\\", last photos label "Rex \"the\" dog\\")"#
        );
    }
}
