//! The Ask commands' logic: the calls `hearth ask` makes, on the library
//! the app works on, as of the device's today.

use hearth_ask::SemanticIndex;
use hearth_personalize::RunSummary;
use hearth_personalize::ask::{self, AskAnswer, AskRequest, AskTraining, Correction};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{AskId, Library};

use super::models::{AskHistory, AskTranslator};
use crate::error::Result;
use crate::state::LibraryLocation;

/// The one place the Ask commands get the semantic index that `similar`
/// queries rank by: every ask here runs inside it. There is none yet (the
/// sentence-embedding index is being added), so `similar` is refused with
/// a typed error and the translator is not offered it.
fn with_semantic<T>(
    library: &mut Library,
    work: impl FnOnce(&mut Library, Option<&dyn SemanticIndex>) -> Result<T>,
) -> Result<T> {
    work(library, None)
}

/// Translates `question` with the app's translator and runs the query.
pub fn ask_question(
    location: &LibraryLocation,
    translator: &AskTranslator,
    question: &str,
) -> Result<AskAnswer> {
    let mut library = location.open()?;
    translator.with(&mut library, |library, translator| {
        with_semantic(library, |library, semantic| {
            Ok(ask::ask_question(
                library,
                question,
                ask::local_today(),
                translator,
                semantic,
            )?)
        })
    })
}

/// Runs a query the person wrote or edited.
pub fn ask_query(location: &LibraryLocation, query: &str) -> Result<AskAnswer> {
    let mut library = location.open()?;
    let request = AskRequest {
        question: None,
        query: query.to_owned(),
        today: ask::local_today(),
    };
    with_semantic(&mut library, |library, semantic| {
        Ok(ask::ask(library, &request, semantic)?)
    })
}

/// Keeps `query` as what ask `ask_id` should have run (after running it).
pub fn correct_ask(location: &LibraryLocation, ask_id: AskId, query: &str) -> Result<Correction> {
    let mut library = location.open()?;
    Ok(ask::correct_ask(
        &mut library,
        ask_id,
        query,
        ask::local_today(),
    )?)
}

/// Every ask and correction.
pub fn history(location: &LibraryLocation) -> Result<AskHistory> {
    let library = location.open()?;
    Ok(AskHistory {
        asks: ask::history(&library)?,
        corrections: ask::corrections(&library)?,
    })
}

/// Trains a new ask adapter on the corrections; the next question loads
/// it (see [`AskTranslator::with`]).
pub fn train_ask(
    location: &LibraryLocation,
    training: &AskTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    let mut library = location.open()?;
    Ok(ask::train_ask(&mut library, training, progress, cancel)?)
}
