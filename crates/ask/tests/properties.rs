//! Properties of the language over generated queries and arbitrary text:
//! printing and parsing agree, no input makes the parser panic, and every
//! statement a checked query compiles to is a parameterised `SELECT` that
//! SQLite runs on the read-only connection.

use chrono::NaiveDate;
use hearth_ask::ast::{
    DateExpr, Filter, Listing, NamedRange, Number, Producer, Range, Set, Source, Unit,
};
use hearth_ask::{
    AskDb, LibraryFacts, Query, Scored, SemanticError, SemanticIndex, check, compile, parse,
};
use proptest::prelude::*;

fn date() -> impl Strategy<Value = NaiveDate> {
    (1000i32..=9999, 1u32..=366).prop_map(|(year, ordinal)| {
        NaiveDate::from_yo_opt(year, ordinal)
            .or_else(|| NaiveDate::from_yo_opt(year, 365))
            .expect("a day of the year")
    })
}

/// Dates near today, so relative ranges stay inside the calendar.
fn today() -> impl Strategy<Value = NaiveDate> {
    (1970i32..=2100, 1u32..=366).prop_map(|(year, ordinal)| {
        NaiveDate::from_yo_opt(year, ordinal)
            .or_else(|| NaiveDate::from_yo_opt(year, 365))
            .expect("a day of the year")
    })
}

/// Any text without control characters.
fn text() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{0,12}"
}

/// Text with at least one word, no outer whitespace (as a checked label
/// or search is).
fn words() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9ü]([a-zA-Z0-9ü _'\"\\\\*:()-]{0,8}[a-zA-Z0-9ü])?"
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        (0..NamedRange::ALL.len()).prop_map(|i| Range::Named(NamedRange::ALL[i].0)),
        (1000i32..=9999).prop_map(Range::Year),
        (1000i32..=9999, 1u32..=12).prop_map(|(y, m)| Range::Month(y, m)),
        date().prop_map(Range::Day),
        (date(), date()).prop_map(|(a, b)| Range::Between(a.min(b), a.max(b))),
        (1u32..=1200, 0..3usize).prop_map(|(n, u)| Range::Past(n, Unit::ALL[u].0)),
    ]
}

fn producer() -> impl Strategy<Value = Producer> {
    prop_oneof![
        (1i64..1000).prop_map(Producer::Adapter),
        (1i64..1000).prop_map(Producer::Run),
        (1i64..1000).prop_map(Producer::Tagger),
    ]
}

fn set(strings: BoxedStrategy<String>) -> impl Strategy<Value = Set> {
    let source = prop_oneof![
        Just(Source::Photos),
        Just(Source::Notes),
        Just(Source::Items)
    ];
    let filter = prop_oneof![
        strings.clone().prop_map(Filter::Label),
        range().prop_map(Filter::In),
        strings.prop_map(Filter::Text),
        producer().prop_map(Filter::TrainedOn),
    ];
    (source, prop::collection::vec(filter, 0..4)).prop_map(|(source, filters)| {
        // The grammar allows no `text` after `photos`.
        let filters = filters
            .into_iter()
            .filter(|f| source != Source::Photos || !matches!(f, Filter::Text(_)))
            .collect();
        Set { source, filters }
    })
}

fn date_expr(strings: BoxedStrategy<String>) -> impl Strategy<Value = DateExpr> {
    prop_oneof![
        set(strings.clone()).prop_map(DateExpr::First),
        set(strings).prop_map(DateExpr::Last),
        Just(DateExpr::Today),
        date().prop_map(DateExpr::Literal),
    ]
}

fn number(strings: BoxedStrategy<String>) -> impl Strategy<Value = Number> {
    let leaf = prop_oneof![
        set(strings.clone()).prop_map(Number::Count),
        (date_expr(strings.clone()), date_expr(strings))
            .prop_map(|(a, b)| Number::DaysBetween(Box::new(a), Box::new(b))),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| Number::Plus(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Number::Minus(Box::new(a), Box::new(b))),
        ]
    })
}

fn query(strings: BoxedStrategy<String>) -> impl Strategy<Value = Query> {
    let limit = prop::option::of(1u32..=1000);
    prop_oneof![
        Just(Query::CannotAnswer),
        number(strings.clone()).prop_map(Query::Number),
        date_expr(strings.clone()).prop_map(Query::Date),
        (set(strings.clone()), limit.clone())
            .prop_map(|(set, limit)| Query::Items(Listing::List { set, limit })),
        (set(strings.clone()), strings, limit)
            .prop_map(|(set, to, limit)| Query::Items(Listing::Similar { set, to, limit })),
    ]
}

/// Facts under which every label and producer of `query` exists.
fn facts_for(query: &Query) -> LibraryFacts {
    let mut facts = LibraryFacts::default();
    for set in query.sets() {
        for filter in &set.filters {
            match filter {
                Filter::Label(name) => facts.labels.push(name.clone()),
                Filter::TrainedOn(Producer::Adapter(id)) => facts.adapters.push((*id, Some(1))),
                Filter::TrainedOn(Producer::Run(id)) => facts.runs.push(*id),
                Filter::TrainedOn(Producer::Tagger(id)) => facts.taggers.push(*id),
                Filter::In(_) | Filter::Text(_) => {}
            }
        }
    }
    facts
}

/// The query with every string and id replaced: the SQL must not change.
fn blanked(query: &Query) -> Query {
    fn set(s: &Set) -> Set {
        Set {
            source: s.source,
            filters: s
                .filters
                .iter()
                .map(|f| match f {
                    Filter::Label(_) => Filter::Label("other".into()),
                    Filter::Text(_) => Filter::Text("other".into()),
                    // Other ids, distinct where they were distinct.
                    Filter::TrainedOn(Producer::Adapter(id)) => {
                        Filter::TrainedOn(Producer::Adapter(id + 1000))
                    }
                    Filter::TrainedOn(Producer::Run(id)) => {
                        Filter::TrainedOn(Producer::Run(id + 1000))
                    }
                    Filter::TrainedOn(Producer::Tagger(id)) => {
                        Filter::TrainedOn(Producer::Tagger(id + 1000))
                    }
                    other => other.clone(),
                })
                .collect(),
        }
    }
    fn date(d: &DateExpr) -> DateExpr {
        match d {
            DateExpr::First(s) => DateExpr::First(set(s)),
            DateExpr::Last(s) => DateExpr::Last(set(s)),
            other => other.clone(),
        }
    }
    fn number(n: &Number) -> Number {
        match n {
            Number::Count(s) => Number::Count(set(s)),
            Number::DaysBetween(a, b) => Number::DaysBetween(Box::new(date(a)), Box::new(date(b))),
            Number::Plus(a, b) => Number::Plus(Box::new(number(a)), Box::new(number(b))),
            Number::Minus(a, b) => Number::Minus(Box::new(number(a)), Box::new(number(b))),
        }
    }
    match query {
        Query::CannotAnswer => Query::CannotAnswer,
        Query::Number(n) => Query::Number(number(n)),
        Query::Date(d) => Query::Date(date(d)),
        Query::Items(Listing::List { set: s, limit }) => Query::Items(Listing::List {
            set: set(s),
            limit: *limit,
        }),
        Query::Items(Listing::Similar { set: s, limit, .. }) => Query::Items(Listing::Similar {
            set: set(s),
            to: "other".into(),
            limit: *limit,
        }),
    }
}

/// A stand-in index that ranks candidates by id: enough to run `similar`
/// through the executor (the real one comes with the embedding model).
struct ById;

impl SemanticIndex for ById {
    fn rank(
        &self,
        _: &str,
        candidates: &[i64],
        limit: usize,
    ) -> Result<Vec<Scored>, SemanticError> {
        Ok(candidates
            .iter()
            .take(limit)
            .map(|&item| Scored { item, score: 0.5 })
            .collect())
    }
}

/// Keywords and punctuation, for inputs that get deep into the parser.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "count",
            "list",
            "similar",
            "first",
            "last",
            "today",
            "days_between",
            "plus",
            "minus",
            "cannot_answer",
            "photos",
            "notes",
            "items",
            "label",
            "in",
            "text",
            "trained_on",
            "adapter",
            "run",
            "tagger",
            "to",
            "limit",
            "between",
            "and",
            "days",
            "weeks",
            "months",
            "last_summer",
            "this_year",
            "(",
            ")",
            ",",
            "\"Rex\"",
            "\"",
            "2023",
            "2023-07",
            "2024-02-29",
            "2023-02-29",
            "7",
            "-",
            "Count",
            "photo",
        ])
        .prop_map(str::to_owned),
        text(),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_the_same_query(query in query(text().boxed())) {
        let printed = query.to_string();
        let parsed = parse(&printed).map_err(|e| TestCaseError::fail(e.render(&printed)))?;
        prop_assert_eq!(&parsed, &query);
        // The canonical form is a fixed point.
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn no_text_makes_the_parser_panic(input in "\\PC{0,200}", soup in token_soup()) {
        let _ = parse(&input);
        if let Ok(query) = parse(&soup) {
            prop_assert_eq!(parse(&query.to_string()), Ok(query));
        }
    }

    #[test]
    fn checked_queries_compile_to_parameterised_selects(
        query in query(words().boxed()),
        today in today(),
    ) {
        let facts = facts_for(&query);
        let checked = check(query.clone(), &facts, today)
            .map_err(|e| TestCaseError::fail(format!("{query}: {e}")))?;
        let statements = compile(&checked).expect("compiles");
        let blank = blanked(&query);
        let blank_checked = check(blank.clone(), &facts_for(&blank), today).expect("checks");
        let blank_statements = compile(&blank_checked).expect("compiles");
        prop_assert_eq!(statements.len(), blank_statements.len());
        for (statement, blank) in statements.iter().zip(&blank_statements) {
            prop_assert!(statement.sql.starts_with("SELECT "), "{}", statement.sql);
            prop_assert!(!statement.sql.contains(';'));
            prop_assert_eq!(statement.sql.matches('?').count(), statement.params.len());
            // Values never reach the SQL text: other labels, words and ids
            // give the very same statement.
            prop_assert_eq!(&statement.sql, &blank.sql);
        }
    }
}

#[test]
fn generated_queries_run_on_the_read_only_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(hearth_store::Library::open(dir.path()).expect("library"));
    let db = AskDb::open(dir.path()).expect("read-only");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&(query(words().boxed()), today()), |(query, today)| {
            let checked = check(query.clone(), &facts_for(&query), today)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Every statement is prepared, found read-only, and runs
            // (FTS5 accepts every search, however it is written).
            db.run(&checked, Some(&ById))
                .map_err(|e| TestCaseError::fail(format!("{query}: {e}")))?;
            Ok(())
        })
        .expect("every generated query runs");
}
