//! Commitments to the set of items a training run used, with proofs of
//! membership and of absence.
//!
//! A training run records one [`ItemSetRoot`] (a Merkle root and a count)
//! for the content hashes of the items it trained on. Later, anyone holding
//! that root can be shown, without seeing the other items, either that a
//! photo *was* in the training data (an inclusion proof) or that it was
//! *not* (its two neighbours in sorted order, adjacent in the tree, with
//! the photo falling strictly between them; or the first or last item at
//! the edges; or an empty set).
//!
//! The tree is the same RFC 9162 tree as the log, built over the item
//! hashes sorted and deduplicated; each leaf is `SHA-256(0x00 || item)`.
//! Absence proofs rely on that order, which a verifier cannot check from a
//! root alone: they convince whoever trusts the committer to have sorted,
//! which holds for lineage a device computes for itself with this type.

use serde::{Deserialize, Serialize};

use crate::merkle::{
    Hash, MemoryStore, MerkleLog, ProofError, empty_root, leaf_hash, verify_inclusion,
};

/// The public commitment to a set of items: what lineage records keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ItemSetRoot {
    /// The Merkle root over the sorted items (hex).
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub root: Hash,
    /// How many distinct items the set holds.
    pub count: u64,
}

/// A set of item hashes, sorted and deduplicated, with its Merkle tree.
#[derive(Debug, Clone)]
pub struct ItemSetCommitment {
    items: Vec<Hash>,
    tree: MerkleLog<MemoryStore>,
    root: ItemSetRoot,
}

/// One item's place in the committed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemProof {
    /// The item.
    pub item: Hash,
    /// Its position in sorted order.
    pub index: u64,
    /// Its inclusion proof (RFC 9162 `PATH`) in the set's tree.
    pub path: Vec<Hash>,
}

/// Evidence that an item is, or is not, in a committed set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SetProof {
    /// The item is in the set, at this position.
    Present(ItemProof),
    /// The set is empty.
    EmptySet,
    /// The item sorts before the set's first item.
    BeforeFirst {
        /// The first item (index 0).
        first: ItemProof,
    },
    /// The item sorts after the set's last item.
    AfterLast {
        /// The last item (index count - 1).
        last: ItemProof,
    },
    /// The item sorts strictly between two adjacent items.
    Between {
        /// The largest item below it.
        left: ItemProof,
        /// The smallest item above it (at `left.index + 1`).
        right: ItemProof,
    },
}

/// What a verified [`SetProof`] established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// The item is in the set.
    Present,
    /// The item is not in the set.
    Absent,
}

/// Why a [`SetProof`] did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineageError {
    /// The proof is about another item than the one asked about.
    #[error("the proof is for another item")]
    WrongItem,
    /// The neighbours do not enclose the item in sorted order (so the item
    /// may well be in the set).
    #[error("the proof's neighbours do not enclose the item")]
    NotEnclosed,
    /// The neighbours are not next to each other, or not at the edge
    /// claimed.
    #[error("the proof's items are not at the claimed positions")]
    WrongPosition,
    /// The set is not empty, or its root is not the empty tree's.
    #[error("the set is not empty")]
    NotEmpty,
    /// An item's inclusion proof fails against the root.
    #[error("an inclusion proof does not match the set's root")]
    Inclusion(#[source] ProofError),
}

impl ItemSetCommitment {
    /// Commits to `items`, sorting them and dropping duplicates.
    pub fn new(items: impl IntoIterator<Item = Hash>) -> Self {
        let mut items: Vec<Hash> = items.into_iter().collect();
        items.sort_unstable();
        items.dedup();
        let mut tree = MerkleLog::new(MemoryStore::with_capacity(items.len()));
        for item in &items {
            // A memory store never fails and never fills up.
            let _ = tree.append(item.as_bytes());
        }
        let root = ItemSetRoot {
            root: tree.root().unwrap_or_else(|_| empty_root()),
            count: items.len() as u64,
        };
        Self { items, tree, root }
    }

    /// The public commitment.
    pub fn root(&self) -> ItemSetRoot {
        self.root
    }

    /// The items, sorted.
    pub fn items(&self) -> &[Hash] {
        &self.items
    }

    /// How many distinct items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, item: &Hash) -> bool {
        self.items.binary_search(item).is_ok()
    }

    /// Proves that `item` is in the set, or that it is not.
    pub fn prove(&self, item: &Hash) -> SetProof {
        match self.items.binary_search(item) {
            Ok(i) => SetProof::Present(self.item_proof(i)),
            Err(_) if self.items.is_empty() => SetProof::EmptySet,
            Err(0) => SetProof::BeforeFirst {
                first: self.item_proof(0),
            },
            Err(i) if i == self.items.len() => SetProof::AfterLast {
                last: self.item_proof(i - 1),
            },
            Err(i) => SetProof::Between {
                left: self.item_proof(i - 1),
                right: self.item_proof(i),
            },
        }
    }

    fn item_proof(&self, index: usize) -> ItemProof {
        let item = self.items.get(index).copied().unwrap_or_else(empty_root);
        let index = index as u64;
        ItemProof {
            item,
            index,
            // Cannot fail for an index below the size of a memory store;
            // an empty path would only make the proof fail verification.
            path: self
                .tree
                .inclusion_proof(index, self.root.count)
                .unwrap_or_default(),
        }
    }
}

impl ItemProof {
    fn verify(&self, set: &ItemSetRoot) -> Result<(), LineageError> {
        verify_inclusion(
            &leaf_hash(self.item.as_bytes()),
            self.index,
            set.count,
            &self.path,
            &set.root,
        )
        .map_err(LineageError::Inclusion)
    }
}

impl SetProof {
    /// Checks this proof about `item` against the commitment `set`, and
    /// says what it established.
    pub fn verify(&self, item: &Hash, set: &ItemSetRoot) -> Result<Membership, LineageError> {
        match self {
            Self::Present(p) => {
                if p.item != *item {
                    return Err(LineageError::WrongItem);
                }
                p.verify(set)?;
                Ok(Membership::Present)
            }
            Self::EmptySet => {
                if set.count != 0 || set.root != empty_root() {
                    return Err(LineageError::NotEmpty);
                }
                Ok(Membership::Absent)
            }
            Self::BeforeFirst { first } => {
                if first.index != 0 {
                    return Err(LineageError::WrongPosition);
                }
                if *item >= first.item {
                    return Err(LineageError::NotEnclosed);
                }
                first.verify(set)?;
                Ok(Membership::Absent)
            }
            Self::AfterLast { last } => {
                if set.count == 0 || last.index != set.count - 1 {
                    return Err(LineageError::WrongPosition);
                }
                if *item <= last.item {
                    return Err(LineageError::NotEnclosed);
                }
                last.verify(set)?;
                Ok(Membership::Absent)
            }
            Self::Between { left, right } => {
                if left.index.checked_add(1) != Some(right.index) {
                    return Err(LineageError::WrongPosition);
                }
                if !(left.item < *item && *item < right.item) {
                    return Err(LineageError::NotEnclosed);
                }
                left.verify(set)?;
                right.verify(set)?;
                Ok(Membership::Absent)
            }
        }
    }
}
