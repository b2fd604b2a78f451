//! The Merkle Tree Hash of RFC 9162 §2.1 (identical to RFC 6962 §2.1), the
//! append-only tree that stores it, and the proofs that let a client check
//! the tree without holding it.
//!
//! Why RFC 9162 and not a home-made tree: its hashing is domain separated
//! (a leaf can never be passed off as an inner node, so no second-preimage
//! trick), its proofs are the ones every Certificate Transparency client
//! checks, and its published test vectors let us prove we compute the same
//! hashes as independent implementations.
//!
//! The module is split by who uses it:
//! - hashing ([`leaf_hash`], [`node_hash`], [`empty_root`]) is shared;
//! - [`MerkleLog`] over a [`NodeStore`] is the log operator's side;
//! - [`verify_inclusion`] and [`verify_consistency`] are the client's side
//!   and need nothing but hashes, sizes and the proof.

mod log;
mod store;
mod verify;

pub use log::{LogError, MerkleLog};
pub use store::{MemoryStore, NodeStore};
pub use verify::{
    ProofError, consistency_proof_len, inclusion_proof_len, root_from_inclusion_proof,
    verify_consistency, verify_inclusion,
};

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length in bytes of a [`Hash`](struct@Hash) (SHA-256).
pub const HASH_LEN: usize = 32;

/// Prefix of a leaf's hash input (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an inner node's hash input (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 digest: a Merkle tree node, a root, or a content hash.
///
/// Equality is constant time (`subtle`), because roots and proof elements
/// are compared against attacker-supplied values and a timing side channel
/// on a comparison is cheap to avoid. Ordering is plain byte order; it is
/// only used to sort public item hashes (see [`crate::lineage`]).
///
/// Displays and serializes as 64 lowercase hex digits.
#[derive(Clone, Copy)]
pub struct Hash([u8; HASH_LEN]);

impl Hash {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// The raw bytes, by value.
    pub const fn to_bytes(self) -> [u8; HASH_LEN] {
        self.0
    }

    /// Plain SHA-256 of `data`, with no Merkle prefix: the content hash of a
    /// file, a config or an adapter, as recorded in log entries.
    pub fn sha256(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex_digits: &str) -> Result<Self, ParseHashError> {
        let mut bytes = [0u8; HASH_LEN];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(ParseHashError)?;
        Ok(Self(bytes))
    }

    /// This hash with bit `bit` (0 = least significant bit of byte 0)
    /// inverted, wrapping modulo 256 bits. For tamper tests and benches.
    pub fn flip_bit(self, bit: usize) -> Self {
        let bit = bit % (HASH_LEN * 8);
        let mut bytes = self.0;
        bytes[bit / 8] ^= 1 << (bit % 8);
        Self(bytes)
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not a SHA-256 hash in hex (64 digits): {0}")]
pub struct ParseHashError(hex::FromHexError);

impl ConstantTimeEq for Hash {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Hash {}

impl PartialOrd for Hash {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hash {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl std::hash::Hash for Hash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl From<[u8; HASH_LEN]> for Hash {
    fn from(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }
}

impl From<Hash> for [u8; HASH_LEN] {
    fn from(hash: Hash) -> Self {
        hash.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; HASH_LEN * 2];
        // Cannot fail: the buffer is exactly twice the input.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl FromStr for Hash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::serde_hex::serialize(&self.0, serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::serde_hex::deserialize(deserializer).map(Self)
    }
}

/// The hash of a leaf: `SHA-256(0x00 || data)` (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    Hash(h.finalize().into())
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`
/// (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub const fn empty_root() -> Hash {
    // e3b0c442...b855, spelled out so it can be a constant; a unit test
    // checks it against SHA-256 of the empty string.
    Hash([
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ])
}

/// The largest power of two strictly below `n`, for `n >= 2`: the split
/// point `k` of RFC 9162 §2.1.1. Returns 0 for `n < 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), Hash::sha256(b""));
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(0), 0);
        assert_eq!(split_point(1), 0);
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point(1 << 63), 1 << 62);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_string()), Ok(h));
        assert_eq!(h.to_string().parse::<Hash>(), Ok(h));
        assert!(Hash::from_hex("00").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&h).expect("serialize");
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<Hash>(&json).expect("parse"), h);
        assert!(serde_json::from_str::<Hash>("\"abcd\"").is_err());
    }

    #[test]
    fn flip_bit_changes_one_bit() {
        let h = Hash::from_bytes([0; 32]);
        assert_eq!(h.flip_bit(9).as_bytes()[1], 2);
        assert_ne!(h.flip_bit(255), h);
        assert_eq!(h.flip_bit(256), h.flip_bit(0));
    }
}
