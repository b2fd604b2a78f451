//! What can go wrong, in three stages: the text does not parse
//! ([`ParseError`]), the query does not fit this library or this day
//! ([`CheckError`]), or running it failed ([`AskError`], which holds the
//! other two). Each says what is wrong in words a person can act on.

/// The query text is not in the language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .at + 1)]
pub struct ParseError {
    /// Where: the index of the character (0-based) where the problem is.
    pub at: usize,
    /// What is wrong, and usually what was expected.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(at: usize, message: impl Into<String>) -> Self {
        ParseError {
            at,
            message: message.into(),
        }
    }

    /// The input with a caret under the problem, for a terminal.
    pub fn render(&self, input: &str) -> String {
        let line: String = input
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        format!("{line}\n{}^ {}", " ".repeat(self.at), self.message)
    }
}

/// The query parses but does not fit the library (or today).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A label the library does not have.
    #[error("unknown label '{name}'{}", did_you_mean(.suggestion))]
    UnknownLabel {
        /// As written.
        name: String,
        /// The closest label the library has, if one is close.
        suggestion: Option<String>,
    },
    /// An adapter, run or tagger the library does not have.
    #[error("there is no {what} {id} in this library")]
    UnknownProducer {
        /// `adapter`, `run` or `tagger`.
        what: &'static str,
        /// The id written.
        id: i64,
    },
    /// An adapter imported from elsewhere: its training run is not here.
    #[error("adapter {0} was imported; the run that trained it is not in this library")]
    NoTrainingRun(i64),
    /// `between A and B` with B before A.
    #[error("the range starts on {from} but ends earlier, on {to}")]
    BackwardsRange {
        /// Start.
        from: String,
        /// End.
        to: String,
    },
    /// A number outside what the construct allows.
    #[error("{what} must be between {min} and {max}, not {found}")]
    OutOfBounds {
        /// What the number is.
        what: &'static str,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
        /// As written.
        found: u32,
    },
    /// A search with nothing to search for.
    #[error("{0} needs at least one word (letters or digits)")]
    NoWords(&'static str),
    /// A date range reaching outside the calendar.
    #[error("the range {0} reaches outside the calendar")]
    DateOverflow(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!(", did you mean '{name}'?"),
        None => String::new(),
    }
}

/// Why a semantic search could not run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SemanticError {
    /// What went wrong.
    pub message: String,
    /// Whether it is that the embedding model is not on this machine (the
    /// person can fetch it), rather than that it failed.
    pub model_missing: bool,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Anything that stops an ask.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The text is not a query.
    #[error("the query does not parse: {0}")]
    Parse(#[from] ParseError),
    /// The query does not fit the library.
    #[error("the query does not fit your library: {0}")]
    Check(#[from] CheckError),
    /// `similar` needs an embedding index, and none was given.
    #[error(
        "semantic search (`similar`) is not available yet: no embedding model is set up for your library"
    )]
    SemanticUnavailable,
    /// The embedding index failed.
    #[error("semantic search failed: {0}")]
    Semantic(#[from] SemanticError),
    /// Arithmetic left the range of whole numbers.
    #[error("the arithmetic overflowed")]
    Overflow,
    /// The library database could not be read.
    #[error("reading the library: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A compiled statement would write (a bug; refused before it runs).
    #[error("refused to run a statement that is not read-only: {0}")]
    NotReadOnly(String),
    /// The library's database is missing.
    #[error("no library database at {0}")]
    NoLibrary(String),
}
