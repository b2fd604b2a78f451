//! Step 5 on the device: masking the update.

use super::*;

/// After step 4: ready to mask and upload an update.
pub struct ClientReadyToUpload {
    pub(super) info: RoundInfo,
    pub(super) device: DeviceId,
    pub(super) position: u32,
    pub(super) threshold: usize,
    pub(super) cohort: CohortView,
    pub(super) masking_with: Vec<(u32, MaskSeed)>,
    pub(super) self_mask: MaskSeed,
    pub(super) held: BTreeMap<DeviceId, Held>,
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
