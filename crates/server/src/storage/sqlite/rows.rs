//! Reading rows: the column lists the queries select, and the functions
//! that turn a row into a record; the event journal's insert.

use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};

use super::Result;
use crate::storage::{
    DeviceRecord, FederationRecord, GlobalVersion, NewEvent, RoundOutcome, RoundSummary,
    StorageError,
};
use hearth_fed::Stage;

pub(super) const FEDERATION_COLUMNS: &str = "SELECT id, config_json, config_sha256, created_at_ms, \
     updated_at_ms, gathering_since_ms FROM federations";
pub(super) const DEVICE_COLUMNS: &str = "SELECT id, federation_id, public_key, enrolled_at_ms, \
     last_checkin_ms, last_eligible_ms, revoked_at_ms FROM devices";
pub(super) const SUMMARY_COLUMNS: &str = "SELECT r.federation_id, r.round, r.stage, r.version, \
     (SELECT count(*) FROM round_members m \
      WHERE m.federation_id = r.federation_id AND m.round = r.round), \
     r.opened_at_ms, r.stage_deadline_ms, r.updated_at_ms, r.outcome, r.outcome_detail, \
     r.closed_at_ms FROM rounds r";
pub(super) const GLOBAL_COLUMNS: &str = "SELECT federation_id, version, round, sha256, length(adapter), \
     metadata_json, published_at_ms FROM global_versions";
pub(super) const GLOBAL_COLUMNS_WITH_ADAPTER: &str = "SELECT federation_id, version, round, sha256, \
     length(adapter), metadata_json, published_at_ms, adapter FROM global_versions";

pub(super) fn federation_row(row: &Row<'_>) -> rusqlite::Result<FederationRecord> {
    Ok(FederationRecord {
        id: row.get(0)?,
        config_json: row.get(1)?,
        config_sha256: row.get(2)?,
        created_at_ms: row.get(3)?,
        updated_at_ms: row.get(4)?,
        gathering_since_ms: row.get(5)?,
    })
}

pub(super) fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: row.get(0)?,
        federation_id: row.get(1)?,
        public_key: row.get(2)?,
        enrolled_at_ms: row.get(3)?,
        last_checkin_ms: row.get(4)?,
        last_eligible_ms: row.get(5)?,
        revoked_at_ms: row.get(6)?,
    })
}

pub(super) fn summary_row(row: &Row<'_>) -> rusqlite::Result<RoundSummary> {
    let outcome = match row.get_ref(8)?.as_str_or_null()? {
        None => None,
        Some(kind) => {
            let detail: String = row.get::<_, Option<String>>(9)?.unwrap_or_default();
            let at_ms: u64 = row.get(10)?;
            Some(match kind {
                "published" => RoundOutcome::Published { detail, at_ms },
                _ => RoundOutcome::Aborted { detail, at_ms },
            })
        }
    };
    Ok(RoundSummary {
        federation_id: row.get(0)?,
        round: row.get(1)?,
        stage: stage_at(row, 2)?,
        version: row.get(3)?,
        cohort_size: row.get(4)?,
        opened_at_ms: row.get(5)?,
        stage_deadline_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        outcome,
    })
}

pub(super) fn global_row(row: &Row<'_>) -> rusqlite::Result<GlobalVersion> {
    Ok(GlobalVersion {
        federation_id: row.get(0)?,
        version: row.get(1)?,
        round: row.get(2)?,
        sha256: row.get(3)?,
        size_bytes: row.get(4)?,
        metadata: json_at(row, 5)?,
        published_at_ms: row.get(6)?,
    })
}

/// A round's stored stage: always a live one (a round that ended keeps the
/// stage it ended in, beside its outcome).
pub(super) fn stage_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Stage> {
    let text: String = row.get(idx)?;
    Stage::parse(&text).filter(|s| s.is_live()).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("unknown round stage {text:?}").into(),
        )
    })
}

pub(super) fn json_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(super) fn log_event(conn: &Connection, event: &NewEvent) -> Result<u64> {
    conn.prepare_cached(
        "INSERT INTO events (at_ms, federation_id, device_id, round, kind, detail_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        event.at_ms,
        event.federation_id,
        event.device_id,
        event.round,
        event.kind,
        event.detail.to_string()
    ])?;
    u64::try_from(conn.last_insert_rowid())
        .map_err(|_| StorageError::Corrupt("negative event sequence".into()))
}

pub(super) fn event(kind: &str, at_ms: u64, federation_id: &str) -> NewEvent {
    NewEvent {
        at_ms,
        federation_id: Some(federation_id.to_owned()),
        device_id: None,
        round: None,
        kind: kind.to_owned(),
        detail: serde_json::Value::Object(Default::default()),
    }
}
