//! The embedded default: one SQLite file in the data folder.
//!
//! One connection behind a mutex, used only on tokio's blocking pool, never
//! across an `.await`. SQLite serializes writers anyway, and every call is a
//! short transaction, so one connection keeps ordering simple without
//! costing throughput a single machine could use. Writes begin `IMMEDIATE`
//! so a transaction that reads then writes never deadlocks against another
//! process (the operator's CLI) holding the same file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use sha2::{Digest, Sha256};

use hearth_ledger::{Hash, LogEntry, SignedTreeHead, leaf_hash};

use super::log as tlog;
use super::{
    Checkin, CohortMember, CommitmentReceipt, DeviceCounts, DeviceRecord, Enrolment, Event,
    FederationRecord, FederationSync, GlobalVersion, GossipCommitment, GossipHead, InviteRefusal,
    LogInclusion, LogLeaf, NewEvent, NewInvite, NewRound, Publication, RoundAbort, RoundOutcome,
    RoundRecord, RoundSummary, RoundUpdate, Storage, StorageError, StorageFuture, UploadCommitment,
    event_kinds,
};
use crate::log::LogKey;
use crate::rounds::Stage;

/// The database file inside the data folder.
pub const DATABASE_FILE: &str = "hearth-server.sqlite3";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every schema change, oldest first. Never edit a released migration; add
/// a new one. The schema version (`user_version`) is the count applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/01-server.sql"),
    include_str!("../../migrations/02-log.sql"),
    include_str!("../../migrations/03-log-devices.sql"),
    include_str!("../../migrations/04-gossip.sql"),
    include_str!("../../migrations/05-round-journal.sql"),
    include_str!("../../migrations/06-gossip-commitments.sql"),
];

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect())
}

type Result<T> = std::result::Result<T, StorageError>;

/// [`Storage`] in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database in `dir`, bringing its schema
    /// up to date in one transaction.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path)?;
        Self::prepare(conn, Some(path))
    }

    /// A private database in memory (tests, simulations).
    pub fn open_in_memory() -> Result<Self> {
        Self::prepare(Connection::open_in_memory()?, None)
    }

    fn prepare(mut conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        // Pragmas must run outside any transaction.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if path.is_some() {
            // WAL: the operator's CLI reads while the server writes;
            // NORMAL sync is durable against process kills.
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let found: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > MIGRATIONS.len() {
            return Err(StorageError::NewerSchema {
                path: path.unwrap_or_default(),
                found,
                known: MIGRATIONS.len(),
            });
        }
        migrations().to_latest(&mut conn)?;
        tlog::backfill_federations(&mut conn, crate::now_ms())?;
        tlog::backfill_devices(&mut conn, crate::now_ms())?;
        Ok(SqliteStorage {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the calling thread (blocking): for
    /// callers outside the async runtime, such as benches.
    pub(super) fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }

    /// Runs `f` on the connection on the blocking pool.
    fn call<T, F>(&self, f: F) -> StorageFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic mid-call leaves no open transaction behind (they
                // roll back on drop), so a poisoned lock is still usable.
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut conn)
            })
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
        })
    }
}

impl Storage for SqliteStorage {
    fn ping(&self) -> StorageFuture<'_, ()> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn sync_federation(&self, sync: FederationSync) -> StorageFuture<'_, FederationRecord> {
        self.call(move |conn| sync_federation(conn, sync))
    }

    fn federation(&self, id: String) -> StorageFuture<'_, Option<FederationRecord>> {
        self.call(move |conn| federation(conn, &id))
    }

    fn federations(&self) -> StorageFuture<'_, Vec<FederationRecord>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(&format!("{FEDERATION_COLUMNS} ORDER BY id"))?;
            let rows = stmt.query_map([], federation_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn create_invite(&self, invite: NewInvite) -> StorageFuture<'_, ()> {
        self.call(move |conn| create_invite(conn, invite))
    }

    fn enrol(&self, enrolment: Enrolment) -> StorageFuture<'_, DeviceRecord> {
        self.call(move |conn| enrol(conn, enrolment))
    }

    fn device(&self, id: String) -> StorageFuture<'_, Option<DeviceRecord>> {
        self.call(move |conn| device(conn, &id))
    }

    fn devices(&self, federation_id: Option<String>) -> StorageFuture<'_, Vec<DeviceRecord>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{DEVICE_COLUMNS} WHERE ?1 IS NULL OR federation_id = ?1 \
                 ORDER BY enrolled_at_ms, id"
            ))?;
            let rows = stmt.query_map([federation_id], device_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn revoke_device(&self, id: String, at_ms: u64) -> StorageFuture<'_, Option<DeviceRecord>> {
        self.call(move |conn| revoke_device(conn, &id, at_ms))
    }

    fn record_checkin(&self, checkin: Checkin) -> StorageFuture<'_, ()> {
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE devices SET last_checkin_ms = ?1, \
                     last_eligible_ms = CASE WHEN ?2 THEN ?1 ELSE last_eligible_ms END \
                     WHERE id = ?3",
                )?
                .execute(params![checkin.at_ms, checkin.eligible, checkin.device_id])?;
            if changed == 0 {
                return Err(StorageError::NotFound(format!(
                    "device {}",
                    checkin.device_id
                )));
            }
            Ok(())
        })
    }

    fn device_counts(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, DeviceCounts> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(last_eligible_ms >= ?2), 0) FROM devices \
                     WHERE federation_id = ?1 AND revoked_at_ms IS NULL",
                )?
                .query_row(params![federation_id, eligible_since_ms], |row| {
                    Ok(DeviceCounts {
                        active: row.get(0)?,
                        eligible: row.get(1)?,
                    })
                })?)
        })
    }

    fn eligible_devices(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, Vec<CohortMember>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, public_key FROM devices WHERE federation_id = ?1 \
                 AND revoked_at_ms IS NULL AND last_eligible_ms >= ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![federation_id, eligible_since_ms], |row| {
                Ok(CohortMember {
                    device_id: row.get(0)?,
                    public_key: row.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn last_round_number(&self, federation_id: String) -> StorageFuture<'_, u64> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT coalesce(max(round), 0) FROM rounds WHERE federation_id = ?1",
                )?
                .query_row([federation_id], |row| row.get(0))?)
        })
    }

    fn open_round(&self, round: NewRound) -> StorageFuture<'_, RoundRecord> {
        self.call(move |conn| open_round(conn, round))
    }

    fn load_round(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<RoundRecord>> {
        self.call(move |conn| load_round(conn, &federation_id, round))
    }

    fn round_summary(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<RoundSummary>> {
        self.call(
            move |conn| match round_summary(conn, &federation_id, round) {
                Ok(summary) => Ok(Some(summary)),
                Err(StorageError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    fn round_in_flight(&self, federation_id: String) -> StorageFuture<'_, Option<RoundSummary>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{SUMMARY_COLUMNS} WHERE r.federation_id = ?1 AND r.outcome IS NULL"
                ))?
                .query_row([federation_id], summary_row)
                .optional()?)
        })
    }

    fn rounds_in_flight(&self) -> StorageFuture<'_, Vec<RoundSummary>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{SUMMARY_COLUMNS} WHERE r.outcome IS NULL ORDER BY r.federation_id"
            ))?;
            let rows = stmt.query_map([], summary_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn is_member(
        &self,
        federation_id: String,
        round: u64,
        device_id: String,
    ) -> StorageFuture<'_, bool> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM round_members \
                     WHERE federation_id = ?1 AND round = ?2 AND device_id = ?3)",
                )?
                .query_row(params![federation_id, round, device_id], |row| row.get(0))?)
        })
    }

    fn save_round(&self, update: RoundUpdate) -> StorageFuture<'_, RoundSummary> {
        self.call(move |conn| save_round(conn, update))
    }

    fn append_round_entry(
        &self,
        update: RoundUpdate,
        commitment: Option<UploadCommitment>,
    ) -> StorageFuture<'_, RoundSummary> {
        self.call(move |conn| append_round_entry(conn, update, commitment))
    }

    fn abort_round(&self, abort: RoundAbort) -> StorageFuture<'_, RoundSummary> {
        self.call(move |conn| abort_round(conn, abort))
    }

    fn publish_global(&self, publication: Publication) -> StorageFuture<'_, GlobalVersion> {
        self.call(move |conn| publish_global(conn, publication))
    }

    fn latest_global(&self, federation_id: String) -> StorageFuture<'_, Option<GlobalVersion>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{GLOBAL_COLUMNS} WHERE federation_id = ?1 ORDER BY version DESC LIMIT 1"
                ))?
                .query_row([federation_id], global_row)
                .optional()?)
        })
    }

    fn latest_global_adapter(
        &self,
        federation_id: String,
    ) -> StorageFuture<'_, Option<(GlobalVersion, Vec<u8>)>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{GLOBAL_COLUMNS_WITH_ADAPTER} WHERE federation_id = ?1 \
                     ORDER BY version DESC LIMIT 1"
                ))?
                .query_row([federation_id], |row| Ok((global_row(row)?, row.get(7)?)))
                .optional()?)
        })
    }

    fn global_by_round(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<GlobalVersion>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "{GLOBAL_COLUMNS} WHERE federation_id = ?1 AND round = ?2"
                ))?
                .query_row(params![federation_id, round], global_row)
                .optional()?)
        })
    }

    fn append_event(&self, event: NewEvent) -> StorageFuture<'_, u64> {
        self.call(move |conn| log_event(conn, &event))
    }

    fn record_upload_commitment(
        &self,
        commitment: UploadCommitment,
        update: Option<RoundUpdate>,
    ) -> StorageFuture<'_, CommitmentReceipt> {
        self.call(move |conn| record_upload_commitment(conn, commitment, update))
    }

    fn log_size(&self) -> StorageFuture<'_, u64> {
        self.call(|conn| tlog::log_size(conn))
    }

    fn signed_tree_head(&self, key: Arc<LogKey>, now_ms: u64) -> StorageFuture<'_, SignedTreeHead> {
        self.call(move |conn| tlog::signed_tree_head(conn, &key, now_ms))
    }

    fn log_inclusion_proof(&self, index: u64, size: u64) -> StorageFuture<'_, LogInclusion> {
        self.call(move |conn| tlog::inclusion(conn, index, size))
    }

    fn log_inclusion_proof_by_hash(
        &self,
        leaf_hash: Hash,
        size: u64,
    ) -> StorageFuture<'_, Option<LogInclusion>> {
        self.call(move |conn| tlog::inclusion_by_hash(conn, leaf_hash, size))
    }

    fn log_consistency_proof(&self, old: u64, new: u64) -> StorageFuture<'_, Vec<Hash>> {
        self.call(move |conn| tlog::consistency(conn, old, new))
    }

    fn log_entries(&self, start: u64, end: u64) -> StorageFuture<'_, Vec<LogLeaf>> {
        self.call(move |conn| tlog::entries(conn, start, end))
    }

    fn log_adapter_entry(
        &self,
        federation_id: String,
        version: u64,
        size: u64,
    ) -> StorageFuture<'_, Option<(LogLeaf, LogInclusion)>> {
        self.call(move |conn| tlog::adapter_entry(conn, &federation_id, version, size))
    }

    fn log_enrolment_entries(
        &self,
        federation_id: String,
        public_keys: Vec<[u8; 32]>,
        size: u64,
    ) -> StorageFuture<'_, Vec<(LogLeaf, LogInclusion)>> {
        self.call(move |conn| tlog::enrolment_entries(conn, &federation_id, &public_keys, size))
    }

    fn record_gossip_head(&self, head: GossipHead) -> StorageFuture<'_, bool> {
        self.call(move |conn| tlog::record_gossip_head(conn, &head))
    }

    fn gossip_heads(
        &self,
        federation_id: String,
        limit: u32,
    ) -> StorageFuture<'_, Vec<SignedTreeHead>> {
        self.call(move |conn| tlog::gossip_heads(conn, &federation_id, limit))
    }

    fn record_gossip_commitments(
        &self,
        commitments: Vec<GossipCommitment>,
    ) -> StorageFuture<'_, u32> {
        self.call(move |conn| super::commitments::record(conn, &commitments))
    }

    fn gossip_commitments(
        &self,
        federation_id: String,
        after: Option<(u64, String)>,
        limit: u32,
    ) -> StorageFuture<'_, Vec<GossipCommitment>> {
        self.call(move |conn| super::commitments::page(conn, &federation_id, after, limit))
    }

    fn events(&self, after_seq: u64, limit: u32) -> StorageFuture<'_, Vec<Event>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at_ms, federation_id, device_id, round, kind, detail_json \
                 FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_seq, limit], |row| {
                Ok(Event {
                    seq: row.get(0)?,
                    at_ms: row.get(1)?,
                    federation_id: row.get(2)?,
                    device_id: row.get(3)?,
                    round: row.get(4)?,
                    kind: row.get(5)?,
                    detail: json_at(row, 6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

const FEDERATION_COLUMNS: &str = "SELECT id, config_json, config_sha256, created_at_ms, \
     updated_at_ms, gathering_since_ms FROM federations";
const DEVICE_COLUMNS: &str = "SELECT id, federation_id, public_key, enrolled_at_ms, \
     last_checkin_ms, last_eligible_ms, revoked_at_ms FROM devices";
const SUMMARY_COLUMNS: &str = "SELECT r.federation_id, r.round, r.stage, r.version, \
     (SELECT count(*) FROM round_members m \
      WHERE m.federation_id = r.federation_id AND m.round = r.round), \
     r.opened_at_ms, r.stage_deadline_ms, r.updated_at_ms, r.outcome, r.outcome_detail, \
     r.closed_at_ms FROM rounds r";
const GLOBAL_COLUMNS: &str = "SELECT federation_id, version, round, sha256, length(adapter), \
     metadata_json, published_at_ms FROM global_versions";
const GLOBAL_COLUMNS_WITH_ADAPTER: &str = "SELECT federation_id, version, round, sha256, \
     length(adapter), metadata_json, published_at_ms, adapter FROM global_versions";

fn federation_row(row: &Row<'_>) -> rusqlite::Result<FederationRecord> {
    Ok(FederationRecord {
        id: row.get(0)?,
        config_json: row.get(1)?,
        config_sha256: row.get(2)?,
        created_at_ms: row.get(3)?,
        updated_at_ms: row.get(4)?,
        gathering_since_ms: row.get(5)?,
    })
}

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
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

fn summary_row(row: &Row<'_>) -> rusqlite::Result<RoundSummary> {
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

fn global_row(row: &Row<'_>) -> rusqlite::Result<GlobalVersion> {
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

fn stage_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Stage> {
    let text: String = row.get(idx)?;
    Stage::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("unknown round stage {text:?}").into(),
        )
    })
}

fn json_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Turns "a uniqueness rule refused this" into [`StorageError::Conflict`].
pub(super) fn conflict_on_constraint(
    what: &str,
) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == ErrorCode::ConstraintViolation =>
        {
            StorageError::Conflict(format!("{what}: {e}"))
        }
        _ => StorageError::Sqlite(e),
    }
}

fn log_event(conn: &Connection, event: &NewEvent) -> Result<u64> {
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

fn event(kind: &str, at_ms: u64, federation_id: &str) -> NewEvent {
    NewEvent {
        at_ms,
        federation_id: Some(federation_id.to_owned()),
        device_id: None,
        round: None,
        kind: kind.to_owned(),
        detail: serde_json::Value::Object(Default::default()),
    }
}

fn federation(conn: &Connection, id: &str) -> Result<Option<FederationRecord>> {
    Ok(conn
        .prepare_cached(&format!("{FEDERATION_COLUMNS} WHERE id = ?1"))?
        .query_row([id], federation_row)
        .optional()?)
}

fn sync_federation(conn: &mut Connection, sync: FederationSync) -> Result<FederationRecord> {
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

fn create_invite(conn: &mut Connection, invite: NewInvite) -> Result<()> {
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

fn enrol(conn: &mut Connection, enrolment: Enrolment) -> Result<DeviceRecord> {
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

fn device(conn: &Connection, id: &str) -> Result<Option<DeviceRecord>> {
    Ok(conn
        .prepare_cached(&format!("{DEVICE_COLUMNS} WHERE id = ?1"))?
        .query_row([id], device_row)
        .optional()?)
}

fn revoke_device(conn: &mut Connection, id: &str, at_ms: u64) -> Result<Option<DeviceRecord>> {
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

fn open_round(conn: &mut Connection, round: NewRound) -> Result<RoundRecord> {
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

fn load_round(conn: &Connection, federation_id: &str, round: u64) -> Result<Option<RoundRecord>> {
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
fn cas_failure(conn: &Connection, federation_id: &str, round: u64, expected: u64) -> StorageError {
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

fn save_round(conn: &mut Connection, update: RoundUpdate) -> Result<RoundSummary> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let summary = save_round_in(&tx, update)?;
    tx.commit()?;
    Ok(summary)
}

/// [`save_round`] inside the caller's transaction.
fn save_round_in(tx: &Connection, update: RoundUpdate) -> Result<RoundSummary> {
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

fn clear_journal(tx: &Connection, federation_id: &str, round: u64) -> Result<()> {
    tx.prepare_cached("DELETE FROM round_journal WHERE federation_id = ?1 AND round = ?2")?
        .execute(params![federation_id, round])?;
    Ok(())
}

/// Appends `update.state` to the round's journal (compare-and-swap on its
/// version, in its current stage), with the upload's commitment when one
/// is given, in one transaction.
fn append_round_entry(
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

fn append_in(tx: &Connection, update: RoundUpdate) -> Result<RoundSummary> {
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
enum JournalWrite {
    /// The state is replaced whole.
    Replace(RoundUpdate),
    /// An entry is appended to the journal.
    Append(RoundUpdate),
}

fn record_upload_commitment(
    conn: &mut Connection,
    commitment: UploadCommitment,
    update: Option<RoundUpdate>,
) -> Result<CommitmentReceipt> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let receipt = commitment_in(&tx, commitment, update.map(JournalWrite::Replace))?;
    tx.commit()?;
    Ok(receipt)
}

fn commitment_in(
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

fn round_summary(conn: &Connection, federation_id: &str, round: u64) -> Result<RoundSummary> {
    conn.prepare_cached(&format!(
        "{SUMMARY_COLUMNS} WHERE r.federation_id = ?1 AND r.round = ?2"
    ))?
    .query_row(params![federation_id, round], summary_row)
    .optional()?
    .ok_or_else(|| StorageError::NotFound(format!("round {round} of {federation_id}")))
}

/// Marks a round closed (CAS on its version) and starts the federation's
/// next gathering period; part of the caller's transaction.
fn close_round(
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

fn abort_round(conn: &mut Connection, abort: RoundAbort) -> Result<RoundSummary> {
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

/// The epsilon an `adapter_published` entry records for a publication's:
/// `+∞` for `None` (the round added no noise, so there is no bound; a
/// finite stand-in such as 0 would read as a guarantee), the value itself
/// otherwise, with -0 as 0 (the one encoding of zero the log accepts). A
/// given epsilon must be finite and at least 0: `+∞` is reserved for "no
/// noise", and NaN or a negative value is an accounting bug to refuse, not
/// to log.
fn logged_epsilon(epsilon: Option<f64>) -> Result<f64> {
    match epsilon {
        None => Ok(f64::INFINITY),
        Some(e) if e.is_finite() && e >= 0.0 => Ok(e + 0.0),
        Some(e) => Err(StorageError::Invalid(format!(
            "epsilon {e} is not a finite value of at least 0 (a round without noise has none)"
        ))),
    }
}

fn publish_global(conn: &mut Connection, publication: Publication) -> Result<GlobalVersion> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn storage() -> SqliteStorage {
        SqliteStorage::open_in_memory().expect("memory db")
    }

    async fn with_federation(s: &SqliteStorage) {
        s.sync_federation(FederationSync {
            id: "f".into(),
            config_json: "{\"a\":1}".into(),
            at_ms: T0,
        })
        .await
        .expect("sync");
    }

    async fn enrolled(s: &SqliteStorage, n: u8) -> DeviceRecord {
        let token = [n; 32];
        s.create_invite(NewInvite {
            federation_id: "f".into(),
            token_sha256: token,
            created_at_ms: T0,
            expires_at_ms: T0 + 1_000,
        })
        .await
        .expect("invite");
        s.enrol(Enrolment {
            token_sha256: token,
            device_id: format!("dev-{n}"),
            public_key: [n; 32],
            at_ms: T0 + 1,
        })
        .await
        .expect("enrol")
    }

    async fn open(s: &SqliteStorage, round: u64, cohort: &[&str]) -> RoundRecord {
        s.open_round(NewRound {
            federation_id: "f".into(),
            round,
            cohort: cohort.iter().map(|c| c.to_string()).collect(),
            stage: Stage::AdvertiseKeys,
            state: vec![1, 2, 3],
            opened_at_ms: T0 + 10,
            stage_deadline_ms: T0 + 1_000,
            parameters: None,
        })
        .await
        .expect("open")
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("migrations validate");
    }

    #[tokio::test]
    async fn opens_a_file_in_wal_mode_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStorage::open(dir.path()).expect("open");
        let mode: String = s
            .conn
            .lock()
            .expect("lock")
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
        drop(s);
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).expect("raw");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        assert!(matches!(
            SqliteStorage::open(dir.path()),
            Err(StorageError::NewerSchema { found: 99, .. })
        ));
    }

    #[tokio::test]
    async fn federation_sync_logs_only_changes() {
        let s = storage();
        with_federation(&s).await;
        with_federation(&s).await;
        let changed = s
            .sync_federation(FederationSync {
                id: "f".into(),
                config_json: "{\"a\":2}".into(),
                at_ms: T0 + 5,
            })
            .await
            .expect("sync");
        assert_eq!(changed.created_at_ms, T0);
        assert_eq!(changed.updated_at_ms, T0 + 5);
        let events = s.events(0, 100).await.expect("events");
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["federation_configured", "federation_configured"]);
    }

    #[tokio::test]
    async fn invites_enrol_once_and_expire() {
        let s = storage();
        with_federation(&s).await;
        let device = enrolled(&s, 1).await;
        assert_eq!(device.federation_id, "f");
        assert_eq!(device.public_key, [1; 32]);

        let again = s
            .enrol(Enrolment {
                token_sha256: [1; 32],
                device_id: "dev-x".into(),
                public_key: [7; 32],
                at_ms: T0 + 2,
            })
            .await;
        assert!(matches!(
            again,
            Err(StorageError::InviteRefused(InviteRefusal::Used))
        ));

        s.create_invite(NewInvite {
            federation_id: "f".into(),
            token_sha256: [2; 32],
            created_at_ms: T0,
            expires_at_ms: T0 + 1_000,
        })
        .await
        .expect("invite");
        let late = s
            .enrol(Enrolment {
                token_sha256: [2; 32],
                device_id: "dev-2".into(),
                public_key: [2; 32],
                at_ms: T0 + 1_000,
            })
            .await;
        assert!(matches!(
            late,
            Err(StorageError::InviteRefused(InviteRefusal::Expired))
        ));
        let same_key = s
            .enrol(Enrolment {
                token_sha256: [2; 32],
                device_id: "dev-2".into(),
                public_key: [1; 32],
                at_ms: T0 + 5,
            })
            .await;
        assert!(matches!(same_key, Err(StorageError::KeyAlreadyEnrolled)));
        let unknown = s
            .enrol(Enrolment {
                token_sha256: [3; 32],
                device_id: "dev-3".into(),
                public_key: [3; 32],
                at_ms: T0,
            })
            .await;
        assert!(matches!(
            unknown,
            Err(StorageError::InviteRefused(InviteRefusal::Unknown))
        ));
        assert!(matches!(
            s.create_invite(NewInvite {
                federation_id: "nope".into(),
                token_sha256: [4; 32],
                created_at_ms: T0,
                expires_at_ms: T0 + 1,
            })
            .await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn checkins_feed_the_eligible_population_and_revocation_removes_it() {
        let s = storage();
        with_federation(&s).await;
        for n in 1..=3 {
            enrolled(&s, n).await;
        }
        for (n, eligible) in [(1, true), (2, true), (3, false)] {
            s.record_checkin(Checkin {
                device_id: format!("dev-{n}"),
                at_ms: T0 + 100,
                eligible,
            })
            .await
            .expect("checkin");
        }
        let counts = s.device_counts("f".into(), T0 + 50).await.expect("counts");
        assert_eq!(
            counts,
            DeviceCounts {
                active: 3,
                eligible: 2
            }
        );
        assert_eq!(
            s.device_counts("f".into(), T0 + 101)
                .await
                .expect("counts")
                .eligible,
            0
        );
        let revoked = s
            .revoke_device("dev-1".into(), T0 + 200)
            .await
            .expect("revoke")
            .expect("exists");
        assert_eq!(revoked.revoked_at_ms, Some(T0 + 200));
        let twice = s
            .revoke_device("dev-1".into(), T0 + 300)
            .await
            .expect("revoke");
        assert_eq!(twice.and_then(|d| d.revoked_at_ms), Some(T0 + 200));
        assert!(
            s.revoke_device("nope".into(), T0)
                .await
                .expect("revoke")
                .is_none()
        );
        let eligible = s
            .eligible_devices("f".into(), T0 + 50)
            .await
            .expect("eligible");
        assert_eq!(eligible.len(), 1);
        assert_eq!(eligible[0].device_id, "dev-2");
        assert!(matches!(
            s.record_checkin(Checkin {
                device_id: "nope".into(),
                at_ms: T0,
                eligible: true
            })
            .await,
            Err(StorageError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn rounds_round_trip_and_saves_compare_and_swap() {
        let s = storage();
        with_federation(&s).await;
        enrolled(&s, 1).await;
        enrolled(&s, 2).await;
        assert_eq!(s.last_round_number("f".into()).await.expect("n"), 0);
        let round = open(&s, 1, &["dev-2", "dev-1"]).await;
        assert_eq!(round.summary.version, 1);
        assert_eq!(round.summary.cohort_size, 2);
        assert_eq!(round.cohort, ["dev-1", "dev-2"]);
        assert_eq!(round.state, [1, 2, 3]);
        assert!(
            s.is_member("f".into(), 1, "dev-1".into())
                .await
                .expect("member")
        );
        assert!(
            !s.is_member("f".into(), 1, "dev-9".into())
                .await
                .expect("member")
        );

        // Only one round in flight per federation.
        let second = s
            .open_round(NewRound {
                federation_id: "f".into(),
                round: 2,
                cohort: vec![],
                stage: Stage::AdvertiseKeys,
                state: vec![],
                opened_at_ms: T0,
                stage_deadline_ms: T0,
                parameters: None,
            })
            .await;
        assert!(matches!(second, Err(StorageError::Conflict(_))));

        let update = |expected_version, state: Vec<u8>| RoundUpdate {
            federation_id: "f".into(),
            round: 1,
            expected_version,
            stage: Stage::ShareKeys,
            state,
            stage_deadline_ms: T0 + 2_000,
            at_ms: T0 + 20,
        };
        // An accepted upload saves the round with its commitment, and
        // logs its one event.
        let receipt = s
            .record_upload_commitment(
                UploadCommitment {
                    federation_id: "f".into(),
                    round: 1,
                    device_id: "dev-1".into(),
                    upload_sha256: [0; 32],
                    at_ms: T0 + 20,
                },
                Some(update(1, vec![4])),
            )
            .await
            .expect("save");
        let saved = receipt.round.expect("saved round");
        assert_eq!(saved.version, 2);
        let logged = s.events(0, 100).await.expect("events");
        assert_eq!(
            logged
                .iter()
                .filter(|e| e.kind == event_kinds::UPLOAD_ACCEPTED
                    && e.device_id.as_deref() == Some("dev-1"))
                .count(),
            1
        );
        assert_eq!(saved.stage, Stage::ShareKeys);
        // A writer that computed from version 1 lost the race.
        let stale = s.save_round(update(1, vec![5])).await;
        assert!(
            matches!(&stale, Err(StorageError::Conflict(m)) if m.contains("version 2, not 1")),
            "{stale:?}"
        );
        let loaded = s
            .load_round("f".into(), 1)
            .await
            .expect("load")
            .expect("some");
        assert_eq!(loaded.state, [4]);
        assert_eq!(loaded.summary.stage_deadline_ms, T0 + 2_000);
        assert!(s.load_round("f".into(), 9).await.expect("load").is_none());
        assert!(matches!(
            s.save_round(RoundUpdate {
                round: 9,
                ..update(1, vec![])
            })
            .await,
            Err(StorageError::NotFound(_))
        ));
        let flight = s
            .round_in_flight("f".into())
            .await
            .expect("flight")
            .expect("some");
        assert_eq!(flight.version, 2);
        assert_eq!(s.rounds_in_flight().await.expect("all").len(), 1);
    }

    #[tokio::test]
    async fn publishing_closes_the_round_in_the_same_transaction() {
        let s = storage();
        with_federation(&s).await;
        enrolled(&s, 1).await;
        assert!(s.latest_global("f".into()).await.expect("latest").is_none());
        open(&s, 1, &["dev-1"]).await;

        // A stale publication changes nothing at all.
        let stale = s
            .publish_global(Publication {
                federation_id: "f".into(),
                round: 1,
                expected_version: 7,
                version: 1,
                contributors: 1,
                epsilon: None,
                adapter: vec![9; 10],
                metadata: serde_json::json!({}),
                delta: 1e-6,
                at_ms: T0 + 50,
            })
            .await;
        assert!(matches!(stale, Err(StorageError::Conflict(_))));
        // So does one that names the wrong next version.
        let skipping = s
            .publish_global(Publication {
                federation_id: "f".into(),
                round: 1,
                expected_version: 1,
                version: 2,
                contributors: 1,
                epsilon: None,
                delta: 1e-6,
                adapter: vec![9; 10],
                metadata: serde_json::json!({}),
                at_ms: T0 + 50,
            })
            .await;
        assert!(
            matches!(&skipping, Err(StorageError::Conflict(m)) if m.contains("version 1 next")),
            "{skipping:?}"
        );
        assert!(s.latest_global("f".into()).await.expect("latest").is_none());
        assert!(
            s.round_in_flight("f".into())
                .await
                .expect("flight")
                .is_some()
        );

        let published = s
            .publish_global(Publication {
                federation_id: "f".into(),
                round: 1,
                expected_version: 1,
                version: 1,
                contributors: 1,
                epsilon: Some(2.5),
                adapter: b"adapter bytes".to_vec(),
                metadata: serde_json::json!({ "clients": 1 }),
                delta: 1e-6,
                at_ms: T0 + 60,
            })
            .await
            .expect("publish");
        assert_eq!(published.version, 1);
        assert_eq!(published.size_bytes, 13);
        assert_eq!(
            published.sha256,
            <[u8; 32]>::from(Sha256::digest(b"adapter bytes"))
        );
        let (meta, bytes) = s
            .latest_global_adapter("f".into())
            .await
            .expect("latest")
            .expect("some");
        assert_eq!(meta, published);
        assert_eq!(bytes, b"adapter bytes");
        assert!(
            s.round_in_flight("f".into())
                .await
                .expect("flight")
                .is_none()
        );
        let closed = s
            .load_round("f".into(), 1)
            .await
            .expect("load")
            .expect("some");
        assert!(matches!(
            closed.summary.outcome,
            Some(RoundOutcome::Published { at_ms, .. }) if at_ms == T0 + 60
        ));
        let fed = s.federation("f".into()).await.expect("fed").expect("some");
        assert_eq!(fed.gathering_since_ms, T0 + 60);
        // The closed round cannot be published or aborted again.
        let again = s
            .abort_round(RoundAbort {
                federation_id: "f".into(),
                round: 1,
                expected_version: closed.summary.version,
                reason: "late".into(),
                at_ms: T0 + 70,
            })
            .await;
        assert!(
            matches!(&again, Err(StorageError::Conflict(m)) if m.contains("already published"))
        );

        // The next round can open and abort; versions keep counting.
        open(&s, 2, &["dev-1"]).await;
        let aborted = s
            .abort_round(RoundAbort {
                federation_id: "f".into(),
                round: 2,
                expected_version: 1,
                reason: "deadline".into(),
                at_ms: T0 + 80,
            })
            .await
            .expect("abort");
        assert!(matches!(
            aborted.outcome,
            Some(RoundOutcome::Aborted { ref detail, .. }) if detail == "deadline"
        ));
        let kinds: Vec<_> = s
            .events(0, 100)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(kinds.ends_with(&[
            "round_opened".to_owned(),
            "global_published".to_owned(),
            "round_outcome".to_owned(),
            "round_opened".to_owned(),
            "round_aborted".to_owned(),
            "round_outcome".to_owned(),
        ]));
        assert_eq!(
            s.global_by_round("f".into(), 1)
                .await
                .expect("by round")
                .map(|g| g.version),
            Some(1)
        );
        assert!(
            s.global_by_round("f".into(), 2)
                .await
                .expect("by round")
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_event_log_is_append_only() {
        let s = storage();
        with_federation(&s).await;
        let conn = s.conn.lock().expect("lock");
        let update = conn.execute("UPDATE events SET kind = 'x'", []);
        assert!(update.is_err());
        let delete = conn.execute("DELETE FROM events", []);
        assert!(delete.is_err());
    }
}
