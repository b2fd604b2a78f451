//! Stage 3: forwarding the sealed shares and summing masked uploads; and
//! the rule for whose secrets can still be rebuilt when devices drop.

use super::*;

/// Stage 3: serving each sharer the shares sealed to it; summing masked
/// uploads as they arrive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectingUploads {
    pub(super) info: RoundInfo,
    pub(super) cohort: Cohort,
    pub(super) sharers: BTreeSet<u32>,
    pub(super) shares: BTreeMap<u32, Vec<ShareForRecipient>>,
    pub(super) commitments: BTreeMap<u32, SharingCommitments>,
    #[serde(with = "crate::wire::encoding::u32_vec")]
    pub(super) sum: Vec<u32>,
    pub(super) uploaded: BTreeSet<u32>,
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
pub(super) fn check_holders(
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
