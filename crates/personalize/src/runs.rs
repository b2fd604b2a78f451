//! The check every resume starts with: the run exists, is of the kind the
//! caller trains, and has not ended.

use hearth_store::{Library, Run, RunId, RunKind};

use crate::error::{PersonalizeError, Result};

/// The record of `run_id` when a `kind` run may continue it.
pub(crate) fn resumable(library: &Library, run_id: RunId, kind: RunKind) -> Result<Run> {
    let record = library.run(run_id)?;
    if record.kind != kind.as_str() {
        return Err(PersonalizeError::Invalid(format!(
            "run {run_id} is a {} run, not a {} run",
            record.kind,
            kind.as_str()
        )));
    }
    if !record.status.resumable() {
        return Err(PersonalizeError::NotResumable {
            id: run_id,
            status: record.status,
        });
    }
    Ok(record)
}
