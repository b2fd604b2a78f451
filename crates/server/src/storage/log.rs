//! The transparency log in SQLite: a [`NodeStore`] over the caller's
//! connection or transaction, the one function every logged change calls
//! inside its transaction ([`append_entry`]), and the log's reads.
//!
//! [`SqliteNodes`] runs no transaction of its own: appending happens
//! inside the storage change it records, so the change and its entry
//! commit together or not at all. The tables' triggers (migration
//! `02-log.sql`) refuse updates, deletes and out-of-order inserts, so even
//! a bug here cannot rewrite the log through this connection.

use hearth_ledger::bench::{BenchError, LogBench};
use hearth_ledger::{
    Hash, LogEntry, LogError, MerkleLog, NodeStore, Signature, SignedTreeHead, TreeHead,
    VerifyingKey, leaf_hash,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{GossipHead, LogInclusion, LogLeaf, SqliteStorage, StorageError};
use crate::log::LogKey;

type Result<T> = std::result::Result<T, StorageError>;

/// The log's nodes in the `log_nodes` table, through a borrowed
/// connection (usually an open transaction).
pub(super) struct SqliteNodes<'c> {
    conn: &'c Connection,
}

impl<'c> SqliteNodes<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }
}

impl NodeStore for SqliteNodes<'_> {
    type Error = rusqlite::Error;

    fn size(&self) -> rusqlite::Result<u64> {
        self.conn
            .prepare_cached("SELECT coalesce(max(idx) + 1, 0) FROM log_nodes WHERE level = 0")?
            .query_row([], |row| row.get(0))
    }

    fn node(&self, level: u8, index: u64) -> rusqlite::Result<Option<Hash>> {
        // Indices past SQLite's signed 64-bit range cannot be stored, so
        // they are simply absent.
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        let found: Option<[u8; 32]> = self
            .conn
            .prepare_cached("SELECT hash FROM log_nodes WHERE level = ?1 AND idx = ?2")?
            .query_row(params![level, index], |row| row.get(0))
            .optional()?;
        Ok(found.map(Hash::from_bytes))
    }

    fn append(&mut self, nodes: &[Hash]) -> rusqlite::Result<()> {
        let size = self.size()?;
        let mut insert = self
            .conn
            .prepare_cached("INSERT INTO log_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (level, hash) in nodes.iter().enumerate() {
            let level = u32::try_from(level).unwrap_or(u32::MAX);
            let index = size.checked_shr(level).unwrap_or(0);
            insert.execute(params![level, index, hash.as_bytes()])?;
        }
        Ok(())
    }
}

/// Turns the log's errors into storage errors: the store's own failures
/// stay database errors, out-of-range requests become
/// [`StorageError::OutOfRange`], and a missing node is corruption.
pub(super) fn log_error(e: LogError<rusqlite::Error>) -> StorageError {
    match e {
        LogError::Store(e) => StorageError::Sqlite(e),
        e @ (LogError::SizeOutOfRange { .. }
        | LogError::IndexOutOfRange { .. }
        | LogError::SizeRegression { .. }) => StorageError::OutOfRange(e.to_string()),
        other => StorageError::Corrupt(format!("transparency log: {other}")),
    }
}

/// An appended entry's place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Appended {
    pub(super) index: u64,
    pub(super) leaf_hash: Hash,
}

/// Appends `entry` to the transparency log. Call it inside the
/// transaction of the change the entry records (never on its own), so
/// both commit or neither does. Refuses entries that would not decode
/// (see [`LogEntry::is_canonical`]).
pub(super) fn append_entry(tx: &Connection, entry: &LogEntry, at_ms: u64) -> Result<Appended> {
    if !entry.is_canonical() {
        return Err(StorageError::Invalid(format!(
            "{} entry for {} has a value the log cannot record",
            entry.kind_name(),
            entry.federation()
        )));
    }
    let data = entry.leaf_data();
    let leaf = leaf_hash(&data);
    let index = MerkleLog::new(SqliteNodes::new(tx))
        .append_hash(leaf)
        .map_err(log_error)?;
    let (round, device, version) = match entry {
        LogEntry::RoundParticipation { round, device, .. } => {
            (Some(*round), Some(device.as_str()), None)
        }
        LogEntry::RoundOutcome { round, .. } => (Some(*round), None, None),
        LogEntry::AdapterPublished { round, version, .. } => (Some(*round), None, Some(*version)),
        LogEntry::DeviceEnrolled { device, .. } | LogEntry::DeviceRevoked { device, .. } => {
            (None, Some(device.as_str()), None)
        }
        LogEntry::RoundOpened { round, .. } => (Some(*round), None, None),
        LogEntry::UploadCommitted { round, device, .. } => {
            (Some(*round), Some(device.as_str()), None)
        }
        _ => (None, None, None),
    };
    tx.prepare_cached(
        "INSERT INTO log_leaves (idx, leaf_data, at_ms, kind, federation_id, round, device_id, \
         version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        index,
        data,
        at_ms,
        entry.kind_name(),
        entry.federation(),
        round,
        device,
        version
    ])
    .map_err(super::conflict_on_constraint("transparency log entry"))?;
    Ok(Appended {
        index,
        leaf_hash: leaf,
    })
}

/// The commitment a device already has in a round: its index and bytes.
pub(super) fn existing_commitment(
    conn: &Connection,
    federation_id: &str,
    round: u64,
    device_id: &str,
) -> Result<Option<(u64, Vec<u8>)>> {
    Ok(conn
        .prepare_cached(
            "SELECT idx, leaf_data FROM log_leaves WHERE kind = 'round_participation' \
             AND federation_id = ?1 AND round = ?2 AND device_id = ?3",
        )?
        .query_row(params![federation_id, round, device_id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?)
}

/// Logs the current configuration of every stored federation if the log
/// is empty: a database created before the log existed starts its log
/// with the configurations it runs.
pub(super) fn backfill_federations(conn: &mut Connection, at_ms: u64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if MerkleLog::new(SqliteNodes::new(&tx))
        .size()
        .map_err(log_error)?
        > 0
    {
        return Ok(());
    }
    let federations: Vec<(String, [u8; 32])> = {
        let mut stmt = tx.prepare("SELECT id, config_sha256 FROM federations ORDER BY id")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (federation, sha) in federations {
        let entry = LogEntry::FederationConfig {
            federation,
            config_sha256: Hash::from_bytes(sha),
        };
        append_entry(&tx, &entry, at_ms)?;
    }
    tx.commit()?;
    Ok(())
}

/// Logs every device enrolled (and revoked) before the log recorded
/// enrolments, oldest first: a database from before migration 03 gets
/// the entries its devices would have had. Runs at every open; devices
/// already logged are skipped, so it appends nothing after the first time.
pub(super) fn backfill_devices(conn: &mut Connection, at_ms: u64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let logged = |kind: &str| {
        format!(
            "EXISTS (SELECT 1 FROM log_leaves l WHERE l.kind = '{kind}' \
             AND l.federation_id = d.federation_id AND l.device_id = d.id)"
        )
    };
    let (enrolled, revoked) = (logged("device_enrolled"), logged("device_revoked"));
    // (device, federation, key, enrolment missing, revocation missing)
    let missing: Vec<(String, String, [u8; 32], bool, bool)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT id, federation_id, public_key, enrolment_missing, revocation_missing FROM \
             (SELECT d.id, d.federation_id, d.public_key, d.enrolled_at_ms, \
                     NOT {enrolled} AS enrolment_missing, \
                     (d.revoked_at_ms IS NOT NULL AND NOT {revoked}) AS revocation_missing \
              FROM devices d) \
             WHERE enrolment_missing OR revocation_missing ORDER BY enrolled_at_ms, id"
        ))?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if missing.is_empty() {
        return Ok(());
    }
    for (device, federation, public_key, enrolment_missing, revocation_missing) in missing {
        if enrolment_missing {
            let entry = LogEntry::DeviceEnrolled {
                federation: federation.clone(),
                device: device.clone(),
                public_key,
            };
            append_entry(&tx, &entry, at_ms)?;
        }
        if revocation_missing {
            append_entry(&tx, &LogEntry::DeviceRevoked { federation, device }, at_ms)?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn latest_head(conn: &Connection) -> Result<Option<SignedTreeHead>> {
    let row: Option<(u64, [u8; 32], u64, [u8; 64])> = conn
        .prepare_cached(
            "SELECT size, root, timestamp_ms, signature FROM log_heads ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    Ok(
        row.map(|(size, root, timestamp_ms, signature)| SignedTreeHead {
            head: TreeHead {
                size,
                root: Hash::from_bytes(root),
                timestamp_ms,
            },
            signature: Signature::from_bytes(&signature),
        }),
    )
}

pub(super) fn signed_tree_head(
    conn: &mut Connection,
    key: &LogKey,
    now_ms: u64,
) -> Result<SignedTreeHead> {
    let public: VerifyingKey = key.public();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let latest = latest_head(&tx)?;
    let log = MerkleLog::new(SqliteNodes::new(&tx));
    let size = log.size().map_err(log_error)?;
    if let Some(head) = &latest {
        // Cached: nothing appended since, and signed by the key in use (an
        // operator who replaced the key gets heads under the new one, which
        // devices that pinned the old key will refuse, as they should).
        if head.head.size == size && head.verify(&public).is_ok() {
            return Ok(head.clone());
        }
    }
    let head = TreeHead {
        size,
        root: log.root_at(size).map_err(log_error)?,
        timestamp_ms: latest
            .as_ref()
            .map_or(now_ms, |h| now_ms.max(h.head.timestamp_ms)),
    };
    let signed = key.sign(&head);
    tx.prepare_cached(
        "INSERT INTO log_heads (size, root, timestamp_ms, signature) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        head.size,
        head.root.as_bytes(),
        head.timestamp_ms,
        signed.signature.to_bytes()
    ])?;
    tx.commit()?;
    Ok(signed)
}

/// Reads run in one (deferred) transaction, so a size and the nodes read
/// for it come from the same snapshot even while another connection
/// appends.
fn read<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.finish()?;
    Ok(out)
}

pub(super) fn log_size(conn: &Connection) -> Result<u64> {
    MerkleLog::new(SqliteNodes::new(conn))
        .size()
        .map_err(log_error)
}

pub(super) fn inclusion(conn: &mut Connection, index: u64, size: u64) -> Result<LogInclusion> {
    read(conn, |tx| inclusion_in(tx, index, size))
}

fn inclusion_in(tx: &Connection, index: u64, size: u64) -> Result<LogInclusion> {
    let log = MerkleLog::new(SqliteNodes::new(tx));
    let path = log.inclusion_proof(index, size).map_err(log_error)?;
    Ok(LogInclusion {
        index,
        size,
        leaf_hash: log.leaf(index).map_err(log_error)?,
        path,
    })
}

pub(super) fn inclusion_by_hash(
    conn: &mut Connection,
    leaf: Hash,
    size: u64,
) -> Result<Option<LogInclusion>> {
    read(conn, |tx| {
        let log_size = log_size(tx)?;
        if size > log_size {
            return Err(StorageError::OutOfRange(format!(
                "tree size {size} is beyond the log's {log_size} entries"
            )));
        }
        let found: Option<u64> = tx
            .prepare_cached(
                "SELECT idx FROM log_nodes WHERE level = 0 AND hash = ?1 AND idx < ?2 \
                 ORDER BY idx LIMIT 1",
            )?
            .query_row(params![leaf.as_bytes(), size], |row| row.get(0))
            .optional()?;
        found.map(|index| inclusion_in(tx, index, size)).transpose()
    })
}

pub(super) fn consistency(conn: &mut Connection, old: u64, new: u64) -> Result<Vec<Hash>> {
    read(conn, |tx| {
        MerkleLog::new(SqliteNodes::new(tx))
            .consistency_proof(old, new)
            .map_err(log_error)
    })
}

pub(super) fn entries(conn: &mut Connection, start: u64, end: u64) -> Result<Vec<LogLeaf>> {
    read(conn, |tx| {
        let size = log_size(tx)?;
        if end > size || start > end {
            return Err(StorageError::OutOfRange(format!(
                "entries {start}..{end} are not in the log's {size} entries"
            )));
        }
        let mut stmt = tx.prepare_cached(
            "SELECT idx, leaf_data FROM log_leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![start, end], |row| {
            Ok(LogLeaf {
                index: row.get(0)?,
                leaf_data: row.get(1)?,
            })
        })?;
        let leaves: Vec<LogLeaf> = rows.collect::<rusqlite::Result<_>>()?;
        if u64::try_from(leaves.len()).ok() != Some(end - start) {
            return Err(StorageError::Corrupt(format!(
                "transparency log holds {} entries of {start}..{end}",
                leaves.len()
            )));
        }
        Ok(leaves)
    })
}

pub(super) fn adapter_entry(
    conn: &mut Connection,
    federation_id: &str,
    version: u64,
    size: u64,
) -> Result<Option<(LogLeaf, LogInclusion)>> {
    read(conn, |tx| {
        let found: Option<(u64, Vec<u8>)> = tx
            .prepare_cached(
                "SELECT idx, leaf_data FROM log_leaves WHERE kind = 'adapter_published' \
                 AND federation_id = ?1 AND version = ?2",
            )?
            .query_row(params![federation_id, version], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        let Some((index, leaf_data)) = found else {
            return Ok(None);
        };
        if index >= size {
            return Err(StorageError::OutOfRange(format!(
                "version {version} of {federation_id} is logged at index {index}, \
                 not in a tree of {size} entries: ask with a newer tree head"
            )));
        }
        let proof = inclusion_in(tx, index, size)?;
        Ok(Some((LogLeaf { index, leaf_data }, proof)))
    })
}

pub(super) fn enrolment_entries(
    conn: &mut Connection,
    federation_id: &str,
    public_keys: &[[u8; 32]],
    size: u64,
) -> Result<Vec<(LogLeaf, LogInclusion)>> {
    read(conn, |tx| {
        let log_size = log_size(tx)?;
        if size > log_size {
            return Err(StorageError::OutOfRange(format!(
                "tree size {size} is beyond the log's {log_size} entries"
            )));
        }
        // The devices table names the device a key belongs to; the entry
        // itself (what the client checks) is the log's.
        let mut stmt = tx.prepare_cached(
            "SELECT l.idx, l.leaf_data FROM devices d JOIN log_leaves l \
             ON l.kind = 'device_enrolled' AND l.federation_id = d.federation_id \
             AND l.device_id = d.id \
             WHERE d.federation_id = ?1 AND d.public_key = ?2 AND l.idx < ?3",
        )?;
        let mut found = Vec::new();
        for key in public_keys {
            let row: Option<(u64, Vec<u8>)> = stmt
                .query_row(params![federation_id, key, size], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            if let Some((index, leaf_data)) = row {
                let proof = inclusion_in(tx, index, size)?;
                found.push((LogLeaf { index, leaf_data }, proof));
            }
        }
        Ok(found)
    })
}

pub(super) fn record_gossip_head(conn: &mut Connection, head: &GossipHead) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sth = &head.sth.head;
    let log = MerkleLog::new(SqliteNodes::new(&tx));
    let size = log.size().map_err(log_error)?;
    let matches_log = sth.size <= size && log.root_at(sth.size).map_err(log_error)? == sth.root;
    tx.prepare_cached(
        "INSERT INTO log_gossip (federation_id, device_id, size, root, timestamp_ms, signature, \
         matches_log, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (federation_id, device_id) DO UPDATE SET size = excluded.size, \
         root = excluded.root, timestamp_ms = excluded.timestamp_ms, \
         signature = excluded.signature, matches_log = excluded.matches_log, \
         received_at_ms = excluded.received_at_ms",
    )?
    .execute(params![
        head.federation_id,
        head.device_id,
        sth.size,
        sth.root.as_bytes(),
        sth.timestamp_ms,
        head.sth.signature.to_bytes(),
        matches_log,
        head.at_ms
    ])?;
    if !matches_log {
        // Signed by this log's key, yet not this log's tree: a fork, a
        // restored backup or a leaked key. The operator must know.
        tx.prepare_cached(
            "INSERT INTO events (at_ms, federation_id, device_id, round, kind, detail_json) \
             VALUES (?1, ?2, ?3, NULL, 'log_head_conflict', ?4)",
        )?
        .execute(params![
            head.at_ms,
            head.federation_id,
            head.device_id,
            serde_json::json!({
                "size": sth.size,
                "root": sth.root.to_string(),
                "timestamp_ms": sth.timestamp_ms,
                "log_size": size,
            })
            .to_string()
        ])?;
    }
    tx.commit()?;
    Ok(matches_log)
}

pub(super) fn gossip_heads(
    conn: &mut Connection,
    federation_id: &str,
    limit: u32,
) -> Result<Vec<SignedTreeHead>> {
    read(conn, |tx| {
        // SQLite takes the bare columns from the row with the max().
        let mut stmt = tx.prepare_cached(
            "SELECT size, root, timestamp_ms, signature, max(received_at_ms) AS latest \
             FROM log_gossip WHERE federation_id = ?1 GROUP BY size, root \
             ORDER BY latest DESC, size DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![federation_id, limit], |row| {
            Ok(SignedTreeHead {
                head: TreeHead {
                    size: row.get(0)?,
                    root: Hash::from_bytes(row.get(1)?),
                    timestamp_ms: row.get(2)?,
                },
                signature: Signature::from_bytes(&row.get(3)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    })
}

/// Runs [`hearth_ledger::bench::log`] over SQLite: `entries` synthetic
/// appends to a fresh in-memory database with the server's schema
/// (triggers included), in one transaction, then `samples` timed roots and
/// proofs. Compare with [`hearth_ledger::bench::log_in_memory`] for what
/// the database costs. For on-disk figures, run
/// [`SqliteStorage::bench_log`] on a database in a folder.
pub fn bench_sqlite_log(entries: u64, samples: u32) -> std::result::Result<LogBench, StorageError> {
    SqliteStorage::open_in_memory()?.bench_log(entries, samples)
}

impl SqliteStorage {
    /// [`hearth_ledger::bench::log`] over this database's log tables,
    /// inside a transaction that is rolled back at the end, so the
    /// synthetic entries never stay (the database's own entries, if any,
    /// are part of the timed tree).
    pub fn bench_log(
        &self,
        entries: u64,
        samples: u32,
    ) -> std::result::Result<LogBench, StorageError> {
        self.with_connection(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let figures = hearth_ledger::bench::log(SqliteNodes::new(&tx), entries, samples)
                .map_err(|e| match e {
                    BenchError::Log(e) => log_error(e),
                    other => StorageError::Corrupt(format!("transparency log: {other}")),
                })?;
            tx.rollback()?;
            Ok(figures)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hearth_ledger::{MemoryStore, verify_consistency, verify_inclusion};

    use super::*;
    use crate::rounds::Stage;
    use crate::storage::{
        Enrolment, FederationSync, NewInvite, NewRound, Publication, RoundAbort, RoundUpdate,
        Storage, UploadCommitment,
    };

    const T0: u64 = 1_700_000_000_000;

    async fn storage_with_round(devices: u8) -> SqliteStorage {
        let s = SqliteStorage::open_in_memory().expect("db");
        s.sync_federation(FederationSync {
            id: "f".into(),
            config_json: "{\"a\":1}".into(),
            at_ms: T0,
        })
        .await
        .expect("sync");
        let mut cohort = Vec::new();
        for n in 1..=devices {
            s.create_invite(NewInvite {
                federation_id: "f".into(),
                token_sha256: [n; 32],
                created_at_ms: T0,
                expires_at_ms: T0 + 1_000,
            })
            .await
            .expect("invite");
            s.enrol(Enrolment {
                token_sha256: [n; 32],
                device_id: format!("dev-{n}"),
                public_key: [n; 32],
                at_ms: T0 + 1,
            })
            .await
            .expect("enrol");
            cohort.push(format!("dev-{n}"));
        }
        s.open_round(NewRound {
            federation_id: "f".into(),
            round: 1,
            cohort,
            stage: Stage::MaskedInput,
            state: vec![1],
            opened_at_ms: T0 + 2,
            stage_deadline_ms: T0 + 10_000,
            parameters: None,
        })
        .await
        .expect("open");
        s
    }

    fn commitment(device: &str, upload: &[u8]) -> UploadCommitment {
        UploadCommitment {
            federation_id: "f".into(),
            round: 1,
            device_id: device.into(),
            upload_sha256: Hash::sha256(upload).to_bytes(),
            at_ms: T0 + 5,
        }
    }

    fn publication(expected_version: u64, epsilon: Option<f64>) -> Publication {
        Publication {
            federation_id: "f".into(),
            round: 1,
            expected_version,
            version: 1,
            adapter: b"adapter".to_vec(),
            metadata: serde_json::json!({}),
            contributors: 2,
            epsilon,
            delta: 1e-6,
            at_ms: T0 + 9,
        }
    }

    fn entries_of(s: &SqliteStorage) -> Vec<LogEntry> {
        s.with_connection(|conn| {
            let size = log_size(conn)?;
            entries(conn, 0, size)
        })
        .expect("entries")
        .iter()
        .map(|leaf| LogEntry::from_leaf_data(&leaf.leaf_data).expect("decodes"))
        .collect()
    }

    #[test]
    fn the_sqlite_node_store_agrees_with_memory_at_every_size() {
        let s = SqliteStorage::open_in_memory().expect("db");
        s.with_connection(|conn| {
            let tx = conn.transaction()?;
            let mut sql = MerkleLog::new(SqliteNodes::new(&tx));
            let mut mem = MerkleLog::new(MemoryStore::new());
            let n = 300u64;
            for i in 0..n {
                let data = i.to_be_bytes();
                assert_eq!(sql.append(&data).map_err(log_error)?, i);
                mem.append(&data).expect("memory");
            }
            for size in 0..=n {
                let root = sql.root_at(size).map_err(log_error)?;
                assert_eq!(root, mem.root_at(size).expect("memory"), "root at {size}");
                if size == 0 {
                    continue;
                }
                // A spread of indices and older sizes, edges included.
                for index in [0, size / 3, size / 2, size - 1] {
                    let proof = sql.inclusion_proof(index, size).map_err(log_error)?;
                    assert_eq!(proof, mem.inclusion_proof(index, size).expect("memory"));
                    let leaf = sql.leaf(index).map_err(log_error)?;
                    assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
                }
                for old in [1, size / 2, size - 1, size] {
                    if old == 0 {
                        continue;
                    }
                    let proof = sql.consistency_proof(old, size).map_err(log_error)?;
                    assert_eq!(proof, mem.consistency_proof(old, size).expect("memory"));
                    let old_root = sql.root_at(old).map_err(log_error)?;
                    assert_eq!(
                        verify_consistency(old, size, &old_root, &root, &proof),
                        Ok(())
                    );
                }
            }
            assert!(matches!(
                sql.inclusion_proof(n, n).map_err(log_error),
                Err(StorageError::OutOfRange(_))
            ));
            assert!(matches!(
                sql.consistency_proof(5, 4).map_err(log_error),
                Err(StorageError::OutOfRange(_))
            ));
            assert!(matches!(
                sql.root_at(n + 1).map_err(log_error),
                Err(StorageError::OutOfRange(_))
            ));
            Ok(())
        })
        .expect("agrees");
    }

    #[tokio::test]
    async fn every_logged_change_appends_its_entry() {
        let s = storage_with_round(2).await;
        // Re-syncing an unchanged configuration logs nothing; a change does.
        s.sync_federation(FederationSync {
            id: "f".into(),
            config_json: "{\"a\":1}".into(),
            at_ms: T0 + 3,
        })
        .await
        .expect("sync");
        assert_eq!(s.log_size().await.expect("size"), 3, "config, 2 enrolments");
        s.record_upload_commitment(commitment("dev-1", b"one"), None)
            .await
            .expect("commit");
        s.publish_global(publication(1, Some(0.75)))
            .await
            .expect("publish");
        s.open_round(NewRound {
            federation_id: "f".into(),
            round: 2,
            cohort: vec!["dev-1".into()],
            stage: Stage::MaskedInput,
            state: vec![],
            opened_at_ms: T0 + 20,
            stage_deadline_ms: T0 + 30,
            parameters: Some(crate::storage::RoundParameters {
                sha256: Hash::sha256(b"parameters").to_bytes(),
                encoding: b"parameters".to_vec(),
            }),
        })
        .await
        .expect("open 2");
        s.abort_round(RoundAbort {
            federation_id: "f".into(),
            round: 2,
            expected_version: 1,
            reason: "deadline".into(),
            at_ms: T0 + 31,
        })
        .await
        .expect("abort");
        let config_sha = Hash::sha256(b"{\"a\":1}");
        assert_eq!(
            entries_of(&s),
            [
                LogEntry::FederationConfig {
                    federation: "f".into(),
                    config_sha256: config_sha,
                },
                LogEntry::DeviceEnrolled {
                    federation: "f".into(),
                    device: "dev-1".into(),
                    public_key: [1; 32],
                },
                LogEntry::DeviceEnrolled {
                    federation: "f".into(),
                    device: "dev-2".into(),
                    public_key: [2; 32],
                },
                LogEntry::RoundParticipation {
                    federation: "f".into(),
                    round: 1,
                    device: "dev-1".into(),
                    upload_sha256: Hash::sha256(b"one"),
                },
                LogEntry::RoundOutcome {
                    federation: "f".into(),
                    round: 1,
                    contributors: 2,
                    aborted: false,
                },
                LogEntry::AdapterPublished {
                    federation: "f".into(),
                    version: 1,
                    round: 1,
                    adapter_sha256: Hash::sha256(b"adapter"),
                    contributors: 2,
                    epsilon: 0.75,
                    delta: 1e-6,
                },
                LogEntry::RoundOpened {
                    federation: "f".into(),
                    round: 2,
                    parameters_sha256: Hash::sha256(b"parameters"),
                    parameters: b"parameters".to_vec(),
                },
                LogEntry::RoundOutcome {
                    federation: "f".into(),
                    round: 2,
                    contributors: 0,
                    aborted: true,
                },
            ]
        );
        let events = s.events(0, 100).await.expect("events");
        let accepted = events
            .iter()
            .find(|e| e.kind == "upload_accepted")
            .expect("upload event");
        assert_eq!(accepted.detail["log_index"], 3);
        let published = events
            .iter()
            .find(|e| e.kind == "global_published")
            .expect("publish event");
        assert_eq!(published.detail["log_index"], 5);
        let enrolled = events
            .iter()
            .find(|e| e.kind == "device_enrolled")
            .expect("enrolment event");
        assert_eq!(enrolled.detail["log_index"], 1);
    }

    #[tokio::test]
    async fn enrolments_and_revocations_are_logged_once_and_backfilled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStorage::open(dir.path()).expect("db");
        s.sync_federation(FederationSync {
            id: "f".into(),
            config_json: "{}".into(),
            at_ms: T0,
        })
        .await
        .expect("sync");
        for n in 1..=2u8 {
            s.create_invite(NewInvite {
                federation_id: "f".into(),
                token_sha256: [n; 32],
                created_at_ms: T0,
                expires_at_ms: T0 + 1_000,
            })
            .await
            .expect("invite");
            s.enrol(Enrolment {
                token_sha256: [n; 32],
                device_id: format!("dev-{n}"),
                public_key: [n; 32],
                at_ms: T0 + 1,
            })
            .await
            .expect("enrol");
        }
        // A refused enrolment (the invite is used) logs nothing.
        assert!(
            s.enrol(Enrolment {
                token_sha256: [1; 32],
                device_id: "dev-3".into(),
                public_key: [3; 32],
                at_ms: T0 + 2,
            })
            .await
            .is_err()
        );
        s.revoke_device("dev-1".into(), T0 + 3)
            .await
            .expect("revoke");
        // Revoking again keeps the first time and logs nothing more.
        s.revoke_device("dev-1".into(), T0 + 4)
            .await
            .expect("again");
        let revoked = LogEntry::DeviceRevoked {
            federation: "f".into(),
            device: "dev-1".into(),
        };
        let enrolled = |n: u8| LogEntry::DeviceEnrolled {
            federation: "f".into(),
            device: format!("dev-{n}"),
            public_key: [n; 32],
        };
        assert_eq!(
            entries_of(&s)[1..],
            [enrolled(1), enrolled(2), revoked.clone()]
        );
        drop(s);

        // A database from before enrolments were logged: its devices are
        // logged (revocations too) when it is next opened, once.
        let old = tempfile::tempdir().expect("tempdir");
        {
            let mut conn =
                Connection::open(old.path().join(super::super::DATABASE_FILE)).expect("open");
            let m = rusqlite_migration::Migrations::new(
                super::super::sqlite::MIGRATIONS[..2]
                    .iter()
                    .map(|sql| rusqlite_migration::M::up(sql))
                    .collect(),
            );
            m.to_latest(&mut conn).expect("old schema");
            conn.execute_batch(
                "INSERT INTO federations VALUES ('f', '{}', zeroblob(32), 1, 1, 1);
                 INSERT INTO devices (id, federation_id, public_key, enrolled_at_ms, \
                 revoked_at_ms) VALUES ('dev-2', 'f', x'0202020202020202020202020202020202020202020202020202020202020202', 2, NULL), \
                 ('dev-1', 'f', x'0101010101010101010101010101010101010101010101010101010101010101', 1, 5);",
            )
            .expect("old rows");
        }
        let s = SqliteStorage::open(old.path()).expect("upgraded");
        assert_eq!(
            entries_of(&s),
            [
                LogEntry::FederationConfig {
                    federation: "f".into(),
                    config_sha256: Hash::from_bytes([0; 32]),
                },
                enrolled(1),
                revoked,
                enrolled(2),
            ]
        );
        drop(s);
        let s = SqliteStorage::open(old.path()).expect("again");
        assert_eq!(s.log_size().await.expect("size"), 4, "nothing twice");
    }

    #[tokio::test]
    async fn a_failed_change_appends_nothing() {
        let s = storage_with_round(2).await;
        let before = s.log_size().await.expect("size");

        // A stale publication, and one whose epsilon the log cannot hold.
        assert!(matches!(
            s.publish_global(publication(9, Some(1.0))).await,
            Err(StorageError::Conflict(_))
        ));
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                s.publish_global(publication(1, Some(bad))).await,
                Err(StorageError::Invalid(_))
            ));
        }
        assert!(
            s.round_in_flight("f".into())
                .await
                .expect("flight")
                .is_some()
        );
        assert!(s.latest_global("f".into()).await.expect("latest").is_none());

        // A commitment whose round state save loses its compare-and-swap.
        let stale = RoundUpdate {
            federation_id: "f".into(),
            round: 1,
            expected_version: 7,
            stage: Stage::MaskedInput,
            state: vec![2],
            stage_deadline_ms: T0 + 10_000,
            at_ms: T0 + 5,
        };
        assert!(matches!(
            s.record_upload_commitment(commitment("dev-1", b"one"), Some(stale))
                .await,
            Err(StorageError::Conflict(_))
        ));
        assert_eq!(s.log_size().await.expect("size"), before);
        assert!(
            !s.events(0, 100)
                .await
                .expect("events")
                .iter()
                .any(|e| e.kind == "upload_accepted")
        );

        // Directly: an entry appended inside a transaction that then fails
        // is gone with it.
        s.with_connection(|conn| {
            let tx = conn.transaction()?;
            append_entry(
                &tx,
                &LogEntry::RoundOutcome {
                    federation: "f".into(),
                    round: 1,
                    contributors: 0,
                    aborted: true,
                },
                T0,
            )?;
            assert_eq!(log_size(&tx)?, before + 1);
            drop(tx);
            assert_eq!(log_size(conn)?, before);
            let leaves: u64 =
                conn.query_row("SELECT count(*) FROM log_leaves", [], |row| row.get(0))?;
            assert_eq!(leaves, before);
            Ok(())
        })
        .expect("rolled back");

        // The -0 an accountant may produce is logged as 0.
        let published = s
            .publish_global(Publication {
                delta: -0.0,
                ..publication(1, Some(-0.0))
            })
            .await
            .expect("publish");
        assert_eq!(published.version, 1);
    }

    #[tokio::test]
    async fn a_round_without_noise_is_logged_with_an_infinite_epsilon() {
        let s = storage_with_round(2).await;
        s.publish_global(publication(1, None))
            .await
            .expect("publish");
        let logged = entries_of(&s);
        let Some(LogEntry::AdapterPublished { epsilon, delta, .. }) = logged.last() else {
            panic!("adapter entry expected: {logged:?}");
        };
        // "No bound", never a number that reads as a guarantee.
        assert_eq!(*epsilon, f64::INFINITY);
        assert_eq!(*delta, 1e-6);
        let event = s
            .events(0, 100)
            .await
            .expect("events")
            .into_iter()
            .find(|e| e.kind == "global_published")
            .expect("publish event");
        assert!(event.detail["epsilon"].is_null());
    }

    #[tokio::test]
    async fn commitments_are_one_per_device_and_round() {
        let s = storage_with_round(2).await;
        let first = s
            .record_upload_commitment(commitment("dev-1", b"one"), None)
            .await
            .expect("commit");
        assert!(first.appended);
        let again = s
            .record_upload_commitment(commitment("dev-1", b"one"), None)
            .await
            .expect("idempotent");
        assert_eq!((again.log_index, again.appended), (first.log_index, false));
        assert!(matches!(
            s.record_upload_commitment(commitment("dev-1", b"other"), None)
                .await,
            Err(StorageError::Conflict(m)) if m.contains("another upload")
        ));
        assert!(matches!(
            s.record_upload_commitment(commitment("dev-9", b"x"), None)
                .await,
            Err(StorageError::Conflict(m)) if m.contains("not in the cohort")
        ));
        assert!(matches!(
            s.record_upload_commitment(
                UploadCommitment {
                    round: 5,
                    ..commitment("dev-1", b"x")
                },
                None
            )
            .await,
            Err(StorageError::NotFound(_))
        ));

        // With the round's state change: one transaction, version bumped.
        let receipt = s
            .record_upload_commitment(
                commitment("dev-2", b"two"),
                Some(RoundUpdate {
                    federation_id: "f".into(),
                    round: 1,
                    expected_version: 1,
                    stage: Stage::MaskedInput,
                    state: b"two uploads".to_vec(),
                    stage_deadline_ms: T0 + 10_000,
                    at_ms: T0 + 6,
                }),
            )
            .await
            .expect("commit with update");
        assert_eq!(receipt.round.map(|r| r.version), Some(2));
        assert_eq!(receipt.log_index, first.log_index + 1);

        // A closed round takes no more commitments.
        s.publish_global(publication(2, Some(1.0)))
            .await
            .expect("publish");
        assert!(matches!(
            s.record_upload_commitment(commitment("dev-2", b"late"), None)
                .await,
            Err(StorageError::Conflict(m)) if m.contains("already published")
        ));
    }

    #[tokio::test]
    async fn the_log_tables_refuse_rewrites() {
        let s = storage_with_round(1).await;
        s.record_upload_commitment(commitment("dev-1", b"one"), None)
            .await
            .expect("commit");
        let key = Arc::new(LogKey::from_seed(&[1; 32]));
        s.signed_tree_head(key, T0).await.expect("sth");
        s.with_connection(|conn| {
            for sql in [
                "UPDATE log_nodes SET hash = zeroblob(32)",
                "DELETE FROM log_nodes",
                "UPDATE log_leaves SET leaf_data = x'00'",
                "DELETE FROM log_leaves",
                "UPDATE log_heads SET size = 0",
                "DELETE FROM log_heads",
                // Out of order: a gap, and a slot written twice.
                "INSERT INTO log_nodes (level, idx, hash) VALUES (0, 5, zeroblob(32))",
                "INSERT INTO log_nodes (level, idx, hash) VALUES (0, 0, zeroblob(32))",
                "INSERT INTO log_leaves (idx, leaf_data, at_ms, kind, federation_id) \
                 VALUES (2, x'00', 0, 'x', 'f')",
                // A head that goes back in size or time, or past the log.
                "INSERT INTO log_heads (size, root, timestamp_ms, signature) \
                 VALUES (1, zeroblob(32), 0, zeroblob(64))",
                "INSERT INTO log_heads (size, root, timestamp_ms, signature) \
                 VALUES (99, zeroblob(32), 9999999999999, zeroblob(64))",
            ] {
                let refused = conn.execute(sql, []);
                assert!(refused.is_err(), "{sql} was allowed");
            }
            Ok(())
        })
        .expect("checked");
        assert_eq!(s.log_size().await.expect("size"), 3);
    }

    #[tokio::test]
    async fn signed_heads_are_cached_monotonic_and_follow_the_key() {
        let s = storage_with_round(1).await;
        let key = Arc::new(LogKey::from_seed(&[1; 32]));
        let first = s
            .signed_tree_head(Arc::clone(&key), T0 + 100)
            .await
            .expect("sth");
        assert_eq!(first.head.size, 2, "config, enrolment");
        assert!(first.verify(&key.public()).is_ok());
        // Nothing appended: the same head, even asked later.
        let cached = s
            .signed_tree_head(Arc::clone(&key), T0 + 200)
            .await
            .expect("sth");
        assert_eq!(cached, first);
        // Appended, with the clock behind: the timestamp does not go back.
        s.record_upload_commitment(commitment("dev-1", b"one"), None)
            .await
            .expect("commit");
        let grown = s.signed_tree_head(Arc::clone(&key), T0).await.expect("sth");
        assert_eq!(grown.head.size, 3);
        assert_eq!(grown.head.timestamp_ms, T0 + 100);
        // Another key: the cached head is re-signed under it.
        let other = Arc::new(LogKey::from_seed(&[2; 32]));
        let resigned = s
            .signed_tree_head(Arc::clone(&other), T0 + 300)
            .await
            .expect("sth");
        assert_eq!(resigned.head.root, grown.head.root);
        assert!(resigned.verify(&other.public()).is_ok());
    }

    #[tokio::test]
    async fn reads_find_entries_and_refuse_ranges_past_the_log() {
        let s = storage_with_round(2).await;
        let receipt = s
            .record_upload_commitment(commitment("dev-2", b"two"), None)
            .await
            .expect("commit");
        s.publish_global(publication(1, Some(1.0)))
            .await
            .expect("publish");
        let size = s.log_size().await.expect("size");
        assert_eq!(
            size, 6,
            "config, 2 enrolments, commitment, outcome, publication"
        );
        let by_hash = s
            .log_inclusion_proof_by_hash(receipt.leaf_hash, size)
            .await
            .expect("proof")
            .expect("found");
        assert_eq!(by_hash.index, receipt.log_index);
        assert_eq!(
            by_hash,
            s.log_inclusion_proof(receipt.log_index, size)
                .await
                .expect("by index")
        );
        // Not in a tree that ends before it.
        assert!(
            s.log_inclusion_proof_by_hash(receipt.leaf_hash, receipt.log_index)
                .await
                .expect("proof")
                .is_none()
        );
        let (leaf, proof) = s
            .log_adapter_entry("f".into(), 1, size)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(leaf.index, 5);
        assert_eq!(proof.leaf_hash, leaf_hash(&leaf.leaf_data));
        assert!(
            s.log_adapter_entry("f".into(), 2, size)
                .await
                .expect("lookup")
                .is_none()
        );
        assert!(matches!(
            s.log_adapter_entry("f".into(), 1, 3).await,
            Err(StorageError::OutOfRange(_))
        ));
        for result in [
            s.log_entries(0, size + 1).await.map(|_| ()),
            s.log_inclusion_proof(size, size).await.map(|_| ()),
            s.log_inclusion_proof(0, size + 1).await.map(|_| ()),
            s.log_consistency_proof(1, size + 1).await.map(|_| ()),
            s.log_consistency_proof(3, 2).await.map(|_| ()),
            s.log_inclusion_proof_by_hash(receipt.leaf_hash, size + 1)
                .await
                .map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(StorageError::OutOfRange(_))),
                "{result:?}"
            );
        }
        assert_eq!(s.log_entries(1, 3).await.expect("entries").len(), 2);
    }

    #[tokio::test]
    async fn a_database_from_before_the_log_starts_it_with_its_configurations() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut conn =
                Connection::open(dir.path().join(super::super::DATABASE_FILE)).expect("raw");
            rusqlite_migration::Migrations::new(vec![rusqlite_migration::M::up(include_str!(
                "../../migrations/01-server.sql"
            ))])
            .to_latest(&mut conn)
            .expect("schema 1");
            conn.execute(
                "INSERT INTO federations (id, config_json, config_sha256, created_at_ms, \
                 updated_at_ms, gathering_since_ms) VALUES ('old', '{}', ?1, 0, 0, 0)",
                [Hash::sha256(b"{}").to_bytes()],
            )
            .expect("federation");
        }
        let s = SqliteStorage::open(dir.path()).expect("upgrade");
        assert_eq!(
            entries_of(&s),
            [LogEntry::FederationConfig {
                federation: "old".into(),
                config_sha256: Hash::sha256(b"{}"),
            }]
        );
        drop(s);
        // Opening again does not log them twice.
        let s = SqliteStorage::open(dir.path()).expect("reopen");
        assert_eq!(s.log_size().await.expect("size"), 1);
    }

    #[test]
    fn the_bench_runs_over_sqlite_and_leaves_nothing_behind() {
        let s = SqliteStorage::open_in_memory().expect("db");
        let figures = s.bench_log(200, 10).expect("bench");
        assert_eq!(figures.entries, 200);
        assert!(figures.inclusion_proof_len > 6.0);
        assert_eq!(s.with_connection(|c| log_size(c)).expect("size"), 0);
        assert_eq!(bench_sqlite_log(50, 5).expect("bench").entries, 50);
    }
}
