//! Publishing a round's global adapter, with its `adapter_published` log
//! entry and the privacy it spent.

use rusqlite::{Connection, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use hearth_ledger::{Hash, LogEntry};

use super::Result;
use crate::storage::conflict_on_constraint;
use crate::storage::log as tlog;
use crate::storage::{GlobalVersion, Publication, StorageError, event_kinds};

use super::rounds::close_round;
use super::rows::{GLOBAL_COLUMNS, event, global_row, log_event};

/// The epsilon an `adapter_published` entry records for a publication's:
/// `+∞` for `None` (the round added no noise, so there is no bound; a
/// finite stand-in such as 0 would read as a guarantee), the value itself
/// otherwise, with -0 as 0 (the one encoding of zero the log accepts). A
/// given epsilon must be finite and at least 0: `+∞` is reserved for "no
/// noise", and NaN or a negative value is an accounting bug to refuse, not
/// to log.
pub(super) fn logged_epsilon(epsilon: Option<f64>) -> Result<f64> {
    match epsilon {
        None => Ok(f64::INFINITY),
        Some(e) if e.is_finite() && e >= 0.0 => Ok(e + 0.0),
        Some(e) => Err(StorageError::Invalid(format!(
            "epsilon {e} is not a finite value of at least 0 (a round without noise has none)"
        ))),
    }
}

pub(super) fn publish_global(
    conn: &mut Connection,
    publication: Publication,
) -> Result<GlobalVersion> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: u64 = tx.query_row(
        "SELECT coalesce(max(version), 0) + 1 FROM global_versions WHERE federation_id = ?1",
        [&publication.federation_id],
        |row| row.get(0),
    )?;
    if publication.version != version {
        return Err(StorageError::Conflict(format!(
            "federation {} publishes version {version} next, not {}",
            publication.federation_id, publication.version
        )));
    }
    close_round(
        &tx,
        &publication.federation_id,
        publication.round,
        publication.expected_version,
        "published",
        &format!("global version {version}"),
        publication.at_ms,
    )?;
    let sha256: [u8; 32] = Sha256::digest(&publication.adapter).into();
    let outcome = tlog::append_entry(
        &tx,
        &LogEntry::RoundOutcome {
            federation: publication.federation_id.clone(),
            round: publication.round,
            contributors: publication.contributors,
            aborted: false,
        },
        publication.at_ms,
    )?;
    let logged_adapter = tlog::append_entry(
        &tx,
        &LogEntry::AdapterPublished {
            federation: publication.federation_id.clone(),
            version,
            round: publication.round,
            adapter_sha256: Hash::from_bytes(sha256),
            contributors: publication.contributors,
            epsilon: logged_epsilon(publication.epsilon)?,
            // `+ 0.0` turns -0 into 0, the one encoding of zero the log
            // accepts; NaN, infinities and values outside [0, 1] are
            // refused by `append_entry`.
            delta: publication.delta + 0.0,
        },
        publication.at_ms,
    )?;
    tx.execute(
        "INSERT INTO global_versions (federation_id, version, round, sha256, adapter, \
         metadata_json, published_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            publication.federation_id,
            version,
            publication.round,
            sha256,
            publication.adapter,
            publication.metadata.to_string(),
            publication.at_ms
        ],
    )
    .map_err(conflict_on_constraint("global version"))?;
    let mut e = event(
        event_kinds::GLOBAL_PUBLISHED,
        publication.at_ms,
        &publication.federation_id,
    );
    e.round = Some(publication.round);
    e.detail = serde_json::json!({
        "version": version,
        "round": publication.round,
        "sha256": hex::encode(sha256),
        "size_bytes": publication.adapter.len(),
        "contributors": publication.contributors,
        "epsilon": publication.epsilon,
        "delta": publication.delta,
        "log_index": logged_adapter.index,
        "outcome_log_index": outcome.index,
    });
    log_event(&tx, &e)?;
    let mut e = event(
        event_kinds::ROUND_OUTCOME,
        publication.at_ms,
        &publication.federation_id,
    );
    e.round = Some(publication.round);
    e.detail = serde_json::json!({
        "contributors": publication.contributors,
        "aborted": false,
        "version": version,
        "log_index": outcome.index,
    });
    log_event(&tx, &e)?;
    let published = tx
        .prepare_cached(&format!(
            "{GLOBAL_COLUMNS} WHERE federation_id = ?1 AND version = ?2"
        ))?
        .query_row(params![publication.federation_id, version], global_row)?;
    tx.commit()?;
    Ok(published)
}
