//! The operator's commands as library calls (the binary only parses
//! arguments and prints): initialise a server folder, issue invites, list
//! and revoke devices, report status. Each opens the database next to a
//! possibly running server (WAL lets both work) and first brings the stored
//! federations in line with the configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{CONFIG_FILE, Config, EXAMPLE_CONFIG};
use crate::error::Error;
use crate::identity::ServerIdentity;
use crate::log::LogKey;
use crate::storage::prelude::*;
use crate::storage::{
    DeviceCounts, DeviceRecord, FederationRecord, FederationSync, GlobalVersion, NewInvite,
    RoundSummary, SqliteStorage, Storage,
};
use crate::tls::{self, TlsPaths};
use crate::{auth, ids, now_ms};

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The configuration file.
    pub config_path: PathBuf,
    /// Whether it was written now (else it existed and was kept).
    pub wrote_config: bool,
    /// Where the certificate and key are.
    pub tls: TlsPaths,
    /// Whether a self-signed pair was generated now.
    pub generated_certificate: bool,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// The database file.
    pub database: PathBuf,
    /// The signing key's file.
    pub server_key_path: PathBuf,
    /// Whether the signing key was generated now.
    pub generated_server_key: bool,
    /// The public key devices pin (base64url).
    pub server_key: String,
    /// Whether the transparency log key was generated now.
    pub generated_log_key: bool,
    /// The log's public key, 64 hex digits: devices pin it at join.
    pub log_public_key: String,
}

/// Prepares a server folder: an example configuration unless one exists, a
/// self-signed certificate unless one exists (or the operator's is
/// configured), the transparency log key unless one exists, and the
/// database with the configured federations.
pub async fn init(dir: &Path) -> Result<InitReport, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let config_path = dir.join(CONFIG_FILE);
    let wrote_config = !config_path.exists();
    if wrote_config {
        std::fs::write(&config_path, EXAMPLE_CONFIG).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
    }
    let config = Config::load(&config_path)?;
    let paths = TlsPaths::from_config(&config);
    let generated_certificate = tls::ensure_self_signed(&paths, &config.server.tls.names)?;
    let loaded = tls::load(&paths)?;
    let generated_server_key = ServerIdentity::ensure(&config.server.data_dir)?;
    let server_key = ServerIdentity::load(&config.server.data_dir)?.public_key_base64();
    let (log_key, generated_log_key) = LogKey::ensure(&config.server.data_dir)?;
    open_storage(&config).await?;
    Ok(InitReport {
        config_path,
        wrote_config,
        tls: paths,
        generated_certificate,
        fingerprint: loaded.fingerprint,
        database: config.database_path(),
        server_key_path: ServerIdentity::path(&config.server.data_dir),
        generated_server_key,
        server_key,
        generated_log_key,
        log_public_key: log_key.public_hex(),
    })
}

/// The public half of the server's signing key (base64url), as devices
/// pin it; `None` before `init` or the first start made it.
pub fn server_key(config: &Config) -> Result<Option<String>, Error> {
    if !ServerIdentity::path(&config.server.data_dir).exists() {
        return Ok(None);
    }
    Ok(Some(
        ServerIdentity::load(&config.server.data_dir)?.public_key_base64(),
    ))
}

/// Opens the configured database and syncs the federations into it.
pub async fn open_storage(config: &Config) -> Result<SqliteStorage, Error> {
    let storage = SqliteStorage::open(&config.server.data_dir)?;
    sync_federations(&storage, config, now_ms()).await?;
    Ok(storage)
}

/// Stores each configured federation's settings (logging changes).
pub async fn sync_federations(
    storage: &dyn Storage,
    config: &Config,
    at_ms: u64,
) -> Result<Vec<FederationRecord>, Error> {
    let mut records = Vec::with_capacity(config.federations.len());
    for federation in &config.federations {
        let config_json = serde_json::to_string(federation).map_err(|e| {
            Error::Storage(crate::storage::StorageError::Corrupt(format!(
                "federation {} does not serialize: {e}",
                federation.id
            )))
        })?;
        records.push(
            storage
                .sync_federation(FederationSync {
                    id: federation.id.clone(),
                    config_json,
                    at_ms,
                })
                .await?,
        );
    }
    Ok(records)
}

/// A freshly issued invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedInvite {
    /// The token, base64url: show it once, it is not stored.
    pub token: String,
    /// The federation it admits to.
    pub federation_id: String,
    /// When it stops working.
    pub expires_at_ms: u64,
}

/// Issues a one-time invite to `federation`, valid for `valid_for`.
pub async fn invite(
    config: &Config,
    federation: &str,
    valid_for: Duration,
) -> Result<IssuedInvite, Error> {
    if config.federation(federation).is_none() {
        return Err(Error::UnknownFederation(federation.to_owned()));
    }
    let storage = open_storage(config).await?;
    let token = ids::new_invite_token();
    let now = now_ms();
    let expires_at_ms =
        now.saturating_add(u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX));
    storage
        .create_invite(NewInvite {
            federation_id: federation.to_owned(),
            token_sha256: auth::invite_token_hash(&token),
            created_at_ms: now,
            expires_at_ms,
        })
        .await?;
    Ok(IssuedInvite {
        token: auth::encode(&token),
        federation_id: federation.to_owned(),
        expires_at_ms,
    })
}

/// Enrolled devices, of one federation or all.
pub async fn devices(
    config: &Config,
    federation: Option<&str>,
) -> Result<Vec<DeviceRecord>, Error> {
    let storage = open_storage(config).await?;
    Ok(storage.devices(federation.map(str::to_owned)).await?)
}

/// Revokes a device; `None` if no device has that id.
pub async fn revoke(config: &Config, device: &str) -> Result<Option<DeviceRecord>, Error> {
    let storage = open_storage(config).await?;
    Ok(storage.revoke_device(device.to_owned(), now_ms()).await?)
}

/// One federation's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FederationStatus {
    /// Federation id.
    pub id: String,
    /// Whether the configuration still lists it.
    pub configured: bool,
    /// Its devices (eligible: within the check-in window).
    pub devices: DeviceCounts,
    /// Its round in flight.
    pub round_in_flight: Option<RoundSummary>,
    /// Its latest published global adapter.
    pub latest_global: Option<GlobalVersion>,
}

/// Every stored federation's state.
pub async fn status(config: &Config) -> Result<Vec<FederationStatus>, Error> {
    let storage = open_storage(config).await?;
    let now = now_ms();
    let mut report = Vec::new();
    for record in storage.federations().await? {
        let configured = config.federation(&record.id);
        let window = configured.map_or(0, |f| crate::checkin::eligibility_window_ms(&f.checkin));
        report.push(FederationStatus {
            devices: storage
                .device_counts(record.id.clone(), now.saturating_sub(window))
                .await?,
            round_in_flight: storage.round_in_flight(record.id.clone()).await?,
            latest_global: storage.latest_global(record.id.clone()).await?,
            configured: configured.is_some(),
            id: record.id,
        });
    }
    Ok(report)
}
