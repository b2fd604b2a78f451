//! `hearth-server`: the federation server's infrastructure.
//!
//! Devices enrol with a one-time invite and an Ed25519 key
//! ([`routes`]: `POST /v1/enrol`), then sign every request ([`auth`]: the
//! canonical string both sides build, checked from the request head before
//! any body byte is read; [`replay`]: each signed request is accepted
//! once). Every connection and request first passes the admission limits
//! ([`limits`]: per address and in all, with time-outs), so clients
//! without a key cannot tie the server up. They check in ([`checkin`]) and are either told to join
//! the round in flight or when to come back, with the delay steered by the
//! federation's state and size ([`pace`]). A round opens when enough
//! eligible devices are around; [`cohort`] decides and draws its members.
//!
//! Everything the server knows lives behind [`Storage`] (SQLite by
//! default, [`SqliteStorage`]): devices, invites, federations, rounds as
//! opaque protocol state with a compare-and-swap version, published global
//! adapters, and an append-only event log. Rounds run hearth-fed's SecAgg+
//! ([`secagg::SecAggRounds`], a [`rounds::RoundProtocol`]) through the
//! signed round endpoints, each round kept decoded in memory and stepped
//! off the async runtime ([`live::LiveRounds`]), every step persisted
//! (journaled) before it is acknowledged; stage deadlines close stages without the
//! devices that dropped out; on a restart, rounds in flight are resumed or
//! aborted by one rule ([`rounds::recovery_rule`]). A finished round's mean
//! update is applied to the global adapter ([`adapter`]) and the new
//! version is signed with the server's key ([`identity`]).
//!
//! Every federation configuration, accepted upload, round outcome and
//! published adapter is also appended, in the same transaction, to a
//! transparency log (RFC 9162 Merkle tree, `hearth-ledger`) whose tree
//! heads are signed with the server's log key ([`log`]) and served with
//! proofs under `/v1/log` for devices to check (`hearth_fed::audit`).
//!
//! The operator describes federations in a TOML file ([`Config`]) and
//! drives the server with the `hearth-server` binary ([`ops`]); it serves
//! HTTPS with a generated self-signed certificate (pinned by fingerprint)
//! or the operator's own ([`tls`]).
//!
//! ```
//! use hearth_server::auth::{self, RequestToSign};
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let request = RequestToSign {
//!     device_id: "dev_example",
//!     method: "POST",
//!     path: "/v1/federations/notes/checkin",
//!     timestamp_ms: 1_700_000_000_000,
//!     body: b"{}",
//! };
//! let headers = auth::sign_request(&key, &request).unwrap();
//! auth::verify_request(&key.verifying_key(), &request, &headers.signature, 1_700_000_000_500)
//!     .unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adapter;
pub mod auth;
pub mod checkin;
pub mod cohort;
pub mod config;
pub mod error;
mod extract;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod live;
pub mod log;
pub mod ops;
pub mod pace;
pub mod replay;
pub mod rounds;
pub mod routes;
pub mod secagg;
pub mod server;
pub mod sim;
pub mod storage;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;

use std::sync::Arc;

pub use checkin::{CheckinRequest, CheckinResponse};
pub use config::{Config, ConfigError, FederationConfig};
pub use error::{AppError, Error};
pub use extract::{AppJson, SignedRequest};
pub use hearth_fed::Stage;
/// The federation's clock (milliseconds since the Unix epoch), defined once
/// in hearth-fed so the server stamps time as its devices do.
pub use hearth_fed::clock::now_ms;
pub use identity::ServerIdentity;
pub use replay::{ReplayGuard, ReplayLimits};
pub use rounds::RoundProtocol;
pub use routes::app;
pub use secagg::SecAggRounds;
pub use server::{RunningServer, start};
pub use storage::{SqliteStorage, Storage, StorageError};

/// What every handler shares: cheap to clone (all `Arc`s), no lock held
/// across an `.await`.
#[derive(Clone)]
pub struct AppState {
    /// The operator's configuration.
    pub config: Arc<Config>,
    /// Persistent state.
    pub storage: Arc<dyn Storage>,
    /// The in-flight rounds, decoded, and the protocol they run.
    pub rounds: Arc<live::LiveRounds>,
    /// Signed requests seen recently.
    pub replay: Arc<ReplayGuard>,
    /// The key published global adapters are signed with.
    pub identity: Arc<ServerIdentity>,
    /// The transparency log's signing key (see [`log`]).
    pub log_key: Arc<log::LogKey>,
}

impl AppState {
    /// A configured federation, or 404.
    pub fn federation(&self, id: &str) -> Result<&FederationConfig, AppError> {
        self.config
            .federation(id)
            .ok_or_else(|| AppError::NotFound(format!("no federation {id:?}")))
    }
}
