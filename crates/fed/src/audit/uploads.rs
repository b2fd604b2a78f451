//! Comparing the log's participation entries with the devices' own signed
//! upload commitments ([`super::commitment`]).
//!
//! A device's after-round audit proves that *its own* upload is logged as
//! it sent it. Nobody else could tell when the server logged a
//! participation a device never made, logged another hash than the bytes
//! a device sent, or left an upload out: those entries were only the
//! server's word. With each device's signed commitment gossiped through
//! the server, every device (or auditor) replaying the whole log
//! ([`super::LogReplay`]) checks, for the federation it audits:
//!
//! - each gossiped commitment that verifies under the key of its device's
//!   `device_enrolled` entry in the verified tree (the first one for that
//!   device: a server cannot invent a key for a device the log already
//!   knows) and whose round the tree shows closed (a `round_outcome` of
//!   that round or a later one): the log must hold a `round_participation`
//!   of that device and round with exactly the signed upload hash, else
//!   the log **dropped** or **swapped** the device's upload; and the round's
//!   `round_opened` entry, if any, must hold the signed parameter digest;
//! - each `round_participation` in the tree: is it backed by a signed
//!   commitment of its device ([`UploadReport::backed`])? A participation
//!   that no device signed for is not proof of anything (its device may
//!   not have gossiped), but a federation where few are backed is worth a
//!   look.
//!
//! Judging is pure ([`LogAudit::check_uploads`]); the HTTP driver
//! (`FedClient::audit_uploads`) fetches the entries and the commitments.
//! A contradiction is kept as [`UploadEvidence`], like a split view, so
//! every later [`super::audit_all`] (`hearth audit`) reports it: the
//! commitment, the signed head, and the log entries (with inclusion
//! proofs) showing the device's key, and the swapped entry or the closed
//! round. (That a dropped upload is *absent* cannot be shown by a few
//! entries; it was established by the full replay.)
//!
//! The commitments judged are those the gossip endpoint serves and those
//! the log holds (`upload_committed` entries, [`super::logged`]): a server
//! that serves some devices a list without a commitment that contradicts
//! its log still shows it to them in the log, or shows them another log
//! (a split view, which gossiped heads expose), or never logged it, which
//! the device that posted it finds and reports.
//!
//! What this cannot catch: a server that filters the gossip of heads too,
//! so that devices shown two logs never compare them (gossip through
//! another channel closes that gap), and participations of sybil devices
//! the server enrolled itself, which it can sign for.

use std::collections::BTreeMap;

use hearth_ledger::{
    Hash, LogEntry, SignedTreeHead, VerifiedTreeHead, leaf_hash, verify_inclusion,
};
use serde::{Deserialize, Serialize};

use super::commitment::SignedUploadCommitment;
use super::{AuditError, LogAudit, LogReplay};

/// Most gossiped commitments one check judges.
pub const MAX_AUDITED_COMMITMENTS: usize = 65_536;

/// What the log says against a device's signed commitment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadContradiction {
    /// The round is closed in the log, with no participation of the device.
    #[error(
        "the log closed the round (entry {closed}) without any upload of it: the log dropped it"
    )]
    Dropped {
        /// The index of the `round_outcome` entry closing the round.
        closed: u64,
    },
    /// The log holds another upload hash for the device in that round.
    #[error("the log holds upload {logged} for it (entry {index}): the log swapped it")]
    Swapped {
        /// The hash the log holds.
        logged: Hash,
        /// Its entry's index.
        index: u64,
    },
    /// The round was opened in the log with other parameters than the
    /// device signed it was shown.
    #[error(
        "it signed round parameters {signed}, the log opened the round with {logged} (entry {index})"
    )]
    OtherParameters {
        /// The digest the device signed.
        signed: Hash,
        /// The digest logged.
        logged: Hash,
        /// The `round_opened` entry's index.
        index: u64,
    },
}

/// One log entry with its inclusion proof in the evidence's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedLeaf {
    /// Its index.
    pub index: u64,
    /// The exact bytes hashed into the log, base64.
    #[serde(with = "crate::wire::encoding::base64_bytes")]
    pub leaf_data: Vec<u8>,
    /// Its inclusion proof in the head's tree.
    pub path: Vec<Hash>,
}

/// How the log contradicts a commitment, with the entries that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Finding {
    /// The round's closing entry; no participation of the device was in
    /// the tree.
    Dropped {
        /// The `round_outcome` entry.
        closed: LoggedLeaf,
    },
    /// A participation of the device in the round with another hash.
    Swapped {
        /// The `round_participation` entry.
        logged: LoggedLeaf,
    },
    /// The round's `round_opened` entry with another digest.
    OtherParameters {
        /// The `round_opened` entry.
        opened: LoggedLeaf,
    },
}

/// A device's signed commitment that the log contradicts, kept as
/// evidence (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEvidence {
    /// The device's signed commitment.
    pub commitment: SignedUploadCommitment,
    /// The head the log was judged under.
    pub head: SignedTreeHead,
    /// The device's `device_enrolled` entry: the key it signed with.
    pub enrolled: LoggedLeaf,
    /// What the log holds instead.
    pub finding: Finding,
}

/// What [`LogAudit::check_uploads`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct UploadReport {
    /// Commitments judged: those served by the gossip endpoint and those
    /// in the log, each once.
    pub gossiped: usize,
    /// Of the federation's commitments, how many the log holds.
    pub logged: usize,
    /// Of those, signed by the key the log enrolled their device with.
    pub verified: usize,
    /// Of those, for rounds not yet closed in the verified tree.
    pub pending: usize,
    /// Commitments ignored: another federation, a device the log never
    /// enrolled, or a signature that does not verify (not the device's
    /// word, so not evidence of anything).
    pub ignored: usize,
    /// `round_participation` entries of the federation in the tree.
    pub participations: usize,
    /// Of those, backed by their device's verified signed commitment.
    pub backed: usize,
    /// Commitments the log contradicts.
    pub contradicted: usize,
}

/// Entries of one subject: each entry's index and what it holds.
type Indexed<T> = Vec<(u64, T)>;

/// The entries of a replayed log that the check needs, by subject, each
/// with its index (an entry counts only below the judged head's size).
#[derive(Debug, Clone, Default)]
pub(super) struct ReplayIndex {
    /// Keys by (federation, device).
    enrolled: BTreeMap<(String, String), Indexed<[u8; 32]>>,
    /// Upload hashes by (federation, round, device).
    participations: BTreeMap<(String, u64, String), Indexed<Hash>>,
    /// Parameter digests by (federation, round).
    opened: BTreeMap<(String, u64), Indexed<Hash>>,
    /// Rounds closed, by federation.
    closed: BTreeMap<String, Indexed<u64>>,
    /// Devices' signed commitments the log holds (`upload_committed`).
    committed: Indexed<SignedUploadCommitment>,
    /// The bytes of every entry above.
    leaves: BTreeMap<u64, Vec<u8>>,
}

impl ReplayIndex {
    /// Notes entry `index` if it is of a kind the check needs (others,
    /// and kinds this build does not know, are skipped).
    pub(super) fn note(&mut self, index: u64, bytes: &[u8]) {
        let Ok(entry) = LogEntry::from_leaf_data(bytes) else {
            return;
        };
        match entry {
            LogEntry::DeviceEnrolled {
                federation,
                device,
                public_key,
            } => self
                .enrolled
                .entry((federation, device))
                .or_default()
                .push((index, public_key)),
            LogEntry::RoundParticipation {
                federation,
                round,
                device,
                upload_sha256,
            } => self
                .participations
                .entry((federation, round, device))
                .or_default()
                .push((index, upload_sha256)),
            LogEntry::RoundOpened {
                federation,
                round,
                parameters_sha256,
                ..
            } => self
                .opened
                .entry((federation, round))
                .or_default()
                .push((index, parameters_sha256)),
            LogEntry::RoundOutcome {
                federation, round, ..
            } => self
                .closed
                .entry(federation)
                .or_default()
                .push((index, round)),
            entry @ LogEntry::UploadCommitted { .. } => {
                if let Some(c) = SignedUploadCommitment::from_log_entry(&entry) {
                    self.committed.push((index, c));
                }
                // Its bytes are not needed as evidence.
                return;
            }
            _ => return,
        }
        self.leaves.insert(index, bytes.to_vec());
    }

    fn enrolled_key(&self, federation: &str, device: &str, size: u64) -> Option<(u64, [u8; 32])> {
        self.enrolled
            .get(&(federation.to_owned(), device.to_owned()))?
            .iter()
            .copied()
            .find(|(i, _)| *i < size)
    }

    fn participations(
        &self,
        federation: &str,
        round: u64,
        device: &str,
        size: u64,
    ) -> Vec<(u64, Hash)> {
        self.participations
            .get(&(federation.to_owned(), round, device.to_owned()))
            .map(|v| v.iter().copied().filter(|(i, _)| *i < size).collect())
            .unwrap_or_default()
    }

    fn opened(&self, federation: &str, round: u64, size: u64) -> Option<(u64, Hash)> {
        self.opened
            .get(&(federation.to_owned(), round))?
            .iter()
            .copied()
            .find(|(i, _)| *i < size)
    }

    /// The first entry below `size` closing `round` or a later round.
    fn closing(&self, federation: &str, round: u64, size: u64) -> Option<u64> {
        self.closed
            .get(federation)?
            .iter()
            .find(|(i, r)| *i < size && *r >= round)
            .map(|(i, _)| *i)
    }
}

impl LogAudit {
    /// Compares the devices' gossiped signed commitments for `federation`
    /// with a full replay of the log (see the module docs). The replay
    /// must cover the verified head (it is checked against its root
    /// first). Returns the counts; when the log contradicts a commitment,
    /// keeps the evidence of every contradiction found (see
    /// [`Self::upload_contradictions`]) and returns
    /// [`AuditError::UploadContradicted`] for the first. At most
    /// [`MAX_AUDITED_COMMITMENTS`] commitments are judged.
    pub fn check_uploads(
        &mut self,
        federation: &str,
        replay: &LogReplay,
        commitments: &[SignedUploadCommitment],
    ) -> Result<UploadReport, AuditError> {
        let Some(head) = self.signed_head().cloned() else {
            return Ok(UploadReport {
                gossiped: commitments.len().min(MAX_AUDITED_COMMITMENTS),
                ignored: commitments.len().min(MAX_AUDITED_COMMITMENTS),
                ..UploadReport::default()
            });
        };
        self.check_contents(replay)?;
        // The log's commitments are judged with the served ones: what a
        // server serves can differ from device to device, its log cannot
        // without a split view (see `super::logged`).
        let size = head.head.size;
        let mut seen: std::collections::BTreeSet<[u8; 64]> =
            commitments.iter().map(|c| c.signature.to_bytes()).collect();
        let mut all = commitments.to_vec();
        let mut logged = 0;
        for (_, c) in replay.index.committed.iter().filter(|(i, _)| *i < size) {
            if c.commitment.federation != federation {
                continue;
            }
            logged += 1;
            if seen.insert(c.signature.to_bytes()) {
                all.push(c.clone());
            }
        }
        let (mut report, found) = judge(federation, &head, replay, &all);
        report.logged = logged;
        let mut first = None;
        for evidence in found {
            if let Err(e) = recheck(&evidence, self.log_key()) {
                first.get_or_insert(e);
                if !self.uploads.contains(&evidence) {
                    self.uploads.push(evidence);
                }
            }
        }
        match first {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Device commitments the log contradicted, oldest first: each is the
    /// device's signature and the log's entries against it.
    pub fn upload_contradictions(&self) -> &[UploadEvidence] {
        &self.uploads
    }
}

fn judge(
    federation: &str,
    head: &SignedTreeHead,
    replay: &LogReplay,
    commitments: &[SignedUploadCommitment],
) -> (UploadReport, Vec<UploadEvidence>) {
    let size = head.head.size;
    let index = &replay.index;
    let leaf = |i: u64| -> Option<LoggedLeaf> {
        Some(LoggedLeaf {
            index: i,
            leaf_data: index.leaves.get(&i)?.clone(),
            path: replay.log.inclusion_proof(i, size).ok()?,
        })
    };
    let mut report = UploadReport::default();
    let mut found = Vec::new();
    let mut signed: BTreeMap<(u64, &str), Vec<Hash>> = BTreeMap::new();
    for gossiped in commitments.iter().take(MAX_AUDITED_COMMITMENTS) {
        report.gossiped += 1;
        let c = &gossiped.commitment;
        let key = (c.federation == federation)
            .then(|| index.enrolled_key(federation, &c.device, size))
            .flatten();
        let Some((enrolled_at, _)) = key.filter(|(_, k)| gossiped.verify(k).is_ok()) else {
            report.ignored += 1;
            continue;
        };
        report.verified += 1;
        signed
            .entry((c.round, c.device.as_str()))
            .or_default()
            .push(c.upload_sha256);
        let Some(enrolled) = leaf(enrolled_at) else {
            continue;
        };
        let mut finding = None;
        if let Some((at, digest)) = index.opened(federation, c.round, size)
            && digest != c.round_digest
        {
            finding = leaf(at).map(|opened| Finding::OtherParameters { opened });
        }
        match index.closing(federation, c.round, size) {
            None => report.pending += 1,
            Some(closed_at) => {
                let logged = index.participations(federation, c.round, &c.device, size);
                if logged.is_empty() {
                    finding = finding
                        .or_else(|| leaf(closed_at).map(|closed| Finding::Dropped { closed }));
                } else if !logged.iter().any(|(_, h)| *h == c.upload_sha256) {
                    finding = finding.or_else(|| {
                        logged
                            .first()
                            .and_then(|(at, _)| leaf(*at))
                            .map(|logged| Finding::Swapped { logged })
                    });
                }
            }
        }
        if let Some(finding) = finding {
            let evidence = UploadEvidence {
                commitment: gossiped.clone(),
                head: head.clone(),
                enrolled,
                finding,
            };
            if !found.contains(&evidence) {
                found.push(evidence);
            }
        }
    }
    for ((f, round, device), entries) in &index.participations {
        if f != federation {
            continue;
        }
        let backing = signed.get(&(*round, device.as_str()));
        for (_, hash) in entries.iter().filter(|(i, _)| *i < size) {
            report.participations += 1;
            if backing.is_some_and(|hashes| hashes.contains(hash)) {
                report.backed += 1;
            }
        }
    }
    report.contradicted = found.len();
    (report, found)
}

/// Re-checks stored evidence from itself alone: `Err(UploadContradicted)`
/// when it still shows the log contradicting a device's signature, `Ok`
/// when it does not (a tampered state file, say).
pub(super) fn recheck(
    evidence: &UploadEvidence,
    log_key: &hearth_ledger::VerifyingKey,
) -> Result<(), AuditError> {
    let Ok(head) = evidence.head.verify(log_key) else {
        return Ok(());
    };
    let c = &evidence.commitment.commitment;
    let Some(LogEntry::DeviceEnrolled {
        federation,
        device,
        public_key,
    }) = in_tree(&evidence.enrolled, &head)
    else {
        return Ok(());
    };
    if federation != c.federation
        || device != c.device
        || evidence.commitment.verify(&public_key).is_err()
    {
        return Ok(());
    }
    let what = match &evidence.finding {
        Finding::Dropped { closed } => match in_tree(closed, &head) {
            Some(LogEntry::RoundOutcome {
                federation, round, ..
            }) if federation == c.federation && round >= c.round => UploadContradiction::Dropped {
                closed: closed.index,
            },
            _ => return Ok(()),
        },
        Finding::Swapped { logged } => match in_tree(logged, &head) {
            Some(LogEntry::RoundParticipation {
                federation,
                round,
                device,
                upload_sha256,
            }) if federation == c.federation
                && round == c.round
                && device == c.device
                && upload_sha256 != c.upload_sha256 =>
            {
                UploadContradiction::Swapped {
                    logged: upload_sha256,
                    index: logged.index,
                }
            }
            _ => return Ok(()),
        },
        Finding::OtherParameters { opened } => match in_tree(opened, &head) {
            Some(LogEntry::RoundOpened {
                federation,
                round,
                parameters_sha256,
                ..
            }) if federation == c.federation
                && round == c.round
                && parameters_sha256 != c.round_digest =>
            {
                UploadContradiction::OtherParameters {
                    signed: c.round_digest,
                    logged: parameters_sha256,
                    index: opened.index,
                }
            }
            _ => return Ok(()),
        },
    };
    Err(AuditError::UploadContradicted {
        federation: c.federation.clone(),
        round: c.round,
        device: c.device.clone(),
        signed: c.upload_sha256,
        what: Box::new(what),
    })
}

/// The entry, if its bytes are in `head`'s tree at its index and decode.
fn in_tree(leaf: &LoggedLeaf, head: &VerifiedTreeHead) -> Option<LogEntry> {
    verify_inclusion(
        &leaf_hash(&leaf.leaf_data),
        leaf.index,
        head.size(),
        &leaf.path,
        &head.root(),
    )
    .ok()?;
    LogEntry::from_leaf_data(&leaf.leaf_data).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use hearth_ledger::{MemoryStore, MerkleLog, SigningKey};

    use super::*;
    use crate::audit::audit_all;
    use crate::audit::commitment::UploadCommitment;
    use crate::audit::wire::{ConsistencyProofResponse, EntriesResponse, EntryResponse};
    use crate::crypto::DeviceIdentity;

    const FED: &str = "notes";

    fn device(name: &str) -> DeviceIdentity {
        DeviceIdentity::from_secret_bytes(&Hash::sha256(name.as_bytes()).as_bytes().clone())
    }

    fn enrolled(name: &str) -> LogEntry {
        LogEntry::DeviceEnrolled {
            federation: FED.into(),
            device: name.into(),
            public_key: device(name).identity_key().to_bytes(),
        }
    }

    fn participation(name: &str, round: u64, upload: &[u8]) -> LogEntry {
        LogEntry::RoundParticipation {
            federation: FED.into(),
            round,
            device: name.into(),
            upload_sha256: Hash::sha256(upload),
        }
    }

    fn digest() -> Hash {
        Hash::sha256(b"round 1 parameters")
    }

    fn signed(name: &str, round: u64, upload: &[u8], digest: Hash) -> SignedUploadCommitment {
        UploadCommitment {
            federation: FED.into(),
            round,
            device: name.into(),
            upload_sha256: Hash::sha256(upload),
            round_digest: digest,
        }
        .sign(&device(name))
        .unwrap()
    }

    /// A log of `entries`, an audit that verified its head, and its replay.
    fn logged(entries: &[LogEntry]) -> (LogAudit, LogReplay) {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut log = MerkleLog::new(MemoryStore::new());
        let mut served = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            log.append(&entry.leaf_data()).unwrap();
            served.push(EntryResponse::new(i as u64, &entry.leaf_data()));
        }
        let size = entries.len() as u64;
        let sth = log.tree_head(1_700_000_000_000).unwrap().sign(&key);
        let mut audit = LogAudit::new(key.verifying_key());
        audit
            .advance(&sth, &ConsistencyProofResponse::trivial(0, size))
            .unwrap();
        let mut replay = LogReplay::new();
        replay
            .push(&EntriesResponse {
                start: 0,
                end: size,
                entries: served,
            })
            .unwrap();
        (audit, replay)
    }

    /// Round 1 with devices a, b and c enrolled: `logged` participations,
    /// then the round's outcome.
    fn round_one(participations: &[LogEntry]) -> Vec<LogEntry> {
        let mut entries = vec![
            enrolled("dev_a"),
            enrolled("dev_b"),
            enrolled("dev_c"),
            LogEntry::RoundOpened {
                federation: FED.into(),
                round: 1,
                parameters_sha256: digest(),
                parameters: b"round 1 parameters".to_vec(),
            },
        ];
        entries.extend_from_slice(participations);
        entries.push(LogEntry::RoundOutcome {
            federation: FED.into(),
            round: 1,
            contributors: participations.len() as u64,
            aborted: false,
        });
        entries
    }

    fn all_signed() -> Vec<SignedUploadCommitment> {
        vec![
            signed("dev_a", 1, b"a", digest()),
            signed("dev_b", 1, b"b", digest()),
            signed("dev_c", 1, b"c", digest()),
        ]
    }

    #[test]
    fn an_honest_log_is_backed_by_every_commitment() {
        let (mut audit, replay) = logged(&round_one(&[
            participation("dev_a", 1, b"a"),
            participation("dev_b", 1, b"b"),
            participation("dev_c", 1, b"c"),
        ]));
        let report = audit.check_uploads(FED, &replay, &all_signed()).unwrap();
        assert_eq!(
            report,
            UploadReport {
                gossiped: 3,
                verified: 3,
                participations: 3,
                backed: 3,
                ..UploadReport::default()
            }
        );
        assert!(audit.upload_contradictions().is_empty());
        // A participation nobody signed for is only not backed.
        let report = audit
            .check_uploads(FED, &replay, &all_signed()[..1])
            .unwrap();
        assert_eq!((report.participations, report.backed), (3, 1));
    }

    #[test]
    fn a_swapped_and_a_dropped_upload_are_caught_and_kept() {
        // The log holds b's upload with another hash, and none of c's.
        let (mut audit, replay) = logged(&round_one(&[
            participation("dev_a", 1, b"a"),
            participation("dev_b", 1, b"not b's bytes"),
        ]));
        let before = audit.clone();
        // The device's own checks pass: the attack is invisible without
        // the devices' signatures.
        assert!(audit_all(&audit).is_ok());
        let err = audit
            .check_uploads(FED, &replay, &all_signed())
            .unwrap_err();
        assert!(
            matches!(&err, AuditError::UploadContradicted { device, round: 1, what, .. }
                if device == "dev_b" && matches!(what.as_ref(), UploadContradiction::Swapped { logged, .. } if *logged == Hash::sha256(b"not b's bytes"))),
            "{err}"
        );
        assert!(err.to_string().contains("swapped"), "{err}");
        let kept = audit.upload_contradictions().to_vec();
        assert_eq!(kept.len(), 2);
        assert!(matches!(kept[0].finding, Finding::Swapped { .. }));
        assert!(matches!(kept[1].finding, Finding::Dropped { .. }));
        assert_eq!(kept[1].commitment.commitment.device, "dev_c");
        // Every later `hearth audit` reports it from the stored state.
        let stored: LogAudit =
            serde_json::from_str(&serde_json::to_string(&audit).unwrap()).unwrap();
        let err = audit_all(&stored).unwrap_err();
        assert!(err.to_string().starts_with("UPLOAD CONTRADICTED"), "{err}");
        // Evidence checked twice is kept once.
        let _ = audit.check_uploads(FED, &replay, &all_signed());
        assert_eq!(audit.upload_contradictions().len(), 2);
        // Tampered evidence proves nothing.
        let mut forged = before.clone();
        let mut evidence = kept[0].clone();
        evidence.commitment.commitment.upload_sha256 = Hash::sha256(b"x");
        forged.uploads.push(evidence);
        assert!(audit_all(&forged).is_ok());
        let mut evidence = kept[1].clone();
        evidence.enrolled.leaf_data = enrolled("dev_a").leaf_data();
        forged.uploads = vec![evidence];
        assert!(audit_all(&forged).is_ok());
    }

    #[test]
    fn only_commitments_signed_by_the_logged_key_count() {
        let (mut audit, replay) = logged(&round_one(&[participation("dev_a", 1, b"a")]));
        // A device the log never enrolled, a key that is not the logged
        // one, and another federation: ignored, never evidence.
        let mut unknown = signed("dev_z", 1, b"z", digest());
        unknown.commitment.device = "dev_z".into();
        let mut forged = signed("dev_b", 1, b"b", digest());
        forged.signature = signed("dev_c", 1, b"b", digest()).signature;
        let impostor = UploadCommitment {
            federation: FED.into(),
            round: 1,
            device: "dev_c".into(),
            upload_sha256: Hash::sha256(b"c"),
            round_digest: digest(),
        }
        .sign(&device("server's own key"))
        .unwrap();
        let other = UploadCommitment {
            federation: "photos".into(),
            ..signed("dev_a", 1, b"a", digest()).commitment
        }
        .sign(&device("dev_a"))
        .unwrap();
        let report = audit
            .check_uploads(FED, &replay, &[unknown, forged, impostor, other])
            .unwrap();
        assert_eq!(
            (report.gossiped, report.ignored, report.verified),
            (4, 4, 0)
        );
        assert_eq!((report.participations, report.backed), (1, 0));
    }

    #[test]
    fn open_rounds_are_pending_and_other_parameters_are_caught() {
        let mut entries = round_one(&[participation("dev_a", 1, b"a")]);
        entries.pop(); // no outcome yet
        let (mut audit, replay) = logged(&entries);
        let report = audit
            .check_uploads(FED, &replay, &[signed("dev_b", 1, b"b", digest())])
            .unwrap();
        assert_eq!(
            (report.verified, report.pending, report.contradicted),
            (1, 1, 0)
        );
        let err = audit
            .check_uploads(
                FED,
                &replay,
                &[signed("dev_a", 1, b"a", Hash::sha256(b"other"))],
            )
            .unwrap_err();
        assert!(
            matches!(&err, AuditError::UploadContradicted { what, .. }
                if matches!(what.as_ref(), UploadContradiction::OtherParameters { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_replay_that_is_not_the_signed_tree_is_refused() {
        let (mut audit, _) = logged(&round_one(&[participation("dev_a", 1, b"a")]));
        let (_, other) = logged(&round_one(&[participation("dev_a", 1, b"not a")]));
        assert!(matches!(
            audit.check_uploads(FED, &other, &all_signed()),
            Err(AuditError::RootMismatch { .. })
        ));
        let fresh = LogAudit::new(*audit.log_key());
        let mut fresh = fresh;
        let report = fresh.check_uploads(FED, &other, &all_signed()).unwrap();
        assert_eq!(report.ignored, 3, "nothing verified yet");
    }
}
