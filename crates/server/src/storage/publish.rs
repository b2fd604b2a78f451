//! Publication of global adapter versions ([`PublishStore`]) and its records.

use serde::Serialize;

use super::StorageFuture;

/// Global adapter versions: publishing one closes its round in the same
/// transaction, and the published versions are read back.
pub trait PublishStore: Send + Sync + 'static {
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
