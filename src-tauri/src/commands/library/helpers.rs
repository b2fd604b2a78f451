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
/// only returns such paths; the typed-path field may not.) On phones the
/// file picker answers with addresses: `file://` ones (iOS) are files;
/// Android's `content://` ones are not, and are refused with the reason.
pub fn import_paths(paths: &[String]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(AppError::InvalidInput("choose a folder to import".into()));
    }
    paths
        .iter()
        .map(|path| {
            let path = picked_path(path.trim())?;
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

/// A path, or the file a `file://` address names.
fn picked_path(picked: &str) -> Result<PathBuf> {
    let Some((scheme, _)) = picked.split_once("://") else {
        return Ok(PathBuf::from(picked));
    };
    if scheme != "file" {
        return Err(AppError::InvalidInput(format!(
            "{picked} is offered by another app ({scheme}://), which Hearth cannot import from yet; save the files to the device's storage first"
        )));
    }
    tauri::Url::parse(picked)
        .ok()
        .and_then(|url| url.to_file_path().ok())
        .ok_or_else(|| AppError::InvalidInput(format!("{picked} is not a file address")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_files_are_paths_or_file_addresses_and_others_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let photo = dir.path().join("a photo.jpg");
        std::fs::write(&photo, b"x").expect("write");
        let address = tauri::Url::from_file_path(&photo)
            .expect("address")
            .to_string();
        assert!(address.contains("%20"), "{address}");
        let paths = import_paths(&[photo.display().to_string(), address]).expect("both");
        assert_eq!(paths, vec![photo.clone(), photo]);

        let refused = import_paths(&["content://media/external/images/media/31".into()])
            .expect_err("content address");
        assert!(refused.to_string().contains("another app"), "{refused}");
        assert!(import_paths(&["relative/path".into()]).is_err());
        assert!(import_paths(&[]).is_err());
    }
}
