//! Audit commands: the library calls `hearth lineage` and `hearth audit`
//! make, unchanged.

use hearth_personalize::federation::{self, AuditOutcome};
use hearth_personalize::lineage::{self, AdapterLineage};
use hearth_store::AdapterId;
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

/// Every federation log this device watches, re-verified from the stored
/// evidence.
#[tauri::command]
pub async fn audit_federations(location: State<'_, LibraryLocation>) -> Result<Vec<AuditOutcome>> {
    Ok(federation::audit(&location.open()?)?)
}
