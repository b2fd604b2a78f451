//! Everything the server remembers, behind one trait.
//!
//! [`Storage`] is the seam where the embedded default ([`SqliteStorage`])
//! can later give way to PostgreSQL for several stateless replicas. Its
//! methods return boxed futures so the trait stays object-safe
//! (`Arc<dyn Storage>` in the app state) and an implementation may be
//! natively async; the SQLite one runs its blocking calls on tokio's
//! blocking pool.
//!
//! Rules every implementation keeps:
//! - each method is atomic: a multi-row change commits whole or not at all,
//!   together with its [`Event`] in the append-only log;
//! - round state is opaque bytes plus a [`Stage`] and a version counter, and
//!   every change to an in-flight round is a compare-and-swap on that
//!   version ([`StorageError::Conflict`] when someone else got there first);
//! - publishing a global adapter version and closing its round are one
//!   change, so nothing half-published can exist after a crash;
//! - every change the transparency log records appends its
//!   [`hearth_ledger::LogEntry`] in the same transaction (see below).
//!
//! # The transparency log
//!
//! The log ([`hearth_ledger`]'s RFC 9162 tree, its nodes stored beside
//! everything else) records, in the transaction of the change itself:
//! - a `federation_config` entry when [`Storage::sync_federation`] creates
//!   or changes a federation (its id and the SHA-256 of the canonical
//!   configuration JSON);
//! - a `device_enrolled` entry (federation, device id, public key) when
//!   [`Storage::enrol`] admits a device, and a `device_revoked` entry when
//!   [`Storage::revoke_device`] revokes one (the first time); devices of a
//!   database from before these entries are logged when it is opened;
//! - a `round_opened` entry when [`Storage::open_round`] opens a round
//!   whose protocol states its parameters ([`NewRound::parameters`]: the
//!   SecAgg+ `RoundInfo`'s digest and its canonical encoding), before any
//!   device can be sent them;
//! - a `round_participation` commitment when the server accepts a device's
//!   masked upload: round code calls [`Storage::record_upload_commitment`];
//! - a `round_outcome` when [`Storage::abort_round`] aborts a round
//!   (contributors 0: nothing was aggregated) or
//!   [`Storage::publish_global`] completes one;
//! - an `adapter_published` entry in [`Storage::publish_global`], from the
//!   [`Publication`]'s global version, contributors, epsilon and delta (a
//!   round without noise has no epsilon and is logged with `+∞`, "no
//!   bound", never with a number that could read as a guarantee).
//!
//! A change that fails appends nothing, and nothing is appended without
//! its change. Devices verify the log with `hearth_fed::audit`.
//!
//! Devices also gossip the heads they verified
//! ([`Storage::record_gossip_head`], [`Storage::gossip_heads`]): one per
//! device, only heads the log key signed, so devices shown two histories
//! can tell. A posted head that is not of this server's own log is an
//! event (`log_head_conflict`) for the operator. With their heads, devices
//! post their signed upload commitments
//! ([`Storage::record_gossip_commitments`], [`Storage::gossip_commitments`]):
//! one per device and round, so every device can hold the log's
//! participation entries to the devices' own word.

mod commitments;
mod log;
mod sqlite;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use hearth_ledger::{Hash, SignedTreeHead};
use serde::Serialize;

use crate::log::LogKey;
use hearth_fed::Stage;

pub use log::bench_sqlite_log;
pub use sqlite::{DATABASE_FILE, SqliteStorage};

/// What every [`Storage`] method returns.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// The server's persistent state.
pub trait Storage: Send + Sync + 'static {
    /// Cheap round trip proving the store answers (health checks).
    fn ping(&self) -> StorageFuture<'_, ()>;

    /// Creates or updates a federation from the operator's configuration
    /// (canonical JSON); logs an event when the configuration changed.
    fn sync_federation(&self, sync: FederationSync) -> StorageFuture<'_, FederationRecord>;
    /// One federation.
    fn federation(&self, id: String) -> StorageFuture<'_, Option<FederationRecord>>;
    /// All federations, by id.
    fn federations(&self) -> StorageFuture<'_, Vec<FederationRecord>>;

    /// Stores a new invite (only the token's hash).
    fn create_invite(&self, invite: NewInvite) -> StorageFuture<'_, ()>;
    /// Consumes an invite and creates the device, atomically: of two
    /// enrolments racing on one token exactly one succeeds.
    fn enrol(&self, enrolment: Enrolment) -> StorageFuture<'_, DeviceRecord>;

    /// One device.
    fn device(&self, id: String) -> StorageFuture<'_, Option<DeviceRecord>>;
    /// Devices, of one federation or all, by enrolment time.
    fn devices(&self, federation_id: Option<String>) -> StorageFuture<'_, Vec<DeviceRecord>>;
    /// Revokes a device; `None` if there is no such device. Revoking twice
    /// keeps the first time.
    fn revoke_device(&self, id: String, at_ms: u64) -> StorageFuture<'_, Option<DeviceRecord>>;
    /// Notes a check-in (and whether the device could take part now).
    fn record_checkin(&self, checkin: Checkin) -> StorageFuture<'_, ()>;
    /// Non-revoked devices of a federation, and how many of them were
    /// eligible at or after `eligible_since_ms`.
    fn device_counts(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, DeviceCounts>;
    /// The devices [`Storage::device_counts`] counts as eligible, with keys.
    fn eligible_devices(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, Vec<CohortMember>>;

    /// The number of the federation's latest round (0 before the first).
    fn last_round_number(&self, federation_id: String) -> StorageFuture<'_, u64>;
    /// Opens a round with its cohort and first state. [`StorageError::Conflict`]
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
    /// [`Storage::append_round_entry`]).
    fn save_round(&self, update: RoundUpdate) -> StorageFuture<'_, RoundSummary>;
    /// Appends `update.state` to the round's journal instead of replacing
    /// its state: the entry the protocol replays onto the stored state to
    /// get the one at the new version ([`RoundRecord::journal`]). The same
    /// compare-and-swap as [`Storage::save_round`], and the stage must stay
    /// the one stored (a stage change is saved whole). With a commitment,
    /// also records it exactly as [`Storage::record_upload_commitment`]
    /// does, in the same transaction.
    fn append_round_entry(
        &self,
        update: RoundUpdate,
        commitment: Option<UploadCommitment>,
    ) -> StorageFuture<'_, RoundSummary>;
    /// Closes a round as aborted if its version is still `expected_version`.
    fn abort_round(&self, abort: RoundAbort) -> StorageFuture<'_, RoundSummary>;
    /// Publishes the next global adapter version and closes its round as
    /// published, in one transaction, if the round's version is still
    /// `expected_version`.
    fn publish_global(&self, publication: Publication) -> StorageFuture<'_, GlobalVersion>;
    /// The newest published version's metadata.
    fn latest_global(&self, federation_id: String) -> StorageFuture<'_, Option<GlobalVersion>>;
    /// The newest published version with its adapter bytes.
    fn latest_global_adapter(
        &self,
        federation_id: String,
    ) -> StorageFuture<'_, Option<(GlobalVersion, Vec<u8>)>>;
    /// The version a round published, if it published one.
    fn global_by_round(
        &self,
        federation_id: String,
        round: u64,
    ) -> StorageFuture<'_, Option<GlobalVersion>>;

    /// Appends an event to the log.
    fn append_event(&self, event: NewEvent) -> StorageFuture<'_, u64>;
    /// Events after `after_seq`, oldest first, at most `limit`.
    fn events(&self, after_seq: u64, limit: u32) -> StorageFuture<'_, Vec<Event>>;

    // --- The transparency log (see the module docs). ---

    /// Records that the server accepted a device's masked upload: appends
    /// its `round_participation` commitment to the transparency log and an
    /// `upload_accepted` event (so callers log no event of their own), and,
    /// when `update` is given, saves the round's next state exactly as
    /// [`Storage::save_round`] does, all in one transaction. Pass the state
    /// change that accepting the upload made whenever there is one: then
    /// the log holds the commitment if and only if the round holds the
    /// upload, whatever crashes.
    ///
    /// The round must be in flight and the device in its cohort
    /// ([`StorageError::NotFound`] / [`StorageError::Conflict`]). A device
    /// commits once per round: the same upload hash again appends nothing
    /// and returns the first receipt; another hash is a
    /// [`StorageError::Conflict`]. A lost compare-and-swap on `update`
    /// appends nothing.
    fn record_upload_commitment(
        &self,
        commitment: UploadCommitment,
        update: Option<RoundUpdate>,
    ) -> StorageFuture<'_, CommitmentReceipt>;
    /// The number of entries in the transparency log.
    fn log_size(&self) -> StorageFuture<'_, u64>;
    /// A signed head of the log as it is now: the latest stored one if it
    /// still covers every entry and verifies under `key`, otherwise a new
    /// one, signed, stamped `max(now_ms, latest timestamp)` and stored, so
    /// heads survive restarts and their timestamps never go back.
    fn signed_tree_head(&self, key: Arc<LogKey>, now_ms: u64) -> StorageFuture<'_, SignedTreeHead>;
    /// The inclusion proof of entry `index` in the tree of `size` entries
    /// ([`StorageError::OutOfRange`] past the log).
    fn log_inclusion_proof(&self, index: u64, size: u64) -> StorageFuture<'_, LogInclusion>;
    /// The inclusion proof of the first entry below `size` whose leaf hash
    /// is `leaf_hash`; `None` if there is none.
    fn log_inclusion_proof_by_hash(
        &self,
        leaf_hash: Hash,
        size: u64,
    ) -> StorageFuture<'_, Option<LogInclusion>>;
    /// The consistency proof from the tree of `old` entries to that of
    /// `new` ([`StorageError::OutOfRange`] if `old > new` or past the log).
    fn log_consistency_proof(&self, old: u64, new: u64) -> StorageFuture<'_, Vec<Hash>>;
    /// Entries `start..end` ([`StorageError::OutOfRange`] past the log).
    fn log_entries(&self, start: u64, end: u64) -> StorageFuture<'_, Vec<LogLeaf>>;
    /// The `adapter_published` entry of a federation's global `version`
    /// with its inclusion proof in the tree of `size` entries; `None` if
    /// the log has none ([`StorageError::OutOfRange`] if it is at or past
    /// `size`).
    fn log_adapter_entry(
        &self,
        federation_id: String,
        version: u64,
        size: u64,
    ) -> StorageFuture<'_, Option<(LogLeaf, LogInclusion)>>;
    /// The `device_enrolled` entries of the devices of `federation_id`
    /// with these public keys, among the first `size` entries, each with
    /// its inclusion proof in that tree; keys with none are left out.
    fn log_enrolment_entries(
        &self,
        federation_id: String,
        public_keys: Vec<[u8; 32]>,
        size: u64,
    ) -> StorageFuture<'_, Vec<(LogLeaf, LogInclusion)>>;
    /// Stores a device's latest verified head (replacing its previous one);
    /// the caller has checked the signature under the log key. Says
    /// whether the head is of this log (same root at its size); a head that
    /// is not is also a `log_head_conflict` event.
    fn record_gossip_head(&self, head: GossipHead) -> StorageFuture<'_, bool>;
    /// The heads devices of a federation posted, one per distinct tree
    /// (size and root), most recently posted first, at most `limit`.
    fn gossip_heads(
        &self,
        federation_id: String,
        limit: u32,
    ) -> StorageFuture<'_, Vec<SignedTreeHead>>;
    /// Stores devices' signed upload commitments (the caller has checked
    /// each signature under its device's enrolled key and that the round
    /// exists), keeping the first per federation, round and device, in one
    /// transaction; returns how many were new.
    fn record_gossip_commitments(
        &self,
        commitments: Vec<GossipCommitment>,
    ) -> StorageFuture<'_, u32>;
    /// A federation's stored commitments ordered by round, then device id,
    /// after `after` (a round and device id) when given, at most `limit`.
    fn gossip_commitments(
        &self,
        federation_id: String,
        after: Option<(u64, String)>,
        limit: u32,
    ) -> StorageFuture<'_, Vec<GossipCommitment>>;
}

/// A device's signed upload commitment, posted for gossip
/// (`hearth_fed::audit::commitment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipCommitment {
    /// The federation.
    pub federation_id: String,
    /// The round.
    pub round: u64,
    /// The device.
    pub device_id: String,
    /// SHA-256 of the upload bytes the device signed for.
    pub upload_sha256: [u8; 32],
    /// The round parameter digest it signed.
    pub round_digest: [u8; 32],
    /// Its Ed25519 signature, already checked under its enrolled key.
    pub signature: [u8; 64],
    /// When it was posted.
    pub at_ms: u64,
}

/// A device's latest verified signed tree head, posted for gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipHead {
    /// The device's federation.
    pub federation_id: String,
    /// The device.
    pub device_id: String,
    /// The head, its signature already checked under the log key.
    pub sth: SignedTreeHead,
    /// When it was posted.
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

/// An inclusion proof from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogInclusion {
    /// The entry's index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The audit path, nearest sibling first.
    pub path: Vec<Hash>,
}

/// One log entry's stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLeaf {
    /// Its index.
    pub index: u64,
    /// The exact bytes hashed into the log.
    pub leaf_data: Vec<u8>,
}

/// The event kinds the round lifecycle records, each in the same
/// transaction as the change it describes (and as the transparency log
/// entry recording it, whose index the detail's `log_index` names), for
/// the operator's audit trail.
pub mod event_kinds {
    /// A masked upload was accepted into a round's sum, written by
    /// [`Storage::record_upload_commitment`](super::Storage::record_upload_commitment)
    /// with the round's `round_participation` log entry (the one record of
    /// a participation: round code logs no event of its own). Detail:
    /// `upload_sha256` (hex SHA-256 of the exact binary upload bytes) and
    /// `log_index`; the event's `device_id` and `round` say who and which.
    pub const UPLOAD_ACCEPTED: &str = "upload_accepted";
    /// A round ended, published or aborted (with the closing change).
    /// Detail: `contributors` (updates in the aggregate; 0 when aborted),
    /// `aborted`, `version` (published) or `reason` (aborted), and the
    /// `log_index` of its `round_outcome` log entry.
    pub const ROUND_OUTCOME: &str = "round_outcome";
    /// A global adapter version was published (with the publication).
    /// Detail: `version`, `round`, `sha256` (hex, of the safetensors
    /// bytes), `size_bytes`, `contributors`, `epsilon` (the round's ε at
    /// `delta`; `null` when the round added no noise), `delta`, and the
    /// `log_index` / `outcome_log_index` of its log entries.
    pub const GLOBAL_PUBLISHED: &str = "global_published";
}

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A compare-and-swap lost, or a uniqueness rule refused the change:
    /// reload and decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The thing to change does not exist (or is no longer in flight).
    #[error("not found: {0}")]
    NotFound(String),
    /// The invite cannot be used.
    #[error("invite refused: {0}")]
    InviteRefused(InviteRefusal),
    /// The public key is already enrolled in this federation.
    #[error("this public key is already enrolled in the federation")]
    KeyAlreadyEnrolled,
    /// Stored data does not decode.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The database folder could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database was written by a newer hearth-server.
    #[error(
        "{path} was written by a newer hearth-server (schema {found}, this build knows up to {known})"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Schema version found.
        found: usize,
        /// Newest this build knows.
        known: usize,
    },
    /// SQLite refused a statement.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The blocking task running the call died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A log position or range beyond the log, or `old > new`.
    #[error("{0}")]
    OutOfRange(String),
    /// The change carries a value the log cannot record (a negative or
    /// non-finite epsilon, a delta outside `[0, 1]`).
    #[error("invalid change: {0}")]
    Invalid(String),
}

/// Why an invite was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteRefusal {
    /// No invite has this token.
    #[error("unknown invite")]
    Unknown,
    /// The invite was already used to enrol a device.
    #[error("invite already used")]
    Used,
    /// The invite's time ran out.
    #[error("invite expired")]
    Expired,
}

/// A federation's configuration as the operator gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationSync {
    /// Federation id.
    pub id: String,
    /// Canonical JSON of its `[[federation]]` entry.
    pub config_json: String,
    /// When.
    pub at_ms: u64,
}

/// A stored federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FederationRecord {
    /// Federation id.
    pub id: String,
    /// Canonical JSON of its configuration as last loaded.
    pub config_json: String,
    /// SHA-256 of `config_json`.
    pub config_sha256: [u8; 32],
    /// When first loaded.
    pub created_at_ms: u64,
    /// When the configuration last changed.
    pub updated_at_ms: u64,
    /// Start of the current gathering period (no round in flight since).
    pub gathering_since_ms: u64,
}

/// An invite to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// Federation the invite admits to.
    pub federation_id: String,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// When created.
    pub created_at_ms: u64,
    /// When it stops working.
    pub expires_at_ms: u64,
}

/// A verified enrolment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// SHA-256 of the presented invite token.
    pub token_sha256: [u8; 32],
    /// The new device's id.
    pub device_id: String,
    /// The device's Ed25519 public key.
    pub public_key: [u8; 32],
    /// When.
    pub at_ms: u64,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// Device id.
    pub id: String,
    /// The federation it enrolled in.
    pub federation_id: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// When it enrolled.
    pub enrolled_at_ms: u64,
    /// Its last check-in.
    pub last_checkin_ms: Option<u64>,
    /// Its last check-in saying it could take part.
    pub last_eligible_ms: Option<u64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<u64>,
}

/// A check-in to note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    /// The device.
    pub device_id: String,
    /// When.
    pub at_ms: u64,
    /// Whether the device could take part in a round now.
    pub eligible: bool,
}

/// A federation's population.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeviceCounts {
    /// Non-revoked devices.
    pub active: u64,
    /// Of those, eligible recently.
    pub eligible: u64,
}

/// A device in a round's cohort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CohortMember {
    /// Device id.
    pub device_id: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
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
    /// Entries appended since ([`Storage::append_round_entry`]), oldest
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

/// A round's result to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// Federation id.
    pub federation_id: String,
    /// The round that produced it.
    pub round: u64,
    /// The round state version the result was computed from.
    pub expected_version: u64,
    /// The global version it becomes: must be the federation's last plus
    /// one (the statement signed for it names this number).
    pub version: u64,
    /// Devices whose updates are in it.
    pub contributors: u64,
    /// The round's ε at `delta`: finite and at least 0, or `None` when the
    /// round added no noise and so has no bound. The transparency log
    /// records `None` as an epsilon of `+∞` (see
    /// [`hearth_ledger::LogEntry::AdapterPublished`]).
    pub epsilon: Option<f64>,
    /// The δ `epsilon` holds with (the federation's; in `[0, 1]`).
    pub delta: f64,
    /// The new global adapter, serialized.
    pub adapter: Vec<u8>,
    /// Facts about it for clients (format, clients aggregated, ...).
    pub metadata: serde_json::Value,
    /// When.
    pub at_ms: u64,
}

/// A published global adapter version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlobalVersion {
    /// Federation id.
    pub federation_id: String,
    /// 1 for the first publication, then +1.
    pub version: u64,
    /// The round that produced it.
    pub round: u64,
    /// SHA-256 of the adapter bytes.
    pub sha256: [u8; 32],
    /// Size of the adapter bytes.
    pub size_bytes: u64,
    /// Facts about it.
    pub metadata: serde_json::Value,
    /// When.
    pub published_at_ms: u64,
}

/// An event to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// When.
    pub at_ms: u64,
    /// Federation concerned, if any.
    pub federation_id: Option<String>,
    /// Device concerned, if any.
    pub device_id: Option<String>,
    /// Round concerned, if any.
    pub round: Option<u64>,
    /// What happened, `snake_case`.
    pub kind: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// A logged event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Position in the log, increasing.
    pub seq: u64,
    /// When.
    pub at_ms: u64,
    /// Federation concerned, if any.
    pub federation_id: Option<String>,
    /// Device concerned, if any.
    pub device_id: Option<String>,
    /// Round concerned, if any.
    pub round: Option<u64>,
    /// What happened.
    pub kind: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// Turns "a uniqueness rule refused this" into [`StorageError::Conflict`]
/// (for the SQLite storage and its transparency log alike).
fn conflict_on_constraint(what: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StorageError::Conflict(format!("{what}: {e}"))
        }
        _ => StorageError::Sqlite(e),
    }
}
