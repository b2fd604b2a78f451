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

use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use hearth_ledger::{Hash, SignedTreeHead};

use crate::log::LogKey;
use crate::storage::log as tlog;
use crate::storage::{
    Checkin, CohortMember, CommitmentReceipt, DeviceCounts, DeviceRecord, Enrolment, Event,
    FederationRecord, FederationSync, GlobalVersion, GossipCommitment, GossipHead, LogInclusion,
    LogLeaf, NewEvent, NewInvite, NewRound, Publication, RoundAbort, RoundRecord, RoundSummary,
    RoundUpdate, Storage, StorageError, StorageFuture, UploadCommitment,
};
use crate::storage::{
    DeviceStore, EventStore, FederationStore, GossipStore, LogStore, PublishStore, RoundStore,
};

pub use bench::bench_sqlite_log;
use federations::{create_invite, device, enrol, federation, revoke_device, sync_federation};
use publish::publish_global;
use rounds::{
    abort_round, append_round_entry, load_round, open_round, record_upload_commitment,
    round_summary, save_round,
};
use rows::{
    DEVICE_COLUMNS, FEDERATION_COLUMNS, GLOBAL_COLUMNS, GLOBAL_COLUMNS_WITH_ADAPTER,
    SUMMARY_COLUMNS, device_row, federation_row, global_row, json_at, log_event, summary_row,
};

mod bench;
mod federations;
mod publish;
mod rounds;
mod rows;
#[cfg(test)]
mod tests;

/// The database file inside the data folder.
pub const DATABASE_FILE: &str = "hearth-server.sqlite3";

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every schema change, oldest first. Never edit a released migration; add
/// a new one. The schema version (`user_version`) is the count applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/01-server.sql"),
    include_str!("../../../migrations/02-log.sql"),
    include_str!("../../../migrations/03-log-devices.sql"),
    include_str!("../../../migrations/04-gossip.sql"),
    include_str!("../../../migrations/05-round-journal.sql"),
    include_str!("../../../migrations/06-gossip-commitments.sql"),
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

    /// The server's one place for connection settings and migrations.
    /// It does not share hearth-store's (`configure`) although the pragmas
    /// match: dependencies point `server -> {fed, ledger}` and the server
    /// must not depend on the personal library's crate; and its in-memory
    /// database keeps SQLite's default journal.
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
}

impl FederationStore for SqliteStorage {
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
}

impl DeviceStore for SqliteStorage {
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
}

impl RoundStore for SqliteStorage {
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

    fn record_upload_commitment(
        &self,
        commitment: UploadCommitment,
        update: Option<RoundUpdate>,
    ) -> StorageFuture<'_, CommitmentReceipt> {
        self.call(move |conn| record_upload_commitment(conn, commitment, update))
    }
}

impl PublishStore for SqliteStorage {
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
}

impl EventStore for SqliteStorage {
    fn append_event(&self, event: NewEvent) -> StorageFuture<'_, u64> {
        self.call(move |conn| log_event(conn, &event))
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

impl LogStore for SqliteStorage {
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
}

impl GossipStore for SqliteStorage {
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
}
