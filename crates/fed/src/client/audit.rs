//! After a round: the HTTP side of [`crate::audit`]. This fetches, in the
//! order the audit module documents, what the device needs to check the
//! server's transparency log, and lets [`LogAudit::verify_round`] judge:
//!
//! 1. the latest global adapter (the one this device will use), its
//!    signature checked as in [`FedClient::fetch_global`];
//! 2. then the signed tree head, so both the round's entries and the
//!    adapter's are in the tree it signs;
//! 3. the consistency proof from the head this device verified last;
//! 4. the inclusion proof of this device's own commitment (its id and the
//!    SHA-256 of the exact masked bytes it uploaded);
//! 5. the `adapter_published` entry of the downloaded version;
//! 6. the inclusion proof of the round's `round_opened` entry for the
//!    parameters this device was shown.
//!
//! Before that, if the round's cohort was checked against the log under a
//! head of its own (see [`FedClient::participate_audited`]), the audit
//! first joins that head along a consistency proof, so what the cohort
//! check relied on is part of the one history this device verified (a
//! no-op when the check was made with this same audit).
//!
//! Every log endpoint is public and unsigned; every answer still comes
//! over the pinned TLS connection, though nothing here relies on that: the
//! head is only accepted under the log key pinned at enrolment.

use hearth_ledger::Hash;

use super::http::{Call, Reply, Traffic};
use super::{FedClient, FedClientError, JSON_LIMIT, Membership, ParticipationReport, get};
use crate::audit::wire::{
    self, AdapterEntryResponse, ConsistencyProofResponse, EntriesResponse, InclusionProofResponse,
    LogKeyResponse, SthResponse,
};
use crate::audit::{
    Absence, AdapterCheck, AuditError, CohortCheck, CommitmentCheck, LogAudit, ParametersCheck,
    RoundCheck, RoundVerified, commitment_leaf_hash, parameters,
};
use crate::crypto::DeviceId;
use crate::{RoundId, RoundInfo};

impl Membership {
    /// The pinned transparency log key, checked to be an Ed25519 key.
    pub fn pinned_log_key(&self) -> Result<hearth_ledger::VerifyingKey, FedClientError> {
        let text = self.log_key.as_deref().ok_or_else(|| {
            FedClientError::LogKey(
                "this membership pinned no transparency log key (it predates the log): \
                 enrol again, or set the key the operator printed"
                    .into(),
            )
        })?;
        wire::parse_log_key(text).map_err(|e| FedClientError::LogKey(e.to_string()))
    }
}

impl FedClient {
    /// A fresh audit of the server's transparency log under the key pinned
    /// at enrolment. Store it (serde) beside the membership and pass it to
    /// [`FedClient::audit_round`] after every round; a new one trusts
    /// whatever history the server shows first, so keep the old one.
    pub fn log_audit(&self) -> Result<LogAudit, FedClientError> {
        Ok(LogAudit::new(self.membership.pinned_log_key()?))
    }

    /// Checks the transparency log after a round this device took part in
    /// (`report` is what [`FedClient::participate`] returned): the log's new
    /// signed head verifies under the pinned key and extends the head
    /// `audit` verified before, the log holds this device's commitment to
    /// the exact bytes it uploaded, it records the global adapter this
    /// device now uses with the SHA-256 of the bytes it downloaded, and it
    /// logged the round's parameters this device was shown when the round
    /// opened.
    ///
    /// On success `audit` moves to the new head and keeps the evidence:
    /// store it again. On failure it is unchanged and the error says what
    /// the server did wrong ([`FedClientError::Audit`]); stop taking part
    /// and tell the person.
    pub fn audit_round(
        &self,
        audit: &mut LogAudit,
        report: &ParticipationReport,
    ) -> Result<RoundVerified, FedClientError> {
        let pinned = self.membership.pinned_log_key()?;
        if *audit.log_key() != pinned {
            return Err(FedClientError::LogKey(format!(
                "the stored audit follows the log key {}, this membership pinned {}",
                hex::encode(audit.log_key().as_bytes()),
                hex::encode(pinned.as_bytes())
            )));
        }
        let federation = self.membership.federation_id.clone();
        let traffic = Traffic::default();
        // Worked on a copy, so a failure anywhere leaves `audit` unchanged.
        let mut next = audit.clone();

        // The head the cohort was checked under joins this device's
        // verified history first: extending it, or a prefix of it.
        if let Some(cohort_head) = &report.cohort_head {
            let (verified, size) = (next.size(), cohort_head.head.size);
            let (old, new) = (verified.min(size), verified.max(size));
            let consistency = if old == 0 || old == new {
                ConsistencyProofResponse::trivial(old, new)
            } else {
                self.log_json(
                    &format!("{}?old={old}&new={new}", wire::CONSISTENCY_PATH),
                    &traffic,
                )?
            };
            next.join_head(cohort_head, &consistency)?;
        }

        // The adapter first, then the head, so its entry is in the tree.
        let global = self.fetch_global_counted(&traffic, None)?;
        if global.version() < report.global_version_after {
            return Err(FedClientError::GlobalIntegrity(format!(
                "the server serves global version {} after round {} published version {}",
                global.version(),
                report.round,
                report.global_version_after
            )));
        }
        let sth: SthResponse = self.log_json(wire::STH_PATH, &traffic)?;
        let size = sth.head.size;
        let old = next.size();
        // Nothing to prove from the empty tree or to an equal (or, for a
        // log that went back, smaller) size: the audit judges those alone.
        let consistency = if old == 0 || old >= size {
            ConsistencyProofResponse::trivial(old, size)
        } else {
            self.log_json(
                &format!("{}?old={old}&new={size}", wire::CONSISTENCY_PATH),
                &traffic,
            )?
        };
        let device = self.membership.device_id.clone();
        let upload_sha256 = Hash::from_bytes(report.upload_sha256);
        let leaf = commitment_leaf_hash(&federation, report.round, &device, upload_sha256);
        let proof: Option<InclusionProofResponse> = self.log_json_or_absent(
            &format!("{}?hash={leaf}&size={size}", wire::INCLUSION_PATH),
            &traffic,
        )?;
        // Version 0 is derived from the federation, never published, so
        // never logged; only later versions have an entry.
        let adapter = match global.version() {
            0 => None,
            version => Some(AdapterCheck {
                version,
                adapter_sha256: Hash::from_bytes(global.sha256()),
                logged: self.log_json_or_absent::<AdapterEntryResponse>(
                    &format!(
                        "{}?federation={}&version={version}&size={size}",
                        wire::ADAPTER_PATH,
                        query_value(&federation)
                    ),
                    &traffic,
                )?,
            }),
        };
        let opened = parameters::round_opened_entry(&federation, &report.round_info).leaf_hash();
        let parameters = Some(ParametersCheck {
            info: report.round_info.clone(),
            proof: self.log_json_or_absent(
                &format!("{}?hash={opened}&size={size}", wire::INCLUSION_PATH),
                &traffic,
            )?,
        });
        let check = RoundCheck {
            sth,
            consistency,
            federation,
            parameters,
            round: report.round,
            commitment: Some(CommitmentCheck {
                device,
                upload_sha256,
                proof,
            }),
            adapter,
        };
        match next.verify_round(check) {
            Ok(verified) => {
                *audit = next;
                Ok(verified)
            }
            // A head that does not verify: say so more precisely when the
            // server now presents another key than the pinned one.
            Err(AuditError::BadSignature) => {
                let served: LogKeyResponse = self.log_json(wire::KEY_PATH, &traffic)?;
                next.check_key(&served)?;
                Err(AuditError::BadSignature.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Before this device announces anything for a round: checks that the
    /// round's parameters it was sent are logged, under a head signed by
    /// the pinned log key, so a device never binds itself to parameters
    /// the server did not commit to publicly. The after-round audit
    /// ([`FedClient::audit_round`]) checks them again under a head
    /// consistent with everything this device verified before.
    pub(super) fn check_parameters_logged(
        &self,
        info: &RoundInfo,
        traffic: &Traffic,
    ) -> Result<(), FedClientError> {
        let key = self.membership.pinned_log_key()?;
        let federation = &self.membership.federation_id;
        let sth: SthResponse = self.log_json(wire::STH_PATH, traffic)?;
        let head = sth
            .verify(&key)
            .map_err(|_| FedClientError::Audit(AuditError::BadSignature))?;
        let opened = parameters::round_opened_entry(federation, info).leaf_hash();
        let proof: Option<InclusionProofResponse> = self.log_json_or_absent(
            &format!(
                "{}?hash={opened}&size={}",
                wire::INCLUSION_PATH,
                head.size()
            ),
            traffic,
        )?;
        let not_logged = |why| {
            FedClientError::Audit(AuditError::ParametersNotLogged {
                federation: federation.clone(),
                round: info.round.0,
                digest: Hash::from_bytes(info.digest()),
                why,
            })
        };
        let proof = proof.ok_or_else(|| not_logged(Absence::NoEntry))?;
        if proof.leaf_hash != opened || proof.size != head.size() {
            return Err(not_logged(Absence::OtherLeaf {
                answered: proof.leaf_hash,
            }));
        }
        hearth_ledger::verify_inclusion(
            &opened,
            proof.index,
            head.size(),
            &proof.path,
            &head.root(),
        )
        .map_err(|e| not_logged(Absence::NotInTree(e)))
    }

    /// Before this device seals a share to anyone: checks that every
    /// device of the round's `cohort` is enrolled in the federation, and
    /// none revoked, by the log's entries replayed into `audit`, under a
    /// fresh head signed by the pinned log key and joined to `audit`'s
    /// verified history ([`LogAudit::check_cohort`]). Fetches only the
    /// entries `audit` has not replayed yet. Returns that head, which the
    /// after-round audit joins again (a no-op for this same audit).
    pub(super) fn check_cohort_in_log(
        &self,
        audit: &mut LogAudit,
        round: RoundId,
        cohort: &[DeviceId],
        traffic: &Traffic,
    ) -> Result<hearth_ledger::SignedTreeHead, FedClientError> {
        let pinned = self.membership.pinned_log_key()?;
        if *audit.log_key() != pinned {
            return Err(FedClientError::LogKey(
                "the stored audit follows another log key than this membership pinned".into(),
            ));
        }
        let federation = &self.membership.federation_id;
        let sth: SthResponse = self.log_json(wire::STH_PATH, traffic)?;
        let size = sth.head.size;
        let mine = audit.size();
        let (old, new) = (mine.min(size), mine.max(size));
        let consistency = if old == 0 || old == new {
            ConsistencyProofResponse::trivial(old, new)
        } else {
            self.log_json(
                &format!("{}?old={old}&new={new}", wire::CONSISTENCY_PATH),
                traffic,
            )?
        };
        let mut pages = Vec::new();
        let mut start = audit.population_size(federation);
        while start < size {
            let end = size.min(start.saturating_add(wire::MAX_ENTRIES_PER_REQUEST));
            let page: EntriesResponse = self.log_json(
                &format!("{}?start={start}&end={end}", wire::ENTRIES_PATH),
                traffic,
            )?;
            // Each page must move the replay on, or a server could keep
            // this loop going for ever.
            if page.end <= start || page.end > end {
                return Err(FedClientError::BadResponse(format!(
                    "asked for log entries {start}..{end}, got {}..{}",
                    page.start, page.end
                )));
            }
            start = page.end;
            pages.push(page);
        }
        audit.check_cohort(&CohortCheck {
            federation,
            round: round.0,
            cohort,
            sth: &sth,
            consistency: &consistency,
            pages: &pages,
        })?;
        Ok(sth)
    }

    fn log_reply(&self, path: &str, traffic: &Traffic) -> Result<Reply, FedClientError> {
        let call: Call<'_> = get(path, JSON_LIMIT);
        self.http.send(&call, traffic, None)
    }

    pub(super) fn log_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        traffic: &Traffic,
    ) -> Result<T, FedClientError> {
        self.log_reply(path, traffic)?.json()
    }

    /// A log answer where 404 means "the log has no such entry", which is
    /// the audit's to judge (a missing commitment, say), not an error here.
    pub(super) fn log_json_or_absent<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        traffic: &Traffic,
    ) -> Result<Option<T>, FedClientError> {
        match self.log_reply(path, traffic) {
            Ok(reply) => reply.json().map(Some),
            Err(FedClientError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved
/// characters), so a federation id cannot break the query.
pub(super) fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("notes-eu_1.x~"), "notes-eu_1.x~");
        assert_eq!(query_value("a&b=c d/é"), "a%26b%3Dc%20d%2F%C3%A9");
    }

    #[test]
    fn a_membership_without_a_log_key_says_so() {
        let mut membership = Membership {
            server_url: "https://h".into(),
            certificate_pem: String::new(),
            federation_id: "notes".into(),
            device_id: "dev".into(),
            server_key: String::new(),
            log_key: None,
            policy: None,
        };
        let err = membership.pinned_log_key().unwrap_err();
        assert!(
            matches!(&err, FedClientError::LogKey(m) if m.contains("pinned no")),
            "{err}"
        );
        membership.log_key = Some("zz".into());
        assert!(matches!(
            membership.pinned_log_key(),
            Err(FedClientError::LogKey(_))
        ));
        let key = hearth_ledger::SigningKey::from_bytes(&[3; 32]).verifying_key();
        membership.log_key = Some(hex::encode(key.as_bytes()));
        assert_eq!(membership.pinned_log_key().unwrap(), key);
        // Stored memberships from before the log still load.
        let old = serde_json::json!({
            "server_url": "https://h", "certificate_pem": "", "federation_id": "notes",
            "device_id": "dev", "server_key": ""
        });
        let loaded: Membership = serde_json::from_value(old).unwrap();
        assert_eq!(loaded.log_key, None);
    }
}
