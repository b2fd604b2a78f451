//! A device's own upload commitments in the log: in what every other
//! device sees.
//!
//! Devices gossip their signed upload commitments through the server
//! ([`super::commitment`]), and every device replaying the log holds the
//! log's participations to them ([`super::uploads`]). Served as a list of
//! the server's own making, that gossip could differ from device to
//! device: a server that dropped device C's upload could serve C's
//! commitment to nobody but C, or plant another one under C's name first
//! so that C's is never kept, and no other device's replay would show the
//! drop. So the server logs every commitment it keeps (an
//! `upload_committed` entry, in the transaction that keeps it), replays
//! judge the logged ones with the served ones, and after posting its own a
//! device checks, under a head joined to its verified history, that the
//! log holds each exactly as it signed it. Every device replays that one
//! log (and the gossip of heads shows whether it is one), so a commitment
//! in it is in what every other device sees. One that is not is kept as
//! evidence ([`UnloggedCommitment`]), reported by every later
//! [`super::audit_all`] (`hearth audit`), and the device stops.

use hearth_ledger::{SignedTreeHead, VerifiedTreeHead, verify_inclusion};
use serde::{Deserialize, Serialize};

use super::commitment::SignedUploadCommitment;
use super::wire::{ConsistencyProofResponse, InclusionProofResponse};
use super::{Absence, AuditError, LogAudit};

/// What the driver fetched after posting this device's commitments: a
/// head signed after the post, the consistency proof from
/// [`LogAudit::size`] to it, and for each commitment posted the log's
/// answer to [`super::wire::INCLUSION_PATH`] about its `upload_committed`
/// entry ([`SignedUploadCommitment::log_entry`]; `None` for a 404).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnCommitmentsCheck {
    /// The log's latest signed head.
    pub sth: SignedTreeHead,
    /// From [`LogAudit::size`] to its size.
    pub consistency: ConsistencyProofResponse,
    /// Each commitment posted, with the log's inclusion proof of it.
    pub posted: Vec<(SignedUploadCommitment, Option<InclusionProofResponse>)>,
}

/// This device's signed commitment, posted and accepted, that the log
/// does not hold under a head it signed afterwards: kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloggedCommitment {
    /// The commitment as this device signed and posted it.
    pub commitment: SignedUploadCommitment,
    /// The head it was looked for under.
    pub head: SignedTreeHead,
    /// What the log answered instead.
    pub why: String,
}

impl LogAudit {
    /// Checks that the log holds every commitment this device posted (see
    /// the module docs): the head joins the verified history first, then
    /// each commitment's entry must be in its tree. On success the audit
    /// holds the new head. A commitment the log does not hold is
    /// [`AuditError::CommitmentNotLogged`], and the audit keeps the
    /// evidence (and the new head): store it either way. A head that does
    /// not extend the verified one changes nothing.
    pub fn check_own_commitments(
        &mut self,
        check: &OwnCommitmentsCheck,
    ) -> Result<usize, AuditError> {
        let mut next = self.clone();
        next.advance(&check.sth, &check.consistency)?;
        let head = check
            .sth
            .verify(next.log_key())
            .map_err(|_| AuditError::BadSignature)?;
        let mut first = None;
        for (commitment, proof) in &check.posted {
            let Err(why) = logged_in(&head, commitment, proof.as_ref()) else {
                continue;
            };
            let evidence = UnloggedCommitment {
                commitment: commitment.clone(),
                head: check.sth.clone(),
                why: why.to_string(),
            };
            first.get_or_insert_with(|| not_logged(&evidence));
            if !next.unlogged.contains(&evidence) {
                next.unlogged.push(evidence);
            }
        }
        *self = next;
        match first {
            Some(error) => Err(error),
            None => Ok(check.posted.len()),
        }
    }

    /// This device's commitments the log did not hold, oldest first.
    pub fn unlogged_commitments(&self) -> &[UnloggedCommitment] {
        &self.unlogged
    }
}

/// Where `commitment`'s entry is in `head`'s tree, by `proof`.
fn logged_in(
    head: &VerifiedTreeHead,
    commitment: &SignedUploadCommitment,
    proof: Option<&InclusionProofResponse>,
) -> Result<u64, Absence> {
    let leaf = commitment.log_entry().leaf_hash();
    let proof = proof.ok_or(Absence::NoEntry)?;
    if proof.leaf_hash != leaf || proof.size != head.size() {
        return Err(Absence::OtherLeaf {
            answered: proof.leaf_hash,
        });
    }
    verify_inclusion(&leaf, proof.index, head.size(), &proof.path, &head.root())
        .map_err(Absence::NotInTree)?;
    Ok(proof.index)
}

fn not_logged(evidence: &UnloggedCommitment) -> AuditError {
    let c = &evidence.commitment.commitment;
    AuditError::CommitmentNotLogged {
        federation: c.federation.clone(),
        round: c.round,
        device: c.device.clone(),
        signed: c.upload_sha256,
        why: evidence.why.clone(),
    }
}

/// Re-checks stored evidence: `Err(CommitmentNotLogged)` while its head
/// still verifies under the pinned key (that the entry was absent cannot
/// be shown again by a few hashes; it was established under that head).
pub(super) fn recheck(
    evidence: &UnloggedCommitment,
    log_key: &hearth_ledger::VerifyingKey,
) -> Result<(), AuditError> {
    match evidence.head.verify(log_key) {
        Ok(_) => Err(not_logged(evidence)),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use hearth_ledger::{Hash, MemoryStore, MerkleLog, SigningKey};

    use super::*;
    use crate::audit::audit_all;
    use crate::audit::commitment::UploadCommitment;
    use crate::crypto::DeviceIdentity;

    fn signed(round: u64) -> SignedUploadCommitment {
        UploadCommitment {
            federation: "notes".into(),
            round,
            device: "dev_a".into(),
            upload_sha256: Hash::sha256(b"upload"),
            round_digest: Hash::sha256(b"params"),
        }
        .sign(&DeviceIdentity::from_secret_bytes(&[3; 32]))
        .unwrap()
    }

    fn proof(
        log: &MerkleLog<MemoryStore>,
        index: u64,
        entry_of: &SignedUploadCommitment,
    ) -> InclusionProofResponse {
        let size = log.size().unwrap();
        InclusionProofResponse {
            index,
            size,
            leaf_hash: entry_of.log_entry().leaf_hash(),
            path: log.inclusion_proof(index, size).unwrap(),
        }
    }

    fn consistency(log: &MerkleLog<MemoryStore>, old: u64) -> ConsistencyProofResponse {
        let new = log.size().unwrap();
        ConsistencyProofResponse {
            old,
            new,
            path: log.consistency_proof(old, new).unwrap(),
        }
    }

    #[test]
    fn a_logged_commitment_passes_and_an_unlogged_one_is_kept_and_reported() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut log = MerkleLog::new(MemoryStore::new());
        log.append(b"an entry before").unwrap();
        let mut audit = LogAudit::new(key.verifying_key());
        let first = log.tree_head(1).unwrap().sign(&key);
        audit
            .advance(&first, &ConsistencyProofResponse::trivial(0, 1))
            .unwrap();

        // Round 1: the server logged the commitment it accepted.
        let mine = signed(1);
        let index = log.append(&mine.log_entry().leaf_data()).unwrap();
        let check = OwnCommitmentsCheck {
            sth: log.tree_head(2).unwrap().sign(&key),
            consistency: consistency(&log, 1),
            posted: vec![(mine.clone(), Some(proof(&log, index, &mine)))],
        };
        assert_eq!(audit.check_own_commitments(&check), Ok(1));
        assert_eq!(audit.size(), 2);
        assert!(audit_all(&audit).is_ok());

        // Round 2: the server answered the post but logged something else.
        let later = signed(2);
        log.append(b"another entry").unwrap();
        let before = audit.clone();
        let sth = log.tree_head(3).unwrap().sign(&key);
        let unlogged = OwnCommitmentsCheck {
            sth: sth.clone(),
            consistency: consistency(&log, 2),
            posted: vec![(later.clone(), None)],
        };
        let err = audit.check_own_commitments(&unlogged).unwrap_err();
        assert!(
            matches!(&err, AuditError::CommitmentNotLogged { round: 2, device, .. } if device == "dev_a"),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("COMMITMENT NOT LOGGED"),
            "{err}"
        );
        assert_eq!(audit.size(), 3, "the head verified all the same");
        assert_eq!(audit.unlogged_commitments().len(), 1);
        // Kept: every later full audit reports it, from the stored state.
        let stored: LogAudit =
            serde_json::from_str(&serde_json::to_string(&audit).unwrap()).unwrap();
        assert!(matches!(
            audit_all(&stored),
            Err(AuditError::CommitmentNotLogged { round: 2, .. })
        ));
        assert!(audit_all(&before).is_ok());

        // Round 1's proof offered for round 2's commitment proves nothing.
        let mut other = before.clone();
        let misdirected = OwnCommitmentsCheck {
            sth,
            consistency: consistency(&log, 2),
            posted: vec![(later, Some(proof(&log, index, &mine)))],
        };
        assert!(matches!(
            other.check_own_commitments(&misdirected),
            Err(AuditError::CommitmentNotLogged { .. })
        ));
    }

    #[test]
    fn a_head_off_the_verified_history_changes_nothing() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut log = MerkleLog::new(MemoryStore::new());
        log.append(b"one").unwrap();
        log.append(b"two").unwrap();
        let mut audit = LogAudit::new(key.verifying_key());
        audit
            .advance(
                &log.tree_head(1).unwrap().sign(&key),
                &ConsistencyProofResponse::trivial(0, 2),
            )
            .unwrap();
        let mut fork = MerkleLog::new(MemoryStore::new());
        fork.append(b"one").unwrap();
        fork.append(b"three").unwrap();
        let mine = signed(1);
        let index = fork.append(&mine.log_entry().leaf_data()).unwrap();
        let before = audit.clone();
        let check = OwnCommitmentsCheck {
            sth: fork.tree_head(2).unwrap().sign(&key),
            consistency: consistency(&fork, 2),
            posted: vec![(mine.clone(), Some(proof(&fork, index, &mine)))],
        };
        assert!(matches!(
            audit.check_own_commitments(&check),
            Err(AuditError::HistoryRewritten { .. })
        ));
        assert_eq!(audit, before);
    }
}
