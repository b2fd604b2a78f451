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
//!
//! With the head, a device posts its own signed upload commitments
//! ([`FedClient::sign_upload`], [`FedClient::gossip_with`]) and checks the
//! server logged them ([`crate::audit::logged`]); and
//! [`FedClient::audit_uploads`] replays the whole log and compares every
//! device's commitment, served or logged, with it
//! ([`crate::audit::uploads`]).

use hearth_ledger::Hash;

use super::audit::query_value;
use super::http::Traffic;
use super::{FedClient, FedClientError, ParticipationReport};
use crate::audit::uploads::MAX_AUDITED_COMMITMENTS;
use crate::audit::wire::{
    self, CONSISTENCY_PATH, ConsistencyProofResponse, ENTRIES_PATH, EntriesResponse,
    GossipAccepted, GossipCommitmentsResponse, GossipPost, GossipResponse, INCLUSION_PATH,
    InclusionProofResponse, MAX_COMMITMENTS_PER_POST, MAX_ENTRIES_PER_REQUEST, MAX_GOSSIP_HEADS,
    STH_PATH, SthResponse,
};
use crate::audit::{
    GossipHead, GossipReport, LogAudit, LogReplay, OwnCommitmentsCheck, SignedUploadCommitment,
    UploadCommitment, UploadReport,
};

impl FedClient {
    /// Posts `audit`'s latest verified head (if it has one) and checks the
    /// heads other devices of the federation posted against it (see
    /// [`crate::audit::gossip`]). On a split view the audit keeps the
    /// evidence and the error is
    /// [`AuditError::SplitView`](crate::audit::AuditError::SplitView):
    /// store `audit` either way.
    pub fn gossip(&self, audit: &mut LogAudit) -> Result<GossipReport, FedClientError> {
        self.gossip_with(audit, &[])
    }

    /// [`FedClient::gossip`], posting this device's own signed upload
    /// commitments with its head (at most [`MAX_COMMITMENTS_PER_POST`];
    /// the server keeps and logs the first per round), then checking the
    /// log holds each as signed: what every other device replays
    /// ([`crate::audit::logged`]). One it does not hold is
    /// [`AuditError::CommitmentNotLogged`](crate::audit::AuditError::CommitmentNotLogged),
    /// kept as evidence in `audit`: store it either way. Nothing is posted
    /// before the audit verified a head.
    pub fn gossip_with(
        &self,
        audit: &mut LogAudit,
        commitments: &[SignedUploadCommitment],
    ) -> Result<GossipReport, FedClientError> {
        let pinned = self.membership.pinned_log_key()?;
        if *audit.log_key() != pinned {
            return Err(FedClientError::LogKey(
                "the stored audit follows another log key than this membership pinned".into(),
            ));
        }
        let traffic = Traffic::default();
        let path = wire::gossip_path(&self.membership.federation_id);
        if let Some(sth) = audit.signed_head() {
            let post = GossipPost {
                sth: sth.clone(),
                commitments: commitments
                    .iter()
                    .take(MAX_COMMITMENTS_PER_POST)
                    .cloned()
                    .collect(),
            };
            let body = serde_json::to_vec(&post)
                .map_err(|e| FedClientError::BadResponse(e.to_string()))?;
            let _: GossipAccepted = self
                .http
                .send(&self.signed("POST", &path, &body), &traffic, None)?
                .json()?;
            if !post.commitments.is_empty() {
                self.check_own_commitments(audit, post.commitments, &traffic)?;
            }
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

    /// After posting: checks the log holds each of this device's
    /// commitments, under a head signed after the post and joined to the
    /// verified history ([`LogAudit::check_own_commitments`]).
    fn check_own_commitments(
        &self,
        audit: &mut LogAudit,
        posted: Vec<SignedUploadCommitment>,
        traffic: &Traffic,
    ) -> Result<(), FedClientError> {
        let sth: SthResponse = self.log_json(STH_PATH, traffic)?;
        let size = sth.head.size;
        let old = audit.size();
        let consistency = if old == 0 || old >= size {
            ConsistencyProofResponse::trivial(old, size)
        } else {
            self.log_json(&format!("{CONSISTENCY_PATH}?old={old}&new={size}"), traffic)?
        };
        let mut checked = Vec::with_capacity(posted.len());
        for commitment in posted {
            let leaf = commitment.log_entry().leaf_hash();
            let proof: Option<InclusionProofResponse> = self.log_json_or_absent(
                &format!("{INCLUSION_PATH}?hash={leaf}&size={size}"),
                traffic,
            )?;
            checked.push((commitment, proof));
        }
        audit.check_own_commitments(&OwnCommitmentsCheck {
            sth,
            consistency,
            posted: checked,
        })?;
        Ok(())
    }

    /// This device's signed commitment to what it uploaded in a round
    /// (`report` is what [`FedClient::participate`] returned): the SHA-256
    /// of the exact bytes sent and the digest of the round's parameters
    /// it was shown, signed with its identity key. Post it with
    /// [`FedClient::gossip_with`].
    pub fn sign_upload(
        &self,
        report: &ParticipationReport,
    ) -> Result<SignedUploadCommitment, FedClientError> {
        Ok(UploadCommitment {
            federation: self.membership.federation_id.clone(),
            round: report.round,
            device: self.membership.device_id.clone(),
            upload_sha256: Hash::from_bytes(report.upload_sha256),
            round_digest: Hash::from_bytes(report.round_info.digest()),
        }
        .sign(&self.identity)?)
    }

    /// Compares every device's gossiped signed upload commitment with the
    /// log (see [`crate::audit::uploads`]): fetches all entries up to the
    /// head `audit` verified (in pages of [`MAX_ENTRIES_PER_REQUEST`]),
    /// checks they hash to its root, fetches the federation's gossiped
    /// commitments (at most [`MAX_AUDITED_COMMITMENTS`]) and lets
    /// [`LogAudit::check_uploads`] judge. A contradiction is
    /// [`FedClientError::Audit`] with
    /// [`AuditError::UploadContradicted`](crate::audit::AuditError::UploadContradicted),
    /// and the audit keeps the evidence: store it either way.
    pub fn audit_uploads(&self, audit: &mut LogAudit) -> Result<UploadReport, FedClientError> {
        let pinned = self.membership.pinned_log_key()?;
        if *audit.log_key() != pinned {
            return Err(FedClientError::LogKey(
                "the stored audit follows another log key than this membership pinned".into(),
            ));
        }
        let traffic = Traffic::default();
        let size = audit.size();
        let mut replay = LogReplay::new();
        while replay.size() < size {
            let start = replay.size();
            let end = size.min(start.saturating_add(MAX_ENTRIES_PER_REQUEST));
            let page: EntriesResponse =
                self.log_json(&format!("{ENTRIES_PATH}?start={start}&end={end}"), &traffic)?;
            replay.push(&page)?;
            if replay.size() == start {
                return Err(FedClientError::BadResponse(format!(
                    "the log served no entries from {start}"
                )));
            }
        }
        let commitments = self.gossiped_commitments(&traffic)?;
        let federation = self.membership.federation_id.clone();
        Ok(audit.check_uploads(&federation, &replay, &commitments)?)
    }

    /// Every commitment the federation's devices posted, page by page.
    fn gossiped_commitments(
        &self,
        traffic: &Traffic,
    ) -> Result<Vec<SignedUploadCommitment>, FedClientError> {
        let path = wire::gossip_commitments_path(&self.membership.federation_id);
        let mut all: Vec<SignedUploadCommitment> = Vec::new();
        let mut cursor: Option<(u64, String)> = None;
        loop {
            let url = match &cursor {
                None => path.clone(),
                Some((round, device)) => format!(
                    "{path}?after_round={round}&after_device={}",
                    query_value(device)
                ),
            };
            let page: GossipCommitmentsResponse = self.log_json(&url, traffic)?;
            let Some(last) = page.commitments.last() else {
                break;
            };
            let next = (last.commitment.round, last.commitment.device.clone());
            // The cursor must move forward, or a server could keep this
            // loop going for ever.
            if cursor.as_ref().is_some_and(|c| *c >= next) {
                return Err(FedClientError::BadResponse(
                    "the gossiped commitments are not in order".into(),
                ));
            }
            all.extend(page.commitments);
            cursor = Some(next);
            if !page.more || all.len() >= MAX_AUDITED_COMMITMENTS {
                break;
            }
        }
        all.truncate(MAX_AUDITED_COMMITMENTS);
        Ok(all)
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
