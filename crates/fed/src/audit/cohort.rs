//! Checking that a round's cohort is the federation's public population.
//!
//! Secure aggregation hides one device's update only while fewer than `t`
//! of its neighbours work for the server, and the noise split assumes the
//! survivors are real people's devices. A server that could put devices
//! nobody can see into a cohort (sybils: keys it made itself) would choose
//! a device's neighbours and pad its survivor set at will. Every enrolment
//! is therefore a `device_enrolled` entry of the transparency log, and
//! before a device seals a share to anyone it checks that *every* member of
//! the cohort it was shown has one, under a tree head signed by the pinned
//! log key ([`check_cohort_enrolled`]). A server can still enrol sybils, but
//! only in public, where every device and auditor counts them.
//!
//! What this does not check: that no cohort member was revoked since (a
//! revocation cannot be disproved with an inclusion proof). The client
//! therefore checks cohorts against its own replay of the log
//! ([`super::population`]), which sees revocations; these proofs
//! ([`super::wire::ENROLMENTS_PATH`]) remain for a light check of
//! enrolment alone. Neither checks whether the enrolled population is who
//! the operator says it is (that is for the people who run invites).
//!
//! Pure: it takes the log's answers as values; `FedClient` fetches them.

use std::collections::BTreeSet;

use hearth_ledger::{LogEntry, VerifiedTreeHead, leaf_hash, verify_inclusion};

use super::AuditError;
use super::wire::ProvenEntry;
use crate::crypto::DeviceId;

/// Checks that every device of `cohort` has a `device_enrolled` entry of
/// `federation` among the first `head.size()` entries of the log, proven
/// by one of `answers` (what [`super::wire::ENROLMENTS_PATH`] returned for
/// the cohort's keys). Answers that are not such an entry, or whose proof
/// does not lead to the head's root, prove nothing and are ignored: the
/// devices they were meant for then count as not enrolled. Returns how
/// many cohort members were checked.
pub fn check_cohort_enrolled(
    head: &VerifiedTreeHead,
    federation: &str,
    round: u64,
    cohort: &[DeviceId],
    answers: &[ProvenEntry],
) -> Result<usize, AuditError> {
    let enrolled: BTreeSet<[u8; 32]> = answers
        .iter()
        .filter_map(|answer| proven_enrolment(head, federation, answer))
        .collect();
    let mut missing = cohort
        .iter()
        .filter(|device| !enrolled.contains(device.as_bytes()));
    if let Some(first) = missing.next() {
        return Err(AuditError::CohortNotEnrolled {
            federation: federation.to_owned(),
            round,
            cohort: cohort.len(),
            missing: 1 + missing.count(),
            first: hex::encode(first.as_bytes()),
        });
    }
    Ok(cohort.len())
}

/// The public key `answer` proves enrolled in `federation` under `head`.
fn proven_enrolment(
    head: &VerifiedTreeHead,
    federation: &str,
    answer: &ProvenEntry,
) -> Option<[u8; 32]> {
    let data = answer.entry.leaf_bytes().ok()?;
    let LogEntry::DeviceEnrolled {
        federation: enrolled_in,
        public_key,
        ..
    } = LogEntry::from_leaf_data(&data).ok()?
    else {
        return None;
    };
    let leaf = leaf_hash(&data);
    let proof = &answer.proof;
    let proven = enrolled_in == federation
        && proof.index == answer.entry.index
        && proof.size == head.size()
        && verify_inclusion(&leaf, proof.index, head.size(), &proof.path, &head.root()).is_ok();
    proven.then_some(public_key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use hearth_ledger::{Hash, MemoryStore, MerkleLog, SigningKey};
    use proptest::prelude::*;

    use super::*;
    use crate::audit::wire::{EntryResponse, InclusionProofResponse};

    /// A log of `enrolled` devices of `notes` (and one of another
    /// federation), its signed and verified head, and a proven answer for
    /// each entry.
    struct Fixture {
        head: VerifiedTreeHead,
        answers: Vec<ProvenEntry>,
    }

    fn enrolment(federation: &str, key: u8) -> LogEntry {
        LogEntry::DeviceEnrolled {
            federation: federation.into(),
            device: format!("dev_{key}"),
            public_key: [key; 32],
        }
    }

    fn fixture(entries: &[LogEntry]) -> Fixture {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut log = MerkleLog::new(MemoryStore::new());
        let mut indices = Vec::new();
        for e in entries {
            indices.push(log.append(&e.leaf_data()).unwrap());
        }
        let size = entries.len() as u64;
        let head = log
            .tree_head(1)
            .unwrap()
            .sign(&key)
            .verify(&key.verifying_key())
            .unwrap();
        let answers = entries
            .iter()
            .zip(indices)
            .map(|(e, index)| ProvenEntry {
                entry: EntryResponse::new(index, &e.leaf_data()),
                proof: InclusionProofResponse {
                    index,
                    size,
                    leaf_hash: e.leaf_hash(),
                    path: log.inclusion_proof(index, size).unwrap(),
                },
            })
            .collect();
        Fixture { head, answers }
    }

    fn ids(keys: &[u8]) -> Vec<DeviceId> {
        keys.iter()
            .map(|k| DeviceId::from_bytes([*k; 32]))
            .collect()
    }

    #[test]
    fn an_enrolled_cohort_passes() {
        let f = fixture(&[enrolment("notes", 1), enrolment("notes", 2)]);
        assert_eq!(
            check_cohort_enrolled(&f.head, "notes", 4, &ids(&[1, 2]), &f.answers),
            Ok(2)
        );
    }

    #[test]
    fn a_device_without_an_enrolment_is_named() {
        let f = fixture(&[enrolment("notes", 1), enrolment("photos", 3)]);
        let err = check_cohort_enrolled(&f.head, "notes", 4, &ids(&[1, 3, 9]), &f.answers)
            .expect_err("3 is another federation's, 9 nobody's");
        assert_eq!(
            err,
            AuditError::CohortNotEnrolled {
                federation: "notes".into(),
                round: 4,
                cohort: 3,
                missing: 2,
                first: hex::encode([3; 32]),
            }
        );
        assert!(err.to_string().contains("2 of the 3 devices"), "{err}");
    }

    #[test]
    fn answers_that_prove_nothing_are_ignored() {
        let other_kind = LogEntry::RoundParticipation {
            federation: "notes".into(),
            round: 1,
            device: "dev_7".into(),
            upload_sha256: Hash::sha256(&[7; 32]),
        };
        let f = fixture(&[enrolment("notes", 1), enrolment("notes", 2), other_kind]);
        let cohort = ids(&[1, 2]);
        // A proof with a wrong sibling, for another size, at another
        // index: each leaves its device unproven.
        let tamperings: [fn(&mut ProvenEntry); 3] = [
            |a| a.proof.path[0] = Hash::sha256(b"forged"),
            |a| a.proof.size += 1,
            |a| a.proof.index ^= 1,
        ];
        for tamper in tamperings {
            let mut answers = f.answers.clone();
            tamper(&mut answers[1]);
            assert!(matches!(
                check_cohort_enrolled(&f.head, "notes", 1, &cohort, &answers),
                Err(AuditError::CohortNotEnrolled { missing: 1, .. })
            ));
        }
        // An entry that is not an enrolment proves nothing either.
        assert!(check_cohort_enrolled(&f.head, "notes", 1, &ids(&[7]), &f.answers[2..]).is_err());
        // Corrupt leaf data is not an answer.
        let mut answers = f.answers.clone();
        answers[0].entry.leaf_data = "not base64!".into();
        assert!(check_cohort_enrolled(&f.head, "notes", 1, &cohort, &answers).is_err());
    }

    proptest! {
        /// Whatever subset of the log's enrolments the server answers with,
        /// the check passes exactly when it covers the cohort.
        #[test]
        fn passes_exactly_when_every_member_is_proven(
            enrolled in proptest::collection::btree_set(1u8..40, 1..12),
            cohort in proptest::collection::btree_set(1u8..40, 0..12),
            answered in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let enrolled: Vec<u8> = enrolled.into_iter().collect();
            let entries: Vec<_> = enrolled.iter().map(|k| enrolment("notes", *k)).collect();
            let f = fixture(&entries);
            let answers: Vec<_> = f
                .answers
                .iter()
                .zip(&answered)
                .filter(|(_, keep)| **keep)
                .map(|(a, _)| a.clone())
                .collect();
            let proven: BTreeSet<u8> = enrolled
                .iter()
                .zip(&answered)
                .filter(|(_, keep)| **keep)
                .map(|(k, _)| *k)
                .collect();
            let cohort: Vec<u8> = cohort.into_iter().collect();
            let result = check_cohort_enrolled(&f.head, "notes", 1, &ids(&cohort), &answers);
            prop_assert_eq!(result.is_ok(), cohort.iter().all(|k| proven.contains(k)));
        }
    }
}
