//! A hand-written recursive-descent parser. The grammar is LL(1): every
//! construct starts with its own keyword, so one token of look-ahead
//! decides, and an error can say exactly what was expected there. A parser
//! combinator crate would add a dependency (and its error types) for about
//! three hundred lines of obvious code; this one never panics, bounds its
//! recursion, and its messages name the keywords a person (or a model)
//! should have written.

use chrono::NaiveDate;

use crate::ast::{
    DateExpr, Filter, Listing, NamedRange, Number, Producer, Query, Range, Set, Source, Unit,
};
use crate::error::ParseError;
use crate::lex::{Tok, Token, lex};

/// How deeply arithmetic may nest.
pub const MAX_DEPTH: usize = 16;

const QUERY_STARTS: &str =
    "count, list, similar, first, last, days_between, plus, minus or cannot_answer";
const NUMBER_STARTS: &str = "count, plus, minus or days_between";
const DATE_STARTS: &str = "first, last, today or a date YYYY-MM-DD";
const FILTERS: &str = "label, in, text or trained_on";
const RANGES: &str = "a named range (today, yesterday, this_week, last_week, this_month, last_month, this_year, last_year, this_/last_ + spring/summer/autumn/winter), YYYY, YYYY-MM, YYYY-MM-DD, between DATE and DATE, or last N days/weeks/months";

/// Parses query text into its syntax tree.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    let result = lex(input).and_then(|tokens| {
        let mut parser = Parser {
            tokens,
            pos: 0,
            end: input.len(),
            depth: 0,
        };
        let query = parser.query()?;
        match parser.peek() {
            None => Ok(query),
            Some(token) => Err(parser.error_here(format!(
                "unexpected {} after the end of the query",
                token.tok.describe()
            ))),
        }
    });
    // Byte offsets become character positions for people.
    result.map_err(|mut err| {
        err.at = input
            .get(..err.at.min(input.len()))
            .map_or(err.at, |prefix| prefix.chars().count());
        err
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(word),
                ..
            }) => Some(word),
            _ => None,
        }
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |token| token.at)
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.here(), message)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the query".into(),
            Some(token) => match &token.tok {
                Tok::Word(word) if word.chars().any(char::is_uppercase) => format!(
                    "`{word}` (keywords are lowercase: `{}`)",
                    word.to_lowercase()
                ),
                tok => tok.describe(),
            },
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error_here(format!("expected {what}, found {}", self.found()))
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.pos).map(|token| token.tok.clone());
        if tok.is_some() {
            self.pos += 1;
        }
        tok
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_word() == Some(word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<(), ParseError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.expected(&format!("`{word}`")))
        }
    }

    fn expect_tok(&mut self, want: Tok) -> Result<(), ParseError> {
        if self.peek().map(|token| &token.tok) == Some(&want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(&want.describe()))
        }
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        match self.peek_word() {
            Some("cannot_answer") => {
                self.pos += 1;
                Ok(Query::CannotAnswer)
            }
            Some("count" | "days_between" | "plus" | "minus") => Ok(Query::Number(self.number()?)),
            Some("first" | "last" | "today") => Ok(Query::Date(self.date()?)),
            Some("list" | "similar") => Ok(Query::Items(self.listing()?)),
            _ if matches!(self.peek().map(|t| &t.tok), Some(Tok::Date(_))) => {
                Ok(Query::Date(self.date()?))
            }
            _ => Err(self.expected(&format!("a query ({QUERY_STARTS})"))),
        }
    }

    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error_here(format!("arithmetic nests more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    /// `f(a, b)`, the two arguments parsed by `arg`.
    fn pair<T>(
        &mut self,
        arg: impl Fn(&mut Self) -> Result<T, ParseError>,
    ) -> Result<(Box<T>, Box<T>), ParseError> {
        self.expect_tok(Tok::Open)?;
        let a = self.nested(&arg)?;
        self.expect_tok(Tok::Comma)?;
        let b = self.nested(&arg)?;
        self.expect_tok(Tok::Close)?;
        Ok((Box::new(a), Box::new(b)))
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        match self.peek_word() {
            Some("count") => {
                self.pos += 1;
                Ok(Number::Count(self.set()?))
            }
            Some("days_between") => {
                self.pos += 1;
                let (a, b) = self.pair(Self::date)?;
                Ok(Number::DaysBetween(a, b))
            }
            Some("plus") => {
                self.pos += 1;
                let (a, b) = self.pair(Self::number)?;
                Ok(Number::Plus(a, b))
            }
            Some("minus") => {
                self.pos += 1;
                let (a, b) = self.pair(Self::number)?;
                Ok(Number::Minus(a, b))
            }
            Some("first" | "last" | "today") => Err(self.error_here(format!(
                "expected a number ({NUMBER_STARTS}), found {}, which is a date; days_between(DATE, DATE) turns two dates into a number",
                self.found()
            ))),
            _ => Err(self.expected(&format!("a number ({NUMBER_STARTS})"))),
        }
    }

    fn date(&mut self) -> Result<DateExpr, ParseError> {
        if let Some(Tok::Date(date)) = self.peek().map(|t| &t.tok) {
            let date = *date;
            self.pos += 1;
            return Ok(DateExpr::Literal(date));
        }
        match self.peek_word() {
            Some("first") => {
                self.pos += 1;
                Ok(DateExpr::First(self.set()?))
            }
            Some("last") => {
                self.pos += 1;
                Ok(DateExpr::Last(self.set()?))
            }
            Some("today") => {
                self.pos += 1;
                Ok(DateExpr::Today)
            }
            Some("count" | "plus" | "minus" | "days_between") => Err(self.error_here(format!(
                "expected a date ({DATE_STARTS}), found {}, which is a number",
                self.found()
            ))),
            _ => Err(self.expected(&format!("a date ({DATE_STARTS})"))),
        }
    }

    fn listing(&mut self) -> Result<Listing, ParseError> {
        if self.eat_word("list") {
            let set = self.set()?;
            let limit = self.limit()?;
            return Ok(Listing::List { set, limit });
        }
        self.expect_word("similar")?;
        let set = self.set()?;
        self.expect_word("to")?;
        let to = self.string()?;
        let limit = self.limit()?;
        Ok(Listing::Similar { set, to, limit })
    }

    fn limit(&mut self) -> Result<Option<u32>, ParseError> {
        if !self.eat_word("limit") {
            return Ok(None);
        }
        let at = self.here();
        let n = self.int("a number of items")?;
        u32::try_from(n)
            .map(Some)
            .map_err(|_| ParseError::new(at, format!("limit {n} is too large")))
    }

    fn int(&mut self, what: &str) -> Result<u64, ParseError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Int { value, .. }) => {
                let value = *value;
                self.pos += 1;
                Ok(value)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(text)) => {
                let text = text.clone();
                self.pos += 1;
                Ok(text)
            }
            _ => Err(self.expected("a string in double quotes (\"...\")")),
        }
    }

    fn set(&mut self) -> Result<Set, ParseError> {
        let source = match self.peek_word() {
            Some("photos") => Source::Photos,
            Some("notes") => Source::Notes,
            Some("items") => Source::Items,
            Some(word @ ("photo" | "note" | "item")) => {
                let plural = format!("{word}s");
                return Err(self.error_here(format!(
                    "expected photos, notes or items, found `{word}`; write `{plural}`"
                )));
            }
            _ => return Err(self.expected("photos, notes or items")),
        };
        self.pos += 1;
        let mut filters = Vec::new();
        loop {
            let filter = match self.peek_word() {
                Some("label") => {
                    self.pos += 1;
                    Filter::Label(self.string()?)
                }
                Some("in") => {
                    self.pos += 1;
                    Filter::In(self.range()?)
                }
                Some("text") if source == Source::Photos => {
                    return Err(self.error_here(
                        "`text` searches the words of notes, and photos have none; use notes or items",
                    ));
                }
                Some("text") => {
                    self.pos += 1;
                    Filter::Text(self.string()?)
                }
                Some("trained_on") => {
                    self.pos += 1;
                    Filter::TrainedOn(self.producer()?)
                }
                // What may follow a set.
                Some("to" | "limit") | None => break,
                Some(_) => {
                    return Err(self.expected(&format!("a filter ({FILTERS})")));
                }
            };
            filters.push(filter);
        }
        Ok(Set { source, filters })
    }

    fn producer(&mut self) -> Result<Producer, ParseError> {
        let make: fn(i64) -> Producer = match self.peek_word() {
            Some("adapter") => Producer::Adapter,
            Some("run") => Producer::Run,
            Some("tagger") => Producer::Tagger,
            _ => return Err(self.expected("adapter, run or tagger")),
        };
        self.pos += 1;
        let at = self.here();
        let id = self.int("an id (a number)")?;
        i64::try_from(id)
            .map(make)
            .map_err(|_| ParseError::new(at, format!("no id is as large as {id}")))
    }

    fn range(&mut self) -> Result<Range, ParseError> {
        let at = self.here();
        match self.next() {
            Some(Tok::Word(word)) => {
                if let Some(named) = NamedRange::from_keyword(&word) {
                    return Ok(Range::Named(named));
                }
                match word.as_str() {
                    "between" => {
                        let from = self.iso_date()?;
                        self.expect_word("and")?;
                        let to = self.iso_date()?;
                        Ok(Range::Between(from, to))
                    }
                    "last" => {
                        let n_at = self.here();
                        let n = self.int("how many (last N days, weeks or months)")?;
                        let n = u32::try_from(n)
                            .map_err(|_| ParseError::new(n_at, format!("{n} is too many")))?;
                        let unit = match self.peek_word() {
                            Some(word) => Unit::ALL
                                .iter()
                                .find(|(_, keyword)| *keyword == word)
                                .map(|(unit, _)| *unit),
                            None => None,
                        };
                        let Some(unit) = unit else {
                            return Err(self.expected("days, weeks or months"));
                        };
                        self.pos += 1;
                        Ok(Range::Past(n, unit))
                    }
                    _ => {
                        self.pos -= 1;
                        Err(self.expected(&format!("a date range: {RANGES}")))
                    }
                }
            }
            Some(Tok::Int { value, digits }) => match i32::try_from(value) {
                Ok(year) if digits == 4 && year >= 1000 => Ok(Range::Year(year)),
                _ => Err(ParseError::new(
                    at,
                    format!("{value} is not a year (a year is written with four digits)"),
                )),
            },
            Some(Tok::Month(year, month)) => Ok(Range::Month(year, month)),
            Some(Tok::Date(date)) => Ok(Range::Day(date)),
            Some(_) => {
                self.pos -= 1;
                Err(self.expected(&format!("a date range: {RANGES}")))
            }
            None => Err(self.expected(&format!("a date range: {RANGES}"))),
        }
    }

    fn iso_date(&mut self) -> Result<NaiveDate, ParseError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Date(date)) => {
                let date = *date;
                self.pos += 1;
                Ok(date)
            }
            _ => Err(self.expected("a date YYYY-MM-DD")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Season;

    fn ok(input: &str) -> Query {
        parse(input).unwrap_or_else(|e| panic!("{input}: {}", e.render(input)))
    }

    fn err(input: &str) -> ParseError {
        parse(input).expect_err(input)
    }

    #[test]
    fn parses_the_examples_of_the_issue() {
        assert_eq!(
            ok(r#"count photos label "Rex" in last_summer"#),
            Query::Number(Number::Count(Set {
                source: Source::Photos,
                filters: vec![
                    Filter::Label("Rex".into()),
                    Filter::In(Range::Named(NamedRange::Last(Season::Summer)))
                ]
            }))
        );
        for text in [
            r#"list notes text "Lisbon""#,
            r#"similar photos to "the beach" limit 5"#,
            "list items trained_on adapter 3",
            r#"days_between(first photos label "Rex", last photos label "Rex")"#,
            r#"minus(count photos label "Rex", count photos label "Max")"#,
            "count notes in between 2024-01-01 and 2024-03-31",
            "count photos in 2023",
            "count photos in 2023-07",
            "count photos in 2023-07-14",
            "count items in last 30 days",
            "days_between(first photos, today)",
            "days_between(2024-01-01, 2024-03-01)",
            "first notes",
            "2024-01-01",
            "cannot_answer",
        ] {
            assert_eq!(ok(text).to_string(), text);
        }
    }

    #[test]
    fn whitespace_is_free_and_printing_normalises_it() {
        assert_eq!(
            ok("  minus (count photos,count   notes )  ").to_string(),
            "minus(count photos, count notes)"
        );
    }

    #[test]
    fn errors_name_what_was_expected() {
        let e = err("how many photos");
        assert_eq!(e.at, 0);
        assert!(e.message.contains("expected a query (count"), "{e}");
        assert!(err("Count photos").message.contains("lowercase: `count`"));
        assert!(err("count photo").message.contains("write `photos`"));
        assert!(
            err("count photos labels \"Rex\"")
                .message
                .contains("a filter")
        );
        assert!(
            err("count photos label Rex")
                .message
                .contains("double quotes")
        );
        assert!(
            err(r#"count photos text "x""#)
                .message
                .contains("photos have none")
        );
        assert!(
            err("minus(first photos, count notes)")
                .message
                .contains("which is a date")
        );
        assert!(
            err("days_between(count photos, today)")
                .message
                .contains("which is a number")
        );
        assert!(err("count photos in summer").message.contains("date range"));
        assert!(err("count photos in 23").message.contains("four digits"));
        assert!(
            err("count photos in last 3 years")
                .message
                .contains("days, weeks or months")
        );
        assert!(
            err("count photos cannot_answer")
                .message
                .contains("a filter")
        );
        assert!(err("cannot_answer now").message.contains("after the end"));
        assert!(err("plus(count photos)").message.contains("`,`"));
        let e = err("count photos label");
        assert_eq!(
            (e.at, e.message.contains("the end of the query")),
            (18, true)
        );
        let deep = format!(
            "{}count photos{}",
            "plus(".repeat(40),
            ", count notes)".repeat(40)
        );
        assert!(err(&deep).message.contains("nests more than"));
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e = err(r#"count photos label "Grüße" wat"#);
        assert_eq!(e.at, 27);
        assert!(
            e.render(r#"count photos label "Grüße" wat"#)
                .ends_with("^ expected a filter (label, in, text or trained_on), found `wat`")
        );
    }
}
