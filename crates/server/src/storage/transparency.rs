//! The transparency log as storage serves it ([`LogStore`]) and what
//! devices gossip about it ([`GossipStore`]), with their records. How
//! entries get into the log is in the [module docs](super).

use std::sync::Arc;

use hearth_ledger::{Hash, SignedTreeHead};
use serde::Serialize;

use super::StorageFuture;
use crate::log::LogKey;

/// The transparency log, read side: its size, signed heads, inclusion and
/// consistency proofs, and entries (appends happen inside the changes they
/// record, through the other stores).
pub trait LogStore: Send + Sync + 'static {
    /// The number of entries in the transparency log.
    fn log_size(&self) -> StorageFuture<'_, u64>;

    /// A signed head of the log as it is now: the latest stored one if it
    /// still covers every entry and verifies under `key`, otherwise a new
    /// one, signed, stamped `max(now_ms, latest timestamp)` and stored, so
    /// heads survive restarts and their timestamps never go back.
    fn signed_tree_head(&self, key: Arc<LogKey>, now_ms: u64) -> StorageFuture<'_, SignedTreeHead>;

    /// The inclusion proof of entry `index` in the tree of `size` entries
    /// ([`StorageError::OutOfRange`](super::StorageError::OutOfRange) past the log).
    fn log_inclusion_proof(&self, index: u64, size: u64) -> StorageFuture<'_, LogInclusion>;

    /// The inclusion proof of the first entry below `size` whose leaf hash
    /// is `leaf_hash`; `None` if there is none.
    fn log_inclusion_proof_by_hash(
        &self,
        leaf_hash: Hash,
        size: u64,
    ) -> StorageFuture<'_, Option<LogInclusion>>;

    /// The consistency proof from the tree of `old` entries to that of
    /// `new` ([`StorageError::OutOfRange`](super::StorageError::OutOfRange) if `old > new` or past the log).
    fn log_consistency_proof(&self, old: u64, new: u64) -> StorageFuture<'_, Vec<Hash>>;

    /// Entries `start..end` ([`StorageError::OutOfRange`](super::StorageError::OutOfRange) past the log).
    fn log_entries(&self, start: u64, end: u64) -> StorageFuture<'_, Vec<LogLeaf>>;

    /// The `adapter_published` entry of a federation's global `version`
    /// with its inclusion proof in the tree of `size` entries; `None` if
    /// the log has none ([`StorageError::OutOfRange`](super::StorageError::OutOfRange) if it is at or past
    /// `size`).
    fn log_adapter_entry(
        &self,
        federation_id: String,
        version: u64,
        size: u64,
    ) -> StorageFuture<'_, Option<(LogLeaf, LogInclusion)>>;

    /// The `device_enrolled` entries of the devices of `federation_id`
    /// with these public keys, among the first `size` entries, each with
    /// its inclusion proof in that tree; keys with none are left out.
    fn log_enrolment_entries(
        &self,
        federation_id: String,
        public_keys: Vec<[u8; 32]>,
        size: u64,
    ) -> StorageFuture<'_, Vec<(LogLeaf, LogInclusion)>>;
}

/// What devices gossip through the server: the tree heads they verified
/// and their signed upload commitments.
pub trait GossipStore: Send + Sync + 'static {
    /// Stores a device's latest verified head (replacing its previous one);
    /// the caller has checked the signature under the log key. Says
    /// whether the head is of this log (same root at its size); a head that
    /// is not is also a `log_head_conflict` event.
    fn record_gossip_head(&self, head: GossipHead) -> StorageFuture<'_, bool>;

    /// The heads devices of a federation posted, one per distinct tree
    /// (size and root), most recently posted first, at most `limit`.
    fn gossip_heads(
        &self,
        federation_id: String,
        limit: u32,
    ) -> StorageFuture<'_, Vec<SignedTreeHead>>;

    /// Stores devices' signed upload commitments (the caller has checked
    /// each signature under its device's enrolled key and that the round
    /// exists), keeping the first per federation, round and device, in one
    /// transaction; returns how many were new.
    fn record_gossip_commitments(
        &self,
        commitments: Vec<GossipCommitment>,
    ) -> StorageFuture<'_, u32>;

    /// A federation's stored commitments ordered by round, then device id,
    /// after `after` (a round and device id) when given, at most `limit`.
    fn gossip_commitments(
        &self,
        federation_id: String,
        after: Option<(u64, String)>,
        limit: u32,
    ) -> StorageFuture<'_, Vec<GossipCommitment>>;
}

/// An inclusion proof from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogInclusion {
    /// The entry's index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The audit path, nearest sibling first.
    pub path: Vec<Hash>,
}

/// One log entry's stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLeaf {
    /// Its index.
    pub index: u64,
    /// The exact bytes hashed into the log.
    pub leaf_data: Vec<u8>,
}

/// A device's latest verified signed tree head, posted for gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipHead {
    /// The device's federation.
    pub federation_id: String,
    /// The device.
    pub device_id: String,
    /// The head, its signature already checked under the log key.
    pub sth: SignedTreeHead,
    /// When it was posted.
    pub at_ms: u64,
}

/// A device's signed upload commitment, posted for gossip
/// (`hearth_fed::audit::commitment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipCommitment {
    /// The federation.
    pub federation_id: String,
    /// The round.
    pub round: u64,
    /// The device.
    pub device_id: String,
    /// SHA-256 of the upload bytes the device signed for.
    pub upload_sha256: [u8; 32],
    /// The round parameter digest it signed.
    pub round_digest: [u8; 32],
    /// Its Ed25519 signature, already checked under its enrolled key.
    pub signature: [u8; 64],
    /// When it was posted.
    pub at_ms: u64,
}
