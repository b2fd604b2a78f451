//! The cryptographic building blocks of a round, composed from well-kept
//! crates (dalek, RustCrypto) and nothing home-made:
//!
//! - [`DeviceIdentity`] / [`IdentityKey`] / [`DeviceId`]: a device's
//!   long-lived Ed25519 key. It signs the device's round keys, so a client can
//!   check that the keys the server relays from a neighbour really are that
//!   neighbour's, without trusting the server with anything but delivery.
//! - round keys: two fresh X25519 keys per client per round, one to encrypt
//!   Shamir shares to neighbours, one for pairwise mask agreement. They are
//!   advertised in a signed [`AdvertiseKeys`](crate::wire::AdvertiseKeys).
//! - the share box: X25519 + HKDF-SHA256 + ChaCha20-Poly1305, every
//!   derivation bound to (federation, round, sender, recipient).
//!
//! # Domain separation
//!
//! Every HKDF `info`, AEAD associated data and signed transcript starts with
//! a length-prefixed label naming its purpose, followed by fixed-width
//! fields. A label is never a prefix of an encoding for another purpose, so
//! no output of one derivation can be mistaken for, or replayed as, another.
//! The labels and what each protects are in the `labels` consts below.
//!
//! # Secrets
//!
//! Secret types zeroize on drop, implement neither `Clone` nor `Serialize`,
//! and print no secret in `Debug`. Comparisons of values derived from
//! secrets use [`subtle::ConstantTimeEq`].

mod identity;
pub(crate) mod round_keys;
pub(crate) mod share_box;

pub use identity::{DeviceId, DeviceIdentity, IdentityKey};

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids::RoundContext;

/// What can go wrong with keys, signatures and ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// 32 bytes that do not decode to an Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidIdentityKey,
    /// An Ed25519 public key of small order, for which signatures prove
    /// nothing.
    #[error("weak (small-order) Ed25519 public key")]
    WeakIdentityKey,
    /// A signature that does not verify under strict Ed25519 rules.
    #[error("signature does not verify")]
    BadSignature,
    /// An X25519 agreement whose output is all zero: the peer sent a
    /// low-order point, and the "shared" secret would be public.
    #[error("X25519 agreement with a low-order public key")]
    NonContributory,
    /// A share ciphertext that fails authentication (tampered, truncated,
    /// misaddressed, or from another round).
    #[error("share ciphertext does not authenticate")]
    Decryption,
    /// A share plaintext that authenticated but does not hold two canonical
    /// field elements.
    #[error("share plaintext is malformed")]
    MalformedPlaintext,
}

/// Domain-separation labels. Each is prefixed by its length wherever it is
/// used, and followed only by fixed-width fields.
pub(crate) mod labels {
    /// HKDF salt for every derivation in this crate: keeps these keys apart
    /// from any other protocol that might ever hash the same input material.
    pub(crate) const PROTOCOL: &[u8] = b"hearth/fed/secagg+/v1";
    /// Signed transcript of a client's round keys. Protects: a server (or
    /// anyone relaying) swapping in its own keys for a neighbour's, which
    /// would let it decrypt that neighbour's shares and strip its masks.
    pub(crate) const ADVERTISE: &[u8] = b"advertise-round-keys";
    /// HKDF info for a share-box key. Protects: one direction's ciphertext
    /// being accepted in the other direction, by another recipient, or in
    /// another round (the DH output is symmetric; the info is not).
    pub(crate) const SHARE_BOX_KEY: &[u8] = b"share-box-key";
    /// AEAD associated data of a share box: binds the same context into the
    /// tag itself, so the binding survives any future change of key schedule.
    pub(crate) const SHARE_BOX_AAD: &[u8] = b"share-box-aad";
    /// HKDF info turning the shared mask scalar into the X25519 mask secret.
    /// Protects: the field element that is Shamir-shared being used directly
    /// as a key (it is reduced mod l; the X25519 secret should be uniform).
    pub(crate) const MASK_AGREEMENT_KEY: &[u8] = b"mask-agreement-key";
    /// HKDF info turning the shared self-mask scalar into the PRG seed.
    pub(crate) const SELF_MASK_SEED: &[u8] = b"self-mask-seed";
    /// HKDF info for the public commitment to the self-mask scalar. Being a
    /// different PRF output from the seed, it reveals nothing about the
    /// seed, yet lets the server check a reconstruction.
    pub(crate) const SELF_MASK_COMMITMENT: &[u8] = b"self-mask-commitment";
    /// HKDF info for a pairwise mask seed. Protects: a pair's mask being
    /// reused across rounds or between different pairs.
    pub(crate) const PAIRWISE_MASK: &[u8] = b"pairwise-mask-seed";
    /// HKDF info for the neighbour-graph permutation key.
    pub(crate) const GRAPH: &[u8] = b"neighbour-graph";
    /// Hash of a round's canonical parameters. Protects: two devices being
    /// shown different parameters for one round (see `RoundContext`).
    pub(crate) const ROUND_INFO: &[u8] = b"round-info";
    /// Hash of the cohort list a device was shown.
    pub(crate) const COHORT: &[u8] = b"cohort";
    /// Signed transcript of the consistency round: the cohort digest and
    /// the survivor set a device saw. Protects: the server telling some
    /// neighbours that a device survived and others that it dropped, which
    /// would hand it both secrets behind one device's masks.
    pub(crate) const CONSISTENCY: &[u8] = b"survivor-set-signature";
}

/// `len(label) || label || context || parts...`: the one encoding of every
/// HKDF info, AEAD associated data and signed transcript in this crate.
pub(crate) fn transcript(label: &[u8], context: &RoundContext, parts: &[&[u8]]) -> Vec<u8> {
    let label_len = u8::try_from(label.len()).unwrap_or(u8::MAX);
    let mut out =
        Vec::with_capacity(1 + label.len() + 56 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.push(label_len);
    out.extend_from_slice(label);
    out.extend_from_slice(&context.to_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// HKDF-SHA256 with the protocol salt: 32 bytes from `ikm`, bound to
/// `label`, the round and `parts`.
pub(crate) fn derive_key(
    ikm: &[u8],
    label: &[u8],
    context: &RoundContext,
    parts: &[&[u8]],
) -> Zeroizing<[u8; 32]> {
    let info = transcript(label, context, parts);
    let hk = Hkdf::<Sha256>::new(Some(labels::PROTOCOL), ikm);
    let mut okm = Zeroizing::new([0u8; 32]);
    if hk.expand(&info, okm.as_mut()).is_err() {
        // HKDF-SHA256 can expand up to 255 * 32 bytes; 32 is always fine.
        unreachable!("32-byte HKDF-SHA256 output is within the RFC 5869 limit");
    }
    okm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FederationId, RoundId};

    #[test]
    fn labels_are_distinct_and_not_prefixes() {
        let all = [
            labels::ADVERTISE,
            labels::SHARE_BOX_KEY,
            labels::SHARE_BOX_AAD,
            labels::MASK_AGREEMENT_KEY,
            labels::SELF_MASK_SEED,
            labels::SELF_MASK_COMMITMENT,
            labels::PAIRWISE_MASK,
            labels::GRAPH,
            labels::ROUND_INFO,
            labels::COHORT,
            labels::CONSISTENCY,
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                if i != j {
                    assert!(!b.starts_with(a), "{a:?} is a prefix of {b:?}");
                }
            }
        }
    }

    #[test]
    fn derivations_differ_by_label_round_and_parts() {
        let ctx = RoundContext::new(FederationId::from_bytes([1; 16]), RoundId(3));
        let other_round = RoundContext::new(FederationId::from_bytes([1; 16]), RoundId(4));
        let base = derive_key(b"ikm", labels::SELF_MASK_SEED, &ctx, &[b"a"]);
        assert_ne!(
            *base,
            *derive_key(b"ikm", labels::SELF_MASK_COMMITMENT, &ctx, &[b"a"])
        );
        assert_ne!(
            *base,
            *derive_key(b"ikm", labels::SELF_MASK_SEED, &other_round, &[b"a"])
        );
        assert_ne!(
            *base,
            *derive_key(b"ikm", labels::SELF_MASK_SEED, &ctx, &[b"b"])
        );
        assert_eq!(
            *base,
            *derive_key(b"ikm", labels::SELF_MASK_SEED, &ctx, &[b"a"])
        );
    }
}
