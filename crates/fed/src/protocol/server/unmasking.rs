//! Stage 5 and the end: collecting revealed shares, checking each against
//! its sender's commitments, removing the masks, bounding the sum; and
//! the finished round.

use super::*;

/// Stage 5: asking signers for shares; collecting them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unmasking {
    pub(super) info: RoundInfo,
    pub(super) cohort: Cohort,
    pub(super) sharers: BTreeSet<u32>,
    pub(super) uploaded: BTreeSet<u32>,
    pub(super) commitments: BTreeMap<u32, SharingCommitments>,
    #[serde(with = "crate::wire::encoding::base64_bytes")]
    pub(super) survivors: Vec<u8>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    pub(super) sum: Vec<u32>,
    pub(super) signatures: BTreeMap<u32, SurvivorSignature>,
    pub(super) responded: BTreeSet<u32>,
    pub(super) self_mask_shares: BTreeMap<u32, Vec<Share>>,
    pub(super) mask_key_shares: BTreeMap<u32, Vec<Share>>,
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
    pub(super) info: RoundInfo,
    pub(super) contributors: Vec<DeviceId>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    pub(super) sum: Vec<u32>,
    pub(super) masks_removed: u32,
    #[serde(default)]
    pub(super) misbehaving: Vec<DeviceId>,
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
