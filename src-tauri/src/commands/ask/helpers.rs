//! The Ask commands' logic: the calls `hearth ask` makes, on the library
//! the app works on, as of the device's today.

use hearth_personalize::RunSummary;
use hearth_personalize::ask::{
    self, AskAnswer, AskRequest, AskTraining, Correction, LibrarySemanticIndex,
};
use hearth_progress::{CancelToken, Progress};
use hearth_store::AskId;

use super::models::{AskHistory, AskTranslator};
use crate::error::Result;
use crate::state::LibraryLocation;

/// The one place the Ask commands get the semantic index that `similar`
/// queries rank by. It loads the sentence-embedding model only when a
/// query needs it; note vectors are cached in the library, so a fresh
/// index per ask costs nothing until then.
fn semantic_index(location: &LibraryLocation) -> LibrarySemanticIndex {
    LibrarySemanticIndex::new(location.path(), None, hearth_ml::candle::Device::Cpu)
}

/// Translates `question` with the app's translator and runs the query.
pub fn ask_question(
    location: &LibraryLocation,
    translator: &AskTranslator,
    question: &str,
) -> Result<AskAnswer> {
    let mut library = location.open()?;
    let semantic = semantic_index(location);
    // `similar` is offered to the translator only when the embedding
    // model is here to run it.
    let offered = semantic.model_present();
    translator.with(&mut library, |library, translator| {
        Ok(ask::ask_question(
            library,
            question,
            ask::local_today(),
            translator,
            if offered { Some(&semantic) } else { None },
        )?)
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
    Ok(ask::ask(
        &mut library,
        &request,
        Some(&semantic_index(location)),
    )?)
}

/// Keeps `query` as what ask `ask_id` should have run (after running it).
pub fn correct_ask(location: &LibraryLocation, ask_id: AskId, query: &str) -> Result<Correction> {
    let mut library = location.open()?;
    Ok(ask::correct_ask(
        &mut library,
        ask_id,
        query,
        ask::local_today(),
        Some(&semantic_index(location)),
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
