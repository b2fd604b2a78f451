//! Try commands: thin wrappers over [`super::helpers`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use hearth_store::{Item, ItemId, Verdict};
use tauri::State;
use tauri::ipc::Channel;

use super::helpers;
use super::models::{GenerateEnd, GenerateEvent, GenerateRequest, PhotoTags, SimilarPhoto};
use crate::error::{AppError, Result};
use crate::jobs::{EventSink, blocking, panic_message, spawn};
use crate::state::{JobId, JobKind, Jobs, LibraryLocation};

/// Starts generating: base and/or personalized completions stream on
/// `on_event` as they are produced.
#[tauri::command]
pub async fn generate_text(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    request: GenerateRequest,
    on_event: Channel<GenerateEvent>,
) -> Result<JobId> {
    let location = location.inner().clone();
    spawn(&jobs, JobKind::Generate, move |cancel| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            helpers::generate_text(&location, &request, &on_event, &cancel)
        }));
        EventSink::send(
            &on_event,
            match outcome {
                Ok(Ok(())) => GenerateEvent::Finished(GenerateEnd::Done),
                Ok(Err(error)) => GenerateEvent::Finished(GenerateEnd::Failed { error }),
                Err(panic) => GenerateEvent::Finished(GenerateEnd::Failed {
                    error: AppError::Internal(format!(
                        "generation stopped unexpectedly: {}",
                        panic_message(&panic)
                    )),
                }),
            },
        );
    })
}

/// Suggested tags with confidence: for unlabelled photos, or all.
#[tauri::command]
pub async fn suggest_tags(
    location: State<'_, LibraryLocation>,
    all: Option<bool>,
) -> Result<Vec<PhotoTags>> {
    let location = location.inner().clone();
    blocking(move || helpers::suggest_tags(&location, all.unwrap_or(false))).await
}

/// The photos most like one photo.
#[tauri::command]
pub async fn similar_photos(
    location: State<'_, LibraryLocation>,
    id: ItemId,
    k: Option<usize>,
) -> Result<Vec<SimilarPhoto>> {
    let location = location.inner().clone();
    blocking(move || helpers::similar(&location, id, k.unwrap_or(8))).await
}

/// Accepts a suggested label: the photo gets it, and it becomes training
/// data.
#[tauri::command]
pub async fn accept_tag(
    location: State<'_, LibraryLocation>,
    id: ItemId,
    label: String,
) -> Result<Item> {
    helpers::verdict(&location, id, &label, Verdict::Accepted)
}

/// Rejects a suggested label: a negative example for the next training.
#[tauri::command]
pub async fn reject_tag(
    location: State<'_, LibraryLocation>,
    id: ItemId,
    label: String,
) -> Result<Item> {
    helpers::verdict(&location, id, &label, Verdict::Rejected)
}
