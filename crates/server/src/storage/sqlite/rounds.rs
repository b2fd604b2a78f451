//! Rounds: opening, the journal of round states (compare-and-swap on the
//! version), upload commitments, closing and aborting.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use hearth_ledger::{Hash, LogEntry, leaf_hash};

use super::Result;
use crate::storage::conflict_on_constraint;
use crate::storage::log as tlog;
use crate::storage::{
    CommitmentReceipt, NewRound, RoundAbort, RoundRecord, RoundSummary, RoundUpdate, StorageError,
    UploadCommitment, event_kinds,
};

use super::rows::{SUMMARY_COLUMNS, event, log_event, summary_row};

pub(super) fn open_round(conn: &mut Connection, round: NewRound) -> Result<RoundRecord> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let in_flight: Option<u64> = tx
        .query_row(
            "SELECT round FROM rounds WHERE federation_id = ?1 AND outcome IS NULL",
            [&round.federation_id],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(open) = in_flight {
        return Err(StorageError::Conflict(format!(
            "federation {} already has round {open} in flight",
            round.federation_id
        )));
    }
    tx.execute(
        "INSERT INTO rounds (federation_id, round, stage, state, version, opened_at_ms, \
         stage_deadline_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?5)",
        params![
            round.federation_id,
            round.round,
            round.stage.as_str(),
            Vec::<u8>::new(),
            round.opened_at_ms,
            round.stage_deadline_ms
        ],
    )
    .map_err(conflict_on_constraint("round number"))?;
    tx.execute(
        "INSERT INTO round_states (federation_id, round, state) VALUES (?1, ?2, ?3)",
        params![round.federation_id, round.round, round.state],
    )?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO round_members (federation_id, round, device_id) VALUES (?1, ?2, ?3)",
        )?;
        for member in &round.cohort {
            insert.execute(params![round.federation_id, round.round, member])?;
        }
    }
    // The parameters are public before any device can be sent them: the
    // round exists (and can be polled) only from this commit on.
    let logged = match &round.parameters {
        Some(parameters) => Some(
            tlog::append_entry(
                &tx,
                &LogEntry::RoundOpened {
                    federation: round.federation_id.clone(),
                    round: round.round,
                    parameters_sha256: Hash::from_bytes(parameters.sha256),
                    parameters: parameters.encoding.clone(),
                },
                round.opened_at_ms,
            )?
            .index,
        ),
        None => None,
    };
    let mut e = event("round_opened", round.opened_at_ms, &round.federation_id);
    e.round = Some(round.round);
    e.detail = serde_json::json!({
        "cohort_size": round.cohort.len(),
        "stage": round.stage.as_str(),
        "stage_deadline_ms": round.stage_deadline_ms,
        "parameters_sha256": round.parameters.as_ref().map(|p| hex::encode(p.sha256)),
        "log_index": logged,
    });
    log_event(&tx, &e)?;
    let record = load_round(&tx, &round.federation_id, round.round)?.ok_or_else(|| {
        StorageError::NotFound(format!("round {} of {}", round.round, round.federation_id))
    })?;
    tx.commit()?;
    Ok(record)
}

pub(super) fn load_round(
    conn: &Connection,
    federation_id: &str,
    round: u64,
) -> Result<Option<RoundRecord>> {
    let found = conn
        .prepare_cached(&format!(
            "{SUMMARY_COLUMNS} WHERE r.federation_id = ?1 AND r.round = ?2"
        ))?
        .query_row(params![federation_id, round], summary_row)
        .optional()?;
    let Some(summary) = found else {
        return Ok(None);
    };
    let state: Vec<u8> = conn
        .prepare_cached("SELECT state FROM round_states WHERE federation_id = ?1 AND round = ?2")?
        .query_row(params![federation_id, round], |row| row.get(0))
        .optional()?
        .unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT device_id FROM round_members WHERE federation_id = ?1 AND round = ?2 \
         ORDER BY device_id",
    )?;
    let cohort = stmt
        .query_map(params![federation_id, round], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT entry FROM round_journal WHERE federation_id = ?1 AND round = ?2 \
         ORDER BY version",
    )?;
    let journal = stmt
        .query_map(params![federation_id, round], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(RoundRecord {
        summary,
        state,
        journal,
        cohort,
    }))
}

/// Says why a compare-and-swap on a round matched no row.
pub(super) fn cas_failure(
    conn: &Connection,
    federation_id: &str,
    round: u64,
    expected: u64,
) -> StorageError {
    let current: rusqlite::Result<Option<(u64, Option<String>)>> = conn
        .query_row(
            "SELECT version, outcome FROM rounds WHERE federation_id = ?1 AND round = ?2",
            params![federation_id, round],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional();
    match current {
        Err(e) => StorageError::Sqlite(e),
        Ok(None) => StorageError::NotFound(format!("round {round} of {federation_id}")),
        Ok(Some((_, Some(outcome)))) => StorageError::Conflict(format!(
            "round {round} of {federation_id} is already {outcome}"
        )),
        Ok(Some((version, None))) => StorageError::Conflict(format!(
            "round {round} of {federation_id} is at version {version}, not {expected}"
        )),
    }
}

pub(super) fn save_round(conn: &mut Connection, update: RoundUpdate) -> Result<RoundSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let summary = save_round_in(&tx, update)?;
    tx.commit()?;
    Ok(summary)
}

/// [`save_round`] inside the caller's transaction.
pub(super) fn save_round_in(tx: &Connection, update: RoundUpdate) -> Result<RoundSummary> {
    let previous: Option<String> = tx
        .query_row(
            "SELECT stage FROM rounds WHERE federation_id = ?1 AND round = ?2",
            params![update.federation_id, update.round],
            |row| row.get(0),
        )
        .optional()?;
    let changed = tx.execute(
        "UPDATE rounds SET stage = ?4, version = version + 1, \
         stage_deadline_ms = ?5, updated_at_ms = ?6 \
         WHERE federation_id = ?1 AND round = ?2 AND version = ?3 AND outcome IS NULL",
        params![
            update.federation_id,
            update.round,
            update.expected_version,
            update.stage.as_str(),
            update.stage_deadline_ms,
            update.at_ms
        ],
    )?;
    if changed == 0 {
        return Err(cas_failure(
            tx,
            &update.federation_id,
            update.round,
            update.expected_version,
        ));
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO round_states (federation_id, round, state) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![update.federation_id, update.round, update.state])?;
    // The state is whole again: nothing to replay onto it.
    clear_journal(tx, &update.federation_id, update.round)?;
    if previous.as_deref() != Some(update.stage.as_str()) {
        let mut e = event("round_stage", update.at_ms, &update.federation_id);
        e.round = Some(update.round);
        e.detail = serde_json::json!({
            "from": previous,
            "to": update.stage.as_str(),
            "stage_deadline_ms": update.stage_deadline_ms,
        });
        log_event(tx, &e)?;
    }
    round_summary(tx, &update.federation_id, update.round)
}

pub(super) fn clear_journal(tx: &Connection, federation_id: &str, round: u64) -> Result<()> {
    tx.prepare_cached("DELETE FROM round_journal WHERE federation_id = ?1 AND round = ?2")?
        .execute(params![federation_id, round])?;
    Ok(())
}

/// Appends `update.state` to the round's journal (compare-and-swap on its
/// version, in its current stage), with the upload's commitment when one
/// is given, in one transaction.
pub(super) fn append_round_entry(
    conn: &mut Connection,
    update: RoundUpdate,
    commitment: Option<UploadCommitment>,
) -> Result<RoundSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let summary = match commitment {
        Some(c) => commitment_in(&tx, c, Some(JournalWrite::Append(update)))?
            .round
            .ok_or_else(|| StorageError::Corrupt("an appended entry returned no round".into()))?,
        None => append_in(&tx, update)?,
    };
    tx.commit()?;
    Ok(summary)
}

pub(super) fn append_in(tx: &Connection, update: RoundUpdate) -> Result<RoundSummary> {
    let changed = tx.execute(
        "UPDATE rounds SET version = version + 1, stage_deadline_ms = ?5, updated_at_ms = ?6 \
         WHERE federation_id = ?1 AND round = ?2 AND version = ?3 AND stage = ?4 \
         AND outcome IS NULL",
        params![
            update.federation_id,
            update.round,
            update.expected_version,
            update.stage.as_str(),
            update.stage_deadline_ms,
            update.at_ms
        ],
    )?;
    if changed == 0 {
        return Err(cas_failure(
            tx,
            &update.federation_id,
            update.round,
            update.expected_version,
        ));
    }
    tx.prepare_cached(
        "INSERT INTO round_journal (federation_id, round, version, entry) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        update.federation_id,
        update.round,
        update.expected_version + 1,
        update.state
    ])?;
    round_summary(tx, &update.federation_id, update.round)
}

/// How a commitment's round changes with it.
pub(super) enum JournalWrite {
    /// The state is replaced whole.
    Replace(RoundUpdate),
    /// An entry is appended to the journal.
    Append(RoundUpdate),
}

pub(super) fn record_upload_commitment(
    conn: &mut Connection,
    commitment: UploadCommitment,
    update: Option<RoundUpdate>,
) -> Result<CommitmentReceipt> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let receipt = commitment_in(&tx, commitment, update.map(JournalWrite::Replace))?;
    tx.commit()?;
    Ok(receipt)
}

pub(super) fn commitment_in(
    tx: &Connection,
    commitment: UploadCommitment,
    update: Option<JournalWrite>,
) -> Result<CommitmentReceipt> {
    let UploadCommitment {
        federation_id,
        round,
        device_id,
        upload_sha256,
        at_ms,
    } = commitment;
    if let Some(JournalWrite::Replace(u) | JournalWrite::Append(u)) = &update
        && (u.federation_id != federation_id || u.round != round)
    {
        return Err(StorageError::Invalid(format!(
            "commitment for round {round} of {federation_id} came with an update of \
             round {} of {}",
            u.round, u.federation_id
        )));
    }
    let outcome: Option<Option<String>> = tx
        .query_row(
            "SELECT outcome FROM rounds WHERE federation_id = ?1 AND round = ?2",
            params![federation_id, round],
            |row| row.get(0),
        )
        .optional()?;
    match outcome {
        None => {
            return Err(StorageError::NotFound(format!(
                "round {round} of {federation_id}"
            )));
        }
        Some(Some(outcome)) => {
            return Err(StorageError::Conflict(format!(
                "round {round} of {federation_id} is already {outcome}"
            )));
        }
        Some(None) => {}
    }
    let member: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM round_members \
         WHERE federation_id = ?1 AND round = ?2 AND device_id = ?3)",
        params![federation_id, round, device_id],
        |row| row.get(0),
    )?;
    if !member {
        return Err(StorageError::Conflict(format!(
            "device {device_id} is not in the cohort of round {round} of {federation_id}"
        )));
    }
    let entry = LogEntry::RoundParticipation {
        federation: federation_id.clone(),
        round,
        device: device_id.clone(),
        upload_sha256: Hash::from_bytes(upload_sha256),
    };
    let wanted = entry.leaf_hash();
    let (log_index, appended) =
        match tlog::existing_commitment(tx, &federation_id, round, &device_id)? {
            Some((index, data)) if leaf_hash(&data) == wanted => (index, false),
            Some(_) => {
                return Err(StorageError::Conflict(format!(
                    "device {device_id} already committed to another upload in round {round} \
                     of {federation_id}"
                )));
            }
            None => (tlog::append_entry(tx, &entry, at_ms)?.index, true),
        };
    let round_summary = match update {
        None => None,
        Some(JournalWrite::Replace(u)) => Some(save_round_in(tx, u)?),
        Some(JournalWrite::Append(u)) => Some(append_in(tx, u)?),
    };
    if appended {
        let mut e = event(event_kinds::UPLOAD_ACCEPTED, at_ms, &federation_id);
        e.round = Some(round);
        e.device_id = Some(device_id);
        e.detail = serde_json::json!({
            "upload_sha256": hex::encode(upload_sha256),
            "log_index": log_index,
        });
        log_event(tx, &e)?;
    }
    Ok(CommitmentReceipt {
        log_index,
        leaf_hash: wanted,
        appended,
        round: round_summary,
    })
}

pub(super) fn round_summary(
    conn: &Connection,
    federation_id: &str,
    round: u64,
) -> Result<RoundSummary> {
    conn.prepare_cached(&format!(
        "{SUMMARY_COLUMNS} WHERE r.federation_id = ?1 AND r.round = ?2"
    ))?
    .query_row(params![federation_id, round], summary_row)
    .optional()?
    .ok_or_else(|| StorageError::NotFound(format!("round {round} of {federation_id}")))
}

/// Marks a round closed (CAS on its version) and starts the federation's
/// next gathering period; part of the caller's transaction.
pub(super) fn close_round(
    tx: &Connection,
    federation_id: &str,
    round: u64,
    expected_version: u64,
    outcome: &str,
    detail: &str,
    at_ms: u64,
) -> Result<()> {
    let changed = tx.execute(
        "UPDATE rounds SET outcome = ?4, outcome_detail = ?5, closed_at_ms = ?6, \
         updated_at_ms = ?6, version = version + 1 \
         WHERE federation_id = ?1 AND round = ?2 AND version = ?3 AND outcome IS NULL",
        params![
            federation_id,
            round,
            expected_version,
            outcome,
            detail,
            at_ms
        ],
    )?;
    if changed == 0 {
        return Err(cas_failure(tx, federation_id, round, expected_version));
    }
    clear_journal(tx, federation_id, round)?;
    tx.execute(
        "UPDATE federations SET gathering_since_ms = ?2 WHERE id = ?1",
        params![federation_id, at_ms],
    )?;
    Ok(())
}

pub(super) fn abort_round(conn: &mut Connection, abort: RoundAbort) -> Result<RoundSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    close_round(
        &tx,
        &abort.federation_id,
        abort.round,
        abort.expected_version,
        "aborted",
        &abort.reason,
        abort.at_ms,
    )?;
    // Nothing of an aborted round is aggregated: it has no contributors.
    let logged = tlog::append_entry(
        &tx,
        &LogEntry::RoundOutcome {
            federation: abort.federation_id.clone(),
            round: abort.round,
            contributors: 0,
            aborted: true,
        },
        abort.at_ms,
    )?;
    let mut e = event("round_aborted", abort.at_ms, &abort.federation_id);
    e.round = Some(abort.round);
    e.detail = serde_json::json!({ "reason": abort.reason, "log_index": logged.index });
    log_event(&tx, &e)?;
    let mut e = event(
        event_kinds::ROUND_OUTCOME,
        abort.at_ms,
        &abort.federation_id,
    );
    e.round = Some(abort.round);
    e.detail = serde_json::json!({
        "contributors": 0,
        "aborted": true,
        "reason": abort.reason,
        "log_index": logged.index,
    });
    log_event(&tx, &e)?;
    let summary = round_summary(&tx, &abort.federation_id, abort.round)?;
    tx.commit()?;
    Ok(summary)
}
