//! Ask: questions about a person's own library, answered by code.
//!
//! A person asks in plain words; a model translates the question into a
//! small typed query language, held to it by constrained decoding with
//! [`lark_grammar`]; this crate parses the query
//! ([`parse`]), checks it against the library and the day it is asked
//! ([`check`]), compiles it to parameterised `SELECT`s and runs them on a
//! read-only connection ([`AskDb`]). The answer ([`Outcome`]) carries the
//! canonical query, the value and the items it came from. The model never
//! states a fact: numbers, dates and lists all come from the library.
//!
//! The language is small and regular so that a 135M-parameter model can
//! emit it under constrained decoding: lowercase keywords, one keyword per
//! construct, types in the grammar (a count and a date cannot be mixed up),
//! and an explicit refusal, `cannot_answer`. See `docs/ask.md` for the
//! grammar.
//!
//! It is its own crate, apart from `hearth-personalize`, so that the
//! grammar (needed by constrained decoding and by the app's query editor)
//! and its tests build without the ML stack.
//!
//! ```
//! use hearth_ask::{LibraryFacts, check, parse};
//! use chrono::NaiveDate;
//!
//! let query = parse(r#"count photos label "rex" in last_summer"#)?;
//! let facts = LibraryFacts { labels: vec!["Rex".into()], ..Default::default() };
//! let today = NaiveDate::from_ymd_opt(2024, 3, 1).expect("a date");
//! let checked = check(query, &facts, today)?;
//! assert_eq!(checked.canonical(), r#"count photos label "Rex" in last_summer"#);
//! assert_eq!(checked.ranges()[0].span.to_string(), "2023-06-01 to 2023-08-31");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod ast;
mod check;
mod dates;
mod error;
mod grammar;
mod lex;
mod parse;
mod run;
mod sql;

pub use ast::Query;
pub use check::{Checked, LibraryFacts, MAX_LIMIT, ResolvedRange, check};
pub use dates::DateSpan;
pub use error::{AskError, CheckError, ParseError, SemanticError};
pub use grammar::lark_grammar;
pub use lex::MAX_QUERY_BYTES;
pub use parse::{MAX_DEPTH, parse};
pub use run::{
    AskDb, DEFAULT_LIMIT, Outcome, SOURCES_PER_COUNT, Scored, SemanticIndex, SourceItem, Value,
};
pub use sql::{Param, Statement};

/// Compiles every statement a checked query would run, for inspection
/// (the executor builds the same ones as it goes).
pub fn compile(checked: &Checked) -> Result<Vec<Statement>, CheckError> {
    sql::all_statements(checked)
}
