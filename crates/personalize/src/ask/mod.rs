//! Ask: questions about the library, answered by checked queries.
//!
//! The query language, its checker and its read-only executor live in
//! `hearth-ask`; this is the workflow the CLI and the app share: run a
//! query (written by the person now, by the translator later) against the
//! library as of a given day, record the ask, and keep the person's
//! corrections, which become the translator's training data. The model
//! never states a fact: every value here was computed from the library.
//!
//! A question in words is translated into a query by the text model under
//! the library's grammar ([`translate`]); the query then runs like one the
//! person wrote, and the answer shows it.

use hearth_ask::{AskDb, SemanticIndex};
use hearth_store::{AskCorrection, AskId, AskRecord, Library};
use serde::Serialize;

use crate::error::{PersonalizeError, Result};

pub mod eval;
pub mod train;
pub mod translate;

pub use train::{
    AskTraining, AskTrainingRequest, MIN_PAIRS, ask_adapter, library_translator, train_ask,
    training_pairs,
};
pub use translate::{Translation, Translator};

pub use chrono::NaiveDate;
pub use hearth_ask::{AskError, DateSpan, ParseError, ResolvedRange, SourceItem, Value};

/// An ask: a query to run, and the question it answers if there was one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AskRequest {
    /// The question in the person's words, if they asked one.
    pub question: Option<String>,
    /// The query, in the Ask language (`docs/ask.md`).
    pub query: String,
    /// The day relative dates (`last_summer`) are resolved against.
    pub today: NaiveDate,
}

/// An answer, computed by code from the library.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AskAnswer {
    /// The recorded ask (correct it with [`correct_ask`]).
    pub ask_id: AskId,
    /// The question, if there was one.
    pub question: Option<String>,
    /// The query as written.
    pub query: String,
    /// The query as it ran: canonical, labels as the library spells them.
    pub canonical: String,
    /// The result.
    pub value: Value,
    /// The items it came from.
    pub sources: Vec<SourceItem>,
    /// Each date range and the days it meant.
    pub ranges: Vec<ResolvedRange>,
    /// Things worth knowing about the answer.
    pub notes: Vec<String>,
    /// How the model translated the question, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub translation: Option<Translation>,
}

/// A stored correction and the answer of the corrected query.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "AskCorrectionAnswer"))]
pub struct Correction {
    /// The correction's id.
    pub correction_id: i64,
    /// The ask corrected.
    pub ask_id: AskId,
    /// Its question.
    pub question: Option<String>,
    /// The corrected query, canonical (as stored).
    pub canonical: String,
    /// What it answers.
    pub value: Value,
    /// The items it came from.
    pub sources: Vec<SourceItem>,
    /// Each date range and the days it meant.
    pub ranges: Vec<ResolvedRange>,
    /// Things worth knowing about the answer.
    pub notes: Vec<String>,
}

/// Today's date in the device's time zone: what "today" means to the
/// person asking.
pub fn local_today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

/// Runs `request`'s query read-only and records the ask. `semantic` is
/// the embedding index `similar` queries rank by ([`LibrarySemanticIndex`]);
/// without one such queries are refused with a typed error.
pub fn ask(
    library: &mut Library,
    request: &AskRequest,
    semantic: Option<&dyn SemanticIndex>,
) -> Result<AskAnswer> {
    let question = match request.question.as_deref().map(str::trim) {
        Some("") => None,
        other => other,
    };
    let outcome = AskDb::open(library.root())?.ask(&request.query, request.today, semantic)?;
    let ask_id = library.record_ask(question, &outcome.canonical)?;
    Ok(AskAnswer {
        ask_id,
        question: question.map(str::to_owned),
        query: request.query.clone(),
        canonical: outcome.canonical,
        value: outcome.value,
        sources: outcome.sources,
        ranges: outcome.ranges,
        notes: outcome.notes,
        translation: None,
    })
}

/// Runs a query the person wrote, as of `today`.
pub fn ask_query(library: &mut Library, query: &str, today: NaiveDate) -> Result<AskAnswer> {
    ask(
        library,
        &AskRequest {
            question: None,
            query: query.to_owned(),
            today,
        },
        None,
    )
}

/// Answers a question in words: `translator` writes the query (held to
/// the library's grammar, learning from the person's corrections), which
/// then runs read-only and is recorded with the question, ready to be
/// corrected.
pub fn ask_question(
    library: &mut Library,
    question: &str,
    today: NaiveDate,
    translator: &Translator,
    semantic: Option<&dyn SemanticIndex>,
) -> Result<AskAnswer> {
    let question = translate::check_question(question)?;
    let facts = AskDb::open(library.root())?.facts()?;
    let corrections = library.ask_corrections()?;
    let translation =
        translator.translate(question, &facts, &corrections, today, semantic.is_some())?;
    let request = AskRequest {
        question: Some(question.to_owned()),
        query: translation.query.clone(),
        today,
    };
    match ask(library, &request, semantic) {
        Ok(answer) => Ok(AskAnswer {
            translation: Some(translation),
            ..answer
        }),
        Err(PersonalizeError::Ask(source)) => Err(PersonalizeError::TranslatedQueryFailed {
            query: translation.query,
            source,
        }),
        Err(other) => Err(other),
    }
}

/// Stores `query` as what ask `ask_id` should have run, after checking it
/// and running it (a correction that does not run is refused, never
/// stored). `semantic` runs a corrected `similar` query, as in [`ask`].
/// Returns the correction and its answer.
pub fn correct_ask(
    library: &mut Library,
    ask_id: AskId,
    query: &str,
    today: NaiveDate,
    semantic: Option<&dyn SemanticIndex>,
) -> Result<Correction> {
    let record = library.ask_record(ask_id)?;
    if record.question.is_none() {
        return Err(PersonalizeError::Invalid(format!(
            "ask {ask_id} was a query with no question, so there is nothing to learn from a correction; ask with a question (`hearth ask \"QUESTION\" --query \"QUERY\"`)"
        )));
    }
    let outcome = AskDb::open(library.root())?.ask(query, today, semantic)?;
    let correction_id = library.add_ask_correction(ask_id, &outcome.canonical)?;
    Ok(Correction {
        correction_id,
        ask_id,
        question: record.question,
        canonical: outcome.canonical,
        value: outcome.value,
        sources: outcome.sources,
        ranges: outcome.ranges,
        notes: outcome.notes,
    })
}

/// Every recorded ask, oldest first.
pub fn history(library: &Library) -> Result<Vec<AskRecord>> {
    Ok(library.asks()?)
}

/// Every correction with its question: the translator's training pairs.
pub fn corrections(library: &Library) -> Result<Vec<AskCorrection>> {
    Ok(library.ask_corrections()?)
}

pub mod semantic;

pub use semantic::LibrarySemanticIndex;
