//! Signed tree heads: the log operator's signed statement "after `size`
//! entries my tree's root was `root`, at `timestamp_ms`".
//!
//! A root alone proves nothing about who published it; the signature binds
//! it to the log's key, so a log that shows two clients different histories
//! hands each of them signed, contradictory evidence (see
//! [`crate::LogWatcher`]). The signed bytes are a fixed-length canonical
//! encoding rather than JSON, so there is exactly one byte string per head
//! and no serializer detail can change what a signature covers.
//!
//! Checking a signature yields a [`VerifiedTreeHead`], a type that can only
//! be made by that check (the pattern rustls uses for verified handshake
//! messages): code that takes one cannot be handed an unchecked head.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{HASH_LEN, Hash};

/// The domain tag that starts every signed tree head encoding, so a
/// signature over a tree head can never be replayed as a signature over
/// anything else the same key signs.
pub const TREE_HEAD_DOMAIN: &[u8; 13] = b"hearth-sth-v1";

/// Length of [`TreeHead::to_signing_bytes`].
pub const TREE_HEAD_SIGNING_LEN: usize = TREE_HEAD_DOMAIN.len() + 8 + 8 + HASH_LEN;

/// The state of a log at one moment: how many entries, and their root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// The number of entries.
    pub size: u64,
    /// The Merkle Tree Hash of those entries.
    pub root: Hash,
    /// When the log produced this head, in milliseconds since the Unix
    /// epoch.
    pub timestamp_ms: u64,
}

impl TreeHead {
    /// The canonical bytes a signature covers:
    /// `"hearth-sth-v1" || size (u64 BE) || timestamp_ms (u64 BE) || root`.
    /// Every field has a fixed length, so the encoding is unambiguous.
    pub fn to_signing_bytes(&self) -> [u8; TREE_HEAD_SIGNING_LEN] {
        let mut out = [0u8; TREE_HEAD_SIGNING_LEN];
        let (domain, rest) = out.split_at_mut(TREE_HEAD_DOMAIN.len());
        domain.copy_from_slice(TREE_HEAD_DOMAIN);
        let (size, rest) = rest.split_at_mut(8);
        size.copy_from_slice(&self.size.to_be_bytes());
        let (timestamp, root) = rest.split_at_mut(8);
        timestamp.copy_from_slice(&self.timestamp_ms.to_be_bytes());
        root.copy_from_slice(self.root.as_bytes());
        out
    }

    /// Signs this head with the log's key.
    pub fn sign(&self, key: &SigningKey) -> SignedTreeHead {
        SignedTreeHead {
            head: *self,
            signature: key.sign(&self.to_signing_bytes()),
        }
    }
}

/// A [`TreeHead`] with the log's Ed25519 signature over its canonical
/// bytes, as the log publishes it. Not yet trusted: see [`Self::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    /// The signed statement.
    pub head: TreeHead,
    /// Ed25519 over [`TreeHead::to_signing_bytes`], 128 hex digits in serde.
    #[serde(with = "crate::serde_hex::signature")]
    pub signature: Signature,
}

impl SignedTreeHead {
    /// Checks the signature against the log's public key. Uses Ed25519's
    /// strict verification, which also refuses malleable signatures and
    /// weak keys, so one head has one valid signature per key.
    pub fn verify(&self, log_key: &VerifyingKey) -> Result<VerifiedTreeHead, SthError> {
        log_key
            .verify_strict(&self.head.to_signing_bytes(), &self.signature)
            .map_err(|_| SthError::BadSignature)?;
        Ok(VerifiedTreeHead(self.head))
    }
}

/// Why a signed tree head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SthError {
    /// The signature is not the log key's signature over this head.
    #[error("the tree head's signature does not verify under the log's key")]
    BadSignature,
}

/// A tree head whose signature has been checked: only
/// [`SignedTreeHead::verify`] makes one. Serializes (to report it) but
/// does not deserialize, since reading one back would skip the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VerifiedTreeHead(TreeHead);

impl VerifiedTreeHead {
    /// The verified head.
    pub fn head(&self) -> &TreeHead {
        &self.0
    }

    /// The number of entries.
    pub fn size(&self) -> u64 {
        self.0.size
    }

    /// The root of those entries.
    pub fn root(&self) -> Hash {
        self.0.root
    }

    /// When the log produced the head (ms since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn head() -> TreeHead {
        TreeHead {
            size: 7,
            root: leaf_hash(b"r"),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn signing_bytes_layout() {
        let h = head();
        let bytes = h.to_signing_bytes();
        assert_eq!(&bytes[..13], b"hearth-sth-v1");
        assert_eq!(bytes[13..21], 7u64.to_be_bytes());
        assert_eq!(bytes[21..29], 1_700_000_000_000u64.to_be_bytes());
        assert_eq!(&bytes[29..], h.root.as_bytes());
    }

    #[test]
    fn sign_and_verify() {
        let sth = head().sign(&key(1));
        let verified = sth.verify(&key(1).verifying_key()).expect("valid");
        assert_eq!(verified.head(), &head());
        assert_eq!(
            sth.verify(&key(2).verifying_key()),
            Err(SthError::BadSignature)
        );
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let pk = key(1).verifying_key();
        let sth = head().sign(&key(1));
        let mut t = sth.clone();
        t.head.size += 1;
        assert!(t.verify(&pk).is_err());
        let mut t = sth.clone();
        t.head.timestamp_ms -= 1;
        assert!(t.verify(&pk).is_err());
        let mut t = sth.clone();
        t.head.root = t.head.root.flip_bit(100);
        assert!(t.verify(&pk).is_err());
        let mut sig = sth.signature.to_bytes();
        sig[5] ^= 0x10;
        let t = SignedTreeHead {
            signature: Signature::from_bytes(&sig),
            ..sth
        };
        assert!(t.verify(&pk).is_err());
    }

    #[test]
    fn serde_round_trip_uses_hex() {
        let sth = head().sign(&key(3));
        let json = serde_json::to_value(&sth).expect("serialize");
        let sig = json["signature"].as_str().expect("hex string");
        assert_eq!(sig.len(), 128);
        assert_eq!(
            json["head"]["root"].as_str(),
            Some(head().root.to_string().as_str())
        );
        let back: SignedTreeHead = serde_json::from_value(json).expect("parse");
        assert_eq!(back, sth);
    }
}
