//! Steps 6 to 9 on the device: signing the survivor set, then revealing
//! for each neighbour one share, fixed by that signed set.

use super::*;

/// After step 5: holds neighbours' shares until the server says whose
/// uploads are in the sum.
pub struct ClientAwaitingSurvivors {
    pub(super) info: RoundInfo,
    pub(super) device: DeviceId,
    pub(super) position: u32,
    pub(super) threshold: usize,
    pub(super) cohort: CohortView,
    pub(super) held: BTreeMap<DeviceId, Held>,
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
    pub(super) info: RoundInfo,
    pub(super) device: DeviceId,
    pub(super) threshold: usize,
    pub(super) cohort: CohortView,
    pub(super) survivors: SurvivorBitmap,
    pub(super) held: BTreeMap<DeviceId, Held>,
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
