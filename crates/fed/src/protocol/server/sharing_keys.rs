//! Stage 2: relaying each device's neighbours' keys and collecting the
//! sealed shares of its secrets.

use super::*;

/// Stage 2: serving each client its neighbours' keys; accepting sealed
/// shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharingKeys {
    pub(super) info: RoundInfo,
    pub(super) cohort: Cohort,
    pub(super) shares: BTreeMap<u32, Vec<ShareForRecipient>>,
    pub(super) commitments: BTreeMap<u32, SharingCommitments>,
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
