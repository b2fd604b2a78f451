//! The check every resume starts with: the run exists, is of the kind the
//! caller trains, and has not ended.

use hearth_store::{Library, Run, RunId, RunKind, RunStatus, RunUpdate};

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

/// Gives up a run that could still be resumed: it is marked failed
/// ("cancelled by you"), so it no longer offers itself for resuming. Its
/// checkpoint stays, so `hearth train text --resume` can still continue it.
///
/// A run marked running may be training right now in this process or
/// another; only the caller knows (the app's job table, the CLI's
/// `--interrupted`), so it checks that first.
pub fn discard_run(library: &mut Library, run_id: RunId) -> Result<()> {
    let record = library.run(run_id)?;
    if !record.status.resumable() {
        return Err(PersonalizeError::Invalid(format!(
            "run {run_id} is {}; only paused or interrupted runs can be cancelled",
            record.status
        )));
    }
    library.update_run(
        run_id,
        &RunUpdate {
            status: Some(RunStatus::Failed),
            error: Some("cancelled by you".into()),
            ..RunUpdate::default()
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_store::NewRun;

    fn run_with_status(library: &mut Library, status: RunStatus) -> RunId {
        let id = library
            .create_run(&NewRun {
                kind: RunKind::Text,
                base_model: "stories260K".into(),
                base_model_sha256: "ab".repeat(32),
                config: "{}".into(),
                label: None,
                item_sha256s: Vec::new(),
                token_count: 0,
                device: "cpu".into(),
                parent_sha256: None,
            })
            .expect("run");
        library
            .update_run(
                id,
                &RunUpdate {
                    status: Some(status),
                    ..RunUpdate::default()
                },
            )
            .expect("status");
        id
    }

    #[test]
    fn a_paused_run_is_cancelled_and_a_finished_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut library = Library::open(dir.path()).expect("library");
        let paused = run_with_status(&mut library, RunStatus::Paused);
        discard_run(&mut library, paused).expect("discard");
        let record = library.run(paused).expect("run");
        assert_eq!(record.status, RunStatus::Failed);
        assert_eq!(record.error.as_deref(), Some("cancelled by you"));

        let done = run_with_status(&mut library, RunStatus::Completed);
        let refused = discard_run(&mut library, done);
        assert!(
            matches!(refused, Err(PersonalizeError::Invalid(_))),
            "{refused:?}"
        );
        assert_eq!(library.run(done).expect("run").status, RunStatus::Completed);
        assert!(discard_run(&mut library, 999).is_err(), "no such run");
    }
}
