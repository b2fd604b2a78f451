//! Stage 4: the consistency round, collecting uploaders' signatures over
//! the survivor set.

use super::*;

/// Stage 4: the consistency round. Every uploader is shown the survivor set
/// and signs it; the signatures are relayed to neighbours with the unmask
/// requests, and a device reveals nothing without `t` of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckingConsistency {
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
