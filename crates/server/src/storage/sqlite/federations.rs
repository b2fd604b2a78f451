//! Federations, invites and devices: configuration sync, enrolment,
//! revocation, each change with its log entry in the same transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use hearth_ledger::{Hash, LogEntry};

use super::Result;
use crate::storage::conflict_on_constraint;
use crate::storage::log as tlog;
use crate::storage::{
    DeviceRecord, Enrolment, FederationRecord, FederationSync, InviteRefusal, NewInvite,
    StorageError,
};

use super::rows::{
    DEVICE_COLUMNS, FEDERATION_COLUMNS, device_row, event, federation_row, log_event,
};

pub(super) fn federation(conn: &Connection, id: &str) -> Result<Option<FederationRecord>> {
    Ok(conn
        .prepare_cached(&format!("{FEDERATION_COLUMNS} WHERE id = ?1"))?
        .query_row([id], federation_row)
        .optional()?)
}

pub(super) fn sync_federation(
    conn: &mut Connection,
    sync: FederationSync,
) -> Result<FederationRecord> {
    let hash: [u8; 32] = Sha256::digest(sync.config_json.as_bytes()).into();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<[u8; 32]> = tx
        .query_row(
            "SELECT config_sha256 FROM federations WHERE id = ?1",
            [&sync.id],
            |row| row.get(0),
        )
        .optional()?;
    let created = match existing {
        None => {
            tx.execute(
                "INSERT INTO federations (id, config_json, config_sha256, created_at_ms, \
                 updated_at_ms, gathering_since_ms) VALUES (?1, ?2, ?3, ?4, ?4, ?4)",
                params![sync.id, sync.config_json, hash, sync.at_ms],
            )?;
            Some(true)
        }
        Some(old) if old != hash => {
            tx.execute(
                "UPDATE federations SET config_json = ?2, config_sha256 = ?3, updated_at_ms = ?4 \
                 WHERE id = ?1",
                params![sync.id, sync.config_json, hash, sync.at_ms],
            )?;
            Some(false)
        }
        Some(_) => None,
    };
    if let Some(created) = created {
        let logged = tlog::append_entry(
            &tx,
            &LogEntry::FederationConfig {
                federation: sync.id.clone(),
                config_sha256: Hash::from_bytes(hash),
            },
            sync.at_ms,
        )?;
        let mut e = event("federation_configured", sync.at_ms, &sync.id);
        e.detail = serde_json::json!({
            "created": created,
            "config_sha256": hex::encode(hash),
            "log_index": logged.index,
        });
        log_event(&tx, &e)?;
    }
    let record = federation(&tx, &sync.id)?
        .ok_or_else(|| StorageError::NotFound(format!("federation {}", sync.id)))?;
    tx.commit()?;
    Ok(record)
}

pub(super) fn create_invite(conn: &mut Connection, invite: NewInvite) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if federation(&tx, &invite.federation_id)?.is_none() {
        return Err(StorageError::NotFound(format!(
            "federation {}",
            invite.federation_id
        )));
    }
    tx.execute(
        "INSERT INTO invites (token_sha256, federation_id, created_at_ms, expires_at_ms) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            invite.token_sha256,
            invite.federation_id,
            invite.created_at_ms,
            invite.expires_at_ms
        ],
    )
    .map_err(conflict_on_constraint("invite token"))?;
    let mut e = event(
        "invite_created",
        invite.created_at_ms,
        &invite.federation_id,
    );
    e.detail = serde_json::json!({ "expires_at_ms": invite.expires_at_ms });
    log_event(&tx, &e)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn enrol(conn: &mut Connection, enrolment: Enrolment) -> Result<DeviceRecord> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let invite: Option<(String, u64, Option<u64>)> = tx
        .query_row(
            "SELECT federation_id, expires_at_ms, used_at_ms FROM invites WHERE token_sha256 = ?1",
            [enrolment.token_sha256],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let federation_id = match invite {
        None => return Err(StorageError::InviteRefused(InviteRefusal::Unknown)),
        Some((_, _, Some(_))) => return Err(StorageError::InviteRefused(InviteRefusal::Used)),
        Some((_, expires, None)) if expires <= enrolment.at_ms => {
            return Err(StorageError::InviteRefused(InviteRefusal::Expired));
        }
        Some((federation_id, _, None)) => federation_id,
    };
    let taken: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE federation_id = ?1 AND public_key = ?2)",
        params![federation_id, enrolment.public_key],
        |row| row.get(0),
    )?;
    if taken {
        return Err(StorageError::KeyAlreadyEnrolled);
    }
    tx.execute(
        "INSERT INTO devices (id, federation_id, public_key, enrolled_at_ms) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            enrolment.device_id,
            federation_id,
            enrolment.public_key,
            enrolment.at_ms
        ],
    )
    .map_err(conflict_on_constraint("device id"))?;
    tx.execute(
        "UPDATE invites SET used_at_ms = ?2, device_id = ?3 \
         WHERE token_sha256 = ?1 AND used_at_ms IS NULL",
        params![enrolment.token_sha256, enrolment.at_ms, enrolment.device_id],
    )?;
    // The device and its key are public from now on: in the log, in the
    // same transaction (a device is enrolled if and only if it is logged).
    let logged = tlog::append_entry(
        &tx,
        &LogEntry::DeviceEnrolled {
            federation: federation_id.clone(),
            device: enrolment.device_id.clone(),
            public_key: enrolment.public_key,
        },
        enrolment.at_ms,
    )?;
    let mut e = event("device_enrolled", enrolment.at_ms, &federation_id);
    e.device_id = Some(enrolment.device_id.clone());
    e.detail = serde_json::json!({
        "public_key": hex::encode(enrolment.public_key),
        "log_index": logged.index,
    });
    log_event(&tx, &e)?;
    let record = device(&tx, &enrolment.device_id)?
        .ok_or_else(|| StorageError::NotFound(format!("device {}", enrolment.device_id)))?;
    tx.commit()?;
    Ok(record)
}

pub(super) fn device(conn: &Connection, id: &str) -> Result<Option<DeviceRecord>> {
    Ok(conn
        .prepare_cached(&format!("{DEVICE_COLUMNS} WHERE id = ?1"))?
        .query_row([id], device_row)
        .optional()?)
}

pub(super) fn revoke_device(
    conn: &mut Connection,
    id: &str,
    at_ms: u64,
) -> Result<Option<DeviceRecord>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.execute(
        "UPDATE devices SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
        params![id, at_ms],
    )?;
    let record = device(&tx, id)?;
    if let (1, Some(record)) = (changed, &record) {
        let logged = tlog::append_entry(
            &tx,
            &LogEntry::DeviceRevoked {
                federation: record.federation_id.clone(),
                device: record.id.clone(),
            },
            at_ms,
        )?;
        let mut e = event("device_revoked", at_ms, &record.federation_id);
        e.device_id = Some(record.id.clone());
        e.detail = serde_json::json!({ "log_index": logged.index });
        log_event(&tx, &e)?;
    }
    tx.commit()?;
    Ok(record)
}
