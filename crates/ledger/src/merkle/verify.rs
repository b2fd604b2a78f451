//! The client's side: checking proofs with nothing but hashes and sizes.
//!
//! These follow the verification algorithms of RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency) step by step, so they can be
//! reviewed against the RFC text. Two things are added in front of them:
//! the expected proof length is computed first, so a proof of the wrong
//! length gets its own error instead of a root mismatch, and the cases the
//! RFC leaves out (equal sizes, an empty old tree, an older size above the
//! newer) are decided explicitly. Every input is treated as hostile: all
//! loops are bounded by the 64 bits of the sizes, nothing indexes out of
//! bounds and nothing panics.

use super::{Hash, empty_root, node_hash};

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size (this includes every
    /// index into an empty tree).
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The older tree is larger than the newer one.
    #[error("the old tree size {old_size} is larger than the new size {new_size}")]
    SizeRegression {
        /// The claimed older size.
        old_size: u64,
        /// The claimed newer size.
        new_size: u64,
    },
    /// The proof does not have the length its sizes and index require.
    #[error("proof has {actual} hashes, {expected} expected")]
    WrongProofLength {
        /// The length the sizes and index require.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The proof does not lead to the old root (consistency proofs), or
    /// an empty old tree was claimed with a root other than the empty one.
    #[error("the proof does not reproduce the old root")]
    OldRootMismatch,
    /// The proof does not lead to the (new) root.
    #[error("the proof does not reproduce the root")]
    RootMismatch,
}

/// The length of a valid inclusion proof of leaf `index` in a tree of
/// `size` leaves, or `None` if `index >= size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    // Below the level where the paths to `index` and to the last leaf
    // part, every level has a sibling; above it, only the levels where
    // `index` is a right child do (the right border has no right sibling).
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index.checked_shr(inner).unwrap_or(0)).count_ones();
    Some((inner + border) as usize)
}

/// The length of a valid consistency proof from a tree of `old_size`
/// leaves to one of `new_size`, or `None` if `old_size > new_size`.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Option<usize> {
    if old_size > new_size {
        return None;
    }
    if old_size == 0 || old_size == new_size {
        return Some(0);
    }
    // A consistency proof is the inclusion path of the old tree's last
    // leaf, minus the levels inside the old tree's rightmost perfect
    // subtree, plus that subtree's hash unless it is the whole old tree.
    let last = old_size - 1;
    let inner = 64 - (last ^ (new_size - 1)).leading_zeros();
    let border = (last.checked_shr(inner).unwrap_or(0)).count_ones();
    let shift = old_size.trailing_zeros();
    let seed = u32::from(!old_size.is_power_of_two());
    Some((seed + inner.saturating_sub(shift) + border) as usize)
}

/// The root that `proof` leads to from leaf hash `leaf` at `index` in a
/// tree of `size` leaves (RFC 9162 §2.1.3.2 steps 1 to 4, plus the `sn`
/// check of step 5).
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    // Step 1.
    let Some(expected) = inclusion_proof_len(index, size) else {
        return Err(ProofError::IndexOutOfRange { index, size });
    };
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // Steps 2 and 3.
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where this node has no right sibling.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5, first half.
    if snode != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Checks that leaf hash `leaf` is entry `index` of the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// The proof binds the leaf's position under `root`; that `root` belongs
/// to `size` is what a signed tree head vouches for.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends
/// the tree of `old_size` leaves with root `old_root`, i.e. the log only
/// appended in between (RFC 9162 §2.1.4.2).
///
/// Cases outside the RFC's `0 < old_size < new_size`: equal sizes need an
/// empty proof and equal roots; an empty old tree needs an empty proof and
/// `old_root` equal to the empty tree's root (every tree extends it).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let Some(expected) = consistency_proof_len(old_size, new_size) else {
        return Err(ProofError::SizeRegression { old_size, new_size });
    };
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if old_size == 0 {
        if *old_root != empty_root() {
            return Err(ProofError::OldRootMismatch);
        }
        return Ok(());
    }

    // Step 1: an empty path fails. `expected >= 1` here, so the length
    // check above already rejected it; kept for a line-by-line reading.
    if proof.is_empty() {
        return Err(wrong_length);
    }
    // Step 2: a power-of-two old tree is itself the subtree the proof
    // starts from, so its root is the path's first element.
    let path = std::iter::once(old_root)
        .filter(|_| old_size.is_power_of_two())
        .chain(proof);
    // Step 3.
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let mut path = path;
    let Some(first) = path.next() else {
        return Err(wrong_length);
    };
    let mut fr = *first;
    let mut sr = *first;
    // Step 6.
    for c in path {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 7.
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn hostile_sizes_never_panic() {
        let h = leaf_hash(b"x");
        for (index, size) in [(0, 0), (1, 0), (5, 5), (u64::MAX, u64::MAX), (0, u64::MAX)] {
            let _ = verify_inclusion(&h, index, size, &[], &h);
            let _ = verify_inclusion(&h, index, size, &[h; 70], &h);
        }
        for (old, new) in [
            (0, 0),
            (1, 0),
            (u64::MAX, 1),
            (1, u64::MAX),
            (u64::MAX, u64::MAX),
        ] {
            let _ = verify_consistency(old, new, &h, &h, &[]);
            let _ = verify_consistency(old, new, &h, &h, &[h; 70]);
        }
        assert_eq!(inclusion_proof_len(0, u64::MAX), Some(64));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Some(63));
        assert_eq!(
            consistency_proof_len(u64::MAX - 1, u64::MAX).map(|n| n > 0),
            Some(true)
        );
    }

    #[test]
    fn out_of_range_index_is_typed() {
        let h = leaf_hash(b"x");
        assert_eq!(
            verify_inclusion(&h, 3, 3, &[], &h),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            verify_consistency(4, 3, &h, &h, &[]),
            Err(ProofError::SizeRegression {
                old_size: 4,
                new_size: 3
            })
        );
    }

    #[test]
    fn single_leaf_tree_root_is_its_leaf() {
        let h = leaf_hash(b"data");
        assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[], &empty_root()),
            Err(ProofError::RootMismatch)
        );
    }

    #[test]
    fn trivial_consistency_cases() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert_eq!(
            verify_consistency(0, 0, &empty_root(), &empty_root(), &[]),
            Ok(())
        );
        assert_eq!(verify_consistency(0, 5, &empty_root(), &a, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 5, &a, &a, &[]),
            Err(ProofError::OldRootMismatch)
        );
        assert_eq!(verify_consistency(1, 1, &a, &a, &[]), Ok(()));
        assert_eq!(
            verify_consistency(1, 1, &a, &b, &[]),
            Err(ProofError::RootMismatch)
        );
        assert!(matches!(
            verify_consistency(1, 1, &a, &a, &[a]),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        ));
        assert!(matches!(
            verify_consistency(1, 2, &a, &b, &[]),
            Err(ProofError::WrongProofLength {
                expected: 1,
                actual: 0
            })
        ));
    }
}
