//! Splitting query text into tokens, each with its position for error
//! messages. Lexical rules are few and strict so that a small model (and
//! its constrained decoder) has one way to write each thing.

use chrono::NaiveDate;

use crate::error::ParseError;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A word: letters, digits and `_`, starting with a letter or `_`.
    Word(String),
    /// Digits only; `digits` is how many were written.
    Int { value: u64, digits: usize },
    /// `YYYY-MM`.
    Month(i32, u32),
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A double-quoted string, unescaped.
    Str(String),
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(word) => format!("`{word}`"),
            Tok::Int { value, .. } => format!("the number {value}"),
            Tok::Month(year, month) => format!("the month {year:04}-{month:02}"),
            Tok::Date(date) => format!("the date {}", date.format("%Y-%m-%d")),
            Tok::Str(text) => format!("the string {text:?}"),
            Tok::Open => "`(`".into(),
            Tok::Close => "`)`".into(),
            Tok::Comma => "`,`".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub at: usize,
}

/// Splits `input` into tokens.
pub(crate) fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(ParseError::new(
            0,
            format!("the query is longer than {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        let tok = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '(' | ')' | ',' => {
                chars.next();
                match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Comma,
                }
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(ParseError::new(at, "a string is not closed with `\"`"));
                        }
                        Some((_, '"')) => break,
                        Some((escape_at, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\'))) => text.push(c),
                            _ => {
                                return Err(ParseError::new(
                                    escape_at,
                                    "in a string, `\\` may only escape `\"` or `\\`",
                                ));
                            }
                        },
                        Some((bad_at, c)) if c.is_control() => {
                            return Err(ParseError::new(
                                bad_at,
                                "a string may not contain control characters (newlines, tabs)",
                            ));
                        }
                        Some((_, c)) => text.push(c),
                    }
                }
                Tok::Str(text)
            }
            c if c.is_ascii_digit() => {
                let mut text = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_digit() || c == '-' {
                        text.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                number_or_date(&text, at)?
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Tok::Word(word)
            }
            other => {
                return Err(ParseError::new(
                    at,
                    format!("unexpected character {other:?}"),
                ));
            }
        };
        tokens.push(Token { tok, at });
    }
    Ok(tokens)
}

/// `2023` (a number), `2023-07` (a month) or `2023-07-14` (a date).
fn number_or_date(text: &str, at: usize) -> Result<Tok, ParseError> {
    let parts: Vec<&str> = text.split('-').collect();
    let bad = || {
        ParseError::new(
            at,
            format!(
                "{text:?} is neither a number nor a date (dates are YYYY, YYYY-MM or YYYY-MM-DD)"
            ),
        )
    };
    let year = |digits: &str| -> Result<i32, ParseError> {
        match digits.parse::<i32>() {
            Ok(year) if digits.len() == 4 && year >= 1000 => Ok(year),
            _ => Err(bad()),
        }
    };
    let two = |digits: &str| -> Result<u32, ParseError> {
        if digits.len() == 2 {
            digits.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    match parts.as_slice() {
        [digits] => match digits.parse::<u64>() {
            Ok(value) => Ok(Tok::Int {
                value,
                digits: digits.len(),
            }),
            Err(_) => Err(ParseError::new(
                at,
                format!("the number {digits} is too large"),
            )),
        },
        [y, m] => {
            let (year, month) = (year(y)?, two(m)?);
            if (1..=12).contains(&month) {
                Ok(Tok::Month(year, month))
            } else {
                Err(ParseError::new(at, format!("{text} is not a month")))
            }
        }
        [y, m, d] => {
            let (year, month, day) = (year(y)?, two(m)?, two(d)?);
            NaiveDate::from_ymd_opt(year, month, day)
                .map(Tok::Date)
                .ok_or_else(|| ParseError::new(at, format!("{text} is not a date")))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(input: &str) -> Vec<Tok> {
        lex(input)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn words_numbers_dates_strings_and_punctuation() {
        assert_eq!(
            toks(r#"count(photos "R\"ex") 2023 2023-07 2024-02-29 , 7"#),
            vec![
                Tok::Word("count".into()),
                Tok::Open,
                Tok::Word("photos".into()),
                Tok::Str("R\"ex".into()),
                Tok::Close,
                Tok::Int {
                    value: 2023,
                    digits: 4
                },
                Tok::Month(2023, 7),
                Tok::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("leap day")),
                Tok::Comma,
                Tok::Int {
                    value: 7,
                    digits: 1
                },
            ]
        );
    }

    #[test]
    fn bad_lexemes_say_what_is_wrong_and_where() {
        let err = |input: &str| lex(input).expect_err(input);
        assert!(err("2023-02-29").to_string().contains("not a date"));
        assert!(err("2023-13").to_string().contains("not a month"));
        assert!(
            err("99999999999999999999999")
                .to_string()
                .contains("too large")
        );
        assert!(err("2023-1-01").to_string().contains("neither"));
        assert_eq!(err(r#"label "Rex"#).at, 6);
        assert!(err("label \"a\nb\"").to_string().contains("control"));
        assert!(err(r#""\n""#).to_string().contains("escape"));
        assert!(err("count ; drop").to_string().contains("';'"));
        assert!(err(&"x ".repeat(3000)).to_string().contains("longer"));
    }
}
