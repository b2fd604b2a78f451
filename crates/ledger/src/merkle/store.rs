//! Where an append-only tree keeps its nodes.
//!
//! A log only ever needs the hashes of *perfect* subtrees: the subtree of
//! `2^level` leaves starting at leaf `index * 2^level`, once all of its
//! leaves exist. Such a node never changes after it is written, so a store
//! is append-only per level, and any root, inclusion proof or consistency
//! proof of any past size is a combination of O(log n) of them (see
//! [`super::MerkleLog`]). Keeping that behind a trait lets the server put
//! the same nodes in SQLite (one table `(level, index) -> hash`) or a
//! larger database, while tests and benches use [`MemoryStore`].

use std::convert::Infallible;

use super::Hash;

/// Storage of a log's leaf hashes and complete-subtree hashes.
///
/// Node `(level, index)` is the Merkle Tree Hash of leaves
/// `[index << level, (index + 1) << level)`; level 0 holds the leaf hashes.
/// A node exists once its last leaf has been appended, and never changes.
pub trait NodeStore {
    /// What can go wrong in the backing storage.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The number of leaves stored.
    fn size(&self) -> Result<u64, Self::Error>;

    /// Node `(level, index)`, or `None` if it is not (yet) complete.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;

    /// Records one more leaf and every subtree it completes, atomically: a
    /// store that can fail half way (a database) writes all of them in one
    /// transaction or none.
    ///
    /// With `n` the size before the call, `nodes[k]` is node
    /// `(k, n >> k)`: `nodes[0]` is the new leaf's hash and there are
    /// `1 + n.trailing_ones()` of them.
    fn append(&mut self, nodes: &[Hash]) -> Result<(), Self::Error>;
}

/// A [`NodeStore`] in memory: one vector of hashes per level.
///
/// About 64 bytes per leaf (a leaf hash plus, on average, one inner node).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with room for `leaves` leaves before reallocating.
    pub fn with_capacity(leaves: usize) -> Self {
        let mut levels = Vec::new();
        let mut width = leaves;
        while width > 0 {
            levels.push(Vec::with_capacity(width));
            width /= 2;
        }
        Self { levels }
    }

    /// The number of hashes held, all levels together.
    pub fn node_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
}

impl NodeStore for MemoryStore {
    type Error = Infallible;

    fn size(&self) -> Result<u64, Infallible> {
        Ok(self.levels.first().map_or(0, |leaves| leaves.len() as u64))
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        let Ok(index) = usize::try_from(index) else {
            return Ok(None);
        };
        Ok(self
            .levels
            .get(usize::from(level))
            .and_then(|nodes| nodes.get(index))
            .copied())
    }

    fn append(&mut self, nodes: &[Hash]) -> Result<(), Infallible> {
        for (level, hash) in nodes.iter().enumerate() {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            // `levels.len() > level` was just ensured.
            if let Some(row) = self.levels.get_mut(level) {
                row.push(*hash);
            }
        }
        Ok(())
    }
}
