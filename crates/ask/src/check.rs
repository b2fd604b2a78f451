//! The type checker: what the grammar cannot say. Types of arithmetic are
//! already in the syntax tree; here a query meets the library (its labels,
//! adapters, runs and taggers) and the day it is asked (ranges resolve to
//! days, and must run forwards). Only a [`Checked`] query can be compiled
//! to SQL, so an unchecked one can never run.

use chrono::NaiveDate;
use serde::Serialize;

use crate::ast::{DateExpr, Filter, Listing, Number, Producer, Query, Range, Set, Unit};
use crate::dates::{DateSpan, RangeProblem, resolve};
use crate::error::CheckError;

/// Most items a `limit` may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// What the checker needs to know about a library.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LibraryFacts {
    /// Every label, as the library spells it.
    pub labels: Vec<String>,
    /// Every adapter: its id and the run that trained it (None when
    /// imported from elsewhere).
    pub adapters: Vec<(i64, Option<i64>)>,
    /// Every run's id.
    pub runs: Vec<i64>,
    /// Every photo tagger's id.
    pub taggers: Vec<i64>,
}

/// A range as written and the days it meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ResolvedRange {
    /// As written (`last_summer`).
    pub range: String,
    /// The days.
    pub span: DateSpan,
}

/// A query that fits the library: labels spelt as the library spells
/// them, every range resolved against `today`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    query: Query,
    today: NaiveDate,
    ranges: Vec<ResolvedRange>,
}

impl Checked {
    /// The query (labels in the library's spelling).
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The day it was checked for.
    pub fn today(&self) -> NaiveDate {
        self.today
    }

    /// Every date range and the days it meant, in the order written.
    pub fn ranges(&self) -> &[ResolvedRange] {
        &self.ranges
    }

    /// The canonical text of the query.
    pub fn canonical(&self) -> String {
        self.query.to_string()
    }
}

/// Checks `query` against the library's facts and today's date.
pub fn check(query: Query, facts: &LibraryFacts, today: NaiveDate) -> Result<Checked, CheckError> {
    let mut checker = Checker {
        facts,
        today,
        ranges: Vec::new(),
    };
    let mut query = query;
    match &mut query {
        Query::CannotAnswer => {}
        Query::Number(number) => checker.number(number)?,
        Query::Date(date) => checker.date(date)?,
        Query::Items(Listing::List { set, limit }) => {
            checker.set(set)?;
            checker.limit(*limit)?;
        }
        Query::Items(Listing::Similar { set, to, limit }) => {
            checker.set(set)?;
            checker.limit(*limit)?;
            if !has_word(to) {
                return Err(CheckError::NoWords("similar ... to"));
            }
        }
    }
    Ok(Checked {
        query,
        today,
        ranges: checker.ranges,
    })
}

fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

struct Checker<'a> {
    facts: &'a LibraryFacts,
    today: NaiveDate,
    ranges: Vec<ResolvedRange>,
}

impl Checker<'_> {
    fn number(&mut self, number: &mut Number) -> Result<(), CheckError> {
        match number {
            Number::Count(set) => self.set(set),
            Number::DaysBetween(a, b) => {
                self.date(a)?;
                self.date(b)
            }
            Number::Plus(a, b) | Number::Minus(a, b) => {
                self.number(a)?;
                self.number(b)
            }
        }
    }

    fn date(&mut self, date: &mut DateExpr) -> Result<(), CheckError> {
        match date {
            DateExpr::First(set) | DateExpr::Last(set) => self.set(set),
            DateExpr::Today | DateExpr::Literal(_) => Ok(()),
        }
    }

    fn limit(&self, limit: Option<u32>) -> Result<(), CheckError> {
        match limit {
            Some(n) if !(1..=MAX_LIMIT).contains(&n) => Err(CheckError::OutOfBounds {
                what: "limit",
                min: 1,
                max: MAX_LIMIT,
                found: n,
            }),
            _ => Ok(()),
        }
    }

    fn set(&mut self, set: &mut Set) -> Result<(), CheckError> {
        for filter in &mut set.filters {
            match filter {
                Filter::Label(name) => *name = self.label(name)?,
                Filter::In(range) => self.range(range)?,
                Filter::Text(words) => {
                    if !has_word(words) {
                        return Err(CheckError::NoWords("text"));
                    }
                }
                Filter::TrainedOn(producer) => self.producer(*producer)?,
            }
        }
        Ok(())
    }

    fn label(&self, name: &str) -> Result<String, CheckError> {
        let wanted = name.trim();
        if let Some(known) = self
            .facts
            .labels
            .iter()
            .find(|known| known.eq_ignore_ascii_case(wanted))
        {
            return Ok(known.clone());
        }
        let lower = wanted.to_lowercase();
        let suggestion = self
            .facts
            .labels
            .iter()
            .map(|known| (edit_distance(&lower, &known.to_lowercase()), known))
            .filter(|(distance, known)| *distance <= (known.chars().count() / 3).max(1))
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, known)| known.clone());
        Err(CheckError::UnknownLabel {
            name: name.to_owned(),
            suggestion,
        })
    }

    fn producer(&self, producer: Producer) -> Result<(), CheckError> {
        let unknown = |what, id| CheckError::UnknownProducer { what, id };
        match producer {
            Producer::Adapter(id) => match self.facts.adapters.iter().find(|(a, _)| *a == id) {
                None => Err(unknown("adapter", id)),
                Some((_, None)) => Err(CheckError::NoTrainingRun(id)),
                Some((_, Some(_))) => Ok(()),
            },
            Producer::Run(id) if !self.facts.runs.contains(&id) => Err(unknown("run", id)),
            Producer::Tagger(id) if !self.facts.taggers.contains(&id) => Err(unknown("tagger", id)),
            Producer::Run(_) | Producer::Tagger(_) => Ok(()),
        }
    }

    fn range(&mut self, range: &Range) -> Result<(), CheckError> {
        if let Range::Past(n, unit) = *range {
            let (what, max) = match unit {
                Unit::Days => ("last N days", 36_600),
                Unit::Weeks => ("last N weeks", 5_200),
                Unit::Months => ("last N months", 1_200),
            };
            if !(1..=max).contains(&n) {
                return Err(CheckError::OutOfBounds {
                    what,
                    min: 1,
                    max,
                    found: n,
                });
            }
        }
        let span = resolve(range, self.today).map_err(|problem| match (problem, range) {
            (RangeProblem::Backwards, Range::Between(from, to)) => CheckError::BackwardsRange {
                from: from.format("%Y-%m-%d").to_string(),
                to: to.format("%Y-%m-%d").to_string(),
            },
            _ => CheckError::DateOverflow(range.to_string()),
        })?;
        self.ranges.push(ResolvedRange {
            range: range.to_string(),
            span,
        });
        Ok(())
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn facts() -> LibraryFacts {
        LibraryFacts {
            labels: vec!["Rex".into(), "receipts".into(), "Grandma".into()],
            adapters: vec![(1, Some(1)), (2, None)],
            runs: vec![1],
            taggers: vec![],
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")
    }

    fn run(text: &str) -> Result<Checked, CheckError> {
        check(parse(text).expect("parses"), &facts(), today())
    }

    #[test]
    fn labels_take_the_library_spelling() {
        let checked = run(r#"count photos label "rex" in last_summer"#).expect("checks");
        assert_eq!(
            checked.canonical(),
            r#"count photos label "Rex" in last_summer"#
        );
        assert_eq!(
            checked.ranges()[0].span.to_string(),
            "2023-06-01 to 2023-08-31"
        );
    }

    #[test]
    fn unknown_labels_get_a_suggestion() {
        let err = run(r#"count photos label "Rexx""#).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown label 'Rexx', did you mean 'Rex'?");
        let err = run(r#"count photos label "recipts""#).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown label 'recipts', did you mean 'receipts'?"
        );
        let err = run(r#"count photos label "holidays""#).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown label 'holidays'");
    }

    #[test]
    fn producers_must_exist_and_have_a_run() {
        run("count items trained_on adapter 1").expect("known");
        assert!(matches!(
            run("count items trained_on adapter 3"),
            Err(CheckError::UnknownProducer {
                what: "adapter",
                id: 3
            })
        ));
        assert!(matches!(
            run("count items trained_on adapter 2"),
            Err(CheckError::NoTrainingRun(2))
        ));
        assert!(run("list items trained_on tagger 1").is_err());
        assert!(run("list items trained_on run 7").is_err());
    }

    #[test]
    fn bounds_words_and_backwards_ranges() {
        assert!(matches!(
            run("list photos limit 0"),
            Err(CheckError::OutOfBounds { .. })
        ));
        assert!(run("list photos limit 1000").is_ok());
        assert!(matches!(
            run("count photos in last 0 days"),
            Err(CheckError::OutOfBounds { .. })
        ));
        assert!(matches!(
            run(r#"count notes text " ?! ""#),
            Err(CheckError::NoWords(_))
        ));
        assert!(matches!(
            run(r#"similar notes to "" "#),
            Err(CheckError::NoWords(_))
        ));
        let err = run("count photos in between 2024-03-01 and 2024-02-29").expect_err("backwards");
        assert_eq!(
            err.to_string(),
            "the range starts on 2024-03-01 but ends earlier, on 2024-02-29"
        );
        assert!(run("cannot_answer").is_ok());
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("rexx", "rex"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
