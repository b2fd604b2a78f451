//! Names for federations and rounds, and the pair of them that every key,
//! signature and ciphertext of a round is bound to.
//!
//! Binding the (federation, round) pair into every derivation is what stops
//! a message, a share or a mask from one round being replayed into another:
//! the same bytes mean nothing under a different context.

use std::fmt;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

/// A federation, named by 16 random bytes its operator chose when creating
/// it. Written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FederationId(#[serde(with = "crate::wire::encoding::hex_array")] [u8; 16]);

impl FederationId {
    /// The federation with these 16 bytes as its name.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A fresh random name.
    pub fn random<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The 16 bytes of the name.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The federation an operator named `name` (the server's text id, as
    /// in `/v1/federations/{name}`): the first 16 bytes of
    /// `SHA-256("hearth-federation-v1\0" || name)`. Server and devices
    /// derive it independently, so every key, share and mask of a round is
    /// bound to the federation the device enrolled in.
    pub fn from_name(name: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"hearth-federation-v1\0")
            .chain_update(name.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Self(bytes)
    }
}

impl fmt::Display for FederationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for FederationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FederationId({self})")
    }
}

/// One round of a federation. The server numbers rounds; a round number is
/// never reused within a federation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoundId(pub u64);

impl fmt::Display for RoundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The (federation, round) pair and the digest of the round's parameters
/// ([`RoundInfo::digest`](crate::wire::RoundInfo::digest)), in the fixed
/// 56-byte form that goes into every transcript, HKDF `info` and AEAD
/// associated data. Binding the parameters' digest means a device shown
/// other parameters (another graph seed, degree, threshold, noise split)
/// derives other keys and verifies no signature made under this view: a
/// server cannot show devices different views of one round and still get
/// them to talk to each other.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RoundContext {
    pub(crate) federation: FederationId,
    pub(crate) round: RoundId,
    pub(crate) info: [u8; 32],
}

impl RoundContext {
    /// A context bound to the federation and round only (an all-zero
    /// parameter digest): for derivations whose other inputs already carry
    /// the parameters they depend on (the neighbour graph takes its seed
    /// and degree directly), and for unit tests of the primitives.
    pub(crate) const fn new(federation: FederationId, round: RoundId) -> Self {
        Self::bound(federation, round, [0; 32])
    }

    /// A context bound to the round's parameter digest.
    pub(crate) const fn bound(federation: FederationId, round: RoundId, info: [u8; 32]) -> Self {
        Self {
            federation,
            round,
            info,
        }
    }

    /// `federation (16 bytes) || round (u64 little-endian) || digest (32
    /// bytes)`: fixed width, so the encoding is injective wherever it is
    /// concatenated with other fixed-width fields.
    pub(crate) fn to_bytes(self) -> [u8; 56] {
        let mut out = [0u8; 56];
        let (fed, rest) = out.split_at_mut(16);
        let (round, info) = rest.split_at_mut(8);
        fed.copy_from_slice(&self.federation.0);
        round.copy_from_slice(&self.round.0.to_le_bytes());
        info.copy_from_slice(&self.info);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_bytes_are_fixed_width_and_distinct() {
        let fed = FederationId::from_bytes([7; 16]);
        let a = RoundContext::new(fed, RoundId(1)).to_bytes();
        let b = RoundContext::new(fed, RoundId(2)).to_bytes();
        assert_ne!(a, b);
        assert_eq!(&a[..16], &[7; 16]);
        assert_eq!(&a[16..24], &1u64.to_le_bytes());
        let c = RoundContext::bound(fed, RoundId(1), [9; 32]).to_bytes();
        assert_eq!(&c[..24], &a[..24]);
        assert_ne!(a, c);
    }

    #[test]
    fn names_map_to_distinct_stable_ids() {
        let notes = FederationId::from_name("notes");
        assert_eq!(notes, FederationId::from_name("notes"));
        assert_ne!(notes, FederationId::from_name("photos"));
        assert_ne!(notes, FederationId::from_name("notes "));
    }

    #[test]
    fn federation_id_is_hex_in_json() -> Result<(), serde_json::Error> {
        let fed = FederationId::from_bytes([0xab; 16]);
        let json = serde_json::to_string(&fed)?;
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<FederationId>(&json)?, fed);
        assert!(serde_json::from_str::<FederationId>("\"abcd\"").is_err());
        Ok(())
    }
}
