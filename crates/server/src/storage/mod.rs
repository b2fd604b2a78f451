//! Everything the server remembers, behind one trait per aggregate
//! ([`FederationStore`], [`DeviceStore`], [`RoundStore`], [`PublishStore`],
//! [`EventStore`], [`LogStore`], [`GossipStore`]), combined into
//! [`Storage`]. Each aggregate's trait and records live in their own file;
//! the SQLite implementation is split the same way under `sqlite/`.
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
//! - round state is opaque bytes plus a [`Stage`](hearth_fed::Stage) and a version counter, and
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
//! - a `federation_config` entry when [`FederationStore::sync_federation`] creates
//!   or changes a federation (its id and the SHA-256 of the canonical
//!   configuration JSON);
//! - a `device_enrolled` entry (federation, device id, public key) when
//!   [`DeviceStore::enrol`] admits a device, and a `device_revoked` entry when
//!   [`DeviceStore::revoke_device`] revokes one (the first time); devices of a
//!   database from before these entries are logged when it is opened;
//! - a `round_opened` entry when [`RoundStore::open_round`] opens a round
//!   whose protocol states its parameters ([`NewRound::parameters`]: the
//!   SecAgg+ `RoundInfo`'s digest and its canonical encoding), before any
//!   device can be sent them;
//! - a `round_participation` commitment when the server accepts a device's
//!   masked upload: round code calls [`RoundStore::record_upload_commitment`];
//! - a `round_outcome` when [`RoundStore::abort_round`] aborts a round
//!   (contributors 0: nothing was aggregated) or
//!   [`PublishStore::publish_global`] completes one;
//! - an `adapter_published` entry in [`PublishStore::publish_global`], from the
//!   [`Publication`]'s global version, contributors, epsilon and delta (a
//!   round without noise has no epsilon and is logged with `+∞`, "no
//!   bound", never with a number that could read as a guarantee).
//!
//! A change that fails appends nothing, and nothing is appended without
//! its change. Devices verify the log with `hearth_fed::audit`.
//!
//! Devices also gossip the heads they verified
//! ([`GossipStore::record_gossip_head`], [`GossipStore::gossip_heads`]): one per
//! device, only heads the log key signed, so devices shown two histories
//! can tell. A posted head that is not of this server's own log is an
//! event (`log_head_conflict`) for the operator. With their heads, devices
//! post their signed upload commitments
//! ([`GossipStore::record_gossip_commitments`], [`GossipStore::gossip_commitments`]):
//! one per device and round, so every device can hold the log's
//! participation entries to the devices' own word.

mod commitments;
mod devices;
mod error;
mod events;
mod federations;
mod log;
mod publish;
mod rounds;
mod sqlite;
mod transparency;

use std::future::Future;
use std::pin::Pin;

pub use devices::{
    Checkin, CohortMember, DeviceCounts, DeviceRecord, DeviceStore, Enrolment, NewInvite,
};
use error::conflict_on_constraint;
pub use error::{InviteRefusal, StorageError};
pub use events::{Event, EventStore, NewEvent, event_kinds};
pub use federations::{FederationRecord, FederationStore, FederationSync};
pub use publish::{GlobalVersion, Publication, PublishStore};
pub use rounds::{
    CommitmentReceipt, NewRound, RoundAbort, RoundOutcome, RoundParameters, RoundRecord,
    RoundStore, RoundSummary, RoundUpdate, UploadCommitment,
};
pub use sqlite::{DATABASE_FILE, SqliteStorage, bench_sqlite_log};
pub use transparency::{
    GossipCommitment, GossipHead, GossipStore, LogInclusion, LogLeaf, LogStore,
};

/// What every storage method returns.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// The server's persistent state: every aggregate's store, and a health
/// check. What the app state holds (`Arc<dyn Storage>`); a trait object of
/// it answers every store's methods.
pub trait Storage:
    FederationStore + DeviceStore + RoundStore + PublishStore + EventStore + LogStore + GossipStore
{
    /// Cheap round trip proving the store answers (health checks).
    fn ping(&self) -> StorageFuture<'_, ()>;
}

/// Every storage trait, for code that calls them on a concrete store
/// (`use hearth_server::storage::prelude::*`).
pub mod prelude {
    pub use super::{
        DeviceStore, EventStore, FederationStore, GossipStore, LogStore, PublishStore, RoundStore,
        Storage,
    };
}
