//! Personalization commands: thin wrappers over [`super::helpers`].

use hearth_ml::registry::Installed;
use hearth_personalize::photos::{EmbedSummary, PhotoTrainingRequest, TaggerSummary};
use hearth_personalize::{RunSummary, TextTrainingRequest};
use hearth_store::{Adapter, RunId};
use tauri::State;
use tauri::ipc::Channel;

use super::helpers;
use super::models::{ModelChoice, RequestDefaults, RunView};
use crate::error::Result;
use crate::jobs::{JobEvent, spawn_progress_job};
use crate::state::{JobId, JobKind, Jobs, LibraryLocation};

/// The registry's models and whether each is here.
#[tauri::command]
pub async fn list_models() -> Result<Vec<ModelChoice>> {
    helpers::model_choices()
}

/// The defaults every form starts with (the library's).
#[tauri::command]
pub fn request_defaults() -> RequestDefaults {
    RequestDefaults::default()
}

/// Every training run, newest first.
#[tauri::command]
pub async fn list_runs(location: State<'_, LibraryLocation>) -> Result<Vec<RunView>> {
    Ok(location
        .open()?
        .runs()?
        .into_iter()
        .map(RunView::from)
        .collect())
}

/// Every adapter, newest first.
#[tauri::command]
pub async fn list_adapters(location: State<'_, LibraryLocation>) -> Result<Vec<Adapter>> {
    Ok(location.open()?.adapters()?)
}

/// Starts training a text adapter. Progress (loss, validation loss,
/// tokens/s, steps) and the run summary arrive on `on_event`;
/// `cancel_job` pauses it at a checkpoint.
#[tauri::command]
pub async fn start_text_training(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    request: TextTrainingRequest,
    on_event: Channel<JobEvent<RunSummary>>,
) -> Result<JobId> {
    let training = request.training()?;
    let location = location.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::TrainText,
        on_event,
        move |progress, cancel| helpers::train_text(&location, &training, progress, cancel),
    )
}

/// Continues a paused or interrupted run from its last checkpoint.
#[tauri::command]
pub async fn resume_text_training(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    run: RunId,
    device: Option<String>,
    on_event: Channel<JobEvent<RunSummary>>,
) -> Result<JobId> {
    let device = helpers::device(device.as_deref().unwrap_or("auto"))?;
    let location = location.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::TrainText,
        on_event,
        move |progress, cancel| helpers::resume_text(&location, run, device, progress, cancel),
    )
}

/// Starts installing a registry model from the person's copy (a file, or
/// a folder for a model of several files), checked against the registry.
#[tauri::command]
pub async fn install_model(
    jobs: State<'_, Jobs>,
    name: String,
    path: String,
    on_event: Channel<JobEvent<Installed>>,
) -> Result<JobId> {
    let path = helpers::model_copy_path(&path)?;
    spawn_progress_job(
        &jobs,
        JobKind::InstallModel,
        on_event,
        move |progress, cancel| helpers::install_model(&name, &path, progress, cancel),
    )
}

/// Gives up a paused run (see [`helpers::discard_run`]).
#[tauri::command]
pub async fn discard_run(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    run: RunId,
) -> Result<()> {
    helpers::discard_run(&location, run, jobs.is_running(JobKind::TrainText))
}

/// Starts embedding the photos that have no embedding yet.
#[tauri::command]
pub async fn embed_photos(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    on_event: Channel<JobEvent<EmbedSummary>>,
) -> Result<JobId> {
    let location = location.inner().clone();
    spawn_progress_job(&jobs, JobKind::Embed, on_event, move |progress, cancel| {
        helpers::embed(&location, progress, cancel)
    })
}

/// Starts training the photo tagger on the labelled photos.
#[tauri::command]
pub async fn train_photo_tagger(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    request: Option<PhotoTrainingRequest>,
    on_event: Channel<JobEvent<TaggerSummary>>,
) -> Result<JobId> {
    let request = request.unwrap_or_default();
    request.training()?;
    let location = location.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::TrainPhotos,
        on_event,
        move |progress, cancel| helpers::train_photos(&location, &request, progress, cancel),
    )
}

/// Continues a paused photo run (fine-tuning stopped by Cancel or by
/// closing the window).
#[tauri::command]
pub async fn resume_photo_tagger(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    run: RunId,
    on_event: Channel<JobEvent<TaggerSummary>>,
) -> Result<JobId> {
    let location = location.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::TrainPhotos,
        on_event,
        move |progress, cancel| helpers::resume_photos(&location, run, progress, cancel),
    )
}
