//! Library commands: thin wrappers over [`super::helpers`].

use hearth_store::{Item, ItemId, LabelSummary};
use tauri::State;
use tauri::ipc::Channel;

use super::helpers;
use super::models::{ImportRequest, ImportSummary, ItemQuery, LibraryInfo};
use crate::error::Result;
use crate::jobs::{JobEvent, spawn_progress_job};
use crate::state::{JobId, JobKind, Jobs, LibraryLocation};

/// Where the library is, and its counts.
#[tauri::command]
pub async fn library_info(location: State<'_, LibraryLocation>) -> Result<LibraryInfo> {
    let library = location.open()?;
    Ok(LibraryInfo {
        path: library.root().display().to_string(),
        stats: library.stats()?,
    })
}

/// Items matching the query (everything without one).
#[tauri::command]
pub async fn list_items(
    location: State<'_, LibraryLocation>,
    query: Option<ItemQuery>,
) -> Result<Vec<Item>> {
    helpers::list_items(&location.open()?, &query.unwrap_or_default())
}

/// One item (the Ask screen shows the items an answer came from).
#[tauri::command]
pub async fn get_item(location: State<'_, LibraryLocation>, id: ItemId) -> Result<Item> {
    Ok(location.open()?.item(id)?)
}

/// The text of a text item (`null` for photos).
#[tauri::command]
pub async fn item_text(location: State<'_, LibraryLocation>, id: ItemId) -> Result<Option<String>> {
    Ok(location.open()?.item_text(id)?)
}

/// Every label and how many items carry it.
#[tauri::command]
pub async fn list_labels(location: State<'_, LibraryLocation>) -> Result<Vec<LabelSummary>> {
    Ok(location.open()?.labels()?)
}

/// Puts a label on an item; returns the item as it is now.
#[tauri::command]
pub async fn add_label(
    location: State<'_, LibraryLocation>,
    id: ItemId,
    name: String,
) -> Result<Item> {
    let mut library = location.open()?;
    library.add_label(id, &name)?;
    Ok(library.item(id)?)
}

/// Takes a label off an item; returns the item as it is now.
#[tauri::command]
pub async fn remove_label(
    location: State<'_, LibraryLocation>,
    id: ItemId,
    name: String,
) -> Result<Item> {
    let mut library = location.open()?;
    library.remove_label(id, &name)?;
    Ok(library.item(id)?)
}

/// Removes an item from the library (never the original file).
#[tauri::command]
pub async fn remove_item(location: State<'_, LibraryLocation>, id: ItemId) -> Result<()> {
    location.open()?.remove_item(id)?;
    Ok(())
}

/// Starts importing folders; progress and the summary arrive on
/// `on_event`. Returns the job id (for `cancel_job`).
#[tauri::command]
pub async fn import_folders(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    request: ImportRequest,
    on_event: Channel<JobEvent<ImportSummary>>,
) -> Result<JobId> {
    let paths = helpers::import_paths(&request.paths)?;
    let location = location.inner().clone();
    spawn_progress_job(&jobs, JobKind::Import, on_event, move |progress, cancel| {
        helpers::import(&location, &paths, progress, cancel)
    })
}
