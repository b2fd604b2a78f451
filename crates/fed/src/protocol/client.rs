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

/// After step 1: waiting for the cohort and neighbours' keys.
pub struct ClientAwaitingNeighbours {
    info: RoundInfo,
    device: DeviceId,
    secrets: RoundSecrets,
    public: RoundPublicKeys,
}

/// A neighbour whose advertisement verified.
struct Neighbour {
    position: u32,
    share_key: PublicKey,
    pairwise_seed: MaskSeed,
}

impl ClientAwaitingNeighbours {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Steps 2–3: checks the cohort and every neighbour's signed keys,
    /// derives pairwise seeds, and seals shares of `σ` and `β` to each
    /// neighbour.
    pub fn receive_neighbours<R: CryptoRngCore + ?Sized>(
        self,
        message: &NeighbourKeys,
        rng: &mut R,
    ) -> Result<(EncryptedShares, ClientAwaitingShares), ClientError> {
        let info = &self.info;
        check_round(info, message.federation, message.round)?;
        let cohort = &message.cohort;
        if !cohort.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
            return Err(ClientError::CohortNotSorted);
        }
        let size = cohort.len();
        if size < info.min_clients as usize || size > info.max_clients as usize {
            return Err(ClientError::CohortSize {
                size,
                min: info.min_clients,
                max: info.max_clients,
            });
        }
        let position = cohort
            .binary_search(&self.device)
            .map_err(|_| ClientError::NotInCohort)?;
        let (nodes, position) = (size as u32, position as u32);
        let neighbourhood = info.neighbourhood(nodes)?;
        let graph = NeighbourGraph::new(GraphSpec {
            seed: info.graph_seed,
            federation: info.federation,
            round: info.round,
            nodes,
            degree: neighbourhood.degree,
        })?;
        let expected: BTreeMap<DeviceId, u32> = graph
            .neighbours(position)
            .into_iter()
            .filter_map(|p| cohort.get(p as usize).map(|d| (*d, p)))
            .collect();

        // Every neighbour's advertisement, once, verified, for this round.
        let mut adverts: BTreeMap<DeviceId, &AdvertiseKeys> = BTreeMap::new();
        for advert in &message.advertisements {
            let device = advert.device;
            if !expected.contains_key(&device) || adverts.insert(device, advert).is_some() {
                return Err(ClientError::UnexpectedAdvertisement { device });
            }
            check_round(info, advert.federation, advert.round)?;
            advert
                .verify(info)
                .map_err(|source| ClientError::BadAdvertisement { device, source })?;
        }
        if let Some(device) = expected.keys().find(|d| !adverts.contains_key(d)) {
            return Err(ClientError::MissingAdvertisement { device: *device });
        }

        // No public key may appear twice among ours and our neighbours'.
        let mut seen_keys: BTreeSet<[u8; 32]> = [
            self.public.share_key.to_bytes(),
            self.public.mask_key.to_bytes(),
        ]
        .into();
        for (device, advert) in &adverts {
            for key in [advert.share_key, advert.mask_key] {
                if !seen_keys.insert(key.to_bytes()) {
                    return Err(ClientError::KeyReused { device: *device });
                }
            }
        }

        let context = info.context();
        let mask_secret =
            mask_agreement_secret(self.secrets.mask_scalar.expose(), &context, &self.device);
        let mut neighbours = BTreeMap::new();
        for (device, advert) in &adverts {
            let seed = pairwise_seed(
                &mask_secret,
                &advert.mask_key,
                &context,
                &self.device,
                device,
            )
            .map_err(|_| ClientError::NonContributory { device: *device })?;
            let position = expected.get(device).copied().unwrap_or_default();
            neighbours.insert(
                *device,
                Neighbour {
                    position,
                    share_key: advert.share_key,
                    pairwise_seed: seed,
                },
            );
        }
        drop(mask_secret);

        let cohort_digest = cohort_digest(cohort);
        // Shamir-share σ and β among the neighbours, at x = position + 1.
        let threshold = neighbourhood.threshold as usize;
        let xs: Vec<u32> = neighbours.values().map(|n| n.position + 1).collect();
        let (sigma_shares, sigma_commitments) =
            shamir::split_verifiable(self.secrets.mask_scalar.expose(), threshold, &xs, rng)?;
        let (beta_shares, beta_commitments) =
            shamir::split_verifiable(self.secrets.self_mask_scalar.expose(), threshold, &xs, rng)?;
        let mut sealed = Vec::with_capacity(neighbours.len());
        for ((device, neighbour), (sigma, beta)) in
            neighbours.iter().zip(sigma_shares.iter().zip(&beta_shares))
        {
            let pair = SharePair {
                mask_scalar_share: sigma.y,
                self_mask_share: beta.y,
            };
            let envelope = Envelope {
                context: &context,
                cohort: &cohort_digest,
                sender: &self.device,
                recipient: device,
                x: neighbour.position + 1,
            };
            let ciphertext = share_box::seal(
                &self.secrets.share_secret,
                &neighbour.share_key,
                envelope,
                &pair,
            )
            .map_err(|_| ClientError::NonContributory { device: *device })?;
            sealed.push(ShareForRecipient {
                recipient: *device,
                ciphertext,
            });
        }

        let self_mask = self_mask_seed(
            self.secrets.self_mask_scalar.expose(),
            &context,
            &self.device,
        );
        let ClientAwaitingNeighbours {
            info,
            device,
            secrets,
            ..
        } = self;
        let RoundSecrets {
            share_secret,
            mask_scalar,
            self_mask_scalar,
        } = secrets;
        // σ and β have been shared and turned into seeds; they go now.
        drop((mask_scalar, self_mask_scalar));
        let message = EncryptedShares {
            federation: info.federation,
            round: info.round,
            sender: device,
            shares: sealed,
            commitments: SharingCommitments {
                mask_scalar: sigma_commitments,
                self_mask: beta_commitments,
            },
        };
        let next = ClientAwaitingShares {
            info,
            device,
            position,
            threshold,
            cohort: CohortView {
                size,
                digest: cohort_digest,
            },
            share_secret,
            neighbours,
            self_mask,
        };
        Ok((message, next))
    }
}

/// The cohort as this device was shown it: its size and digest.
#[derive(Clone, Copy)]
struct CohortView {
    size: usize,
    digest: [u8; 32],
}

/// A neighbour's share pair, with the neighbour's cohort position.
struct Held {
    position: u32,
    pair: SharePair,
}

/// After step 3: waiting for the shares neighbours sealed to this client.
pub struct ClientAwaitingShares {
    info: RoundInfo,
    device: DeviceId,
    position: u32,
    threshold: usize,
    cohort: CohortView,
    share_secret: StaticSecret,
    neighbours: BTreeMap<DeviceId, Neighbour>,
    self_mask: MaskSeed,
}

impl ClientAwaitingShares {
    /// Step 4: opens the forwarded shares. Their senders are the neighbours
    /// this client will mask with.
    pub fn receive_shares(
        self,
        message: &SharesForDevice,
    ) -> Result<ClientReadyToUpload, ClientError> {
        check_round(&self.info, message.federation, message.round)?;
        if message.recipient != self.device {
            return Err(ClientError::WrongRecipient {
                recipient: message.recipient,
            });
        }
        let context = self.info.context();
        let mut held: BTreeMap<DeviceId, Held> = BTreeMap::new();
        for share in &message.shares {
            let sender = share.sender;
            let neighbour = self
                .neighbours
                .get(&sender)
                .filter(|_| !held.contains_key(&sender))
                .ok_or(ClientError::UnexpectedSender { device: sender })?;
            let envelope = Envelope {
                context: &context,
                cohort: &self.cohort.digest,
                sender: &sender,
                recipient: &self.device,
                x: self.position + 1,
            };
            let pair = share_box::open(
                &self.share_secret,
                &neighbour.share_key,
                envelope,
                &share.ciphertext,
            )
            .map_err(|source| ClientError::ShareDecryption { sender, source })?;
            let x = self.position + 1;
            let committed = |commitments: &Commitments, y| {
                commitments.threshold() == self.threshold && commitments.verify(&Share { x, y })
            };
            if !committed(&share.commitments.mask_scalar, pair.mask_scalar_share)
                || !committed(&share.commitments.self_mask, pair.self_mask_share)
            {
                return Err(ClientError::UncommittedShare { sender });
            }
            held.insert(
                sender,
                Held {
                    position: neighbour.position,
                    pair,
                },
            );
        }
        if held.len() < self.threshold {
            return Err(ClientError::TooFewShares {
                have: held.len(),
                need: self.threshold,
            });
        }
        let ClientAwaitingShares {
            info,
            device,
            position,
            threshold,
            cohort,
            neighbours,
            self_mask,
            ..
        } = self;
        // Pairwise seeds of neighbours that did not share are dropped here:
        // the server will not count them, so neither may we.
        let masking_with = neighbours
            .into_iter()
            .filter(|(d, _)| held.contains_key(d))
            .map(|(_, n)| (n.position, n.pairwise_seed))
            .collect();
        Ok(ClientReadyToUpload {
            info,
            device,
            position,
            threshold,
            cohort,
            masking_with,
            self_mask,
            held,
        })
    }
}

/// After step 4: ready to mask and upload an update.
pub struct ClientReadyToUpload {
    info: RoundInfo,
    device: DeviceId,
    position: u32,
    threshold: usize,
    cohort: CohortView,
    masking_with: Vec<(u32, MaskSeed)>,
    self_mask: MaskSeed,
    held: BTreeMap<DeviceId, Held>,
}

impl ClientReadyToUpload {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Step 5: masks a quantized update (from
    /// [`DistributedDp::encode`](crate::dp::DistributedDp::encode)) with the
    /// self mask and the pairwise masks, and consumes the mask seeds.
    pub fn upload(
        self,
        quantized: &[u32],
    ) -> Result<(MaskedUpload, ClientAwaitingSurvivors), ClientError> {
        let expected = self.info.vector_len as usize;
        if quantized.len() != expected {
            return Err(ClientError::UpdateLength {
                expected,
                got: quantized.len(),
            });
        }
        let mut masked = quantized.to_vec();
        let mut masks: Vec<(&MaskSeed, MaskSign)> = Vec::with_capacity(self.masking_with.len() + 1);
        masks.push((&self.self_mask, MaskSign::Add));
        masks.extend(
            self.masking_with
                .iter()
                .map(|(p, s)| (s, pairwise_sign(self.position, *p))),
        );
        mask::apply(&mut masked, &masks)?;
        let upload = MaskedUpload {
            federation: self.info.federation,
            round: self.info.round,
            device: self.device,
            masked,
        };
        Ok((upload, self.into_awaiting_unmask()))
    }

    fn into_awaiting_unmask(self) -> ClientAwaitingSurvivors {
        let ClientReadyToUpload {
            info,
            device,
            position,
            threshold,
            cohort,
            held,
            ..
        } = self;
        ClientAwaitingSurvivors {
            info,
            device,
            position,
            threshold,
            cohort,
            held,
        }
    }

    /// For the in-process server benchmark only: moves on as if uploaded,
    /// without computing the masked vector (whose cost is the client's, not
    /// the server's).
    pub(crate) fn skip_upload_for_bench(self) -> ClientAwaitingSurvivors {
        self.into_awaiting_unmask()
    }
}

/// After step 5: holds neighbours' shares until the server says whose
/// uploads are in the sum.
pub struct ClientAwaitingSurvivors {
    info: RoundInfo,
    device: DeviceId,
    position: u32,
    threshold: usize,
    cohort: CohortView,
    held: BTreeMap<DeviceId, Held>,
}

impl ClientAwaitingSurvivors {
    /// Steps 6–7: checks the survivor set (it fits the cohort, includes
    /// this device, reaches the round's minimum, and leaves at least `t` of
    /// this device's neighbours in it) and signs it with `identity`. The
    /// next state will reveal only against this exact set.
    pub fn sign_survivors(
        self,
        identity: &DeviceIdentity,
        message: &SurvivorSet,
    ) -> Result<(ConsistencySignature, ClientAwaitingUnmask), ClientError> {
        check_round(&self.info, message.federation, message.round)?;
        if message.recipient != self.device {
            return Err(ClientError::WrongRecipient {
                recipient: message.recipient,
            });
        }
        if identity.device_id() != self.device {
            return Err(ClientError::WrongIdentity {
                device: identity.device_id(),
            });
        }
        let survivors = SurvivorBitmap::parse(&message.survivors, self.cohort.size)?;
        if !survivors.contains(self.position) {
            return Err(ClientError::NotASurvivor);
        }
        if survivors.len() < self.info.min_survivors as usize {
            return Err(ClientError::TooFewSurvivorsInRound {
                have: survivors.len(),
                need: self.info.min_survivors,
            });
        }
        let alive = self
            .held
            .values()
            .filter(|h| survivors.contains(h.position))
            .count();
        if alive < self.threshold {
            return Err(ClientError::TooFewSurvivors {
                have: alive,
                need: self.threshold,
            });
        }
        let context = self.info.context();
        let signature = sign_survivors(identity, &context, &self.cohort.digest, &survivors);
        let message = ConsistencySignature {
            federation: self.info.federation,
            round: self.info.round,
            sender: self.device,
            signature,
        };
        let ClientAwaitingSurvivors {
            info,
            device,
            threshold,
            cohort,
            held,
            ..
        } = self;
        Ok((
            message,
            ClientAwaitingUnmask {
                info,
                device,
                threshold,
                cohort,
                survivors,
                held,
            },
        ))
    }
}

/// After step 7: holds neighbours' shares and the survivor set it signed,
/// until the server relays its neighbours' signatures.
pub struct ClientAwaitingUnmask {
    info: RoundInfo,
    device: DeviceId,
    threshold: usize,
    cohort: CohortView,
    survivors: SurvivorBitmap,
    held: BTreeMap<DeviceId, Held>,
}

impl ClientAwaitingUnmask {
    /// Steps 8–9: reveals shares only if at least `t` neighbours this
    /// device shares with signed exactly the survivor set it signed (every
    /// relayed signature must verify; an unknown or repeated signer is
    /// refused). Then, for each neighbour it holds shares of, it reveals
    /// the self-mask share if the neighbour is in the set and the mask-key
    /// share if not: which one is fixed by the signed set, so it is never
    /// both. Consumes the state: a client answers once.
    pub fn respond(self, request: &UnmaskRequest) -> Result<UnmaskResponse, ClientError> {
        check_round(&self.info, request.federation, request.round)?;
        if request.recipient != self.device {
            return Err(ClientError::WrongRecipient {
                recipient: request.recipient,
            });
        }
        if request.survivors != self.survivors.as_bytes() {
            return Err(ClientError::SurvivorSetChanged);
        }
        let context = self.info.context();
        let mut signers = BTreeSet::new();
        for signed in &request.signatures {
            let device = signed.device;
            if !self.held.contains_key(&device) || !signers.insert(device) {
                return Err(ClientError::UnexpectedSigner { device });
            }
            verify_survivors(
                &device,
                &signed.signature,
                &context,
                &self.cohort.digest,
                &self.survivors,
            )
            .map_err(|source| ClientError::BadConsistencySignature { device, source })?;
        }
        if signers.len() < self.threshold {
            return Err(ClientError::TooFewConsistencySignatures {
                have: signers.len(),
                need: self.threshold,
            });
        }
        let mut self_mask_shares = Vec::new();
        let mut mask_key_shares = Vec::new();
        for (owner, held) in &self.held {
            if self.survivors.contains(held.position) {
                self_mask_shares.push(RevealedShare {
                    owner: *owner,
                    value: held.pair.self_mask_share,
                });
            } else {
                mask_key_shares.push(RevealedShare {
                    owner: *owner,
                    value: held.pair.mask_scalar_share,
                });
            }
        }
        Ok(UnmaskResponse {
            federation: self.info.federation,
            round: self.info.round,
            sender: self.device,
            self_mask_shares,
            mask_key_shares,
        })
    }
}

macro_rules! debug_without_secrets {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("device", &self.device).finish_non_exhaustive()
            }
        }
    )*};
}

debug_without_secrets!(
    ClientAwaitingNeighbours,
    ClientAwaitingShares,
    ClientReadyToUpload,
    ClientAwaitingSurvivors,
    ClientAwaitingUnmask
);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::crypto::round_keys::RoundSecrets;
    use crate::dp::DpConfig;
    use crate::graph::GraphSeed;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn info() -> RoundInfo {
        RoundInfo {
            federation: FederationId::from_bytes([5; 16]),
            round: RoundId(1),
            vector_len: 4,
            min_clients: 3,
            max_clients: 3,
            min_survivors: 2,
            degree: None,
            threshold: None,
            graph_seed: GraphSeed([6; 32]),
            dp: DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            },
            threat_model: None,
        }
    }

    /// Client 0 and the neighbour keys it would get if neighbour 1
    /// advertised `tweak`ed (but validly signed) keys. Three clients form a
    /// complete graph.
    fn scenario(
        tweak: impl Fn(&mut RoundPublicKeys, &AdvertiseKeys),
    ) -> (ClientAwaitingNeighbours, NeighbourKeys, DeviceId, StdRng) {
        let mut rng = StdRng::seed_from_u64(17);
        let info = info();
        let ctx = info.context();
        let ids: Vec<DeviceIdentity> = (0..3).map(|_| DeviceIdentity::generate(&mut rng)).collect();
        let (own_advert, client) = ClientRound::new(&ids[0], info, &mut rng).unwrap();
        let mut adverts = Vec::new();
        for id in &ids[1..] {
            let (_, mut keys) = RoundSecrets::generate(&mut rng, &ctx, &id.device_id());
            if adverts.is_empty() {
                tweak(&mut keys, &own_advert);
            }
            adverts.push(sign_advertisement(id, &ctx, &keys));
        }
        let mut cohort: Vec<DeviceId> = ids.iter().map(|i| i.device_id()).collect();
        cohort.sort();
        let target = ids[1].device_id();
        let message = NeighbourKeys {
            federation: ctx.federation,
            round: ctx.round,
            cohort,
            advertisements: adverts,
        };
        (client, message, target, rng)
    }

    #[test]
    fn honest_neighbours_are_accepted() {
        let (client, message, _, mut rng) = scenario(|_, _| {});
        let (shares, _) = client.receive_neighbours(&message, &mut rng).unwrap();
        assert_eq!(shares.shares.len(), 2);
    }

    #[test]
    fn a_neighbour_reusing_our_key_is_refused() {
        let (client, message, target, mut rng) =
            scenario(|keys, ours| keys.share_key = ours.mask_key);
        assert_eq!(
            client.receive_neighbours(&message, &mut rng).unwrap_err(),
            ClientError::KeyReused { device: target }
        );
    }

    #[test]
    fn a_low_order_mask_key_is_refused() {
        let (client, message, target, mut rng) =
            scenario(|keys, _| keys.mask_key = PublicKey::from([0u8; 32]));
        assert_eq!(
            client.receive_neighbours(&message, &mut rng).unwrap_err(),
            ClientError::NonContributory { device: target }
        );
    }

    #[test]
    fn cohort_problems_are_refused() {
        let (client, mut message, _, mut rng) = scenario(|_, _| {});
        message.cohort.reverse();
        assert_eq!(
            client.receive_neighbours(&message, &mut rng).unwrap_err(),
            ClientError::CohortNotSorted
        );

        let (client, mut message, target, mut rng) = scenario(|_, _| {});
        message.advertisements.retain(|a| a.device != target);
        assert_eq!(
            client.receive_neighbours(&message, &mut rng).unwrap_err(),
            ClientError::MissingAdvertisement { device: target }
        );

        let (client, mut message, target, mut rng) = scenario(|_, _| {});
        let again = message.advertisements[0].clone();
        message.advertisements.push(again);
        assert_eq!(
            client.receive_neighbours(&message, &mut rng).unwrap_err(),
            ClientError::UnexpectedAdvertisement { device: target }
        );

        let (client, mut message, target, mut rng) = scenario(|_, _| {});
        message.cohort.retain(|d| *d != target);
        assert!(matches!(
            client.receive_neighbours(&message, &mut rng),
            Err(ClientError::CohortSize { size: 2, .. })
        ));
    }

    #[test]
    fn debug_output_names_the_device_only() {
        let (client, _, _, _) = scenario(|_, _| {});
        let text = format!("{client:?}");
        assert!(text.starts_with("ClientAwaitingNeighbours { device: DeviceId("));
        assert!(text.ends_with(".. }"));
    }
}
