//! A device's check of the federation server's transparency log.
//!
//! The server logs every federation configuration, every accepted masked
//! upload (a participation commitment), every round outcome and every
//! published global adapter in an append-only RFC 9162 Merkle tree, and
//! signs its tree heads with a key the device pinned when it joined. This
//! module is what the device does with that, after every round:
//!
//! 1. the new signed tree head verifies under the pinned key and extends
//!    the last head this device accepted (a consistency proof), so the
//!    server cannot rewrite history or show this device a fork;
//! 2. its own commitment (its device id and the SHA-256 of the bytes it
//!    uploaded) is in that tree, so the server cannot drop or swap its
//!    contribution;
//! 3. the global adapter it is about to use is logged, with the SHA-256 of
//!    the bytes it downloaded, so the server cannot hand different devices
//!    different models or publish one it did not log;
//! 4. the round's parameters it was shown (and bound every signature to)
//!    are the ones logged when the round opened ([`parameters`]), so the
//!    server cannot show two devices two sets of parameters for one round
//!    in one history.
//!
//! Any failure is an [`AuditError`] saying which of these broke; the caller
//! stops taking part and tells the person. Everything here is pure: it
//! takes the server's answers ([`wire`]) as values and never touches the
//! network, so the HTTP driver fetches and this module judges.
//!
//! [`LogAudit`] is the state a device keeps (serde): the pinned key, the
//! last verified head, and every checkpoint with its evidence, so
//! [`audit_all`] can re-verify the whole stored history (`hearth audit`).
//! [`LogReplay`] rebuilds the tree from all entries for a full audit.
//!
//! # What the HTTP driver fetches
//!
//! (`FedClient::audit_round`, behind the `client` feature, does exactly
//! this.)
//!
//! At join: [`wire::KEY_PATH`] → [`LogAudit::pin`] (or [`LogAudit::new`]
//! with the key the operator printed); store the audit. After each round,
//! with `size` the new head's size:
//! 1. [`wire::STH_PATH`] → `sth`;
//! 2. [`wire::CONSISTENCY_PATH`]`?old={audit.size()}&new={size}`;
//! 3. if this device uploaded: [`wire::INCLUSION_PATH`]`?hash={h}&size={size}`
//!    with `h` = [`commitment_leaf_hash`] of its device id and the SHA-256
//!    of the exact bytes it uploaded (a 404 is `proof: None`);
//! 4. if it downloads global version `v`: [`wire::ADAPTER_PATH`]
//!    `?federation={f}&version={v}&size={size}` (a 404 is `logged: None`),
//!    and the SHA-256 it computed over the downloaded bytes;
//! 5. [`wire::INCLUSION_PATH`]`?hash={h}&size={size}` with `h` the leaf
//!    hash of [`parameters::round_opened_entry`] for the round's
//!    parameters as this device received them (a 404 is `proof: None`).
//!
//! Fetch the head after the round has ended and after downloading the
//! adapter, so both entries are in it (asking about an entry past the
//! head's size is a 400 that says to ask with a newer head). Then call
//! [`LogAudit::verify_round`] with a [`RoundCheck`] of those answers,
//! and store the audit again. On an error, stop taking part and show the
//! error's message: it says what the server did wrong.
//!
//! ```
//! use hearth_fed::audit::{LogAudit, RoundCheck, CommitmentCheck, wire};
//! use hearth_ledger::{Hash, LogEntry, MemoryStore, MerkleLog, SigningKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The server's side, in memory: a log with this device's commitment.
//! let key = SigningKey::from_bytes(&[9; 32]);
//! let mut log = MerkleLog::new(MemoryStore::new());
//! let upload = b"masked upload bytes";
//! let mine = LogEntry::RoundParticipation {
//!     federation: "notes".into(),
//!     round: 1,
//!     device: "dev_a".into(),
//!     upload_sha256: Hash::sha256(upload),
//! };
//! let index = log.append(&mine.leaf_data())?;
//! let sth = log.tree_head(1_700_000_000_000)?.sign(&key);
//!
//! // The device pinned the key at join; after the round it checks.
//! let mut audit = LogAudit::new(key.verifying_key());
//! let verified = audit.verify_round(RoundCheck {
//!     sth,
//!     consistency: wire::ConsistencyProofResponse::trivial(0, 1),
//!     federation: "notes".into(),
//!     round: 1,
//!     commitment: Some(CommitmentCheck {
//!         device: "dev_a".into(),
//!         upload_sha256: Hash::sha256(upload),
//!         proof: Some(wire::InclusionProofResponse {
//!             index,
//!             size: 1,
//!             leaf_hash: mine.leaf_hash(),
//!             path: log.inclusion_proof(index, 1)?,
//!         }),
//!     }),
//!     adapter: None,
//!     parameters: None,
//! })?;
//! assert_eq!(verified.commitment_index, Some(0));
//! assert_eq!(hearth_fed::audit::audit_all(&audit)?.rounds, 1);
//! # Ok(()) }
//! ```

pub mod cohort;
pub mod commitment;
mod error;
pub mod gossip;
pub mod logged;
pub mod parameters;
pub mod population;
mod replay;
pub mod uploads;
pub mod wire;

pub use cohort::check_cohort_enrolled;
pub use commitment::{CommitmentError, SignedUploadCommitment, UploadCommitment};
pub use error::{Absence, AuditError};
pub use gossip::{GossipHead, GossipReport, SplitViewEvidence};
pub use logged::{OwnCommitmentsCheck, UnloggedCommitment};
pub use population::{CohortCheck, Population};
pub use replay::{AuditReport, LogReplay, audit_all};
pub use uploads::{UploadContradiction, UploadEvidence, UploadReport};

use hearth_ledger::{
    Hash, LogEntry, LogWatcher, SignedTreeHead, TreeHead, VerifyingKey, leaf_hash,
    verify_consistency, verify_inclusion,
};
use serde::{Deserialize, Serialize};

use wire::{
    AdapterEntryResponse, ConsistencyProofResponse, InclusionProofResponse, LogKeyResponse,
};

/// This device's commitment to check: what it uploaded, and what the log
/// answered to [`wire::INCLUSION_PATH`] with the commitment's leaf hash
/// ([`commitment_leaf_hash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentCheck {
    /// This device's id in the federation.
    pub device: String,
    /// SHA-256 of the masked upload bytes it sent.
    pub upload_sha256: Hash,
    /// The log's proof; `None` when it answered that it has no such entry
    /// (404).
    pub proof: Option<InclusionProofResponse>,
}

/// The global adapter to check: what was downloaded, and what the log
/// answered to [`wire::ADAPTER_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterCheck {
    /// The global version downloaded.
    pub version: u64,
    /// SHA-256 of the downloaded bytes, computed by this device.
    pub adapter_sha256: Hash,
    /// The log's entry and proof; `None` when it has none (404).
    pub logged: Option<AdapterEntryResponse>,
}

/// The round's parameters to check: what this device was shown, and what
/// the log answered to [`wire::INCLUSION_PATH`] with the leaf hash of
/// their `round_opened` entry ([`parameters::round_opened_entry`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParametersCheck {
    /// The parameters as this device received them.
    pub info: crate::RoundInfo,
    /// The log's proof; `None` when it answered that it has no such entry
    /// (404).
    pub proof: Option<InclusionProofResponse>,
}

/// Everything to check after a round, as fetched by the driver: the latest
/// head, the consistency proof from [`LogAudit::size`] to its size, and
/// the answers about this device's commitment and the new adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundCheck {
    /// The latest signed tree head ([`wire::STH_PATH`]).
    pub sth: SignedTreeHead,
    /// [`wire::CONSISTENCY_PATH`] from [`LogAudit::size`] to `sth`'s size.
    pub consistency: ConsistencyProofResponse,
    /// The federation.
    pub federation: String,
    /// The round.
    pub round: u64,
    /// This device's commitment, if it uploaded in the round.
    pub commitment: Option<CommitmentCheck>,
    /// The adapter it will use, if the round published one.
    pub adapter: Option<AdapterCheck>,
    /// The round's parameters as this device was shown them (always, for
    /// a round it took part in).
    pub parameters: Option<ParametersCheck>,
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RoundVerified {
    /// The head everything was verified against.
    pub head: TreeHead,
    /// Where this device's commitment is in the log.
    pub commitment_index: Option<u64>,
    /// Where the round's parameters are in the log.
    pub parameters_index: Option<u64>,
    /// The adapter's log entry, verified: its privacy guarantee is the
    /// `(epsilon, delta)` to show the person.
    pub adapter: Option<AdapterVerified>,
}

/// A verified `adapter_published` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterVerified {
    /// Its index in the log.
    pub index: u64,
    /// The round that produced it.
    pub round: u64,
    /// How many devices contributed.
    pub contributors: u64,
    /// Differential-privacy epsilon of the aggregate at `delta`;
    /// [`hearth_ledger::NO_DP_BOUND`] (`+∞`) when the round added no
    /// noise: no guarantee to show.
    pub epsilon: f64,
    /// The delta it holds with.
    pub delta: f64,
}

/// One verified step, kept so the whole history can be re-verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The head verified at this step.
    pub sth: SignedTreeHead,
    /// The consistency proof from the previous checkpoint's size.
    pub consistency: Vec<Hash>,
    /// The round checked at this step, with its evidence.
    pub round: Option<RoundEvidence>,
}

/// A round's verified evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundEvidence {
    /// The federation.
    pub federation: String,
    /// The round.
    pub round: u64,
    /// This device's commitment and its proof.
    pub commitment: Option<CommitmentCheck>,
    /// The adapter and its entry.
    pub adapter: Option<AdapterCheck>,
    /// The round's parameters and their proof (absent in audits stored
    /// before parameters were logged).
    #[serde(default)]
    pub parameters: Option<ParametersCheck>,
}

/// A device's audit state for one server's log: the pinned key, the last
/// verified head ([`LogWatcher`]) and every checkpoint. Serialize it after
/// every change; reading it back re-checks the head's signature, and
/// [`audit_all`] re-checks everything.
///
/// Every method that can fail leaves the state as it was, except
/// [`LogAudit::gossip`], which keeps the evidence of a split view,
/// [`LogAudit::check_uploads`], which keeps the evidence of a device
/// commitment the log contradicts, and [`LogAudit::check_own_commitments`],
/// which keeps this device's commitments the log does not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogAudit {
    watcher: LogWatcher,
    history: Vec<Checkpoint>,
    /// Split views found by gossip (absent in audits stored before gossip).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    split_views: Vec<SplitViewEvidence>,
    /// Device commitments the log contradicted (absent in audits stored
    /// before upload commitments were gossiped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uploads: Vec<UploadEvidence>,
    /// The federation's devices as replayed from the log before the last
    /// round's cohort was checked ([`population`]; absent in audits stored
    /// before the replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    population: Option<Population>,
    /// This device's commitments the log did not hold after it posted
    /// them ([`logged`]; absent in audits stored before they were logged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unlogged: Vec<UnloggedCommitment>,
}

impl LogAudit {
    /// A fresh audit of the log whose key the device pinned at join.
    pub fn new(log_key: VerifyingKey) -> Self {
        Self {
            watcher: LogWatcher::new(log_key),
            history: Vec::new(),
            split_views: Vec::new(),
            uploads: Vec::new(),
            population: None,
            unlogged: Vec::new(),
        }
    }

    /// A fresh audit pinning the key the server presented at join.
    pub fn pin(served: &LogKeyResponse) -> Result<Self, AuditError> {
        let key = served
            .verifying_key()
            .map_err(|e| AuditError::Malformed(e.to_string()))?;
        Ok(Self::new(key))
    }

    /// The pinned key.
    pub fn log_key(&self) -> &VerifyingKey {
        self.watcher.log_key()
    }

    /// The verified size: ask for the consistency proof from here.
    pub fn size(&self) -> u64 {
        self.watcher.size()
    }

    /// The latest verified head, as signed (evidence to show others).
    pub fn signed_head(&self) -> Option<&SignedTreeHead> {
        self.watcher.signed_head()
    }

    /// Every verified step, oldest first.
    pub fn history(&self) -> &[Checkpoint] {
        &self.history
    }

    /// Checks that the server still presents the pinned key.
    pub fn check_key(&self, served: &LogKeyResponse) -> Result<(), AuditError> {
        let pinned = hex::encode(self.log_key().as_bytes());
        match served.verifying_key() {
            Ok(key) if key == *self.log_key() => Ok(()),
            _ => Err(AuditError::KeyChanged {
                pinned,
                served: served.public_key.clone(),
            }),
        }
    }

    /// Accepts a newer head along its consistency proof (check 1 alone),
    /// recording a checkpoint when the log grew.
    pub fn advance(
        &mut self,
        sth: &SignedTreeHead,
        consistency: &ConsistencyProofResponse,
    ) -> Result<(), AuditError> {
        let mut next = self.clone();
        next.advance_in_place(sth, consistency, None)?;
        *self = next;
        Ok(())
    }

    /// Joins a head that a check during a round relied on (the cohort's
    /// enrolments, say) to this device's verified history: a newer head is
    /// accepted along `consistency` as by [`Self::advance`]; an older or
    /// equal one must be a prefix of the verified tree (`consistency` from
    /// its size to the verified size), else the log showed the round a
    /// history it has since rewritten.
    pub fn join_head(
        &mut self,
        sth: &SignedTreeHead,
        consistency: &ConsistencyProofResponse,
    ) -> Result<(), AuditError> {
        let Some(mine) = self.watcher.head().cloned() else {
            return self.advance(sth, consistency);
        };
        if sth.head.size > mine.size() {
            return self.advance(sth, consistency);
        }
        let earlier = sth
            .verify(self.log_key())
            .map_err(|_| AuditError::BadSignature)?;
        if earlier.size() == mine.size() {
            if earlier.root() != mine.root() {
                return Err(AuditError::Fork {
                    size: mine.size(),
                    known_root: mine.root(),
                    offered_root: earlier.root(),
                });
            }
            return Ok(());
        }
        if consistency.old != earlier.size() || consistency.new != mine.size() {
            return Err(AuditError::Malformed(format!(
                "consistency proof is from {} to {}, needed from {} to {}",
                consistency.old,
                consistency.new,
                earlier.size(),
                mine.size()
            )));
        }
        verify_consistency(
            earlier.size(),
            mine.size(),
            &earlier.root(),
            &mine.root(),
            &consistency.path,
        )
        .map_err(|proof| AuditError::HistoryRewritten {
            from: earlier.size(),
            to: mine.size(),
            proof,
        })
    }

    /// The after-round check: the head (1), this device's commitment (2)
    /// and the adapter it will use (3). On success the state moves to the
    /// new head and keeps the evidence; on failure nothing changes.
    pub fn verify_round(&mut self, check: RoundCheck) -> Result<RoundVerified, AuditError> {
        let mut next = self.clone();
        let RoundCheck {
            sth,
            consistency,
            federation,
            round,
            commitment,
            adapter,
            parameters,
        } = check;
        next.watcher_update(&sth, &consistency)?;
        let head = sth.head;
        let parameters_index = match &parameters {
            Some(p) => Some(next.check_parameters(&federation, round, p)?),
            None => None,
        };
        let commitment_index = match &commitment {
            Some(c) => Some(next.check_commitment(&federation, round, c)?),
            None => None,
        };
        let adapter_verified = match &adapter {
            Some(a) => Some(next.check_adapter(&federation, a)?),
            None => None,
        };
        next.history.push(Checkpoint {
            sth,
            consistency: consistency.path,
            round: Some(RoundEvidence {
                federation,
                round,
                commitment,
                adapter,
                parameters,
            }),
        });
        *self = next;
        Ok(RoundVerified {
            head,
            commitment_index,
            parameters_index,
            adapter: adapter_verified,
        })
    }

    /// Checks that this device's commitment is in the verified tree
    /// (check 2) and returns its index.
    pub fn check_commitment(
        &self,
        federation: &str,
        round: u64,
        check: &CommitmentCheck,
    ) -> Result<u64, AuditError> {
        let leaf = commitment_leaf_hash(federation, round, &check.device, check.upload_sha256);
        let missing = |why| AuditError::MissingCommitment {
            federation: federation.to_owned(),
            round,
            device: check.device.clone(),
            why,
        };
        self.check_included(leaf, check.proof.as_ref(), missing)
    }

    /// Checks that the round's parameters this device was shown are the
    /// ones logged for the round, in the verified tree (check 4), and
    /// returns their entry's index.
    pub fn check_parameters(
        &self,
        federation: &str,
        round: u64,
        check: &ParametersCheck,
    ) -> Result<u64, AuditError> {
        let not_logged = |why| AuditError::ParametersNotLogged {
            federation: federation.to_owned(),
            round,
            digest: Hash::from_bytes(check.info.digest()),
            why,
        };
        if check.info.round.0 != round
            || check.info.federation != crate::FederationId::from_name(federation)
        {
            return Err(AuditError::Malformed(format!(
                "the parameters checked are for round {} of {}, not round {round} of {federation}",
                check.info.round, check.info.federation
            )));
        }
        let leaf = parameters::round_opened_entry(federation, &check.info).leaf_hash();
        self.check_included(leaf, check.proof.as_ref(), not_logged)
    }

    /// Checks that `proof` shows `leaf` in the verified tree and returns
    /// its index; `absent` says, in the caller's terms, why it does not.
    fn check_included(
        &self,
        leaf: Hash,
        proof: Option<&InclusionProofResponse>,
        absent: impl Fn(Absence) -> AuditError,
    ) -> Result<u64, AuditError> {
        let proof = proof.ok_or_else(|| absent(Absence::NoEntry))?;
        self.check_tree_size(proof.size)?;
        if proof.leaf_hash != leaf {
            return Err(absent(Absence::OtherLeaf {
                answered: proof.leaf_hash,
            }));
        }
        verify_inclusion(
            &leaf,
            proof.index,
            self.size(),
            &proof.path,
            &self.watcher.root(),
        )
        .map_err(|e| absent(Absence::NotInTree(e)))?;
        Ok(proof.index)
    }

    /// Checks that the adapter version is logged, in the verified tree,
    /// with the SHA-256 of the downloaded bytes (check 3).
    pub fn check_adapter(
        &self,
        federation: &str,
        check: &AdapterCheck,
    ) -> Result<AdapterVerified, AuditError> {
        let not_logged = |why| AuditError::AdapterNotLogged {
            federation: federation.to_owned(),
            version: check.version,
            why,
        };
        let logged = check
            .logged
            .as_ref()
            .ok_or_else(|| not_logged(Absence::NoEntry))?;
        self.check_tree_size(logged.proof.size)?;
        let bytes = logged
            .entry
            .leaf_bytes()
            .map_err(|e| AuditError::Malformed(e.to_string()))?;
        let index = logged.entry.index;
        if logged.proof.index != index {
            return Err(AuditError::Malformed(format!(
                "adapter entry {index} comes with a proof for index {}",
                logged.proof.index
            )));
        }
        // Inclusion first: fields of an entry that is not in the signed
        // tree mean nothing. Hash the served bytes ourselves: a proof
        // about a stored leaf hash says nothing about altered bytes.
        verify_inclusion(
            &leaf_hash(&bytes),
            index,
            self.size(),
            &logged.proof.path,
            &self.watcher.root(),
        )
        .map_err(|e| not_logged(Absence::NotInTree(e)))?;
        let entry =
            LogEntry::from_leaf_data(&bytes).map_err(|e| not_logged(Absence::Undecodable(e)))?;
        match entry {
            LogEntry::AdapterPublished {
                federation: logged_federation,
                version,
                round,
                adapter_sha256,
                contributors,
                epsilon,
                delta,
            } if logged_federation == federation && version == check.version => {
                if adapter_sha256 != check.adapter_sha256 {
                    return Err(AuditError::WrongAdapter {
                        federation: federation.to_owned(),
                        version,
                        downloaded: check.adapter_sha256,
                        logged: adapter_sha256,
                    });
                }
                Ok(AdapterVerified {
                    index,
                    round,
                    contributors,
                    epsilon,
                    delta,
                })
            }
            other => Err(not_logged(Absence::OtherSubject {
                index,
                found: describe(&other),
            })),
        }
    }

    /// Checks a full replay of the log's entries against the verified head
    /// (see [`LogReplay`]): every entry the server stores must hash into
    /// the root it signed.
    pub fn check_contents(&self, replay: &LogReplay) -> Result<(), AuditError> {
        let Some(head) = self.watcher.head() else {
            return Ok(());
        };
        replay.check_root(head.size(), head.root())
    }

    fn check_tree_size(&self, answered: u64) -> Result<(), AuditError> {
        if answered != self.size() {
            return Err(AuditError::WrongTreeSize {
                answered,
                verified: self.size(),
            });
        }
        Ok(())
    }

    fn watcher_update(
        &mut self,
        sth: &SignedTreeHead,
        consistency: &ConsistencyProofResponse,
    ) -> Result<(), AuditError> {
        let from = self.size();
        if consistency.old != from || consistency.new != sth.head.size {
            // Only meaningful if the log grew; a same-size head needs no
            // proof, and an older one is refused by the watcher anyway.
            if sth.head.size > from {
                return Err(AuditError::Malformed(format!(
                    "consistency proof is from {} to {}, needed from {from} to {}",
                    consistency.old, consistency.new, sth.head.size
                )));
            }
        }
        let _ = self.watcher.update(sth, &consistency.path)?;
        Ok(())
    }

    fn advance_in_place(
        &mut self,
        sth: &SignedTreeHead,
        consistency: &ConsistencyProofResponse,
        round: Option<RoundEvidence>,
    ) -> Result<(), AuditError> {
        let before = self.watcher.signed_head().cloned();
        self.watcher_update(sth, consistency)?;
        // A re-signed head of the same tree may replace the latest one;
        // record every change so the history ends where the watcher does.
        if self.watcher.signed_head() != before.as_ref() || round.is_some() {
            self.history.push(Checkpoint {
                sth: sth.clone(),
                consistency: consistency.path.clone(),
                round,
            });
        }
        Ok(())
    }
}

/// The leaf hash of a participation commitment, to ask
/// [`wire::INCLUSION_PATH`] about (`hash=`).
pub fn commitment_leaf_hash(federation: &str, round: u64, device: &str, upload: Hash) -> Hash {
    LogEntry::RoundParticipation {
        federation: federation.to_owned(),
        round,
        device: device.to_owned(),
        upload_sha256: upload,
    }
    .leaf_hash()
}

fn describe(entry: &LogEntry) -> String {
    match entry {
        LogEntry::AdapterPublished {
            federation,
            version,
            ..
        } => format!("adapter_published, federation {federation}, version {version}"),
        other => format!("{}, federation {}", other.kind_name(), other.federation()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests;
