//! The federation's global adapter on the server: which version is current,
//! in the flat form rounds add updates to, and in the signed form devices
//! download.
//!
//! Version 0 is never stored: it is a pure function of the federation's
//! name and adapter layout
//! ([`AdapterLayout::initial`](hearth_fed::global::AdapterLayout::initial),
//! PEFT's LoRA initialisation), so the server recomputes it (and its
//! signature, which Ed25519 makes deterministic) whenever no round has
//! published yet. Every later version is stored by
//! [`PublishStore::publish_global`](crate::storage::PublishStore::publish_global) together with its signed
//! [`GlobalStatement`], in the same transaction that closes its round.

use std::sync::Arc;

use ed25519_dalek::Signature;
use hearth_fed::FederationId;
use hearth_fed::global::{AdapterError, GlobalStatement, adapter_sha256};

use crate::config::FederationConfig;
use crate::identity::ServerIdentity;
use crate::storage::{Storage, StorageError};

/// Why the current global adapter could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored adapter does not fit the configured layout (the
    /// operator changed the adapter's shape under a running federation).
    #[error("global adapter: {0}")]
    Adapter(#[from] AdapterError),
    /// A stored publication lacks its statement or signature.
    #[error("stored publication of version {version} is incomplete: {what}")]
    Incomplete {
        /// The version.
        version: u64,
        /// What is missing.
        what: &'static str,
    },
}

/// The version rounds add to, as a flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentGlobal {
    /// Its version (0: the initial adapter).
    pub version: u64,
    /// Its parameters in layout order.
    pub params: Vec<f32>,
}

/// What finishing a round needs: the version it updates and the key that
/// signs the result.
#[derive(Debug)]
pub struct PublishContext {
    /// The current version.
    pub current: CurrentGlobal,
    /// The server's signing key.
    pub identity: Arc<ServerIdentity>,
}

/// A version as served: bytes, statement and signature.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedGlobal {
    /// What the server signed.
    pub statement: GlobalStatement,
    /// Its signature.
    pub signature: Signature,
    /// The safetensors file.
    pub bytes: Vec<u8>,
    /// When published (the federation's creation for version 0).
    pub published_at_ms: u64,
}

/// Metadata keys of a stored publication.
pub const STATEMENT_KEY: &str = "statement";
/// The base64url signature of the statement.
pub const SIGNATURE_KEY: &str = "signature";

/// The current version, flat, for a round to update.
pub async fn current(
    storage: &dyn Storage,
    federation: &FederationConfig,
) -> Result<CurrentGlobal, GlobalError> {
    let layout = federation.adapter_layout()?;
    match storage.latest_global_adapter(federation.id.clone()).await? {
        Some((meta, bytes)) => Ok(CurrentGlobal {
            version: meta.version,
            params: layout.from_safetensors(&bytes)?,
        }),
        None => Ok(CurrentGlobal {
            version: 0,
            params: layout.initial(&FederationId::from_name(&federation.id)),
        }),
    }
}

/// [`current`] with the signing key.
pub async fn publish_context(
    storage: &dyn Storage,
    federation: &FederationConfig,
    identity: &Arc<ServerIdentity>,
) -> Result<PublishContext, GlobalError> {
    Ok(PublishContext {
        current: current(storage, federation).await?,
        identity: Arc::clone(identity),
    })
}

/// The latest version in its served form.
pub async fn latest(
    storage: &dyn Storage,
    federation: &FederationConfig,
    identity: &ServerIdentity,
) -> Result<ServedGlobal, GlobalError> {
    if let Some((meta, bytes)) = storage.latest_global_adapter(federation.id.clone()).await? {
        let incomplete = |what| GlobalError::Incomplete {
            version: meta.version,
            what,
        };
        let statement: GlobalStatement = meta
            .metadata
            .get(STATEMENT_KEY)
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| incomplete("statement"))?;
        let signature: [u8; 64] = meta
            .metadata
            .get(SIGNATURE_KEY)
            .and_then(|v| v.as_str())
            .and_then(|s| crate::auth::decode(s, "signature").ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| incomplete("signature"))?;
        if statement.adapter_sha256 != meta.sha256 || statement.version != meta.version {
            return Err(incomplete("a statement matching the stored adapter"));
        }
        return Ok(ServedGlobal {
            statement,
            signature: Signature::from_bytes(&signature),
            bytes,
            published_at_ms: meta.published_at_ms,
        });
    }
    let layout = federation.adapter_layout()?;
    let bytes = layout.to_safetensors(&layout.initial(&FederationId::from_name(&federation.id)))?;
    let statement = GlobalStatement {
        federation: federation.id.clone(),
        version: 0,
        round: 0,
        adapter_sha256: adapter_sha256(&bytes),
        contributors: 0,
        epsilon: None,
    };
    let published_at_ms = storage
        .federation(federation.id.clone())
        .await?
        .map_or(0, |f| f.created_at_ms);
    Ok(ServedGlobal {
        signature: identity.sign(&statement),
        statement,
        bytes,
        published_at_ms,
    })
}
