//! Why a check of the log failed ([`AuditError`]), and what the log
//! answered instead of an entry a device looked for ([`Absence`]).

use hearth_ledger::{EntryError, Hash, ProofError, SthError, TreeHead, WatchError};

use super::gossip;
use super::uploads::UploadContradiction;

/// Why the log could not be trusted, or does not show what it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The tree head is not signed by the pinned log key: a forged head, or
    /// a server that changed its key.
    #[error("bad signature: the log's tree head is not signed by the key pinned at join")]
    BadSignature,
    /// The server now presents another log key than the pinned one.
    #[error("the server's log key {served} is not the key pinned at join ({pinned})")]
    KeyChanged {
        /// The pinned key, hex.
        pinned: String,
        /// The key the server presented, hex.
        served: String,
    },
    /// Two signed heads of one size with different roots.
    #[error(
        "fork: the log signed two different trees of {size} entries (root {known_root} before, {offered_root} now)"
    )]
    Fork {
        /// The size both heads claim.
        size: u64,
        /// The root verified before.
        known_root: Hash,
        /// The conflicting root.
        offered_root: Hash,
    },
    /// The new head does not extend the one verified before: entries were
    /// changed, removed or reordered, or this device is shown a fork.
    #[error(
        "fork: the log's tree of {to} entries does not extend the {from} entries verified before (history was rewritten): {proof}"
    )]
    HistoryRewritten {
        /// The size verified before.
        from: u64,
        /// The size offered.
        to: u64,
        /// What failed in the consistency proof.
        proof: ProofError,
    },
    /// The log shrank.
    #[error("the log went back from {current} entries to {offered}")]
    Rollback {
        /// The size verified before.
        current: u64,
        /// The size offered.
        offered: u64,
    },
    /// A larger head is dated before the one verified before.
    #[error("the log's clock went back from {current} ms to {offered} ms")]
    TimestampRegressed {
        /// The earlier head's timestamp.
        current: u64,
        /// The new head's timestamp.
        offered: u64,
    },
    /// This device's participation commitment is not in the log.
    /// (The upload's hash is in the [`CommitmentCheck`](super::CommitmentCheck) that failed.)
    #[error(
        "missing commitment: the log does not show device {device}'s upload in round {round} of {federation}: {why}"
    )]
    MissingCommitment {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// This device's id.
        device: String,
        /// What the log answered instead.
        why: Absence,
    },
    /// The log's entry for the adapter version names other bytes than the
    /// ones downloaded.
    #[error(
        "wrong adapter hash: the log says global version {version} of {federation} is {logged}, the downloaded adapter is {downloaded}"
    )]
    WrongAdapter {
        /// The federation.
        federation: String,
        /// The global version.
        version: u64,
        /// SHA-256 of the downloaded bytes.
        downloaded: Hash,
        /// SHA-256 the log records.
        logged: Hash,
    },
    /// The round's parameters this device was shown are not (verifiably)
    /// the ones the log recorded when the round opened.
    #[error(
        "round parameters not logged: the log does not hold the parameters (digest {digest}) this device was shown for round {round} of {federation}: {why}"
    )]
    ParametersNotLogged {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// The digest of the parameters this device was shown.
        digest: Hash,
        /// What the log answered instead.
        why: Absence,
    },
    /// Devices of a round's cohort have no (verifiable) enrolment in the
    /// log: the server put devices nobody can see into the round.
    #[error(
        "cohort not enrolled: {missing} of the {cohort} devices in round {round} of {federation} have no enrolment in the transparency log (first: {first}); the server may be filling the round with devices of its own"
    )]
    CohortNotEnrolled {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// How many devices the cohort has.
        cohort: usize,
        /// How many of them have no proven enrolment.
        missing: usize,
        /// The public key of the first of them, hex.
        first: String,
    },
    /// Devices of a round's cohort were revoked in the log: the server
    /// kept devices it took out in public in the round.
    #[error(
        "cohort revoked: {revoked} of the {cohort} devices in round {round} of {federation} were revoked in the transparency log (first: {first}); the server kept devices it took out in public in the round"
    )]
    CohortRevoked {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// How many devices the cohort has.
        cohort: usize,
        /// How many of them the log revoked.
        revoked: usize,
        /// The public key of the first of them, hex.
        first: String,
    },
    /// The adapter version is not (verifiably) in the log.
    #[error("global version {version} of {federation} is not in the log: {why}")]
    AdapterNotLogged {
        /// The federation.
        federation: String,
        /// The global version.
        version: u64,
        /// What the log answered instead.
        why: Absence,
    },
    /// The log's entries do not hash to the signed root: its storage was
    /// altered after the head was signed.
    #[error(
        "root mismatch: the log's {size} entries hash to {computed}, not to the signed root {signed} (its stored entries were altered)"
    )]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// The root of the served entries.
        computed: Hash,
        /// The signed root.
        signed: Hash,
    },
    /// A proof or entry range is for another tree than the verified head.
    #[error("the answer is for a tree of {answered} entries, the verified head has {verified}")]
    WrongTreeSize {
        /// The size the answer is for.
        answered: u64,
        /// The verified head's size.
        verified: u64,
    },
    /// Two heads signed by the log cannot both be true: another device was
    /// shown another history than this one (found by gossip, see
    /// [`gossip`](super::gossip)).
    #[error("SPLIT VIEW: {}", gossip::describe(.mine, .theirs, .proof))]
    SplitView {
        /// The head this device verified.
        mine: TreeHead,
        /// The head another device was shown.
        theirs: TreeHead,
        /// Why the log's consistency proof between them failed, when it
        /// gave one.
        proof: Option<ProofError>,
    },
    /// A device's signed upload commitment (gossiped, see [`uploads`](super::uploads))
    /// that the log contradicts: the log dropped or swapped the device's
    /// upload, or opened its round with other parameters.
    #[error(
        "UPLOAD CONTRADICTED: device {device} signed that it uploaded {signed} in round {round} of {federation}, but {what}"
    )]
    UploadContradicted {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// The device.
        device: String,
        /// The upload hash it signed.
        signed: Hash,
        /// What the log holds instead (boxed: it is the largest).
        what: Box<UploadContradiction>,
    },
    /// This device's signed upload commitment, posted through gossip and
    /// accepted, is not in the log (see [`logged`](super::logged)): the server may be
    /// hiding it from the other devices.
    #[error(
        "COMMITMENT NOT LOGGED: device {device} posted its signed commitment to upload {signed} in round {round} of {federation}, but the log every device replays does not hold it ({why}); the server may be hiding it from the other devices"
    )]
    CommitmentNotLogged {
        /// The federation.
        federation: String,
        /// The round.
        round: u64,
        /// This device.
        device: String,
        /// The upload hash it signed.
        signed: Hash,
        /// What the log answered instead.
        why: String,
    },
    /// A response is malformed (bad base64, entries out of order).
    #[error("malformed log response: {0}")]
    Malformed(String),
    /// Re-verifying the stored history failed at one checkpoint.
    #[error("stored audit history, checkpoint {checkpoint}: {error}")]
    History {
        /// The checkpoint's position in the history.
        checkpoint: usize,
        /// What failed there.
        error: Box<AuditError>,
    },
}

impl AuditError {
    /// Whether the failure proves the server misbehaved (as opposed to a
    /// malformed answer, which may be a transport problem worth a retry).
    pub fn is_misbehaviour(&self) -> bool {
        !matches!(self, AuditError::Malformed(_))
    }
}

/// What the log answered instead of the entry a device looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Absence {
    /// The log says it holds no such entry.
    #[error("the log has no such entry")]
    NoEntry,
    /// The log answered with a proof for another leaf.
    #[error("the log answered with another entry (leaf {answered})")]
    OtherLeaf {
        /// The leaf hash it answered about.
        answered: Hash,
    },
    /// The inclusion proof does not lead to the signed root.
    #[error("its inclusion proof does not verify against the signed root: {0}")]
    NotInTree(ProofError),
    /// The entry's bytes do not decode.
    #[error("the entry does not decode: {0}")]
    Undecodable(EntryError),
    /// The entry is about something else.
    #[error("the entry at index {index} is about something else ({found})")]
    OtherSubject {
        /// The entry's index.
        index: u64,
        /// What it is: kind, federation, version.
        found: String,
    },
}

impl From<WatchError> for AuditError {
    fn from(e: WatchError) -> Self {
        match e {
            WatchError::Signature(SthError::BadSignature) => AuditError::BadSignature,
            WatchError::Rollback { current, offered } => AuditError::Rollback { current, offered },
            WatchError::Fork {
                size,
                known_root,
                offered_root,
            } => AuditError::Fork {
                size,
                known_root,
                offered_root,
            },
            WatchError::Inconsistent { from, to, proof } => {
                AuditError::HistoryRewritten { from, to, proof }
            }
            WatchError::TimestampRegressed { current, offered } => {
                AuditError::TimestampRegressed { current, offered }
            }
            // `update` reports no other kinds; `check_included` is not used
            // through this conversion. Name it rather than panic.
            other => AuditError::Malformed(other.to_string()),
        }
    }
}
