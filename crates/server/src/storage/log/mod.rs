//! The transparency log in SQLite: a [`NodeStore`] over the caller's
//! connection or transaction, the one function every logged change calls
//! inside its transaction ([`append_entry`]), and the log's reads.
//!
//! [`SqliteNodes`] runs no transaction of its own: appending happens
//! inside the storage change it records, so the change and its entry
//! commit together or not at all. The tables' triggers (migration
//! `02-log.sql`) refuse updates, deletes and out-of-order inserts, so even
//! a bug here cannot rewrite the log through this connection.

use hearth_ledger::{
    Hash, LogEntry, LogError, MerkleLog, NodeStore, Signature, SignedTreeHead, TreeHead,
    VerifyingKey, leaf_hash,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{GossipHead, LogInclusion, LogLeaf, StorageError};
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

#[cfg(test)]
mod tests;
