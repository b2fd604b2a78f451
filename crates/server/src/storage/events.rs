//! The operator's event log ([`EventStore`]), its records and the event
//! kinds the round lifecycle writes.

use serde::Serialize;

use super::StorageFuture;

/// The operator's append-only event log (not the transparency log): what
/// happened, when, to whom.
pub trait EventStore: Send + Sync + 'static {
    /// Appends an event to the log.
    fn append_event(&self, event: NewEvent) -> StorageFuture<'_, u64>;

    /// Events after `after_seq`, oldest first, at most `limit`.
    fn events(&self, after_seq: u64, limit: u32) -> StorageFuture<'_, Vec<Event>>;
}

/// The event kinds the round lifecycle records, each in the same
/// transaction as the change it describes (and as the transparency log
/// entry recording it, whose index the detail's `log_index` names), for
/// the operator's audit trail.
pub mod event_kinds {
    /// A masked upload was accepted into a round's sum, written by
    /// [`RoundStore::record_upload_commitment`](crate::storage::RoundStore::record_upload_commitment)
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
