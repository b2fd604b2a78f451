//! The server's side of a round: one state type per stage, each accepting
//! the messages of its stage (`&mut self`: a rejected message leaves the
//! round as it was) and answering, per device, with what to send it. The
//! caller decides when a stage ends (its deadline) and calls `close`, which
//! consumes the stage and returns the next or an [`Aborted`].
//!
//! ```text
//! CollectingKeys ─close→ SharingKeys ─close→ CollectingUploads ─close→ CheckingConsistency
//!        │                  │                       │                       │
//!        │                  │                       │               ─close→ Unmasking ─close→ Done
//!        └──────────────────┴───────────────────────┴───────────────────────┴──────┴──→ Aborted
//! ```
//!
//! Every state is `Serialize + Deserialize`, so the server crate can store
//! it (in SQLite, say) after each message and carry on after a restart.
//! What the server holds is only what it needs: public keys and signed
//! advertisements, sealed shares it cannot open, the *running sum* of masked
//! uploads (never an individual unmasked update), and the shares revealed to
//! it in the unmasking stage.
//!
//! A round aborts, publishing nothing, when too few clients remain at any
//! stage: fewer than the round's minimum, or fewer than `t` live neighbours
//! around any client whose secrets would need reconstructing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use curve25519_dalek::Scalar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::crypto::round_keys::{
    SecretScalar, mask_agreement_secret, mask_scalar_matches, self_mask_scalar_matches,
    self_mask_seed,
};
use crate::crypto::{CryptoError, DeviceId};
use crate::dp::{NOISE_TAIL_SIGMAS, centred_lift};
use crate::graph::{GraphError, GraphSpec, NeighbourGraph, Neighbourhood};
use crate::ids::{FederationId, RoundId};
use crate::mask::{self, MaskSeed, MaskSign, pairwise_seed, pairwise_sign};
use crate::protocol::consistency::{SurvivorBitmap, cohort_digest, verify_survivors};
use crate::shamir::{self, Commitments, Share};
use crate::wire::codec::{self, CodecError};
use crate::wire::{
    AdvertiseKeys, ClientMessage, ConsistencySignature, EncryptedShares, MaskedUpload,
    NeighbourKeys, RoundInfo, SEALED_SHARE_LEN, ServerMessage, ShareForRecipient, ShareFromSender,
    SharesForDevice, SharingCommitments, SurvivorSet, SurvivorSignature, UnmaskRequest,
    UnmaskResponse, share_at,
};

use super::ConfigError;

mod collecting_keys;
mod consistency;
mod sharing_keys;
mod unmasking;
mod uploads;

pub use collecting_keys::CollectingKeys;
pub use consistency::CheckingConsistency;
pub use sharing_keys::SharingKeys;
pub use unmasking::{Done, SumError, Unmasking};
pub use uploads::CollectingUploads;
use uploads::check_holders;

/// Where a round is: the five SecAgg+ stages (Bonawitz et al.; Bell et al.
/// for the neighbourhood variant) and the two ends.
///
/// The one definition of a round's stage, for the protocol and for the
/// server that stores it, tells devices about it and gives each live stage
/// its deadline. It is serialized (and stored) under its wire name,
/// [`Stage::as_str`] (`advertise_keys`, `share_keys`, `masked_input`,
/// `consistency_check`, `unmasking`, `done`, `aborted`); the names this
/// crate serialized before (`collecting_keys`, ...) still deserialize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Accepting signed key advertisements (clients advertise their public
    /// keys).
    #[serde(rename = "advertise_keys", alias = "collecting_keys")]
    CollectingKeys,
    /// Serving neighbour keys; accepting sealed shares (clients exchange
    /// encrypted key shares with their neighbours).
    #[serde(rename = "share_keys", alias = "sharing_keys")]
    SharingKeys,
    /// Serving sealed shares; accepting masked uploads (clients train and
    /// upload masked updates).
    #[serde(rename = "masked_input", alias = "collecting_uploads")]
    CollectingUploads,
    /// Serving the survivor set; accepting uploaders' signatures over it
    /// (the consistency round, so no device reveals a share against a set
    /// its neighbours did not see).
    #[serde(rename = "consistency_check", alias = "checking_consistency")]
    CheckingConsistency,
    /// Serving unmask requests (with neighbours' signatures); accepting
    /// revealed shares (survivors reveal shares so masks can be removed).
    #[serde(rename = "unmasking")]
    Unmasking,
    /// The sum is known.
    #[serde(rename = "done")]
    Done,
    /// The round ended without a sum.
    #[serde(rename = "aborted")]
    Aborted,
}

impl Stage {
    /// Every stage, in protocol order, the two ends last.
    pub const ALL: [Stage; 7] = [
        Stage::CollectingKeys,
        Stage::SharingKeys,
        Stage::CollectingUploads,
        Stage::CheckingConsistency,
        Stage::Unmasking,
        Stage::Done,
        Stage::Aborted,
    ];

    /// The stored and wire name (what it serializes as).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CollectingKeys => "advertise_keys",
            Self::SharingKeys => "share_keys",
            Self::CollectingUploads => "masked_input",
            Self::CheckingConsistency => "consistency_check",
            Self::Unmasking => "unmasking",
            Self::Done => "done",
            Self::Aborted => "aborted",
        }
    }

    /// The stage with this wire name.
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a round in this stage is still in flight (not done or
    /// aborted): the stages a server keeps, with a deadline each.
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Done | Self::Aborted)
    }
}

/// For people: "collecting keys", "sharing keys", ... (see
/// [`Stage::as_str`] for the wire name).
impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CollectingKeys => "collecting keys",
            Self::SharingKeys => "sharing keys",
            Self::CollectingUploads => "collecting uploads",
            Self::CheckingConsistency => "checking consistency",
            Self::Unmasking => "unmasking",
            Self::Done => "done",
            Self::Aborted => "aborted",
        })
    }
}

/// Why a message was rejected. The round carries on without it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// For another federation or round.
    #[error("message for federation {federation} round {round}, not this round")]
    WrongRound {
        /// Its federation.
        federation: FederationId,
        /// Its round.
        round: RoundId,
    },
    /// Not a message this stage takes.
    #[error("{message} is not accepted while {stage}")]
    UnexpectedMessage {
        /// The current stage.
        stage: Stage,
        /// What arrived.
        message: &'static str,
    },
    /// Nothing to send in this stage.
    #[error("nothing to send while {stage}")]
    NothingToSend {
        /// The current stage.
        stage: Stage,
    },
    /// The device is not in the cohort.
    #[error("{device} is not in the cohort")]
    NotInCohort {
        /// The device.
        device: DeviceId,
    },
    /// In the cohort but out of this stage (it missed an earlier one).
    #[error("{device} is not taking part while {stage}")]
    NotEligible {
        /// The device.
        device: DeviceId,
        /// The current stage.
        stage: Stage,
    },
    /// A second message of this stage from one device.
    #[error("duplicate message from {device}")]
    Duplicate {
        /// The device.
        device: DeviceId,
    },
    /// The cohort already has the round's maximum of clients.
    #[error("cohort is full ({max} clients)")]
    CohortFull {
        /// The maximum.
        max: u32,
    },
    /// An advertisement that does not verify.
    #[error("advertisement from {device} rejected: {source}")]
    BadAdvertisement {
        /// The device.
        device: DeviceId,
        /// Why.
        source: CryptoError,
    },
    /// An advertisement repeating a key (its own two, or another device's).
    #[error("advertisement from {device} reuses a round key")]
    KeyReused {
        /// The device.
        device: DeviceId,
    },
    /// Sealed shares not addressed to exactly the sender's neighbours, once
    /// each.
    #[error("shares from {device} are not one per neighbour")]
    ShareSetMismatch {
        /// The sender.
        device: DeviceId,
    },
    /// Commitments that are not `t` valid points for each secret.
    #[error("commitments from {device} are malformed")]
    MalformedCommitments {
        /// The sender.
        device: DeviceId,
    },
    /// A sealed share of the wrong size.
    #[error("share from {device} to {recipient} is malformed")]
    MalformedShare {
        /// The sender.
        device: DeviceId,
        /// Its recipient.
        recipient: DeviceId,
    },
    /// An upload of the wrong length.
    #[error("upload from {device} has {got} words, round expects {expected}")]
    WrongLength {
        /// The device.
        device: DeviceId,
        /// Round's length.
        expected: u32,
        /// Declared.
        got: u64,
    },
    /// Binary upload that does not decode.
    #[error("upload: {0}")]
    Codec(#[from] CodecError),
    /// A consistency signature that does not verify over the survivor set.
    #[error("consistency signature from {device} rejected: {source}")]
    BadConsistencySignature {
        /// The device.
        device: DeviceId,
        /// Why.
        source: CryptoError,
    },
    /// An unmask response that does not answer exactly the request.
    #[error("unmask response from {device} does not match its request")]
    UnmaskResponseMismatch {
        /// The device.
        device: DeviceId,
    },
    /// Unusable round parameters.
    #[error("round info: {0}")]
    Config(#[from] ConfigError),
}

/// Why a round ended without a sum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AbortReason {
    /// Too few advertisements when keys closed.
    #[error("{have} clients advertised keys, {need} needed")]
    TooFewClients {
        /// Advertised.
        have: u32,
        /// Round minimum.
        need: u32,
    },
    /// No neighbourhood fits the cohort.
    #[error("neighbourhood: {0}")]
    Neighbourhood(GraphError),
    /// Too few clients left after a stage.
    #[error("{have} clients left after {stage}, {need} needed")]
    TooFewSurvivors {
        /// The stage that closed.
        stage: Stage,
        /// Left.
        have: u32,
        /// Round minimum.
        need: u32,
    },
    /// A client whose secrets must be reconstructed has fewer than `t` live
    /// neighbours.
    #[error("{device} has {have} live neighbours after {stage}, {need} needed")]
    NeighbourhoodTooSmall {
        /// The stage that closed.
        stage: Stage,
        /// The client.
        device: DeviceId,
        /// Live neighbours.
        have: u32,
        /// Threshold.
        need: u32,
    },
    /// Too few shares revealed to reconstruct a needed secret.
    #[error("{have} shares of {device}'s secret revealed, {need} needed")]
    TooFewUnmaskShares {
        /// The client.
        device: DeviceId,
        /// Revealed.
        have: u32,
        /// Threshold.
        need: u32,
    },
    /// No reconstruction matched the client's advertised key or commitment.
    #[error("could not reconstruct {device}'s secret consistently")]
    ReconstructionFailed {
        /// The client.
        device: DeviceId,
    },
    /// The unmasked sum is larger than any set of honestly clipped, noised
    /// updates can be: some device uploaded outside the protocol (say, huge
    /// values). Nothing is published.
    #[error("the unmasked sum's norm {norm} exceeds the bound {bound} for its contributors")]
    SumOutOfBounds {
        /// L2 norm of the sum (ring units).
        norm: u64,
        /// The most honest contributors can reach.
        bound: u64,
    },
}

/// The cohort fixed when keys closed: sorted devices, their verified
/// advertisements (same order), the graph and the neighbourhood.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cohort {
    devices: Vec<DeviceId>,
    advertisements: Vec<AdvertiseKeys>,
    graph: NeighbourGraph,
    neighbourhood: Neighbourhood,
}

impl Cohort {
    fn position(&self, device: &DeviceId) -> Option<u32> {
        self.devices.binary_search(device).ok().map(|p| p as u32)
    }

    fn device(&self, position: u32) -> Option<DeviceId> {
        self.devices.get(position as usize).copied()
    }

    fn advertisement(&self, position: u32) -> Option<&AdvertiseKeys> {
        self.advertisements.get(position as usize)
    }

    fn neighbours(&self, position: u32) -> Vec<u32> {
        self.graph.neighbours(position)
    }

    fn live_neighbours(&self, position: u32, live: &BTreeSet<u32>) -> Vec<u32> {
        self.neighbours(position)
            .into_iter()
            .filter(|p| live.contains(p))
            .collect()
    }

    fn devices_at(&self, positions: &[u32]) -> Vec<DeviceId> {
        positions.iter().filter_map(|&p| self.device(p)).collect()
    }

    fn threshold(&self) -> u32 {
        self.neighbourhood.threshold
    }

    /// The device's position, or why the message is not from the cohort.
    fn member(&self, device: &DeviceId) -> Result<u32, ServerError> {
        self.position(device)
            .ok_or(ServerError::NotInCohort { device: *device })
    }

    /// The device's position if it takes part in `stage` (`takes_part`
    /// says who does: the sharers, the uploaders, the signers), or why not.
    fn participant(
        &self,
        device: &DeviceId,
        stage: Stage,
        takes_part: impl Fn(&u32) -> bool,
    ) -> Result<u32, ServerError> {
        let position = self.member(device)?;
        if takes_part(&position) {
            Ok(position)
        } else {
            Err(ServerError::NotEligible {
                device: *device,
                stage,
            })
        }
    }
}

fn check_round(
    info: &RoundInfo,
    federation: FederationId,
    round: RoundId,
) -> Result<(), ServerError> {
    if info.is_this_round(federation, round) {
        Ok(())
    } else {
        Err(ServerError::WrongRound { federation, round })
    }
}

/// A round that ended without a sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    info: Box<RoundInfo>,
    stage: Stage,
    reason: AbortReason,
}

impl Aborted {
    fn new(info: RoundInfo, stage: Stage, reason: AbortReason) -> Self {
        Self {
            info: Box::new(info),
            stage,
            reason,
        }
    }

    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// The stage whose close aborted the round.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Why.
    pub fn reason(&self) -> &AbortReason {
        &self.reason
    }
}

/// Where one device stands in the current stage, so a server can answer a
/// polling device without handing it a message twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// The stage is waiting for this device's message.
    Pending,
    /// This device's message for the stage is in.
    Answered,
    /// This device is not (or no longer) taking part: it missed an earlier
    /// stage, or was never in the cohort.
    NotTakingPart,
}

/// A whole round on the server, in whichever stage it is: the type the
/// server crate stores and drives.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "stage", content = "state", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum AggregatorRound {
    /// See [`CollectingKeys`].
    CollectingKeys(CollectingKeys),
    /// See [`SharingKeys`].
    SharingKeys(SharingKeys),
    /// See [`CollectingUploads`].
    CollectingUploads(CollectingUploads),
    /// See [`CheckingConsistency`].
    CheckingConsistency(CheckingConsistency),
    /// See [`Unmasking`].
    Unmasking(Unmasking),
    /// See [`Done`].
    Done(Done),
    /// See [`Aborted`].
    Aborted(Aborted),
}

fn message_kind(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::AdvertiseKeys(_) => "advertise_keys",
        ClientMessage::EncryptedShares(_) => "encrypted_shares",
        ClientMessage::MaskedUpload(_) => "masked_upload",
        ClientMessage::ConsistencySignature(_) => "consistency_signature",
        ClientMessage::UnmaskResponse(_) => "unmask_response",
    }
}

impl AggregatorRound {
    /// A new round collecting keys.
    pub fn new(info: RoundInfo) -> Result<Self, ConfigError> {
        CollectingKeys::new(info).map(Self::CollectingKeys)
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        match self {
            Self::CollectingKeys(_) => Stage::CollectingKeys,
            Self::SharingKeys(_) => Stage::SharingKeys,
            Self::CollectingUploads(_) => Stage::CollectingUploads,
            Self::CheckingConsistency(_) => Stage::CheckingConsistency,
            Self::Unmasking(_) => Stage::Unmasking,
            Self::Done(_) => Stage::Done,
            Self::Aborted(_) => Stage::Aborted,
        }
    }

    /// The round's parameters.
    pub fn info(&self) -> &RoundInfo {
        match self {
            Self::CollectingKeys(s) => &s.info,
            Self::SharingKeys(s) => &s.info,
            Self::CollectingUploads(s) => &s.info,
            Self::CheckingConsistency(s) => &s.info,
            Self::Unmasking(s) => &s.info,
            Self::Done(s) => &s.info,
            Self::Aborted(s) => &s.info,
        }
    }

    /// Accepts a client message if the current stage takes it.
    pub fn receive(&mut self, message: ClientMessage) -> Result<(), ServerError> {
        let stage = self.stage();
        match (self, message) {
            (Self::CollectingKeys(s), ClientMessage::AdvertiseKeys(m)) => {
                s.receive_advertisement(m)
            }
            (Self::SharingKeys(s), ClientMessage::EncryptedShares(m)) => s.receive_shares(m),
            (Self::CollectingUploads(s), ClientMessage::MaskedUpload(m)) => s.receive_upload(&m),
            (Self::CheckingConsistency(s), ClientMessage::ConsistencySignature(m)) => {
                s.receive_signature(m)
            }
            (Self::Unmasking(s), ClientMessage::UnmaskResponse(m)) => s.receive_response(m),
            (_, m) => Err(ServerError::UnexpectedMessage {
                stage,
                message: message_kind(&m),
            }),
        }
    }

    /// Accepts a binary masked upload if the round is collecting uploads.
    pub fn receive_upload_bytes(&mut self, bytes: &[u8]) -> Result<DeviceId, ServerError> {
        match self {
            Self::CollectingUploads(s) => s.receive_upload_bytes(bytes),
            other => Err(ServerError::UnexpectedMessage {
                stage: other.stage(),
                message: "masked_upload",
            }),
        }
    }

    /// What to send `device` in the current stage.
    pub fn message_for(&self, device: &DeviceId) -> Result<ServerMessage, ServerError> {
        match self {
            Self::CollectingKeys(s) => Ok(ServerMessage::RoundInfo(s.info.clone())),
            Self::SharingKeys(s) => s
                .neighbour_keys_for(device)
                .map(ServerMessage::NeighbourKeys),
            Self::CollectingUploads(s) => s.shares_for(device).map(ServerMessage::SharesForDevice),
            Self::CheckingConsistency(s) => {
                s.survivor_set_for(device).map(ServerMessage::SurvivorSet)
            }
            Self::Unmasking(s) => s
                .unmask_request_for(device)
                .map(ServerMessage::UnmaskRequest),
            Self::Done(_) | Self::Aborted(_) => Err(ServerError::NothingToSend {
                stage: self.stage(),
            }),
        }
    }

    /// Where `device` stands in the current stage. While collecting keys
    /// anyone not yet advertised is [`DeviceStatus::Pending`]: the cohort
    /// is the caller's to know until keys close.
    pub fn device_status(&self, device: &DeviceId) -> DeviceStatus {
        let of = |answered: bool, member: bool| match (member, answered) {
            (false, _) => DeviceStatus::NotTakingPart,
            (true, true) => DeviceStatus::Answered,
            (true, false) => DeviceStatus::Pending,
        };
        match self {
            Self::CollectingKeys(s) => of(s.advertisements.contains_key(device), true),
            Self::SharingKeys(s) => match s.cohort.position(device) {
                Some(p) => of(s.shares.contains_key(&p), true),
                None => DeviceStatus::NotTakingPart,
            },
            Self::CollectingUploads(s) => match s.cohort.position(device) {
                Some(p) => of(s.uploaded.contains(&p), s.sharers.contains(&p)),
                None => DeviceStatus::NotTakingPart,
            },
            Self::CheckingConsistency(s) => match s.cohort.position(device) {
                Some(p) => of(s.signatures.contains_key(&p), s.uploaded.contains(&p)),
                None => DeviceStatus::NotTakingPart,
            },
            Self::Unmasking(s) => match s.cohort.position(device) {
                Some(p) => of(s.responded.contains(&p), s.signatures.contains_key(&p)),
                None => DeviceStatus::NotTakingPart,
            },
            Self::Done(_) | Self::Aborted(_) => DeviceStatus::NotTakingPart,
        }
    }

    /// Messages still expected before the stage can close early: `None`
    /// while collecting keys (the caller knows whom it invited) and once
    /// the round has ended.
    pub fn pending(&self) -> Option<usize> {
        match self {
            Self::SharingKeys(s) => Some(s.cohort.devices.len().saturating_sub(s.shares.len())),
            Self::CollectingUploads(s) => Some(s.sharers.len().saturating_sub(s.uploaded.len())),
            Self::CheckingConsistency(s) => {
                Some(s.uploaded.len().saturating_sub(s.signatures.len()))
            }
            Self::Unmasking(s) => Some(s.signatures.len().saturating_sub(s.responded.len())),
            Self::CollectingKeys(_) | Self::Done(_) | Self::Aborted(_) => None,
        }
    }

    /// Key advertisements accepted so far (0 after keys closed).
    pub fn advertised(&self) -> usize {
        match self {
            Self::CollectingKeys(s) => s.advertisements.len(),
            _ => 0,
        }
    }

    /// Who should get [`AggregatorRound::message_for`] in this stage (empty
    /// while collecting keys: the round info goes to anyone who asks).
    pub fn recipients(&self) -> Vec<DeviceId> {
        match self {
            Self::SharingKeys(s) => s.cohort.devices.clone(),
            Self::CollectingUploads(s) => s.sharers(),
            Self::CheckingConsistency(s) => s.survivors(),
            Self::Unmasking(s) => s.signers(),
            Self::CollectingKeys(_) | Self::Done(_) | Self::Aborted(_) => Vec::new(),
        }
    }

    /// Ends the current stage (its deadline passed, or everyone answered):
    /// the next stage, or `Aborted`. `Done` and `Aborted` stay as they are.
    pub fn close_stage(self) -> Self {
        match self {
            Self::CollectingKeys(s) => s.close().map_or_else(Self::Aborted, Self::SharingKeys),
            Self::SharingKeys(s) => s
                .close()
                .map_or_else(Self::Aborted, Self::CollectingUploads),
            Self::CollectingUploads(s) => s
                .close()
                .map_or_else(Self::Aborted, Self::CheckingConsistency),
            Self::CheckingConsistency(s) => s.close().map_or_else(Self::Aborted, Self::Unmasking),
            Self::Unmasking(s) => s.close().map_or_else(Self::Aborted, Self::Done),
            done @ (Self::Done(_) | Self::Aborted(_)) => done,
        }
    }
}

#[cfg(test)]
mod tests;
