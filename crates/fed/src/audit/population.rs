//! The federation's device population as the transparency log shows it,
//! replayed by the device itself, so a cohort with a device the log never
//! enrolled *or has since revoked* is refused before any share is sealed.
//!
//! # Why a replay and not proofs
//!
//! An inclusion proof of a device's `device_enrolled` entry
//! ([`super::cohort`]) shows the device was enrolled, but nothing can show
//! with a few hashes that no `device_revoked` entry of it follows: absence
//! in an append-only log is only visible in its entries. A server that
//! revoked a device in public (a stolen laptop, a device it wants out of
//! the count) could otherwise keep it in cohorts, with the key it holds.
//!
//! So the device replays the log's entries ([`super::wire::ENTRIES_PATH`])
//! and keeps, per federation, who is enrolled with which key and who is
//! revoked. It stores the replay beside its audit ([`LogAudit`]) and
//! catches up incrementally before each round: only the entries since the
//! last round are fetched (about one per cohort member per round). To check
//! those entries without the older ones it keeps the log's *frontier*: the
//! roots of the perfect subtrees covering the entries replayed so far (one
//! per set bit of the size, RFC 9162's tree shape). Appending the new
//! entries to the frontier gives the root of the larger tree, which must be
//! the signed head's: the served entries are exactly the log's, and the
//! larger tree extends the replayed one (the frontier commits to every
//! earlier entry), so a catch-up is also a consistency check.
//!
//! Before that, the head is joined to the device's verified history
//! ([`LogAudit::join_head`]), so the population a cohort is judged against
//! is the one history this device verified and gossips about.

use std::collections::{BTreeMap, BTreeSet};

use hearth_ledger::{
    Hash, LogEntry, SignedTreeHead, VerifiedTreeHead, empty_root, leaf_hash, node_hash,
};
use serde::{Deserialize, Serialize};

use super::replay::page_leaves;
use super::wire::{ConsistencyProofResponse, EntriesResponse};
use super::{AuditError, LogAudit};
use crate::crypto::DeviceId;

/// One federation's enrolled and revoked devices, replayed from the log's
/// first `size` entries (see the module docs). Serialize it with the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    federation: String,
    size: u64,
    /// Roots of the perfect subtrees covering entries `0..size`, largest
    /// (leftmost) first: one per set bit of `size`, high bit first.
    frontier: Vec<Hash>,
    /// Each device id the log enrolled in the federation, with every key
    /// it was enrolled with (hex).
    enrolled: BTreeMap<String, BTreeSet<String>>,
    /// Device ids the log revoked in the federation.
    revoked: BTreeSet<String>,
}

impl Population {
    /// Nothing replayed yet.
    pub fn new(federation: &str) -> Self {
        Self {
            federation: federation.to_owned(),
            size: 0,
            frontier: Vec::new(),
            enrolled: BTreeMap::new(),
            revoked: BTreeSet::new(),
        }
    }

    /// The federation it follows.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// How many entries are replayed: the `start` of the next page.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of the replayed entries.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.frontier.iter().rev();
        let Some(last) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(*last, |right, left| node_hash(left, &right))
    }

    /// Appends the next page of entries; it must start where the replay
    /// stands. A bad page appends nothing.
    pub fn push(&mut self, page: &EntriesResponse) -> Result<(), AuditError> {
        for (index, bytes) in page_leaves(page, self.size)? {
            self.append(leaf_hash(&bytes));
            self.note(&bytes);
            debug_assert_eq!(self.size, index + 1);
        }
        Ok(())
    }

    /// Checks that the replayed entries are exactly the tree `head` signs.
    pub fn check_head(&self, head: &VerifiedTreeHead) -> Result<(), AuditError> {
        if self.size != head.size() {
            return Err(AuditError::WrongTreeSize {
                answered: self.size,
                verified: head.size(),
            });
        }
        let computed = self.root();
        if computed != head.root() {
            return Err(AuditError::RootMismatch {
                size: self.size,
                computed,
                signed: head.root(),
            });
        }
        Ok(())
    }

    /// Checks that every device of `cohort` (round `round`'s, as shown to
    /// this device) is enrolled in the federation and none is revoked, by
    /// the replayed entries. Returns how many were checked.
    pub fn check_cohort(&self, round: u64, cohort: &[DeviceId]) -> Result<usize, AuditError> {
        // Per key: enrolled under some id, and revoked under any id it was
        // enrolled with (a key enrolled twice is out once either is
        // revoked).
        let mut keys: BTreeMap<&str, bool> = BTreeMap::new();
        for (device, enrolled_keys) in &self.enrolled {
            let revoked = self.revoked.contains(device);
            for key in enrolled_keys {
                *keys.entry(key).or_default() |= revoked;
            }
        }
        let shown: Vec<String> = cohort.iter().map(|d| hex::encode(d.as_bytes())).collect();
        let missing: Vec<&String> = shown
            .iter()
            .filter(|k| !keys.contains_key(k.as_str()))
            .collect();
        if let Some(first) = missing.first() {
            return Err(AuditError::CohortNotEnrolled {
                federation: self.federation.clone(),
                round,
                cohort: cohort.len(),
                missing: missing.len(),
                first: (*first).clone(),
            });
        }
        let revoked: Vec<&String> = shown
            .iter()
            .filter(|k| keys.get(k.as_str()).copied().unwrap_or(false))
            .collect();
        if let Some(first) = revoked.first() {
            return Err(AuditError::CohortRevoked {
                federation: self.federation.clone(),
                round,
                cohort: cohort.len(),
                revoked: revoked.len(),
                first: (*first).clone(),
            });
        }
        Ok(cohort.len())
    }

    /// Adds one leaf to the frontier: like a binary counter, each subtree
    /// of the leaf's size merges with the one to its left.
    fn append(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut carry = self.size;
        while carry & 1 == 1 {
            // A set bit always has its subtree on the frontier.
            let Some(left) = self.frontier.pop() else {
                break;
            };
            node = node_hash(&left, &node);
            carry >>= 1;
        }
        self.frontier.push(node);
        self.size += 1;
    }

    /// Notes an entry about this federation's devices (others, and kinds
    /// this build does not know, are skipped).
    fn note(&mut self, bytes: &[u8]) {
        match LogEntry::from_leaf_data(bytes) {
            Ok(LogEntry::DeviceEnrolled {
                federation,
                device,
                public_key,
            }) if federation == self.federation => {
                self.enrolled
                    .entry(device)
                    .or_default()
                    .insert(hex::encode(public_key));
            }
            Ok(LogEntry::DeviceRevoked { federation, device }) if federation == self.federation => {
                self.revoked.insert(device);
            }
            _ => {}
        }
    }
}

/// What the cohort check fetched: a fresh head, the consistency proof
/// between it and the audit's verified head (from the smaller size to the
/// larger), and the entries from [`LogAudit::population_size`] to the
/// head's size, in pages.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortCheck<'a> {
    /// The federation.
    pub federation: &'a str,
    /// The round.
    pub round: u64,
    /// The cohort the device was shown.
    pub cohort: &'a [DeviceId],
    /// A head signed by the log.
    pub sth: &'a SignedTreeHead,
    /// Between it and [`LogAudit::size`].
    pub consistency: &'a ConsistencyProofResponse,
    /// The entries the replay lacks, in order.
    pub pages: &'a [EntriesResponse],
}

impl LogAudit {
    /// Where the replayed population of `federation` stands: fetch entries
    /// from here to the head for [`LogAudit::check_cohort`].
    pub fn population_size(&self, federation: &str) -> u64 {
        match &self.population {
            Some(p) if p.federation() == federation => p.size(),
            _ => 0,
        }
    }

    /// The replayed population, if any.
    pub fn population(&self) -> Option<&Population> {
        self.population.as_ref()
    }

    /// Before a device seals a share: joins `check.sth` to the verified
    /// history, catches the replayed population up to it and checks the
    /// cohort against it (see the module docs). On success the audit holds
    /// the new head (when newer) and the longer replay: store it. On
    /// failure nothing changes.
    pub fn check_cohort(&mut self, check: &CohortCheck<'_>) -> Result<usize, AuditError> {
        let mut next = self.clone();
        next.join_head(check.sth, check.consistency)?;
        let head = check
            .sth
            .verify(next.log_key())
            .map_err(|_| AuditError::BadSignature)?;
        let mut population = match next.population.take() {
            Some(p) if p.federation() == check.federation => p,
            _ => Population::new(check.federation),
        };
        if population.size() > head.size() {
            return Err(AuditError::Rollback {
                current: population.size(),
                offered: head.size(),
            });
        }
        for page in check.pages {
            population.push(page)?;
        }
        population.check_head(&head)?;
        let checked = population.check_cohort(check.round, check.cohort)?;
        next.population = Some(population);
        *self = next;
        Ok(checked)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use hearth_ledger::{MemoryStore, MerkleLog, SigningKey};
    use proptest::prelude::*;

    use super::*;
    use crate::audit::wire::EntryResponse;

    /// The server's side: a log in memory and its key.
    struct Log {
        key: SigningKey,
        log: MerkleLog<MemoryStore>,
        leaves: Vec<Vec<u8>>,
        clock: u64,
    }

    impl Log {
        fn new() -> Self {
            Self {
                key: SigningKey::from_bytes(&[7; 32]),
                log: MerkleLog::new(MemoryStore::new()),
                leaves: Vec::new(),
                clock: 1,
            }
        }

        fn append(&mut self, entry: &LogEntry) {
            let data = entry.leaf_data();
            self.log.append(&data).unwrap();
            self.leaves.push(data);
        }

        fn size(&self) -> u64 {
            self.leaves.len() as u64
        }

        fn sth(&mut self) -> SignedTreeHead {
            self.clock += 1;
            self.log.tree_head(self.clock).unwrap().sign(&self.key)
        }

        fn pages(&self, start: u64, end: u64) -> Vec<EntriesResponse> {
            (start..end)
                .step_by(3)
                .map(|first| {
                    let last = end.min(first + 3);
                    EntriesResponse {
                        start: first,
                        end: last,
                        entries: (first..last)
                            .map(|i| EntryResponse::new(i, &self.leaves[i as usize]))
                            .collect(),
                    }
                })
                .collect()
        }

        fn consistency(&self, old: u64, new: u64) -> ConsistencyProofResponse {
            if old == 0 || old == new {
                return ConsistencyProofResponse::trivial(old, new);
            }
            ConsistencyProofResponse {
                old,
                new,
                path: self.log.consistency_proof(old, new).unwrap(),
            }
        }

        /// The cohort check a device with `audit` makes against this log
        /// now, as the HTTP driver fetches it.
        fn check(&mut self, audit: &mut LogAudit, cohort: &[u8]) -> Result<usize, AuditError> {
            let sth = self.sth();
            let (mine, size) = (audit.size(), self.size());
            let consistency = self.consistency(mine.min(size), mine.max(size));
            let pages = self.pages(audit.population_size("notes"), size);
            let cohort = ids(cohort);
            audit.check_cohort(&CohortCheck {
                federation: "notes",
                round: 1,
                cohort: &cohort,
                sth: &sth,
                consistency: &consistency,
                pages: &pages,
            })
        }
    }

    fn enrol(federation: &str, key: u8) -> LogEntry {
        LogEntry::DeviceEnrolled {
            federation: federation.into(),
            device: format!("dev_{key}"),
            public_key: [key; 32],
        }
    }

    fn revoke(federation: &str, key: u8) -> LogEntry {
        LogEntry::DeviceRevoked {
            federation: federation.into(),
            device: format!("dev_{key}"),
        }
    }

    fn ids(keys: &[u8]) -> Vec<DeviceId> {
        keys.iter()
            .map(|k| DeviceId::from_bytes([*k; 32]))
            .collect()
    }

    fn audit(log: &Log) -> LogAudit {
        LogAudit::new(log.key.verifying_key())
    }

    proptest! {
        /// The frontier's root is the log's root at every size, however
        /// the entries are paged.
        #[test]
        fn the_frontier_root_is_the_trees(count in 0usize..70, page in 1usize..9) {
            let mut log = Log::new();
            let mut population = Population::new("notes");
            prop_assert_eq!(population.root(), log.log.root().unwrap());
            for key in 0..count {
                log.append(&enrol("notes", key as u8));
            }
            let mut start = 0;
            while start < count {
                let end = count.min(start + page);
                let entries = (start..end)
                    .map(|i| EntryResponse::new(i as u64, &log.leaves[i]))
                    .collect();
                population
                    .push(&EntriesResponse { start: start as u64, end: end as u64, entries })
                    .unwrap();
                prop_assert_eq!(population.root(), log.log.root_at(end as u64).unwrap());
                start = end;
            }
        }
    }

    #[test]
    fn enrolled_cohorts_pass_and_unenrolled_or_revoked_members_are_named() {
        let mut log = Log::new();
        for key in 1..=4 {
            log.append(&enrol("notes", key));
        }
        // Another federation's devices count for nothing here.
        log.append(&enrol("photos", 9));
        log.append(&revoke("photos", 1));
        let mut audit = audit(&log);
        assert_eq!(log.check(&mut audit, &[1, 2, 3]), Ok(3));
        assert!(matches!(
            log.check(&mut audit, &[1, 9, 8]),
            Err(AuditError::CohortNotEnrolled { cohort: 3, missing: 2, ref first, .. })
                if *first == hex::encode([9; 32])
        ));

        log.append(&revoke("notes", 2));
        let err = log.check(&mut audit, &[1, 2, 3]).unwrap_err();
        assert_eq!(
            err,
            AuditError::CohortRevoked {
                federation: "notes".into(),
                round: 1,
                cohort: 3,
                revoked: 1,
                first: hex::encode([2; 32]),
            }
        );
        assert!(err.to_string().contains("were revoked"), "{err}");
        // The rest of the population still passes.
        assert_eq!(log.check(&mut audit, &[1, 3, 4]), Ok(3));

        // A key enrolled again under another id is out once either id is
        // revoked.
        log.append(&LogEntry::DeviceEnrolled {
            federation: "notes".into(),
            device: "dev_again".into(),
            public_key: [2; 32],
        });
        assert!(matches!(
            log.check(&mut audit, &[2]),
            Err(AuditError::CohortRevoked { .. })
        ));
    }

    #[test]
    fn each_check_fetches_only_new_entries_and_joins_the_history() {
        let mut log = Log::new();
        for key in 1..=5 {
            log.append(&enrol("notes", key));
        }
        let mut audit = audit(&log);
        assert_eq!(log.check(&mut audit, &[1, 2]), Ok(2));
        assert_eq!((audit.size(), audit.population_size("notes")), (5, 5));
        log.append(&enrol("notes", 6));
        // Only entry 5 is needed now.
        assert_eq!(
            log.pages(audit.population_size("notes"), log.size()).len(),
            1
        );
        assert_eq!(log.check(&mut audit, &[1, 6]), Ok(2));
        assert_eq!((audit.size(), audit.population_size("notes")), (6, 6));
        // Another federation's replay starts over.
        assert_eq!(audit.population_size("photos"), 0);
        // It survives storing.
        let stored: LogAudit =
            serde_json::from_str(&serde_json::to_string(&audit).unwrap()).unwrap();
        assert_eq!(stored, audit);
        assert_eq!(stored.population().map(Population::size), Some(6));
    }

    #[test]
    fn served_entries_that_are_not_the_signed_tree_change_nothing() {
        let mut log = Log::new();
        for key in 1..=4 {
            log.append(&enrol("notes", key));
        }
        let mut audit = audit(&log);
        assert_eq!(log.check(&mut audit, &[1]), Ok(1));
        log.append(&revoke("notes", 2));
        log.append(&enrol("notes", 5));
        let before = audit.clone();
        let sth = log.sth();
        let consistency = log.consistency(4, 6);
        let cohort = ids(&[1, 2]);
        let check = |pages: &[EntriesResponse], audit: &mut LogAudit| {
            audit.check_cohort(&CohortCheck {
                federation: "notes",
                round: 1,
                cohort: &cohort,
                sth: &sth,
                consistency: &consistency,
                pages,
            })
        };
        // Entries that stop short of the head.
        let mut hidden = log.pages(4, 6);
        hidden[0].entries.pop();
        hidden[0].end -= 1;
        assert!(matches!(
            check(&hidden, &mut audit),
            Err(AuditError::WrongTreeSize { .. })
        ));
        // Replaced by another entry: the root is not the signed one.
        let mut swapped = log.pages(4, 6);
        swapped[0].entries[0] = EntryResponse::new(4, &enrol("notes", 7).leaf_data());
        assert!(matches!(
            check(&swapped, &mut audit),
            Err(AuditError::RootMismatch { size: 6, .. })
        ));
        // A page out of place.
        let mut shifted = log.pages(4, 6);
        shifted[0].start = 5;
        assert!(matches!(
            check(&shifted, &mut audit),
            Err(AuditError::Malformed(_))
        ));
        assert_eq!(audit, before, "a failed check changes nothing");
        // The honest answer finds the revocation.
        assert!(matches!(
            check(&log.pages(4, 6), &mut audit),
            Err(AuditError::CohortRevoked { revoked: 1, .. })
        ));
        assert_eq!(audit, before);
    }

    #[test]
    fn a_head_off_the_verified_history_is_refused() {
        let mut log = Log::new();
        for key in 1..=3 {
            log.append(&enrol("notes", key));
        }
        let mut audit = audit(&log);
        assert_eq!(log.check(&mut audit, &[1]), Ok(1));
        // The same key signs another history of the same size.
        let mut fork = Log::new();
        for key in [1, 2, 9] {
            fork.append(&enrol("notes", key));
        }
        let before = audit.clone();
        assert!(matches!(
            fork.check(&mut audit, &[1, 9]),
            Err(AuditError::Fork { size: 3, .. })
        ));
        assert_eq!(audit, before);
    }
}
