//! The full audit (`hearth audit`): [`audit_all`] re-verifies every stored
//! checkpoint and round, and [`LogReplay`] rebuilds the tree from all of the
//! server's entries so the log's contents, not only its root, are checked.

use hearth_ledger::{Hash, MemoryStore, MerkleLog, TreeHead, leaf_hash};

use super::{AuditError, LogAudit, gossip, logged, uploads};

use super::wire::{ConsistencyProofResponse, EntriesResponse};

/// What [`audit_all`] re-verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct AuditReport {
    /// Checkpoints replayed.
    pub checkpoints: usize,
    /// Rounds whose evidence was re-checked.
    pub rounds: usize,
    /// Commitments re-checked.
    pub commitments: usize,
    /// Adapters re-checked.
    pub adapters: usize,
    /// Round parameters re-checked.
    pub parameters: usize,
    /// The latest head, if any.
    pub head: Option<TreeHead>,
}

/// Re-verifies a stored audit from scratch (`hearth audit`): starting from
/// the pinned key alone, every checkpoint's head signature, its
/// consistency with the one before, and every commitment and adapter
/// against the head it was checked at; finally that the stored latest head
/// is the last checkpoint's; and that no split view was found by gossip
/// ([`AuditError::SplitView`], re-checked from its stored evidence) and
/// no device commitment was found contradicted by the log
/// ([`AuditError::UploadContradicted`], likewise), nor any of this
/// device's own commitments missing from it
/// ([`AuditError::CommitmentNotLogged`]).
/// Catches a tampered or truncated state file as well as evidence that no
/// longer holds.
pub fn audit_all(audit: &LogAudit) -> Result<AuditReport, AuditError> {
    let mut replay = LogAudit::new(*audit.log_key());
    let mut report = AuditReport {
        checkpoints: 0,
        rounds: 0,
        commitments: 0,
        adapters: 0,
        parameters: 0,
        head: None,
    };
    for (checkpoint, step) in audit.history.iter().enumerate() {
        let at = |error: AuditError| AuditError::History {
            checkpoint,
            error: Box::new(error),
        };
        let consistency = ConsistencyProofResponse {
            old: replay.size(),
            new: step.sth.head.size,
            path: step.consistency.clone(),
        };
        replay.watcher_update(&step.sth, &consistency).map_err(at)?;
        if let Some(evidence) = &step.round {
            report.rounds += 1;
            if let Some(c) = &evidence.commitment {
                replay
                    .check_commitment(&evidence.federation, evidence.round, c)
                    .map_err(at)?;
                report.commitments += 1;
            }
            if let Some(a) = &evidence.adapter {
                replay.check_adapter(&evidence.federation, a).map_err(at)?;
                report.adapters += 1;
            }
            if let Some(p) = &evidence.parameters {
                replay
                    .check_parameters(&evidence.federation, evidence.round, p)
                    .map_err(at)?;
                report.parameters += 1;
            }
        }
        report.checkpoints += 1;
    }
    if replay.watcher.signed_head() != audit.watcher.signed_head() {
        return Err(AuditError::History {
            checkpoint: audit.history.len(),
            error: Box::new(AuditError::Malformed(
                "the stored latest head is not the last checkpoint's".into(),
            )),
        });
    }
    for evidence in &audit.split_views {
        gossip::recheck(evidence, audit.log_key())?;
    }
    for evidence in &audit.uploads {
        uploads::recheck(evidence, audit.log_key())?;
    }
    for evidence in &audit.unlogged {
        logged::recheck(evidence, audit.log_key())?;
    }
    report.head = replay.watcher.head().map(|h| *h.head());
    Ok(report)
}

/// The log rebuilt from its served entries, page by page
/// ([`wire::ENTRIES_PATH`]), to check that every stored entry hashes into
/// the signed root ([`LogAudit::check_contents`]), and to compare its
/// participations with the devices' signed commitments
/// ([`LogAudit::check_uploads`]). Holds about 64 bytes per entry, and the
/// bytes of the entries that check needs (enrolments, round openings,
/// participations and outcomes).
#[derive(Debug, Clone, Default)]
pub struct LogReplay {
    pub(super) log: MerkleLog<MemoryStore>,
    pub(super) index: uploads::ReplayIndex,
}

impl LogReplay {
    /// An empty replay.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of entries replayed: the `start` of the next page.
    pub fn size(&self) -> u64 {
        self.log.size().unwrap_or(0)
    }

    /// Appends the next page; it must start where the replay stands and
    /// hold its entries in order.
    pub fn push(&mut self, page: &EntriesResponse) -> Result<(), AuditError> {
        for (index, bytes) in page_leaves(page, self.size())? {
            // A memory store cannot fail; the log is full only at 2^64.
            self.log
                .append_hash(leaf_hash(&bytes))
                .map_err(|e| AuditError::Malformed(e.to_string()))?;
            self.index.note(index, &bytes);
        }
        Ok(())
    }

    /// Checks that the first `size` replayed entries hash to `root`.
    pub fn check_root(&self, size: u64, root: Hash) -> Result<(), AuditError> {
        let computed = self
            .log
            .root_at(size)
            .map_err(|_| AuditError::WrongTreeSize {
                answered: self.size(),
                verified: size,
            })?;
        if computed != root {
            return Err(AuditError::RootMismatch {
                size,
                computed,
                signed: root,
            });
        }
        Ok(())
    }
}

/// The entries of `page` with their indices, decoded, after checking it
/// starts at `start` and holds its entries in order. Decoding the whole
/// page first means a bad one is refused before anything is appended.
pub(super) fn page_leaves(
    page: &EntriesResponse,
    start: u64,
) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    if page.start != start {
        return Err(AuditError::Malformed(format!(
            "entries page starts at {}, expected {start}",
            page.start
        )));
    }
    let count = u64::try_from(page.entries.len()).unwrap_or(u64::MAX);
    if page.end.checked_sub(page.start) != Some(count) {
        return Err(AuditError::Malformed(format!(
            "entries page {}..{} holds {count} entries",
            page.start, page.end
        )));
    }
    let mut leaves = Vec::with_capacity(page.entries.len());
    for (expected, entry) in (start..).zip(&page.entries) {
        if entry.index != expected {
            return Err(AuditError::Malformed(format!(
                "entry {} where {expected} was expected",
                entry.index
            )));
        }
        let bytes = entry
            .leaf_bytes()
            .map_err(|e| AuditError::Malformed(e.to_string()))?;
        leaves.push((expected, bytes));
    }
    Ok(leaves)
}
