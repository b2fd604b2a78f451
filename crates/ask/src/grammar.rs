//! The Ask language as a Lark grammar for constrained decoding: a model
//! translating a question may only write strings this grammar accepts, and
//! every such string parses and (but for a `between` written backwards)
//! checks against the library it was written for.
//!
//! The grammar is stricter than [`crate::parse`]: it accepts only the
//! canonical form (single spaces, `f(a, b)`), only the library's labels in
//! its spelling, only adapters, runs and taggers that exist, numbers within
//! the checker's bounds, calendar-exact dates, and search text with a word
//! in it. What the parser would accept but the checker refuse is left out,
//! so a small model cannot be led into an error by the grammar itself.

use std::fmt::Write as _;

use crate::ast::{NamedRange, Unit};
use crate::check::LibraryFacts;
use crate::parse::MAX_DEPTH;

/// A calendar year, four digits, 1000-9999.
const YEAR: &str = "[1-9][0-9]{3}";
/// Any day of any month that every year has (the 29th of February is
/// added for leap years only).
const MONTH_DAY: &str = "(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])\
                         |(0[13-9]|1[0-2])-(29|30)\
                         |(0[13578]|1[02])-31";
/// Leap years from 1000 to 9999: divisible by 4 and not by 100, or by 400.
const LEAP_YEAR: &str = "[1-9][0-9](0[48]|[2468][048]|[13579][26])|([13579][26]|[2468][048])00";
/// Limits the checker accepts: 1-1000.
const LIMIT: &str = "[1-9][0-9]{0,2}|1000";
/// `last N days|weeks|months`: 1-999, inside every unit's bound.
const PAST_COUNT: &str = "[1-9][0-9]{0,2}";
/// Search text: no control characters, no quotes or backslashes (search
/// words never need them), at least one letter or digit, 60 characters at
/// most on either side of it.
const SEARCH_TEXT: &str = r#""[^"\\\p{Cc}]{0,60}[\p{Alphabetic}\p{N}][^"\\\p{Cc}]{0,60}""#;

/// The Lark grammar of queries over a library with these `facts`. A query
/// may start with a space (a model writes one after `Query:`) and ends
/// with a line break: a model that writes one query per line, as the
/// examples in its prompt do, stops there by itself instead of being
/// forced to stop or, worse, to go on adding filters.
///
/// `semantic` says whether a semantic index (an embedding model) is set
/// up: without one `similar` cannot run, so the grammar leaves it out.
pub fn lark_grammar(facts: &LibraryFacts, semantic: bool) -> String {
    let mut lark = String::new();
    let mut line = |text: &str| {
        lark.push_str(text);
        lark.push('\n');
    };
    line("start: \" \"? query \"\\n\"");
    line("query: \"cannot_answer\" | number0 | date | listing");
    // Arithmetic nests at most MAX_DEPTH deep (as the parser allows): one
    // rule per depth, the deepest with no pairs.
    for depth in 0..=MAX_DEPTH {
        let mut rule = format!("number{depth}: \"count \" set");
        if depth < MAX_DEPTH {
            let inner = depth + 1;
            let _ = write!(
                rule,
                " | \"days_between(\" date \", \" date \")\"\
                 | \"plus(\" number{inner} \", \" number{inner} \")\"\
                 | \"minus(\" number{inner} \", \" number{inner} \")\""
            );
        }
        line(&rule);
    }
    line("date: \"first \" set | \"last \" set | \"today\" | DATE");
    if semantic {
        line("listing: \"list \" set limit? | \"similar \" set \" to \" TEXT limit?");
    } else {
        line("listing: \"list \" set limit?");
    }
    line("limit: \" limit \" LIMIT");
    line("set: \"photos\" photo_filter* | (\"notes\" | \"items\") note_filter*");

    let mut filters = vec!["\" in \" range".to_owned()];
    let labels: Vec<String> = facts
        .labels
        .iter()
        .filter(|label| !label.trim().is_empty() && !label.chars().any(char::is_control))
        .map(|label| lark_string(&query_string(label)))
        .collect();
    if !labels.is_empty() {
        filters.push("\" label \" LABEL".into());
    }
    let producers = producers(facts);
    if !producers.is_empty() {
        filters.push("\" trained_on \" producer".into());
    }
    line(&format!("photo_filter: {}", filters.join(" | ")));
    line("note_filter: photo_filter | \" text \" TEXT");
    if !producers.is_empty() {
        line(&format!("producer: {}", producers.join(" | ")));
    }
    let named: Vec<String> = NamedRange::ALL
        .iter()
        .map(|(_, keyword)| lark_string(keyword))
        .collect();
    let units: Vec<String> = Unit::ALL
        .iter()
        .map(|(_, keyword)| lark_string(keyword))
        .collect();
    line(&format!(
        "range: NAMED | YEAR | MONTH | DATE | \"between \" DATE \" and \" DATE | \"last \" PAST_COUNT \" \" ({})",
        units.join(" | ")
    ));
    line(&format!("NAMED: {}", named.join(" | ")));
    if !labels.is_empty() {
        line(&format!("LABEL: {}", labels.join(" | ")));
    }
    line(&format!("YEAR: /{YEAR}/"));
    line(&format!("MONTH: /{YEAR}-(0[1-9]|1[0-2])/"));
    line(&format!("DATE: /{YEAR}-({MONTH_DAY})|({LEAP_YEAR})-02-29/"));
    line(&format!("LIMIT: /{LIMIT}/"));
    line(&format!("PAST_COUNT: /{PAST_COUNT}/"));
    line(&format!("TEXT: /{SEARCH_TEXT}/"));
    lark
}

/// `adapter 3 | run 7 | ...`: only what exists, and only adapters whose
/// training run is in this library (lineage needs the run).
fn producers(facts: &LibraryFacts) -> Vec<String> {
    let adapters = facts
        .adapters
        .iter()
        .filter(|(_, run)| run.is_some())
        .map(|(id, _)| ("adapter", *id));
    let runs = facts.runs.iter().map(|id| ("run", *id));
    let taggers = facts.taggers.iter().map(|id| ("tagger", *id));
    adapters
        .chain(runs)
        .chain(taggers)
        .filter(|(_, id)| *id >= 0)
        .map(|(kind, id)| lark_string(&format!("{kind} {id}")))
        .collect()
}

/// `text` as a string literal of the Ask language.
fn query_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `text` as a Lark string literal (JSON's escapes).
fn lark_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for c in text.chars() {
        match c {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(literal, "\\u{:04x}", u32::from(c));
            }
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> LibraryFacts {
        LibraryFacts {
            labels: vec!["Rex".into(), "say \"cheese\"".into(), "bad\nlabel".into()],
            adapters: vec![(3, Some(7)), (4, None)],
            runs: vec![7],
            taggers: vec![],
        }
    }

    #[test]
    fn labels_are_the_librarys_escaped_twice() {
        let lark = lark_grammar(&facts(), true);
        assert!(
            lark.contains(r#"LABEL: "\"Rex\"" | "\"say \\\"cheese\\\"\"""#),
            "{lark}"
        );
        // A label the language cannot write is left out, not mangled.
        assert!(!lark.contains("bad"), "{lark}");
    }

    #[test]
    fn only_producers_with_lineage_are_offered() {
        let lark = lark_grammar(&facts(), true);
        assert!(
            lark.contains(r#"producer: "adapter 3" | "run 7""#),
            "{lark}"
        );
        assert!(!lark.contains("adapter 4"), "{lark}");
    }

    #[test]
    fn an_empty_library_has_no_label_or_lineage_filters() {
        let lark = lark_grammar(&LibraryFacts::default(), true);
        assert!(!lark.contains("LABEL"), "{lark}");
        assert!(!lark.contains("producer"), "{lark}");
        assert!(lark.contains("photo_filter: \" in \" range\n"), "{lark}");
    }

    #[test]
    fn arithmetic_stops_at_the_parsers_depth() {
        let lark = lark_grammar(&LibraryFacts::default(), true);
        let deepest = format!("number{MAX_DEPTH}: \"count \" set\n");
        assert!(lark.contains(&deepest), "{lark}");
        assert!(!lark.contains(&format!("number{}", MAX_DEPTH + 1)));
    }

    #[test]
    fn similar_is_offered_only_with_a_semantic_index() {
        assert!(lark_grammar(&facts(), true).contains("\"similar \""));
        assert!(!lark_grammar(&facts(), false).contains("similar"));
    }
}
