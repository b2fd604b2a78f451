//! Gossip of signed tree heads: catching a log that shows two devices two
//! histories.
//!
//! A device's own audit ([`LogAudit::verify_round`]) proves only that the
//! log never contradicted *itself* to this device. A server can still keep
//! two histories and show each group of devices one of them (a split
//! view): every device's audit passes. Devices therefore compare heads:
//! each posts the latest head it verified to the federation's gossip
//! endpoint and reads the heads others posted ([`super::wire::gossip_path`]).
//! Every head is signed by the log key, so two of them that cannot both be
//! true are proof of a split:
//!
//! - two heads of the same size with different roots;
//! - a head whose tree does not extend (or is not extended by) this
//!   device's verified tree, checked with a consistency proof between the
//!   two sizes (the log's answer; no valid proof exists between two
//!   histories, and a log that refuses one for two heads it signed is
//!   no better).
//!
//! [`LogAudit::gossip`] judges the heads (pure: the driver,
//! `FedClient::gossip`, fetches the proofs). A split view is the one
//! failure that changes the audit: the evidence is kept, so every later
//! [`super::audit_all`] (`hearth audit`) reports it too.
//!
//! Gossip through the server itself catches splits that the server does
//! not also filter out of its gossip answers (a forked replica, a restored
//! backup, a log whose storage was taken over, a device redirected for a
//! while); heads from any other channel (another device, an auditor) can
//! be judged the same way.

use hearth_ledger::{
    Hash, ProofError, SignedTreeHead, TreeHead, VerifiedTreeHead, verify_consistency,
};
use serde::{Deserialize, Serialize};

use super::wire::{ConsistencyProofResponse, MAX_GOSSIP_HEADS};
use super::{AuditError, LogAudit};

/// A head another device posted, with the log's consistency proof between
/// its size and this device's verified size (smaller size first); `None`
/// when the sizes are equal or the log gave no proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipHead {
    /// The head as signed by the log.
    pub sth: SignedTreeHead,
    /// The consistency proof between the two sizes.
    pub consistency: Option<ConsistencyProofResponse>,
}

/// Two signed heads of one log that cannot both be true, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitViewEvidence {
    /// The head this device verified (for two other devices' heads that
    /// disagree, the first of them).
    pub mine: SignedTreeHead,
    /// The head another device was shown.
    pub theirs: SignedTreeHead,
    /// The consistency proof the log gave between their sizes, if any.
    pub consistency: Option<Vec<Hash>>,
}

/// What [`LogAudit::gossip`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct GossipReport {
    /// Heads judged.
    pub heads: usize,
    /// Of those, heads consistent with this device's verified tree.
    pub consistent: usize,
    /// Heads not signed by the pinned key (ignored: not the log's word),
    /// or heads there was nothing to compare with yet.
    pub ignored: usize,
}

impl LogAudit {
    /// Compares heads other devices posted with the head this device
    /// verified (and with each other, where sizes match). Returns
    /// [`AuditError::SplitView`] for the first contradiction, after
    /// keeping the evidence of every contradiction found in this audit
    /// (see [`Self::split_views`]). At most [`MAX_GOSSIP_HEADS`] heads are
    /// judged.
    pub fn gossip(&mut self, heads: &[GossipHead]) -> Result<GossipReport, AuditError> {
        let mut report = GossipReport::default();
        let mut found = Vec::new();
        let mut verified: Vec<(&SignedTreeHead, VerifiedTreeHead)> = Vec::new();
        let mine = self.signed_head().cloned();
        for head in heads.iter().take(MAX_GOSSIP_HEADS) {
            report.heads += 1;
            let Ok(theirs) = head.sth.verify(self.log_key()) else {
                report.ignored += 1;
                continue;
            };
            // Two posted heads of one size must agree with each other too
            // (pairs with this device's own head are judged below).
            let own = |v: &VerifiedTreeHead| {
                mine.as_ref()
                    .is_some_and(|m| m.head.size == v.size() && m.head.root == v.root())
            };
            if let Some((other, _)) = verified.iter().find(|(_, v)| {
                !own(v) && !own(&theirs) && v.size() == theirs.size() && v.root() != theirs.root()
            }) {
                found.push(SplitViewEvidence {
                    mine: (*other).clone(),
                    theirs: head.sth.clone(),
                    consistency: None,
                });
            }
            verified.push((&head.sth, theirs));
            let Some(mine) = &mine else {
                report.ignored += 1;
                continue;
            };
            let evidence = SplitViewEvidence {
                mine: mine.clone(),
                theirs: head.sth.clone(),
                consistency: head.consistency.as_ref().map(|c| c.path.clone()),
            };
            match judge(&evidence, self.log_key(), head.consistency.as_ref()) {
                Ok(()) => report.consistent += 1,
                Err(_) => found.push(evidence),
            }
        }
        let Some(first) = found.first() else {
            return Ok(report);
        };
        let error = split_view_error(first);
        for evidence in found {
            if !self.split_views.contains(&evidence) {
                self.split_views.push(evidence);
            }
        }
        Err(error)
    }

    /// Split views found by gossip, oldest first: each is two signed heads
    /// of this log that cannot both be true.
    pub fn split_views(&self) -> &[SplitViewEvidence] {
        &self.split_views
    }
}

/// Re-checks stored evidence: `Err(SplitView)` when it still proves a
/// split, `Ok` when it does not (a tampered state file, say).
pub(super) fn recheck(
    evidence: &SplitViewEvidence,
    log_key: &hearth_ledger::VerifyingKey,
) -> Result<(), AuditError> {
    match judge(evidence, log_key, stored_proof(evidence).as_ref()) {
        Ok(()) => Ok(()),
        Err(()) => Err(split_view_error(evidence)),
    }
}

/// `Ok` when the two heads can both be true (or one is not the log's);
/// `Err` when they prove a split.
fn judge(
    evidence: &SplitViewEvidence,
    log_key: &hearth_ledger::VerifyingKey,
    proof: Option<&ConsistencyProofResponse>,
) -> Result<(), ()> {
    let (Ok(mine), Ok(theirs)) = (
        evidence.mine.verify(log_key),
        evidence.theirs.verify(log_key),
    ) else {
        return Ok(());
    };
    match consistency_failure(mine.head(), theirs.head(), proof) {
        None => Ok(()),
        Some(_) => Err(()),
    }
}

/// Why two verified heads cannot both be true, if they cannot: `None` when
/// consistent; `Some(None)` for equal sizes with different roots (or no
/// proof given); `Some(Some(e))` for a proof that fails.
fn consistency_failure(
    mine: &TreeHead,
    theirs: &TreeHead,
    proof: Option<&ConsistencyProofResponse>,
) -> Option<Option<ProofError>> {
    if mine.size == theirs.size {
        return (mine.root != theirs.root).then_some(None);
    }
    let (old, new) = if mine.size < theirs.size {
        (mine, theirs)
    } else {
        (theirs, mine)
    };
    let Some(proof) = proof.filter(|p| p.old == old.size && p.new == new.size) else {
        return Some(None);
    };
    verify_consistency(old.size, new.size, &old.root, &new.root, &proof.path)
        .err()
        .map(Some)
}

/// The proof kept with `evidence`, between the smaller and larger size.
fn stored_proof(evidence: &SplitViewEvidence) -> Option<ConsistencyProofResponse> {
    let (a, b) = (evidence.mine.head.size, evidence.theirs.head.size);
    evidence
        .consistency
        .as_ref()
        .map(|path| ConsistencyProofResponse {
            old: a.min(b),
            new: a.max(b),
            path: path.clone(),
        })
}

fn split_view_error(evidence: &SplitViewEvidence) -> AuditError {
    let proof = stored_proof(evidence);
    let (mine, theirs) = (evidence.mine.head, evidence.theirs.head);
    AuditError::SplitView {
        mine,
        theirs,
        proof: consistency_failure(&mine, &theirs, proof.as_ref()).flatten(),
    }
}

/// The sentence [`AuditError::SplitView`] shows.
pub(super) fn describe(mine: &TreeHead, theirs: &TreeHead, proof: &Option<ProofError>) -> String {
    let how = if mine.size == theirs.size {
        "of the same size with another root than".to_owned()
    } else {
        match proof {
            Some(e) => format!("that is not consistent ({e}) with"),
            None => "that the log cannot prove consistent with".to_owned(),
        }
    };
    format!(
        "the log signed, for another device, a tree of {} entries (root {}) {how} the tree of {} entries (root {}) this device verified: two devices are being shown two histories",
        theirs.size, theirs.root, mine.size, mine.root
    )
}
