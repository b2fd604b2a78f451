//! The personalization commands' logic, over `hearth_personalize` (the
//! calls `hearth train text`, `hearth runs` and `hearth photos` make).

use std::path::{Path, PathBuf};

use hearth_ml::DeviceChoice;
use hearth_ml::registry::Installed;
use hearth_personalize::photos::{self, EmbedSummary, PhotoTrainingRequest, TaggerSummary};
use hearth_personalize::{PersonalizeError, RunSummary, TextTraining};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{RunId, RunStatus};

use super::models::ModelChoice;
use crate::error::{AppError, Result};
use crate::state::LibraryLocation;

/// Parses a device name.
pub fn device(name: &str) -> Result<DeviceChoice> {
    name.parse().map_err(AppError::InvalidInput)
}

/// Trains a new text adapter.
pub fn train_text(
    location: &LibraryLocation,
    training: &TextTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    let mut library = location.open()?;
    Ok(hearth_personalize::train_text(
        &mut library,
        training,
        progress,
        cancel,
    )?)
}

/// Continues a paused or interrupted run.
pub fn resume_text(
    location: &LibraryLocation,
    run: RunId,
    device: DeviceChoice,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    let mut library = location.open()?;
    Ok(hearth_personalize::resume_text(
        &mut library,
        run,
        device,
        progress,
        cancel,
    )?)
}

/// Continues a paused (or killed) photo run as `hearth photos train
/// --resume` does.
pub fn resume_photos(
    location: &LibraryLocation,
    run: RunId,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let mut library = location.open()?;
    let base = photos::load_photo_model(None, &DeviceChoice::Auto.open()?)?;
    Ok(photos::resume_tagger(
        &mut library,
        &base,
        run,
        progress,
        cancel,
    )?)
}

/// Gives up a paused run ([`hearth_personalize::discard_run`]), unless
/// the run is marked running while this app trains text: then it may be
/// the run being trained.
pub fn discard_run(location: &LibraryLocation, run: RunId, training_now: bool) -> Result<()> {
    let mut library = location.open()?;
    if training_now && library.run(run)?.status == RunStatus::Running {
        return Err(AppError::Busy(format!(
            "run {run} is training now; pause it first"
        )));
    }
    Ok(hearth_personalize::discard_run(&mut library, run)?)
}

/// Every registry model and whether it is on this machine.
pub fn model_choices() -> Result<Vec<ModelChoice>> {
    Ok(hearth_ml::registry::entries()?
        .into_iter()
        .map(|entry| ModelChoice {
            present: entry.local_path().is_some(),
            installable: entry.package.is_some(),
            folder: entry.package.as_ref().is_some_and(|p| p.is_folder()),
            name: entry.name,
            kind: entry.kind,
            description: entry.description,
            default: entry.default,
        })
        .collect())
}

/// Installs registry model `name` from the person's copy at `path` (the
/// call `hearth model install` makes); cancelled, it keeps nothing.
pub fn install_model(
    name: &str,
    path: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Installed> {
    hearth_ml::registry::install_from(name, path, progress, cancel)?
        .ok_or(AppError::Personalize(PersonalizeError::Cancelled))
}

/// The copy a model is installed from: an absolute path (what the file
/// dialog gives).
pub fn model_copy_path(path: &str) -> Result<PathBuf> {
    let path = PathBuf::from(path.trim());
    if !path.is_absolute() {
        return Err(AppError::InvalidInput(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    Ok(path)
}

/// Embeds every photo not yet embedded by the active photo model (the
/// call `hearth photos embed` makes).
pub fn embed(
    location: &LibraryLocation,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<EmbedSummary> {
    let mut library = location.open()?;
    let model = photos::active_photo_model(&library, &DeviceChoice::Auto.open()?)?;
    Ok(photos::embed_photos(
        &mut library,
        &model,
        16,
        progress,
        cancel,
    )?)
}

/// Trains the photo tagger as `hearth photos train` does: embeds new
/// photos with the base network, then learns the labels (fine-tuning the
/// last blocks first when asked).
pub fn train_photos(
    location: &LibraryLocation,
    request: &PhotoTrainingRequest,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let mut library = location.open()?;
    let base = photos::load_photo_model(None, &DeviceChoice::Auto.open()?)?;
    Ok(photos::train_new_tagger(
        &mut library,
        &base,
        request,
        progress,
        cancel,
    )?)
}
