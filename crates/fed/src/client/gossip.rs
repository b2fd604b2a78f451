//! Gossip over HTTP: the driver of [`LogAudit::gossip`].
//!
//! After each audited round (and on `hearth audit`) the device posts the
//! latest head it verified to its federation's gossip endpoint (a signed
//! request, so only enrolled devices fill the list), reads the heads other
//! devices posted, asks the log for the consistency proof between each
//! head's size and its own, and lets the audit judge. A split view comes
//! back as [`FedClientError::Audit`] with
//! [`AuditError::SplitView`](crate::audit::AuditError::SplitView), and
//! the audit keeps the evidence: store it.

use super::http::Traffic;
use super::{FedClient, FedClientError};
use crate::audit::wire::{
    self, CONSISTENCY_PATH, ConsistencyProofResponse, GossipAccepted, GossipPost, GossipResponse,
    MAX_GOSSIP_HEADS,
};
use crate::audit::{GossipHead, GossipReport, LogAudit};

impl FedClient {
    /// Posts `audit`'s latest verified head (if it has one) and checks the
    /// heads other devices of the federation posted against it (see
    /// [`crate::audit::gossip`]). On a split view the audit keeps the
    /// evidence and the error is
    /// [`AuditError::SplitView`](crate::audit::AuditError::SplitView):
    /// store `audit` either way.
    pub fn gossip(&self, audit: &mut LogAudit) -> Result<GossipReport, FedClientError> {
        let pinned = self.membership.pinned_log_key()?;
        if *audit.log_key() != pinned {
            return Err(FedClientError::LogKey(
                "the stored audit follows another log key than this membership pinned".into(),
            ));
        }
        let traffic = Traffic::default();
        let path = wire::gossip_path(&self.membership.federation_id);
        if let Some(sth) = audit.signed_head() {
            let body = serde_json::to_vec(&GossipPost { sth: sth.clone() })
                .map_err(|e| FedClientError::BadResponse(e.to_string()))?;
            let _: GossipAccepted = self
                .http
                .send(&self.signed("POST", &path, &body), &traffic, None)?
                .json()?;
        }
        let answer: GossipResponse = self.log_json(&path, &traffic)?;
        let mine = audit.size();
        let mut heads = Vec::new();
        for sth in answer.heads.into_iter().take(MAX_GOSSIP_HEADS) {
            // Proofs only for heads of this log's key and another size;
            // the audit ignores the others.
            let size = sth.head.size;
            let wanted = audit.signed_head().is_some()
                && size != mine
                && sth.verify(audit.log_key()).is_ok();
            let consistency = if wanted {
                let (old, new) = (size.min(mine), size.max(mine));
                self.proof_or_refusal(old, new, &traffic)?
            } else {
                None
            };
            heads.push(GossipHead { sth, consistency });
        }
        Ok(audit.gossip(&heads)?)
    }

    /// The consistency proof from `old` to `new`; `None` when the log
    /// refuses it (a size beyond its tree, say): for two heads it signed,
    /// that is the audit's to judge.
    fn proof_or_refusal(
        &self,
        old: u64,
        new: u64,
        traffic: &Traffic,
    ) -> Result<Option<ConsistencyProofResponse>, FedClientError> {
        if old == 0 {
            return Ok(Some(ConsistencyProofResponse::trivial(old, new)));
        }
        match self.log_json_or_absent(&format!("{CONSISTENCY_PATH}?old={old}&new={new}"), traffic) {
            Err(FedClientError::Rejected { status: 400, .. }) => Ok(None),
            other => other,
        }
    }
}
