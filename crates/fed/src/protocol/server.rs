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

/// Where a round is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepting signed key advertisements.
    CollectingKeys,
    /// Serving neighbour keys; accepting sealed shares.
    SharingKeys,
    /// Serving sealed shares; accepting masked uploads.
    CollectingUploads,
    /// Serving the survivor set; accepting uploaders' signatures over it.
    CheckingConsistency,
    /// Serving unmask requests (with neighbours' signatures); accepting
    /// revealed shares.
    Unmasking,
    /// The sum is known.
    Done,
    /// The round ended without a sum.
    Aborted,
}

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

/// Stage 1: accepting signed key advertisements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectingKeys {
    info: RoundInfo,
    advertisements: BTreeMap<DeviceId, AdvertiseKeys>,
}

impl CollectingKeys {
    /// A new round with these (validated) parameters.
    pub fn new(info: RoundInfo) -> Result<Self, ConfigError> {
        info.validate()?;
        Ok(Self {
            info,
            advertisements: BTreeMap::new(),
        })
    }

    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Advertisements accepted so far.
    pub fn advertised(&self) -> usize {
        self.advertisements.len()
    }

    /// Accepts a client's advertisement after checking its round, its
    /// signature and that none of its keys is already in use. The server
    /// crate is expected to admit only enrolled, selected devices.
    pub fn receive_advertisement(&mut self, advert: AdvertiseKeys) -> Result<(), ServerError> {
        check_round(&self.info, advert.federation, advert.round)?;
        let device = advert.device;
        if self.advertisements.contains_key(&device) {
            return Err(ServerError::Duplicate { device });
        }
        if self.advertisements.len() >= self.info.max_clients as usize {
            return Err(ServerError::CohortFull {
                max: self.info.max_clients,
            });
        }
        advert
            .verify(&self.info)
            .map_err(|source| ServerError::BadAdvertisement { device, source })?;
        let keys = [advert.share_key.to_bytes(), advert.mask_key.to_bytes()];
        let [share, mask] = keys;
        let reused = share == mask
            || self.advertisements.values().any(|other| {
                [other.share_key.to_bytes(), other.mask_key.to_bytes()]
                    .iter()
                    .any(|k| keys.contains(k))
            });
        if reused {
            return Err(ServerError::KeyReused { device });
        }
        self.advertisements.insert(device, advert);
        Ok(())
    }

    /// Fixes the cohort (everyone who advertised) and its neighbour graph.
    pub fn close(self) -> Result<SharingKeys, Aborted> {
        let Self {
            info,
            advertisements,
        } = self;
        let have = advertisements.len() as u32;
        if have < info.min_clients {
            let reason = AbortReason::TooFewClients {
                have,
                need: info.min_clients,
            };
            return Err(Aborted::new(info, Stage::CollectingKeys, reason));
        }
        let built = info.neighbourhood(have).and_then(|neighbourhood| {
            let graph = NeighbourGraph::new(GraphSpec {
                seed: info.graph_seed,
                federation: info.federation,
                round: info.round,
                nodes: have,
                degree: neighbourhood.degree,
            })?;
            Ok((neighbourhood, graph))
        });
        let (neighbourhood, graph) = match built {
            Ok(built) => built,
            Err(e) => {
                return Err(Aborted::new(
                    info,
                    Stage::CollectingKeys,
                    AbortReason::Neighbourhood(e),
                ));
            }
        };
        let (devices, advertisements) = advertisements.into_iter().unzip();
        let cohort = Cohort {
            devices,
            advertisements,
            graph,
            neighbourhood,
        };
        Ok(SharingKeys {
            info,
            cohort,
            shares: BTreeMap::new(),
            commitments: BTreeMap::new(),
        })
    }
}

/// Stage 2: serving each client its neighbours' keys; accepting sealed
/// shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharingKeys {
    info: RoundInfo,
    cohort: Cohort,
    shares: BTreeMap<u32, Vec<ShareForRecipient>>,
    commitments: BTreeMap<u32, SharingCommitments>,
}

impl SharingKeys {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// The cohort, sorted.
    pub fn cohort(&self) -> &[DeviceId] {
        &self.cohort.devices
    }

    /// The resolved degree and threshold.
    pub fn neighbourhood(&self) -> Neighbourhood {
        self.cohort.neighbourhood
    }

    /// What to send `device`: the cohort and its neighbours' advertisements.
    pub fn neighbour_keys_for(&self, device: &DeviceId) -> Result<NeighbourKeys, ServerError> {
        let position = self.cohort.member(device)?;
        let advertisements = self
            .cohort
            .neighbours(position)
            .into_iter()
            .filter_map(|p| self.cohort.advertisement(p).cloned())
            .collect();
        Ok(NeighbourKeys {
            federation: self.info.federation,
            round: self.info.round,
            cohort: self.cohort.devices.clone(),
            advertisements,
        })
    }

    /// Accepts a client's sealed shares: exactly one of the right size for
    /// each of its neighbours.
    pub fn receive_shares(&mut self, message: EncryptedShares) -> Result<(), ServerError> {
        check_round(&self.info, message.federation, message.round)?;
        let device = message.sender;
        let position = self.cohort.member(&device)?;
        if self.shares.contains_key(&position) {
            return Err(ServerError::Duplicate { device });
        }
        let expected: BTreeSet<DeviceId> = self
            .cohort
            .devices_at(&self.cohort.neighbours(position))
            .into_iter()
            .collect();
        let got: BTreeSet<DeviceId> = message.shares.iter().map(|s| s.recipient).collect();
        if got.len() != message.shares.len() || got != expected {
            return Err(ServerError::ShareSetMismatch { device });
        }
        if let Some(bad) = message
            .shares
            .iter()
            .find(|s| s.ciphertext.len() != SEALED_SHARE_LEN)
        {
            return Err(ServerError::MalformedShare {
                device,
                recipient: bad.recipient,
            });
        }
        let t = self.cohort.threshold() as usize;
        let fits = |c: &Commitments| c.threshold() == t && c.is_well_formed();
        if !fits(&message.commitments.mask_scalar) || !fits(&message.commitments.self_mask) {
            return Err(ServerError::MalformedCommitments { device });
        }
        self.shares.insert(position, message.shares);
        self.commitments.insert(position, message.commitments);
        Ok(())
    }

    /// Fixes who shared. A sharer with fewer than `t` neighbours that also
    /// shared could never have its secrets recovered, so it is left out (and
    /// nobody masks with it); this repeats until stable.
    pub fn close(self) -> Result<CollectingUploads, Aborted> {
        let Self {
            info,
            cohort,
            mut shares,
            mut commitments,
        } = self;
        let t = cohort.threshold() as usize;
        let mut sharers: BTreeSet<u32> = shares.keys().copied().collect();
        loop {
            let weak: Vec<u32> = sharers
                .iter()
                .copied()
                .filter(|&p| cohort.live_neighbours(p, &sharers).len() < t)
                .collect();
            if weak.is_empty() {
                break;
            }
            for p in weak {
                sharers.remove(&p);
            }
        }
        let have = sharers.len() as u32;
        if have < info.min_survivors {
            let reason = AbortReason::TooFewSurvivors {
                stage: Stage::SharingKeys,
                have,
                need: info.min_survivors,
            };
            return Err(Aborted::new(info, Stage::SharingKeys, reason));
        }
        shares.retain(|p, _| sharers.contains(p));
        commitments.retain(|p, _| sharers.contains(p));
        let sum = vec![0u32; info.vector_len as usize];
        Ok(CollectingUploads {
            info,
            cohort,
            sharers,
            shares,
            commitments,
            sum,
            uploaded: BTreeSet::new(),
        })
    }
}

/// Stage 3: serving each sharer the shares sealed to it; summing masked
/// uploads as they arrive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectingUploads {
    info: RoundInfo,
    cohort: Cohort,
    sharers: BTreeSet<u32>,
    shares: BTreeMap<u32, Vec<ShareForRecipient>>,
    commitments: BTreeMap<u32, SharingCommitments>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    sum: Vec<u32>,
    uploaded: BTreeSet<u32>,
}

impl CollectingUploads {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Devices expected to upload.
    pub fn sharers(&self) -> Vec<DeviceId> {
        self.cohort
            .devices_at(&self.sharers.iter().copied().collect::<Vec<_>>())
    }

    /// Uploads accepted so far.
    pub fn uploaded(&self) -> usize {
        self.uploaded.len()
    }

    /// What to send `device`: the shares its sharing neighbours sealed to
    /// it.
    pub fn shares_for(&self, device: &DeviceId) -> Result<SharesForDevice, ServerError> {
        let position = self
            .cohort
            .participant(device, Stage::CollectingUploads, |p| {
                self.sharers.contains(p)
            })?;
        let shares = self
            .cohort
            .live_neighbours(position, &self.sharers)
            .into_iter()
            .filter_map(|sender| {
                let sealed = self
                    .shares
                    .get(&sender)?
                    .iter()
                    .find(|s| s.recipient == *device)?;
                Some(ShareFromSender {
                    sender: self.cohort.device(sender)?,
                    ciphertext: sealed.ciphertext.clone(),
                    commitments: self.commitments.get(&sender)?.clone(),
                })
            })
            .collect();
        Ok(SharesForDevice {
            federation: self.info.federation,
            round: self.info.round,
            recipient: *device,
            shares,
        })
    }

    /// Checks an upload's header fields; returns the uploader's position.
    fn admit(
        &self,
        federation: FederationId,
        round: RoundId,
        device: DeviceId,
        len: u64,
    ) -> Result<u32, ServerError> {
        check_round(&self.info, federation, round)?;
        let position = self
            .cohort
            .participant(&device, Stage::CollectingUploads, |p| {
                self.sharers.contains(p)
            })?;
        if self.uploaded.contains(&position) {
            return Err(ServerError::Duplicate { device });
        }
        if len != u64::from(self.info.vector_len) {
            return Err(ServerError::WrongLength {
                device,
                expected: self.info.vector_len,
                got: len,
            });
        }
        Ok(position)
    }

    /// Adds a (decoded) masked upload to the running sum.
    pub fn receive_upload(&mut self, upload: &MaskedUpload) -> Result<(), ServerError> {
        let position = self.admit(
            upload.federation,
            upload.round,
            upload.device,
            upload.masked.len() as u64,
        )?;
        mask::add_into(&mut self.sum, &upload.masked);
        self.uploaded.insert(position);
        Ok(())
    }

    /// Decodes a binary upload and adds it to the running sum, straight
    /// from the bytes. Returns the uploader.
    pub fn receive_upload_bytes(&mut self, bytes: &[u8]) -> Result<DeviceId, ServerError> {
        let (header, payload) = codec::decode_header(bytes, self.info.vector_len)?;
        let position = self.admit(
            header.federation,
            header.round,
            header.device,
            u64::from(header.len),
        )?;
        mask::add_le_bytes_into(&mut self.sum, payload);
        self.uploaded.insert(position);
        Ok(header.device)
    }

    /// Fixes who uploaded, and checks every secret that must be
    /// reconstructed has `t` live holders.
    pub fn close(self) -> Result<CheckingConsistency, Aborted> {
        let Self {
            info,
            cohort,
            sharers,
            commitments,
            sum,
            uploaded,
            ..
        } = self;
        let stage = Stage::CollectingUploads;
        let have = uploaded.len() as u32;
        if have < info.min_survivors {
            let reason = AbortReason::TooFewSurvivors {
                stage,
                have,
                need: info.min_survivors,
            };
            return Err(Aborted::new(info, stage, reason));
        }
        if let Err(reason) = check_holders(&cohort, &sharers, &uploaded, &uploaded, stage) {
            return Err(Aborted::new(info, stage, reason));
        }
        let survivors =
            SurvivorBitmap::from_positions(cohort.devices.len(), uploaded.iter().copied());
        Ok(CheckingConsistency {
            info,
            cohort,
            sharers,
            uploaded,
            commitments,
            survivors: survivors.as_bytes().to_vec(),
            sum,
            signatures: BTreeMap::new(),
        })
    }
}

/// Survivors need `t` live holders of `β`; dropped sharers that any
/// survivor masked with need `t` live holders of `σ`. "Live" is `holders`:
/// the uploaders after uploads close, the signers after the consistency
/// round.
fn check_holders(
    cohort: &Cohort,
    sharers: &BTreeSet<u32>,
    uploaded: &BTreeSet<u32>,
    holders: &BTreeSet<u32>,
    stage: Stage,
) -> Result<(), AbortReason> {
    let need = cohort.threshold();
    let dropped = sharers.difference(uploaded).copied();
    for p in uploaded.iter().copied().chain(dropped) {
        let masked_with_survivor = !cohort.live_neighbours(p, uploaded).is_empty();
        let live = cohort.live_neighbours(p, holders).len() as u32;
        let needed = uploaded.contains(&p) || masked_with_survivor;
        if needed && live < need {
            let device = cohort.device(p).unwrap_or(DeviceId::from_bytes([0; 32]));
            return Err(AbortReason::NeighbourhoodTooSmall {
                stage,
                device,
                have: live,
                need,
            });
        }
    }
    Ok(())
}

/// Stage 4: the consistency round. Every uploader is shown the survivor set
/// and signs it; the signatures are relayed to neighbours with the unmask
/// requests, and a device reveals nothing without `t` of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckingConsistency {
    info: RoundInfo,
    cohort: Cohort,
    sharers: BTreeSet<u32>,
    uploaded: BTreeSet<u32>,
    commitments: BTreeMap<u32, SharingCommitments>,
    #[serde(with = "crate::wire::encoding::base64_bytes")]
    survivors: Vec<u8>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    sum: Vec<u32>,
    signatures: BTreeMap<u32, SurvivorSignature>,
}

impl CheckingConsistency {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Devices whose uploads are in the sum.
    pub fn survivors(&self) -> Vec<DeviceId> {
        self.cohort
            .devices_at(&self.uploaded.iter().copied().collect::<Vec<_>>())
    }

    /// Signatures accepted so far.
    pub fn signed(&self) -> usize {
        self.signatures.len()
    }

    /// What to send `device`: the survivor set.
    pub fn survivor_set_for(&self, device: &DeviceId) -> Result<SurvivorSet, ServerError> {
        self.cohort
            .participant(device, Stage::CheckingConsistency, |p| {
                self.uploaded.contains(p)
            })?;
        Ok(SurvivorSet {
            federation: self.info.federation,
            round: self.info.round,
            recipient: *device,
            survivors: self.survivors.clone(),
        })
    }

    /// Accepts an uploader's signature over the survivor set, after
    /// checking it verifies (a bad one would only make its neighbours
    /// refuse to reveal).
    pub fn receive_signature(&mut self, message: ConsistencySignature) -> Result<(), ServerError> {
        check_round(&self.info, message.federation, message.round)?;
        let device = message.sender;
        let position = self
            .cohort
            .participant(&device, Stage::CheckingConsistency, |p| {
                self.uploaded.contains(p)
            })?;
        if self.signatures.contains_key(&position) {
            return Err(ServerError::Duplicate { device });
        }
        let survivors = SurvivorBitmap::from_positions(
            self.cohort.devices.len(),
            self.uploaded.iter().copied(),
        );
        verify_survivors(
            &device,
            &message.signature,
            &self.info.context(),
            &cohort_digest(&self.cohort.devices),
            &survivors,
        )
        .map_err(|source| ServerError::BadConsistencySignature { device, source })?;
        self.signatures.insert(
            position,
            SurvivorSignature {
                device,
                signature: message.signature,
            },
        );
        Ok(())
    }

    /// Fixes who signed; checks every secret that must be reconstructed
    /// has `t` signers among its holders (only signers will reveal).
    pub fn close(self) -> Result<Unmasking, Aborted> {
        let Self {
            info,
            cohort,
            sharers,
            uploaded,
            commitments,
            survivors,
            sum,
            signatures,
        } = self;
        let stage = Stage::CheckingConsistency;
        let signers: BTreeSet<u32> = signatures.keys().copied().collect();
        if let Err(reason) = check_holders(&cohort, &sharers, &uploaded, &signers, stage) {
            return Err(Aborted::new(info, stage, reason));
        }
        Ok(Unmasking {
            info,
            cohort,
            sharers,
            uploaded,
            commitments,
            survivors,
            sum,
            signatures,
            responded: BTreeSet::new(),
            self_mask_shares: BTreeMap::new(),
            mask_key_shares: BTreeMap::new(),
        })
    }
}

/// Stage 5: asking signers for shares; collecting them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unmasking {
    info: RoundInfo,
    cohort: Cohort,
    sharers: BTreeSet<u32>,
    uploaded: BTreeSet<u32>,
    commitments: BTreeMap<u32, SharingCommitments>,
    #[serde(with = "crate::wire::encoding::base64_bytes")]
    survivors: Vec<u8>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    sum: Vec<u32>,
    signatures: BTreeMap<u32, SurvivorSignature>,
    responded: BTreeSet<u32>,
    self_mask_shares: BTreeMap<u32, Vec<Share>>,
    mask_key_shares: BTreeMap<u32, Vec<Share>>,
}

impl Unmasking {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Devices whose uploads are in the sum.
    pub fn survivors(&self) -> Vec<DeviceId> {
        self.cohort
            .devices_at(&self.uploaded.iter().copied().collect::<Vec<_>>())
    }

    /// Responses accepted so far.
    pub fn responded(&self) -> usize {
        self.responded.len()
    }

    /// Devices asked to reveal: the uploaders that signed the survivor set.
    pub fn signers(&self) -> Vec<DeviceId> {
        self.cohort
            .devices_at(&self.signatures.keys().copied().collect::<Vec<_>>())
    }

    /// Survivor and dropped neighbours of the uploader at `position`.
    fn split_neighbours(&self, position: u32) -> (Vec<u32>, Vec<u32>) {
        self.cohort
            .live_neighbours(position, &self.sharers)
            .into_iter()
            .partition(|p| self.uploaded.contains(p))
    }

    /// What to send `device`: the survivor set and its neighbours'
    /// signatures over it.
    pub fn unmask_request_for(&self, device: &DeviceId) -> Result<UnmaskRequest, ServerError> {
        let position = self.cohort.participant(device, Stage::Unmasking, |p| {
            self.signatures.contains_key(p)
        })?;
        let signatures = self
            .cohort
            .neighbours(position)
            .into_iter()
            .filter_map(|p| self.signatures.get(&p).cloned())
            .collect();
        Ok(UnmaskRequest {
            federation: self.info.federation,
            round: self.info.round,
            recipient: *device,
            survivors: self.survivors.clone(),
            signatures,
        })
    }

    /// Accepts revealed shares that answer exactly this device's request.
    pub fn receive_response(&mut self, response: UnmaskResponse) -> Result<(), ServerError> {
        check_round(&self.info, response.federation, response.round)?;
        let device = response.sender;
        let position = self.cohort.participant(&device, Stage::Unmasking, |p| {
            self.signatures.contains_key(p)
        })?;
        if self.responded.contains(&position) {
            return Err(ServerError::Duplicate { device });
        }
        let (survivors, dropped) = self.split_neighbours(position);
        let answers = |expected: &[u32], got: &[crate::wire::RevealedShare]| -> Option<Vec<u32>> {
            let owners: Vec<u32> = got
                .iter()
                .map(|s| self.cohort.position(&s.owner))
                .collect::<Option<_>>()?;
            let as_set: BTreeSet<u32> = owners.iter().copied().collect();
            (as_set.len() == owners.len() && as_set == expected.iter().copied().collect())
                .then_some(owners)
        };
        let mismatch = ServerError::UnmaskResponseMismatch { device };
        let self_owners =
            answers(&survivors, &response.self_mask_shares).ok_or(mismatch.clone())?;
        let mask_owners = answers(&dropped, &response.mask_key_shares).ok_or(mismatch)?;
        let x = position + 1;
        for (owner, share) in self_owners.into_iter().zip(&response.self_mask_shares) {
            self.self_mask_shares
                .entry(owner)
                .or_default()
                .push(share_at(x, share));
        }
        for (owner, share) in mask_owners.into_iter().zip(&response.mask_key_shares) {
            self.mask_key_shares
                .entry(owner)
                .or_default()
                .push(share_at(x, share));
        }
        self.responded.insert(position);
        Ok(())
    }

    /// The revealed shares of `owner`'s secret that lie on the polynomial
    /// it committed to, and the positions of the devices that revealed
    /// shares that do not. All are checked at once first; only when that
    /// fails is each checked alone, to name the liar.
    fn verified_shares(
        &self,
        book: &BTreeMap<u32, Vec<Share>>,
        owner: u32,
        pick: fn(&SharingCommitments) -> &Commitments,
    ) -> (Vec<Share>, Vec<u32>) {
        let shares = book.get(&owner).cloned().unwrap_or_default();
        let Some(commitments) = self.commitments.get(&owner).map(pick) else {
            return (Vec::new(), Vec::new());
        };
        if commitments.verify_all(&shares, &mut rand_core::OsRng) {
            return (shares, Vec::new());
        }
        let (good, bad): (Vec<Share>, Vec<Share>) =
            shares.into_iter().partition(|s| commitments.verify(s));
        (good, bad.iter().map(|s| s.x - 1).collect())
    }

    /// Reconstructs survivors' self-mask seeds and dropped clients' mask
    /// keys from verified shares (a device that revealed a share off its
    /// owner's committed polynomial is named in [`Done::misbehaving`] and
    /// its share dropped), regenerates those masks and removes them from
    /// the sum. Whether the sum is one honest contributors can reach is
    /// [`Done::check_bounds`].
    pub fn close(self) -> Result<Done, Aborted> {
        let context = self.info.context();
        let t = self.cohort.threshold();
        let cohort = &self.cohort;
        let survivors: Vec<u32> = self.uploaded.iter().copied().collect();
        let dropped: Vec<u32> = self
            .sharers
            .difference(&self.uploaded)
            .copied()
            .filter(|&p| !cohort.live_neighbours(p, &self.uploaded).is_empty())
            .collect();

        let failed = |p: u32| AbortReason::ReconstructionFailed {
            device: cohort.device(p).unwrap_or(DeviceId::from_bytes([0; 32])),
        };
        let member = |p: u32| -> Result<(DeviceId, &AdvertiseKeys), AbortReason> {
            cohort
                .device(p)
                .zip(cohort.advertisement(p))
                .ok_or_else(|| failed(p))
        };
        // The secret of `p`, from `t` verified shares, checked against what
        // `p` advertised; the revealers of bad shares alongside.
        let secret_of = |book: &BTreeMap<u32, Vec<Share>>,
                         p: u32,
                         pick: fn(&SharingCommitments) -> &Commitments,
                         matches: &dyn Fn(&Scalar, &DeviceId, &AdvertiseKeys) -> bool|
         -> Result<(SecretScalar, DeviceId, Vec<u32>), AbortReason> {
            let (shares, liars) = self.verified_shares(book, p, pick);
            let (device, advert) = member(p)?;
            if (shares.len() as u32) < t {
                return Err(AbortReason::TooFewUnmaskShares {
                    device,
                    have: shares.len() as u32,
                    need: t,
                });
            }
            let value = shamir::reconstruct(&shares, t as usize).map_err(|_| failed(p))?;
            let value = SecretScalar::from_scalar(value);
            // Shares on the committed polynomial, yet not the advertised
            // secret: the owner itself dealt falsely.
            if !matches(value.expose(), &device, advert) {
                return Err(failed(p));
            }
            Ok((value, device, liars))
        };

        let self_masks: Result<Vec<(MaskSeed, Vec<u32>)>, AbortReason> = survivors
            .par_iter()
            .map(|&p| {
                let (beta, device, liars) =
                    secret_of(&self.self_mask_shares, p, |c| &c.self_mask, &|b, d, a| {
                        self_mask_scalar_matches(b, &context, d, &a.self_mask_commitment)
                    })?;
                Ok((self_mask_seed(beta.expose(), &context, &device), liars))
            })
            .collect();
        let pairwise: Result<Vec<(PairwiseMasks, Vec<u32>)>, AbortReason> = dropped
            .par_iter()
            .map(|&j| {
                let (sigma, device_j, liars) =
                    secret_of(&self.mask_key_shares, j, |c| &c.mask_scalar, &|s, d, a| {
                        mask_scalar_matches(s, &context, d, &a.mask_key)
                    })?;
                let secret = mask_agreement_secret(sigma.expose(), &context, &device_j);
                let seeds = cohort
                    .live_neighbours(j, &self.uploaded)
                    .into_iter()
                    .map(|i| {
                        let (device_i, advert_i) = member(i)?;
                        let seed = pairwise_seed(
                            &secret,
                            &advert_i.mask_key,
                            &context,
                            &device_j,
                            &device_i,
                        )
                        .map_err(|_| failed(j))?;
                        // Survivor i applied pairwise_sign(i, j); undo it.
                        Ok((seed, pairwise_sign(i, j).opposite()))
                    })
                    .collect::<Result<Vec<_>, AbortReason>>()?;
                Ok((seeds, liars))
            })
            .collect();

        let Self { info, sum, .. } = self;
        let abort = |info, reason| Aborted::new(info, Stage::Unmasking, reason);
        let self_masks = match self_masks {
            Ok(v) => v,
            Err(reason) => return Err(abort(info, reason)),
        };
        let pairwise = match pairwise {
            Ok(v) => v,
            Err(reason) => return Err(abort(info, reason)),
        };
        let liars: BTreeSet<u32> = self_masks
            .iter()
            .flat_map(|(_, l)| l)
            .chain(pairwise.iter().flat_map(|(_, l)| l))
            .copied()
            .collect();
        let masks: Vec<(&MaskSeed, MaskSign)> = self_masks
            .iter()
            .map(|(s, _)| (s, MaskSign::Subtract))
            .chain(
                pairwise
                    .iter()
                    .flat_map(|(seeds, _)| seeds)
                    .map(|(s, sign)| (s, *sign)),
            )
            .collect();
        let mut sum = sum;
        if mask::apply(&mut sum, &masks).is_err() {
            // Cannot happen: the vector length was validated far below the
            // PRG's limit. Publish nothing rather than a masked sum.
            let device = cohort.device(0).unwrap_or(DeviceId::from_bytes([0; 32]));
            return Err(abort(info, AbortReason::ReconstructionFailed { device }));
        }
        let contributors = cohort.devices_at(&survivors);
        let misbehaving = cohort.devices_at(&liars.into_iter().collect::<Vec<_>>());
        Ok(Done {
            info,
            contributors,
            sum,
            masks_removed: masks.len() as u32,
            misbehaving,
        })
    }
}

/// The pairwise masks to undo for one dropped client, with their signs.
type PairwiseMasks = Vec<(MaskSeed, MaskSign)>;

/// Checks an unmasked sum against the most `contributors` honest devices
/// can produce: each clipped, quantized update has L2 norm at most `C·s +
/// √d` (and each coordinate at most `C·s + 1`), and the summed discrete
/// Gaussian noise stays within [`NOISE_TAIL_SIGMAS`] deviations per
/// coordinate and `σ√n (√d + τ)` in norm, except with negligible
/// probability. A device that uploads outside the protocol (huge values,
/// or no clipping) shows up here, and nothing is published.
fn check_sum_bounds(info: &RoundInfo, sum: &[u32], contributors: usize) -> Result<(), AbortReason> {
    let Ok(dp) = info.distributed_dp() else {
        // Validated when the round was created.
        return Ok(());
    };
    let n = contributors as f64;
    let d = sum.len() as f64;
    let clip = dp.config().clip_norm * dp.quantizer().scale();
    let noise = dp.client_sigma() * n.sqrt();
    let norm_bound = n * (clip + d.sqrt()) + noise * (d.sqrt() + NOISE_TAIL_SIGMAS);
    let coordinate_bound = n * (clip + 1.0) + NOISE_TAIL_SIGMAS * noise;
    let (mut squares, mut largest) = (0.0f64, 0.0f64);
    for &word in sum {
        let value = f64::from(centred_lift(word));
        squares += value * value;
        largest = largest.max(value.abs());
    }
    let norm = squares.sqrt();
    if norm > norm_bound || largest > coordinate_bound {
        return Err(AbortReason::SumOutOfBounds {
            norm: norm as u64,
            bound: norm_bound as u64,
        });
    }
    Ok(())
}

/// The round's result: the exact sum mod 2^32 of the contributors'
/// quantized updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    info: RoundInfo,
    contributors: Vec<DeviceId>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    sum: Vec<u32>,
    masks_removed: u32,
    #[serde(default)]
    misbehaving: Vec<DeviceId>,
}

impl Done {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Whose updates are in the sum.
    pub fn contributors(&self) -> &[DeviceId] {
        &self.contributors
    }

    /// `Σ x_i mod 2^32` over the contributors.
    pub fn sum(&self) -> &[u32] {
        &self.sum
    }

    /// The sum, by value.
    pub fn into_sum(self) -> Vec<u32> {
        self.sum
    }

    /// Devices that revealed a share off its owner's committed polynomial
    /// (caught, dropped, and named here); the round went on without it.
    pub fn misbehaving(&self) -> &[DeviceId] {
        &self.misbehaving
    }

    /// PRG expansions the server ran to unmask (survivors' self masks plus
    /// pairwise masks with dropped clients).
    pub fn masks_removed(&self) -> u32 {
        self.masks_removed
    }

    /// Checks the sum is within what its contributors can reach when they
    /// follow the protocol (clipped, quantized, noised updates): an upload
    /// of huge values, or one never clipped, breaks the bound, and the
    /// round must publish nothing. See `check_sum_bounds`.
    pub fn check_bounds(&self) -> Result<(), AbortReason> {
        check_sum_bounds(&self.info, &self.sum, self.contributors.len())
    }

    /// The contributors' mean update, decoded from fixed point, after
    /// [`Done::check_bounds`].
    pub fn decode_mean(&self) -> Result<Vec<f32>, SumError> {
        self.check_bounds().map_err(SumError::OutOfBounds)?;
        Ok(self
            .info
            .distributed_dp()?
            .decode_mean(&self.sum, self.contributors.len()))
    }
}

/// Why a finished round's sum cannot be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SumError {
    /// The round's DP parameters are unusable (cannot happen for a round
    /// that was created).
    #[error(transparent)]
    Dp(#[from] crate::dp::DpError),
    /// The sum is beyond what honest contributors can reach.
    #[error(transparent)]
    OutOfBounds(AbortReason),
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::crypto::DeviceIdentity;
    use crate::crypto::round_keys::{RoundSecrets, sign_advertisement};
    use crate::dp::DpConfig;
    use crate::graph::GraphSeed;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn info() -> RoundInfo {
        RoundInfo {
            federation: FederationId::from_bytes([1; 16]),
            round: RoundId(3),
            vector_len: 8,
            min_clients: 3,
            max_clients: 3,
            min_survivors: 2,
            degree: None,
            threshold: None,
            graph_seed: GraphSeed([2; 32]),
            dp: DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            },
            threat_model: None,
        }
    }

    #[test]
    fn advertisements_reusing_keys_or_over_capacity_are_rejected() {
        let mut rng = StdRng::seed_from_u64(1);
        let info = info();
        let ctx = info.context();
        let mut stage = CollectingKeys::new(info).unwrap();
        let identities: Vec<DeviceIdentity> =
            (0..4).map(|_| DeviceIdentity::generate(&mut rng)).collect();
        let keys: Vec<_> = identities
            .iter()
            .map(|id| RoundSecrets::generate(&mut rng, &ctx, &id.device_id()).1)
            .collect();
        let advert = |i: usize, k: &crate::crypto::round_keys::RoundPublicKeys| {
            sign_advertisement(&identities[i], &ctx, k)
        };

        stage.receive_advertisement(advert(0, &keys[0])).unwrap();
        let b = identities[1].device_id();
        let mut copied = keys[1];
        copied.mask_key = keys[0].share_key;
        assert_eq!(
            stage.receive_advertisement(advert(1, &copied)),
            Err(ServerError::KeyReused { device: b })
        );
        let mut same = keys[1];
        same.mask_key = same.share_key;
        assert_eq!(
            stage.receive_advertisement(advert(1, &same)),
            Err(ServerError::KeyReused { device: b })
        );
        assert_eq!(
            stage.receive_advertisement(advert(0, &keys[0])),
            Err(ServerError::Duplicate {
                device: identities[0].device_id()
            })
        );
        stage.receive_advertisement(advert(1, &keys[1])).unwrap();
        stage.receive_advertisement(advert(2, &keys[2])).unwrap();
        assert_eq!(
            stage.receive_advertisement(advert(3, &keys[3])),
            Err(ServerError::CohortFull { max: 3 })
        );
        assert_eq!(stage.advertised(), 3);
    }

    #[test]
    fn too_few_advertisements_abort_at_close() {
        let stage = CollectingKeys::new(info()).unwrap();
        let aborted = stage.close().unwrap_err();
        assert_eq!(
            aborted.reason(),
            &AbortReason::TooFewClients { have: 0, need: 3 }
        );
        assert_eq!(aborted.stage(), Stage::CollectingKeys);
    }

    #[test]
    fn invalid_round_info_is_refused() {
        let mut bad = info();
        bad.min_survivors = 1;
        assert!(matches!(
            AggregatorRound::new(bad),
            Err(ConfigError::ClientBounds { .. })
        ));
        let mut bad = info();
        bad.vector_len = 0;
        assert!(matches!(
            AggregatorRound::new(bad),
            Err(ConfigError::VectorLen { .. })
        ));
        let mut bad = info();
        bad.threshold = Some(1); // 2t must exceed k = 2
        assert!(matches!(
            AggregatorRound::new(bad),
            Err(ConfigError::Neighbourhood(_))
        ));
        let mut bad = info();
        bad.dp.clip_norm = -1.0;
        assert!(matches!(AggregatorRound::new(bad), Err(ConfigError::Dp(_))));
    }
}
