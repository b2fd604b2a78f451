//! Devices' signed upload commitments, kept for gossip (SQLite side of
//! [`GossipStore::record_gossip_commitments`](crate::storage::GossipStore::record_gossip_commitments)
//! and [`GossipStore::gossip_commitments`](crate::storage::GossipStore::gossip_commitments)).
//!
//! Each commitment kept is also appended to the transparency log (an
//! `upload_committed` entry, in the same transaction): the table serves
//! them in pages, the log makes the set public and one. A server could
//! serve two devices two different pages; it cannot show them two logs
//! without the devices' gossiped heads exposing it, and the posting device
//! checks its own commitment is in the log (`hearth_fed::audit::logged`).
//! The entry is the device's word, not the server's: whoever relies on it
//! checks the signature under the device's enrolled key. Bounded by one
//! row (and one entry) per enrolled device and round the federation had
//! (the route checks the round and the signature; the first commitment per
//! device and round is kept).

use hearth_ledger::{Hash, LogEntry};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{GossipCommitment, StorageError};

type Result<T> = std::result::Result<T, StorageError>;

/// Stores each commitment not already held for its device and round, and
/// logs it, in one transaction; returns how many were new.
pub(super) fn record(conn: &mut Connection, commitments: &[GossipCommitment]) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stored = 0u32;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO gossip_commitments (federation_id, round, device_id, upload_sha256, \
             round_digest, signature, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (federation_id, round, device_id) DO NOTHING",
        )?;
        for c in commitments {
            let changed = insert.execute(params![
                c.federation_id,
                c.round,
                c.device_id,
                c.upload_sha256,
                c.round_digest,
                c.signature,
                c.at_ms
            ])?;
            if changed == 0 {
                continue;
            }
            stored = stored.saturating_add(1);
            super::log::append_entry(
                &tx,
                &LogEntry::UploadCommitted {
                    federation: c.federation_id.clone(),
                    round: c.round,
                    device: c.device_id.clone(),
                    upload_sha256: Hash::from_bytes(c.upload_sha256),
                    round_digest: Hash::from_bytes(c.round_digest),
                    signature: c.signature,
                },
                c.at_ms,
            )?;
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// A page of a federation's commitments ordered by round, then device,
/// after the cursor `(round, device)` when given.
pub(super) fn page(
    conn: &mut Connection,
    federation_id: &str,
    after: Option<(u64, String)>,
    limit: u32,
) -> Result<Vec<GossipCommitment>> {
    let (round, device) = after.unwrap_or((0, String::new()));
    let tx = conn.transaction()?;
    let out = {
        let mut stmt = tx.prepare_cached(
            "SELECT round, device_id, upload_sha256, round_digest, signature, received_at_ms \
             FROM gossip_commitments WHERE federation_id = ?1 AND (round, device_id) > (?2, ?3) \
             ORDER BY round, device_id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![federation_id, round, device, limit], |row| {
            Ok(GossipCommitment {
                federation_id: federation_id.to_owned(),
                round: row.get(0)?,
                device_id: row.get(1)?,
                upload_sha256: row.get(2)?,
                round_digest: row.get(3)?,
                signature: row.get(4)?,
                at_ms: row.get(5)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.finish()?;
    Ok(out)
}
