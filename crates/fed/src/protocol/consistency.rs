//! The consistency round (Bonawitz et al., CCS 2017, §4; Bell et al., CCS
//! 2020): before any device reveals a share, every uploader signs the set
//! of devices whose uploads are in the sum, and a device reveals only after
//! `t` of its neighbours signed the very set it signed itself.
//!
//! Why it is needed: each honest device answers the unmask request once
//! and never reveals both shares of one neighbour, but without this round
//! the server may tell `J`'s neighbours that `J` survived (collecting `β_J`)
//! while telling the *neighbours' other holders* that those neighbours
//! dropped (collecting their `σ`), and so strip every mask from `J`'s
//! upload (the test in `protocol::attacks` does exactly that against the
//! unprotected protocol). With the signatures, a device only acts on a
//! survivor set that `t` of its neighbours also committed to, and a device
//! signs only a set that includes itself; with `2t > k`, the honest devices
//! acting on one set and those acting on another cannot both reach `t`
//! around one device.
//!
//! The set travels as a bitmap over cohort positions (bit `i` of byte
//! `i / 8`, least significant first), so it costs `n / 8` bytes per device;
//! the signed transcript binds the round (its parameter digest included)
//! and the digest of the cohort list the device was shown.

use sha2::{Digest, Sha256};

use crate::crypto::{CryptoError, DeviceId, DeviceIdentity, labels, transcript};
use crate::ids::RoundContext;

/// SHA-256 of a cohort list (sorted device ids), domain-separated.
pub(crate) fn cohort_digest(cohort: &[DeviceId]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([labels::COHORT.len() as u8]);
    hasher.update(labels::COHORT);
    hasher.update((cohort.len() as u64).to_le_bytes());
    for device in cohort {
        hasher.update(device.as_bytes());
    }
    hasher.finalize().into()
}

/// Why a survivor bitmap is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SurvivorSetError {
    /// Not `ceil(n / 8)` bytes, or bits set past the cohort's end.
    #[error("survivor set of {bytes} bytes does not fit a cohort of {cohort}")]
    Malformed {
        /// Its length.
        bytes: usize,
        /// The cohort's size.
        cohort: usize,
    },
}

/// A set of cohort positions as the wire carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SurvivorBitmap {
    bits: Vec<u8>,
    cohort: usize,
}

impl SurvivorBitmap {
    /// The set of `positions` in a cohort of `cohort`.
    pub(crate) fn from_positions(cohort: usize, positions: impl IntoIterator<Item = u32>) -> Self {
        let mut bits = vec![0u8; cohort.div_ceil(8)];
        for p in positions {
            if let Some(byte) = bits.get_mut(p as usize / 8) {
                *byte |= 1 << (p % 8);
            }
        }
        Self { bits, cohort }
    }

    /// Parses wire bytes for a cohort of `cohort`.
    pub(crate) fn parse(bytes: &[u8], cohort: usize) -> Result<Self, SurvivorSetError> {
        let malformed = SurvivorSetError::Malformed {
            bytes: bytes.len(),
            cohort,
        };
        if bytes.len() != cohort.div_ceil(8) {
            return Err(malformed);
        }
        let spare = cohort % 8;
        if spare != 0 && bytes.last().is_some_and(|last| last >> spare != 0) {
            return Err(malformed);
        }
        Ok(Self {
            bits: bytes.to_vec(),
            cohort,
        })
    }

    /// Whether position `p` is in the set.
    pub(crate) fn contains(&self, p: u32) -> bool {
        (p as usize) < self.cohort
            && self
                .bits
                .get(p as usize / 8)
                .is_some_and(|byte| byte & (1 << (p % 8)) != 0)
    }

    /// How many positions are in the set.
    pub(crate) fn len(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// The wire bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
}

/// What a device signs in the consistency round.
fn consistency_transcript(
    context: &RoundContext,
    cohort: &[u8; 32],
    survivors: &SurvivorBitmap,
) -> Vec<u8> {
    transcript(
        labels::CONSISTENCY,
        context,
        &[
            cohort,
            &(survivors.as_bytes().len() as u64).to_le_bytes(),
            survivors.as_bytes(),
        ],
    )
}

/// `identity`'s signature over the survivor set it was shown.
pub(crate) fn sign_survivors(
    identity: &DeviceIdentity,
    context: &RoundContext,
    cohort: &[u8; 32],
    survivors: &SurvivorBitmap,
) -> ed25519_dalek::Signature {
    identity.sign(&consistency_transcript(context, cohort, survivors))
}

/// Checks `device`'s signature over the survivor set.
pub(crate) fn verify_survivors(
    device: &DeviceId,
    signature: &ed25519_dalek::Signature,
    context: &RoundContext,
    cohort: &[u8; 32],
    survivors: &SurvivorBitmap,
) -> Result<(), CryptoError> {
    device.identity_key()?.verify(
        &consistency_transcript(context, cohort, survivors),
        signature,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ids::{FederationId, RoundId};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    proptest! {
        #[test]
        fn bitmaps_round_trip(cohort in 1usize..300, picks in proptest::collection::vec(any::<u32>(), 0..40)) {
            let positions: Vec<u32> = picks.iter().map(|p| p % cohort as u32).collect();
            let set = SurvivorBitmap::from_positions(cohort, positions.iter().copied());
            let parsed = SurvivorBitmap::parse(set.as_bytes(), cohort).unwrap();
            prop_assert_eq!(&parsed, &set);
            for p in 0..cohort as u32 {
                prop_assert_eq!(parsed.contains(p), positions.contains(&p));
            }
            let distinct: std::collections::BTreeSet<u32> = positions.into_iter().collect();
            prop_assert_eq!(parsed.len(), distinct.len());
        }
    }

    #[test]
    fn malformed_bitmaps_are_refused() {
        assert!(SurvivorBitmap::parse(&[0xff], 9).is_err());
        assert!(SurvivorBitmap::parse(&[0xff, 0x02], 9).is_err());
        assert!(SurvivorBitmap::parse(&[0xff, 0x01], 9).is_ok());
        assert!(SurvivorBitmap::parse(&[0xff], 8).is_ok());
    }

    #[test]
    fn signatures_bind_round_cohort_and_set() {
        let mut rng = StdRng::seed_from_u64(3);
        let identity = DeviceIdentity::generate(&mut rng);
        let device = identity.device_id();
        let ctx = RoundContext::bound(FederationId::from_bytes([1; 16]), RoundId(2), [3; 32]);
        let cohort = cohort_digest(&[device]);
        let set = SurvivorBitmap::from_positions(10, [0, 3, 9]);
        let signature = sign_survivors(&identity, &ctx, &cohort, &set);
        assert!(verify_survivors(&device, &signature, &ctx, &cohort, &set).is_ok());
        let other_set = SurvivorBitmap::from_positions(10, [0, 3]);
        assert!(verify_survivors(&device, &signature, &ctx, &cohort, &other_set).is_err());
        let other_view = RoundContext::bound(ctx.federation, ctx.round, [4; 32]);
        assert!(verify_survivors(&device, &signature, &other_view, &cohort, &set).is_err());
        let other_cohort = cohort_digest(&[]);
        assert!(verify_survivors(&device, &signature, &ctx, &other_cohort, &set).is_err());
    }
}
