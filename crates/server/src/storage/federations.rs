//! Federations: the operator's configurations as stored ([`FederationStore`])
//! and the records it reads and writes.

use serde::Serialize;

use super::StorageFuture;

/// Federations as the operator configured them: each change to one is a
/// `federation_config` entry in the transparency log, in its transaction.
pub trait FederationStore: Send + Sync + 'static {
    /// Creates or updates a federation from the operator's configuration
    /// (canonical JSON); logs an event when the configuration changed.
    fn sync_federation(&self, sync: FederationSync) -> StorageFuture<'_, FederationRecord>;

    /// One federation.
    fn federation(&self, id: String) -> StorageFuture<'_, Option<FederationRecord>>;

    /// All federations, by id.
    fn federations(&self) -> StorageFuture<'_, Vec<FederationRecord>>;
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
