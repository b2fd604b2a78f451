//! Audit commands: the library calls `hearth lineage` and `hearth audit`
//! make, unchanged.

use hearth_personalize::federation::{self, AuditOutcome};
use hearth_personalize::lineage::{self, AdapterLineage, TaggerLineage};
use hearth_store::{AdapterId, PhotoTagger, TaggerId};
use tauri::State;

use crate::error::Result;
use crate::state::LibraryLocation;

/// The chain from items to `adapter`, with the lineage hash checked.
#[tauri::command]
pub async fn adapter_lineage(
    location: State<'_, LibraryLocation>,
    adapter: AdapterId,
) -> Result<AdapterLineage> {
    Ok(lineage::adapter_lineage(&location.open()?, adapter)?)
}

/// Every photo tagger the library recorded, newest first.
#[tauri::command]
pub async fn list_photo_taggers(location: State<'_, LibraryLocation>) -> Result<Vec<PhotoTagger>> {
    Ok(location.open()?.photo_taggers()?)
}

/// The chain from photos to a photo tagger, with its head file hashed
/// again and compared with the record.
#[tauri::command]
pub async fn photo_tagger_lineage(
    location: State<'_, LibraryLocation>,
    tagger: TaggerId,
) -> Result<TaggerLineage> {
    Ok(lineage::photo_tagger_lineage(&location.open()?, tagger)?)
}

/// Every federation log this device watches, re-verified from the stored
/// evidence.
#[tauri::command]
pub async fn audit_federations(location: State<'_, LibraryLocation>) -> Result<Vec<AuditOutcome>> {
    Ok(federation::audit(&mut location.open()?)?)
}
