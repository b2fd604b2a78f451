//! The client's side of a round: one type per step, each consumed by value
//! and returning the next, so a step cannot be repeated or skipped and each
//! state holds only the secrets the remaining steps need:
//!
//! | state | holds |
//! |-------|-------|
//! | [`ClientAwaitingNeighbours`] | share secret, `σ`, `β` |
//! | [`ClientAwaitingShares`] | share secret, pairwise seeds, self-mask seed |
//! | [`ClientReadyToUpload`] | pairwise seeds (of neighbours that shared), self-mask seed, neighbours' shares |
//! | [`ClientAwaitingSurvivors`] | neighbours' shares |
//! | [`ClientAwaitingUnmask`] | neighbours' shares, the survivor set it signed |
//!
//! Everything secret zeroizes when its state is dropped or consumed. None of
//! these types is `Clone` or `Serialize`: a client's round secrets never
//! touch disk, and a crashed client simply drops out of the round (which
//! the protocol tolerates). Every error is terminal for the round: the
//! state is gone, and nothing more is revealed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::round_keys::{
    RoundPublicKeys, RoundSecrets, mask_agreement_secret, self_mask_seed, sign_advertisement,
};
use crate::crypto::share_box::{self, Envelope, SharePair};
use crate::crypto::{CryptoError, DeviceId, DeviceIdentity};
use crate::graph::{GraphError, GraphSpec, NeighbourGraph};
use crate::ids::{FederationId, RoundId};
use crate::mask::{self, MaskError, MaskSeed, MaskSign, pairwise_seed, pairwise_sign};
use crate::protocol::consistency::{
    SurvivorBitmap, SurvivorSetError, cohort_digest, sign_survivors, verify_survivors,
};
use crate::shamir::{self, Commitments, ShamirError, Share};
use crate::wire::{
    AdvertiseKeys, ConsistencySignature, EncryptedShares, MaskedUpload, NeighbourKeys,
    RevealedShare, RoundInfo, ShareForRecipient, SharesForDevice, SharingCommitments, SurvivorSet,
    UnmaskRequest, UnmaskResponse,
};

use super::ConfigError;

mod keys;
mod unmask;
mod upload;

pub use keys::{ClientAwaitingNeighbours, ClientAwaitingShares};
pub use unmask::{ClientAwaitingSurvivors, ClientAwaitingUnmask};
pub use upload::ClientReadyToUpload;

/// Why a client abandons a round. Each is terminal: the state that was
/// consumed is dropped (and its secrets zeroized).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The round info is unusable.
    #[error("round info: {0}")]
    Config(#[from] ConfigError),
    /// A message for another federation or round.
    #[error("message for federation {federation} round {round}, not this round")]
    WrongRound {
        /// Its federation.
        federation: FederationId,
        /// Its round.
        round: RoundId,
    },
    /// A message addressed to another device.
    #[error("message addressed to {recipient}")]
    WrongRecipient {
        /// Whom it was for.
        recipient: DeviceId,
    },
    /// The cohort is not strictly ascending (so positions are ambiguous).
    #[error("cohort list is not strictly ascending")]
    CohortNotSorted,
    /// The cohort does not include this device.
    #[error("this device is not in the cohort")]
    NotInCohort,
    /// Cohort size outside the round's bounds.
    #[error("cohort of {size} is outside {min}..={max}")]
    CohortSize {
        /// Its size.
        size: usize,
        /// Round minimum.
        min: u32,
        /// Round maximum.
        max: u32,
    },
    /// No valid neighbourhood for this cohort.
    #[error("neighbourhood: {0}")]
    Neighbourhood(#[from] GraphError),
    /// A neighbour's advertisement is missing.
    #[error("no advertisement from neighbour {device}")]
    MissingAdvertisement {
        /// The neighbour.
        device: DeviceId,
    },
    /// An advertisement from a device that is not a neighbour, or twice
    /// from one.
    #[error("unexpected advertisement from {device}")]
    UnexpectedAdvertisement {
        /// The device.
        device: DeviceId,
    },
    /// An advertisement that fails verification (forged, altered, or
    /// replayed from another round).
    #[error("advertisement from {device} rejected: {source}")]
    BadAdvertisement {
        /// The device.
        device: DeviceId,
        /// Why.
        source: CryptoError,
    },
    /// A public key appearing twice among the round keys this client sees.
    #[error("round key of {device} is reused")]
    KeyReused {
        /// The device whose advertisement repeats a key.
        device: DeviceId,
    },
    /// A mask key that agrees to a public (all-zero) secret.
    #[error("mask key of {device} is low-order")]
    NonContributory {
        /// The device.
        device: DeviceId,
    },
    /// A share from a device that is not a neighbour, or twice from one.
    #[error("unexpected share from {device}")]
    UnexpectedSender {
        /// The device.
        device: DeviceId,
    },
    /// A share that does not open.
    #[error("share from {sender} does not decrypt: {source}")]
    ShareDecryption {
        /// The sender.
        sender: DeviceId,
        /// Why.
        source: CryptoError,
    },
    /// A neighbour's share that does not lie on the polynomial it committed
    /// to (or commitments of the wrong size): that neighbour dealt falsely.
    #[error("share from {sender} does not match its commitments")]
    UncommittedShare {
        /// The neighbour.
        sender: DeviceId,
    },
    /// Fewer neighbours shared than the threshold: this client's own
    /// secrets could not be recovered, so it will not upload.
    #[error("{have} neighbours shared, {need} needed")]
    TooFewShares {
        /// Shares received.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// The update has the wrong length.
    #[error("update has {got} entries, round expects {expected}")]
    UpdateLength {
        /// Round's length.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// The survivor set does not fit the cohort.
    #[error("survivor set: {0}")]
    SurvivorSet(#[from] SurvivorSetError),
    /// The survivor set leaves out this device, whose upload the server
    /// accepted: signing it would vouch for a lie.
    #[error("the survivor set leaves out this device")]
    NotASurvivor,
    /// The survivor set is smaller than the round's minimum: the noise this
    /// device added assumed at least that many contributors.
    #[error("{have} survivors, the round promised at least {need}")]
    TooFewSurvivorsInRound {
        /// Survivors in the set.
        have: usize,
        /// The round's `min_survivors`.
        need: u32,
    },
    /// Fewer surviving neighbours than the threshold: this client's self mask
    /// could not be removed, so revealing anything would be pointless.
    #[error("{have} neighbours survived, {need} needed")]
    TooFewSurvivors {
        /// Survivors among neighbours.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// The unmask request names another survivor set than the one this
    /// device signed.
    #[error("the unmask request's survivor set differs from the one this device signed")]
    SurvivorSetChanged,
    /// A consistency signature from a device that is not a neighbour this
    /// device shares with, or twice from one.
    #[error("unexpected consistency signature from {device}")]
    UnexpectedSigner {
        /// The device.
        device: DeviceId,
    },
    /// A consistency signature that does not verify over this device's view
    /// of the round, cohort and survivor set.
    #[error("consistency signature from {device} rejected: {source}")]
    BadConsistencySignature {
        /// The device.
        device: DeviceId,
        /// Why.
        source: CryptoError,
    },
    /// Fewer neighbours signed the survivor set than the threshold: the
    /// server may be showing neighbours different sets, so nothing is
    /// revealed.
    #[error("{have} neighbours signed the survivor set, {need} needed")]
    TooFewConsistencySignatures {
        /// Valid signatures from neighbours.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// The identity offered for signing is not this round's device.
    #[error("signing identity {device} is not this round's device")]
    WrongIdentity {
        /// The identity's device id.
        device: DeviceId,
    },
    /// Splitting failed (cannot happen with a validated neighbourhood).
    #[error("shamir: {0}")]
    Shamir(#[from] ShamirError),
    /// Masking failed (cannot happen with a validated vector length).
    #[error("mask: {0}")]
    Mask(#[from] MaskError),
}

fn check_round(
    info: &RoundInfo,
    federation: FederationId,
    round: RoundId,
) -> Result<(), ClientError> {
    if info.is_this_round(federation, round) {
        Ok(())
    } else {
        Err(ClientError::WrongRound { federation, round })
    }
}

/// Starts a round.
#[derive(Debug)]
pub struct ClientRound(());

impl ClientRound {
    /// Step 1: fresh round keys and their signed advertisement, and the
    /// state that waits for the neighbours' keys. (Named `new` because it is
    /// how a client's round begins; it returns the first message with the
    /// first state, rustls-style.)
    #[allow(clippy::new_ret_no_self)]
    pub fn new<R: CryptoRngCore + ?Sized>(
        identity: &DeviceIdentity,
        info: RoundInfo,
        rng: &mut R,
    ) -> Result<(AdvertiseKeys, ClientAwaitingNeighbours), ClientError> {
        info.validate()?;
        let context = info.context();
        let device = identity.device_id();
        let (secrets, public) = RoundSecrets::generate(rng, &context, &device);
        let advertisement = sign_advertisement(identity, &context, &public);
        Ok((
            advertisement,
            ClientAwaitingNeighbours {
                info,
                device,
                secrets,
                public,
            },
        ))
    }
}

/// The cohort as this device was shown it: its size and digest.
#[derive(Clone, Copy)]
struct CohortView {
    pub(super) size: usize,
    pub(super) digest: [u8; 32],
}

/// A neighbour's share pair, with the neighbour's cohort position.
struct Held {
    pub(super) position: u32,
    pub(super) pair: SharePair,
}

#[cfg(test)]
mod tests;
