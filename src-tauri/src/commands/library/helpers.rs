//! The library commands' logic, over `hearth_store::Library` (the calls
//! `hearth import`, `hearth library` and `hearth label` make).

use std::path::PathBuf;

use hearth_progress::{CancelToken, Progress};
use hearth_store::{ImportOptions, Item, ItemFilter, Library};

use super::models::{ImportSummary, ItemQuery};
use crate::error::{AppError, Result};
use crate::state::LibraryLocation;

/// Items matching `query`, oldest first.
pub fn list_items(library: &Library, query: &ItemQuery) -> Result<Vec<Item>> {
    let kind = query
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(str::parse)
        .transpose()
        .map_err(AppError::InvalidInput)?;
    let label = query
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let mut items = library.items(&ItemFilter {
        kind,
        label: label.map(str::to_owned),
    })?;
    if let Some(search) = query
        .search
        .as_deref()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
    {
        items.retain(|item| {
            item.path.to_lowercase().contains(&search)
                || item
                    .labels
                    .iter()
                    .any(|l| l.to_lowercase().contains(&search))
        });
    }
    Ok(items)
}

/// Checks the paths the front end sent: absolute, existing. (The dialog
/// only returns such paths; the typed-path field may not.)
pub fn import_paths(paths: &[String]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(AppError::InvalidInput("choose a folder to import".into()));
    }
    paths
        .iter()
        .map(|path| {
            let path = PathBuf::from(path.trim());
            if !path.is_absolute() {
                return Err(AppError::InvalidInput(format!(
                    "{} is not an absolute path",
                    path.display()
                )));
            }
            if !path.exists() {
                return Err(AppError::InvalidInput(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            Ok(path)
        })
        .collect()
}

/// Imports `paths` into the library (the call `hearth import` makes).
pub fn import(
    location: &LibraryLocation,
    paths: &[PathBuf],
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<ImportSummary> {
    let mut library = location.open()?;
    let report = library.import(paths, &ImportOptions::default(), progress, cancel)?;
    Ok(report.into())
}
