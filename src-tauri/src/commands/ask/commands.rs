//! Ask commands: thin wrappers over [`super::helpers`]. Translating and
//! running queries block (the model, SQLite), so they run on the blocking
//! pool; training is a job.

use hearth_personalize::RunSummary;
use hearth_store::AskId;
use tauri::State;
use tauri::ipc::Channel;

use super::helpers;
use hearth_personalize::ask::AskTrainingRequest;

use super::models::{AskAnswer, AskHistory, AskTranslator, Correction};
use crate::error::Result;
use crate::jobs::{JobEvent, blocking, spawn_progress_job};
use crate::state::{JobId, JobKind, Jobs, LibraryLocation};

/// Answers a question in words: the text model writes the query (loaded
/// on the first question and kept), which runs read-only over the library.
#[tauri::command]
pub async fn ask_question(
    location: State<'_, LibraryLocation>,
    translator: State<'_, AskTranslator>,
    question: String,
) -> Result<AskAnswer> {
    let (location, translator) = (location.inner().clone(), translator.inner().clone());
    blocking(move || helpers::ask_question(&location, &translator, &question)).await
}

/// Runs a query the person wrote or edited.
#[tauri::command]
pub async fn ask_query(location: State<'_, LibraryLocation>, query: String) -> Result<AskAnswer> {
    let location = location.inner().clone();
    blocking(move || helpers::ask_query(&location, &query)).await
}

/// Keeps `query` as what ask `id` should have run: checked and run first
/// (a query that does not run is refused), then stored as a training pair.
#[tauri::command]
pub async fn correct_ask(
    location: State<'_, LibraryLocation>,
    id: AskId,
    query: String,
) -> Result<Correction> {
    let location = location.inner().clone();
    blocking(move || helpers::correct_ask(&location, id, &query)).await
}

/// Every ask and correction, oldest first.
#[tauri::command]
pub async fn ask_history(location: State<'_, LibraryLocation>) -> Result<AskHistory> {
    let location = location.inner().clone();
    blocking(move || helpers::history(&location)).await
}

/// Starts training the translator on the corrections. Progress and the
/// run summary arrive on `on_event`; `cancel_job` stops it (nothing is
/// used until a run finishes).
#[tauri::command]
pub async fn train_ask(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    request: Option<AskTrainingRequest>,
    on_event: Channel<JobEvent<RunSummary>>,
) -> Result<JobId> {
    let training = request.unwrap_or_default().training()?;
    let location = location.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::TrainAsk,
        on_event,
        move |progress, cancel| helpers::train_ask(&location, &training, progress, cancel),
    )
}
