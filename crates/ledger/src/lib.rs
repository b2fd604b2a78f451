//! Hearth's verifiable log and lineage primitives.
//!
//! The federation server keeps an append-only transparency log of what it
//! does (federation configs, enrolments and revocations, round parameters,
//! round participation commitments, round outcomes, published adapters),
//! and devices check it; the local library commits to the items each
//! training run used. Both rest on the same
//! RFC 9162 (Certificate Transparency 2.0) Merkle tree. This crate holds
//! those pieces and nothing else: no network, no database, no clock.
//!
//! - [`merkle`]: the [`Hash`](struct@Hash) type, RFC 9162 hashing, the append-only
//!   [`MerkleLog`] over a pluggable [`NodeStore`] ([`MemoryStore`] here,
//!   SQLite in the server), and the stand-alone proof checks
//!   [`verify_inclusion`] and [`verify_consistency`].
//! - [`TreeHead`], [`SignedTreeHead`], [`VerifiedTreeHead`]: Ed25519-signed
//!   statements of a log's size and root.
//! - [`LogWatcher`]: a client's pinned log key and last verified head; it
//!   advances only along consistency proofs, so rewritten history or a
//!   fork is caught.
//! - [`entries`]: the [`LogEntry`] statements and their canonical bytes.
//! - [`lineage`]: [`ItemSetCommitment`], a Merkle commitment to a set of
//!   item hashes with membership and non-membership proofs.
//! - [`bench`](mod@bench): figures for `hearth bench log`.
//!
//! ```
//! use hearth_ledger::{Hash, LogEntry, LogWatcher, MemoryStore, MerkleLog, SigningKey};
//!
//! // The server appends entries and signs its tree head.
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let mut log = MerkleLog::new(MemoryStore::new());
//! let entry = LogEntry::FederationConfig {
//!     federation: "photos".into(),
//!     config_sha256: Hash::sha256(b"config"),
//! };
//! let index = log.append(&entry.leaf_data())?;
//! let sth = log.tree_head(1_700_000_000_000)?.sign(&key);
//!
//! // A device pinned the log's key; it accepts the head and checks that
//! // the entry is in it.
//! let mut watcher = LogWatcher::new(key.verifying_key());
//! let _ = watcher.update(&sth, &[])?;
//! let proof = log.inclusion_proof(index, sth.head.size)?;
//! watcher.check_included(&entry.leaf_data(), index, &proof)?;
//!
//! // The log grows; the device moves forward only along a consistency proof.
//! log.append(b"another entry")?;
//! let newer = log.tree_head(1_700_000_060_000)?.sign(&key);
//! let consistency = log.consistency_proof(sth.head.size, newer.head.size)?;
//! let _ = watcher.update(&newer, &consistency)?;
//! assert_eq!(watcher.size(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod bench;
pub mod entries;
pub mod lineage;
pub mod merkle;
mod serde_hex;
mod sth;
mod watcher;

pub use entries::{EntryError, LogEntry, MAX_ROUND_PARAMETERS_LEN, NO_DP_BOUND};
pub use lineage::{ItemProof, ItemSetCommitment, ItemSetRoot, LineageError, Membership, SetProof};
pub use merkle::{
    Hash, LogError, MemoryStore, MerkleLog, NodeStore, ProofError, empty_root, leaf_hash,
    node_hash, verify_consistency, verify_inclusion,
};
pub use sth::{
    SignedTreeHead, SthError, TREE_HEAD_DOMAIN, TREE_HEAD_SIGNING_LEN, TreeHead, VerifiedTreeHead,
};
pub use watcher::{Advance, LogWatcher, WatchError};

/// The Ed25519 types the signed tree heads use, re-exported so callers
/// need no direct dependency (or version match) on `ed25519-dalek`.
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
