//! Rounds: the lifecycle's persistent half ([`RoundStore`]) and its records.

use hearth_fed::Stage;
use hearth_ledger::Hash;
use serde::Serialize;

use super::StorageFuture;

/// Rounds in flight and ended: opening one with its cohort, its state as
/// opaque bytes saved whole or journalled by compare-and-swap on a version,
/// accepted uploads with their log commitments, and aborting.
pub trait RoundStore: Send + Sync + 'static {
    /// The number of the federation's latest round (0 before the first).
    fn last_round_number(&self, federation_id: String) -> StorageFuture<'_, u64>;

    /// Opens a round with its cohort and first state. [`StorageError::Conflict`](super::StorageError::Conflict)
    /// if the federation already has a round in flight or the number is taken.
    fn open_round(&self, round: NewRound) -> StorageFuture<'_, RoundRecord>;

    /// One round, with its state and cohort.
    fn load_round(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<RoundRecord>>;

    /// One round without its state and cohort: what deciding whether a
    /// state kept in memory is still current needs.
    fn round_summary(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<RoundSummary>>;

    /// The federation's round in flight, without state or cohort.
    fn round_in_flight(&self, federation_id: String) -> StorageFuture<'_, Option<RoundSummary>>;

    /// Every round in flight, of every federation.
    fn rounds_in_flight(&self) -> StorageFuture<'_, Vec<RoundSummary>>;

    /// Whether a device is in a round's cohort.
    fn is_member(
        &self,
        federation_id: String,
        round: u64,
        device_id: String,
    ) -> StorageFuture<'_, bool>;

    /// Saves a round's next state whole if its version is still
    /// `expected_version`, dropping its journal (see
    /// [`RoundStore::append_round_entry`]).
    fn save_round(&self, update: RoundUpdate) -> StorageFuture<'_, RoundSummary>;

    /// Appends `update.state` to the round's journal instead of replacing
    /// its state: the entry the protocol replays onto the stored state to
    /// get the one at the new version ([`RoundRecord::journal`]). The same
    /// compare-and-swap as [`RoundStore::save_round`], and the stage must stay
    /// the one stored (a stage change is saved whole). With a commitment,
    /// also records it exactly as [`RoundStore::record_upload_commitment`]
    /// does, in the same transaction.
    fn append_round_entry(
        &self,
        update: RoundUpdate,
        commitment: Option<UploadCommitment>,
    ) -> StorageFuture<'_, RoundSummary>;

    /// Closes a round as aborted if its version is still `expected_version`.
    fn abort_round(&self, abort: RoundAbort) -> StorageFuture<'_, RoundSummary>;

    /// Records that the server accepted a device's masked upload: appends
    /// its `round_participation` commitment to the transparency log and an
    /// `upload_accepted` event (so callers log no event of their own), and,
    /// when `update` is given, saves the round's next state exactly as
    /// [`RoundStore::save_round`] does, all in one transaction. Pass the state
    /// change that accepting the upload made whenever there is one: then
    /// the log holds the commitment if and only if the round holds the
    /// upload, whatever crashes.
    ///
    /// The round must be in flight and the device in its cohort
    /// ([`StorageError::NotFound`](super::StorageError::NotFound) / [`StorageError::Conflict`](super::StorageError::Conflict)). A device
    /// commits once per round: the same upload hash again appends nothing
    /// and returns the first receipt; another hash is a
    /// [`StorageError::Conflict`](super::StorageError::Conflict). A lost compare-and-swap on `update`
    /// appends nothing.
    fn record_upload_commitment(
        &self,
        commitment: UploadCommitment,
        update: Option<RoundUpdate>,
    ) -> StorageFuture<'_, CommitmentReceipt>;
}

/// A round to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRound {
    /// Federation id.
    pub federation_id: String,
    /// The round's number: the last plus one.
    pub round: u64,
    /// Members, by device id.
    pub cohort: Vec<String>,
    /// Stage of the first state.
    pub stage: Stage,
    /// The protocol's serialized first state.
    pub state: Vec<u8>,
    /// When.
    pub opened_at_ms: u64,
    /// When the first stage runs out.
    pub stage_deadline_ms: u64,
    /// The round's parameters, logged as its `round_opened` entry in the
    /// same transaction (`None`: a protocol with nothing to log).
    pub parameters: Option<RoundParameters>,
}

/// A round's parameters as the transparency log records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundParameters {
    /// The digest every signature of the round is bound to: the SHA-256
    /// of `encoding`.
    pub sha256: [u8; 32],
    /// The parameters' canonical encoding.
    pub encoding: Vec<u8>,
}

impl RoundParameters {
    /// The parameters of a SecAgg+ round: `RoundInfo::digest` and the
    /// bytes it hashes.
    pub fn of(info: &hearth_fed::RoundInfo) -> Self {
        Self {
            sha256: info.digest(),
            encoding: hearth_fed::audit::parameters::encode(info),
        }
    }
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RoundOutcome {
    /// Its result was published as a global version.
    Published {
        /// Why (a summary from the protocol).
        detail: String,
        /// When.
        at_ms: u64,
    },
    /// It was given up.
    Aborted {
        /// Why.
        detail: String,
        /// When.
        at_ms: u64,
    },
}

/// A round without its state and cohort: what polling needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundSummary {
    /// Federation id.
    pub federation_id: String,
    /// Round number.
    pub round: u64,
    /// Current stage.
    pub stage: Stage,
    /// Compare-and-swap counter, 1 when opened.
    pub version: u64,
    /// Cohort size.
    pub cohort_size: u64,
    /// When opened.
    pub opened_at_ms: u64,
    /// When the current stage runs out.
    pub stage_deadline_ms: u64,
    /// When last saved.
    pub updated_at_ms: u64,
    /// `None` while in flight.
    pub outcome: Option<RoundOutcome>,
}

/// A round with everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundRecord {
    /// The summary fields.
    pub summary: RoundSummary,
    /// The protocol's serialized state as last saved whole.
    pub state: Vec<u8>,
    /// Entries appended since ([`RoundStore::append_round_entry`]), oldest
    /// first: the round at `summary.version` is `state` with these replayed.
    pub journal: Vec<Vec<u8>>,
    /// Members, by device id, sorted.
    pub cohort: Vec<String>,
}

/// A round's next state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundUpdate {
    /// Federation id.
    pub federation_id: String,
    /// Round number.
    pub round: u64,
    /// The version the new state was computed from.
    pub expected_version: u64,
    /// New stage.
    pub stage: Stage,
    /// New serialized state.
    pub state: Vec<u8>,
    /// When the (new) stage runs out.
    pub stage_deadline_ms: u64,
    /// When.
    pub at_ms: u64,
}

/// A round to give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundAbort {
    /// Federation id.
    pub federation_id: String,
    /// Round number.
    pub round: u64,
    /// The version the decision was made on.
    pub expected_version: u64,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: u64,
}

/// A masked upload the server accepted, to commit to in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCommitment {
    /// Federation id.
    pub federation_id: String,
    /// Round number.
    pub round: u64,
    /// The uploading device's id.
    pub device_id: String,
    /// SHA-256 of the masked upload bytes exactly as received: the device
    /// computes the same over what it sent and looks for it in the log.
    pub upload_sha256: [u8; 32],
    /// When.
    pub at_ms: u64,
}

/// Where a commitment is in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitmentReceipt {
    /// Its index.
    pub log_index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Whether this call appended it (false: it was already there).
    pub appended: bool,
    /// The round after `update`, when one was given.
    pub round: Option<RoundSummary>,
}
