//! The log operator's side: append leaves, answer roots and proofs.
//!
//! Every subtree that RFC 9162's recursions ask for is either perfect (a
//! stored node) or the right edge of the tree, which splits into at most
//! 64 perfect "peaks". So a root, an inclusion proof or a consistency
//! proof of any past size costs O(log n) node reads and never rehashes
//! leaves, whatever the backing [`NodeStore`].

use super::store::NodeStore;
use super::{Hash, empty_root, leaf_hash, node_hash, split_point};
use crate::sth::TreeHead;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError<E: std::error::Error + 'static> {
    /// The backing store failed.
    #[error("log storage failed")]
    Store(#[source] E),
    /// A size beyond what the log holds was asked for.
    #[error("tree size {size} is beyond the log's {log_size} entries")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The log's size.
        log_size: u64,
    },
    /// A leaf index at or beyond the tree size was asked for.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size it was asked against.
        size: u64,
    },
    /// A consistency proof from a larger to a smaller tree was asked for.
    #[error("no consistency proof from size {old_size} to the smaller size {new_size}")]
    SizeRegression {
        /// The older (first) size.
        old_size: u64,
        /// The newer (second) size.
        new_size: u64,
    },
    /// The store lacks a node it should have: it is corrupt or was written
    /// by something other than a [`MerkleLog`].
    #[error("log storage lacks node (level {level}, index {index})")]
    MissingNode {
        /// The node's level.
        level: u8,
        /// The node's index in its level.
        index: u64,
    },
    /// The log holds `u64::MAX` entries and cannot grow.
    #[error("the log is full")]
    Full,
}

/// An append-only RFC 9162 Merkle tree over a [`NodeStore`].
///
/// The log must be the only writer of its store; readers of the same store
/// may share it (nodes never change once written).
#[derive(Debug, Clone, Default)]
pub struct MerkleLog<S> {
    store: S,
}

impl<S: NodeStore> MerkleLog<S> {
    /// A log over `store`, which may already hold entries.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The backing store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the backing store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The number of entries.
    pub fn size(&self) -> Result<u64, LogError<S::Error>> {
        self.store.size().map_err(LogError::Store)
    }

    /// Appends an entry (its leaf hash is `SHA-256(0x00 || leaf_data)`)
    /// and returns its index.
    pub fn append(&mut self, leaf_data: &[u8]) -> Result<u64, LogError<S::Error>> {
        self.append_hash(leaf_hash(leaf_data))
    }

    /// Appends an already computed leaf hash and returns its index.
    pub fn append_hash(&mut self, leaf: Hash) -> Result<u64, LogError<S::Error>> {
        let index = self.size()?;
        if index == u64::MAX {
            return Err(LogError::Full);
        }
        // Each trailing 1 bit of the old size is a left sibling that the
        // new leaf completes into a perfect subtree one level up.
        let mut nodes = Vec::with_capacity(1 + index.trailing_ones() as usize);
        nodes.push(leaf);
        let mut hash = leaf;
        let mut at = index;
        let mut level = 0u8;
        while at & 1 == 1 {
            let left = self.perfect(level, at - 1)?;
            hash = node_hash(&left, &hash);
            nodes.push(hash);
            at >>= 1;
            level += 1;
        }
        self.store.append(&nodes).map_err(LogError::Store)?;
        Ok(index)
    }

    /// The current root.
    pub fn root(&self) -> Result<Hash, LogError<S::Error>> {
        let size = self.size()?;
        self.root_at(size)
    }

    /// The root the log had when it held `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError<S::Error>> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }

    /// The current [`TreeHead`], stamped with `timestamp_ms`, ready to sign.
    pub fn tree_head(&self, timestamp_ms: u64) -> Result<TreeHead, LogError<S::Error>> {
        let size = self.size()?;
        Ok(TreeHead {
            size,
            root: self.root_at(size)?,
            timestamp_ms,
        })
    }

    /// The hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, LogError<S::Error>> {
        let size = self.size()?;
        if index >= size {
            return Err(LogError::IndexOutOfRange { index, size });
        }
        self.perfect(0, index)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` entries:
    /// `PATH(index, D[size])` of RFC 9162 §2.1.3.1, nearest sibling first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError<S::Error>> {
        self.check_size(size)?;
        if index >= size {
            return Err(LogError::IndexOutOfRange { index, size });
        }
        // Walk down from the root, recording each sibling; the recursion
        // appends the sibling after the deeper path, hence the reverse.
        let mut path = Vec::with_capacity(64);
        let (mut start, mut end) = (0u64, size);
        while end - start > 1 {
            let k = split_point(end - start);
            if index - start < k {
                path.push(self.subtree(start + k, end)?);
                end = start + k;
            } else {
                path.push(self.subtree(start, start + k)?);
                start += k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The consistency proof between the trees of `old_size` and
    /// `new_size` entries: `PROOF(old_size, D[new_size])` of RFC 9162
    /// §2.1.4.1. Empty when `old_size` is 0 or equals `new_size`, where
    /// the RFC defines no proof and none is needed.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, LogError<S::Error>> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(LogError::SizeRegression { old_size, new_size });
        }
        if old_size == 0 || old_size == new_size {
            return Ok(Vec::new());
        }
        // SUBPROOF(m, D[start:end], b), unrolled; `m` is relative to `start`.
        let mut proof = Vec::with_capacity(64);
        let (mut start, mut end) = (0u64, new_size);
        let mut m = old_size;
        let mut whole = true; // the RFC's `b`: is D[start:start+m] an old root?
        loop {
            let n = end - start;
            if m == n {
                if !whole {
                    proof.push(self.subtree(start, end)?);
                }
                break;
            }
            let k = split_point(n);
            if m <= k {
                proof.push(self.subtree(start + k, end)?);
                end = start + k;
            } else {
                proof.push(self.subtree(start, start + k)?);
                start += k;
                m -= k;
                whole = false;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), LogError<S::Error>> {
        let log_size = self.size()?;
        if size > log_size {
            return Err(LogError::SizeOutOfRange { size, log_size });
        }
        Ok(())
    }

    /// A stored perfect-subtree node, which must exist.
    fn perfect(&self, level: u8, index: u64) -> Result<Hash, LogError<S::Error>> {
        self.store
            .node(level, index)
            .map_err(LogError::Store)?
            .ok_or(LogError::MissingNode { level, index })
    }

    /// MTH(D[start:end]) for the ranges RFC 9162's recursions produce:
    /// `start` is a multiple of a power of two at least `end - start`.
    /// Such a range is a run of perfect subtrees ("peaks"), largest first,
    /// whose hash folds from the right: H(p0, H(p1, H(p2, ...))).
    fn subtree(&self, start: u64, end: u64) -> Result<Hash, LogError<S::Error>> {
        debug_assert!(start < end);
        debug_assert!(
            start == 0 || start.trailing_zeros() >= 64 - (end - start - 1).leading_zeros()
        );
        let width = end - start;
        let mut peaks = [Hash::from_bytes([0; 32]); 64];
        let mut count = 0;
        let mut offset = start;
        for level in (0..64u8).rev() {
            if (width >> level) & 1 == 1 {
                peaks[count] = self.perfect(level, offset >> level)?;
                count += 1;
                offset += 1 << level;
            }
        }
        let mut peaks = peaks[..count].iter().rev();
        let Some(mut hash) = peaks.next().copied() else {
            return Ok(empty_root());
        };
        for left in peaks {
            hash = node_hash(left, &hash);
        }
        Ok(hash)
    }
}
