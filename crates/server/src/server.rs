//! Starting and stopping the HTTPS server: certificate, signing key, log
//! key, storage, start-up recovery of rounds in flight, the listener, the
//! deadline sweeper (which closes expired stages through the protocol), and
//! graceful shutdown.
//!
//! The listener serves HTTP/1.1 only (the one protocol ALPN offers), so a
//! connection carries one request at a time. Each connection passes the
//! connection limits ([`ConnectionLimits`]) before its TLS handshake; the
//! handshake, every request head, and every idle gap between requests must
//! each take less than `header_timeout_secs`, and a request head is held
//! in at most [`MAX_HEAD_BUFFER`] bytes, so a connection that trickles or
//! says nothing is closed and costs little while it lasts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Error;
use crate::identity::ServerIdentity;
use crate::limits::ConnectionLimits;
use crate::live::LiveRounds;
use crate::log::LogKey;
use crate::replay::{ReplayGuard, ReplayLimits};
use crate::rounds::{self, RecoveryReport, SharedProtocol};
use crate::storage::{SqliteStorage, Storage};
use crate::tls::{self, TlsPaths};
use crate::{AppState, app, now_ms, ops};

/// How often rounds are checked against their stage deadlines.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Largest read buffer of a connection, and so the most bytes a request
/// head may take (hyper's default is about 400 KB; Hearth's heads are a
/// few hundred bytes). Bodies stream through it in pieces.
pub const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// A server accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    fingerprint: String,
    log_public_key: String,
    recovery: RecoveryReport,
    handle: Handle<SocketAddr>,
    serve: JoinHandle<std::io::Result<()>>,
    sweeper: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Starts serving `config` over HTTPS with round protocol `protocol`.
///
/// Generates the self-signed certificate if it is configured and missing,
/// opens the database, syncs federations, applies the restart rule to
/// rounds found in flight ([`rounds::recovery_rule`]), then binds. Listening
/// on port 0 picks a free port: see [`RunningServer::local_addr`].
pub async fn start(config: Config, protocol: SharedProtocol) -> Result<RunningServer, Error> {
    let paths = TlsPaths::from_config(&config);
    if tls::ensure_self_signed(&paths, &config.server.tls.names)? {
        tracing::info!(cert = %paths.cert.display(), "generated a self-signed certificate");
    }
    let tls = tls::load(&paths)?;
    if ServerIdentity::ensure(&config.server.data_dir)? {
        tracing::info!("generated the server's signing key");
    }
    let identity = Arc::new(ServerIdentity::load(&config.server.data_dir)?);
    let (log_key, generated) = LogKey::ensure(&config.server.data_dir)?;
    if generated {
        tracing::info!(public_key = %log_key.public_hex(), "generated the transparency log key");
    }
    let log_key = Arc::new(log_key);

    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&config.server.data_dir)?);
    let started_ms = now_ms();
    ops::sync_federations(&*storage, &config, started_ms).await?;
    let recovery = rounds::recover_rounds(&*storage, &*protocol, started_ms).await?;
    for (federation, round) in &recovery.resumed {
        tracing::info!(%federation, round, "resuming round");
    }
    for (federation, round, reason) in &recovery.aborted {
        tracing::warn!(%federation, round, %reason, "aborted round found in flight at start");
    }

    let listen = config.server.listen;
    let header_timeout = Duration::from_secs(config.server.header_timeout_secs);
    let connections = ConnectionLimits::new(
        config.server.max_connections,
        config.server.max_connections_per_ip,
    );
    let listener = std::net::TcpListener::bind(listen).map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    let bind_error = |source| Error::Bind {
        addr: listen,
        source,
    };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;

    let state = AppState {
        config: Arc::new(config),
        storage: Arc::clone(&storage),
        rounds: Arc::new(LiveRounds::new(protocol)),
        replay: Arc::new(ReplayGuard::new(ReplayLimits::default(), started_ms)),
        identity,
        log_key: Arc::clone(&log_key),
    };
    let handle = Handle::new();
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls.config))
        .handshake_timeout(header_timeout)
        .acceptor(connections);
    let mut server = axum_server::from_tcp(listener)
        .map_err(bind_error)?
        .acceptor(acceptor)
        .http1_only()
        .first_request_timeout(header_timeout)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BUFFER);
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let serve = tokio::spawn(server.serve(service));

    let (stop, stopped) = watch::channel(false);
    let sweeper = tokio::spawn(sweep(state, stopped));
    tracing::info!(%addr, fingerprint = %tls.fingerprint, "serving");
    Ok(RunningServer {
        addr,
        fingerprint: tls.fingerprint,
        log_public_key: log_key.public_hex(),
        recovery,
        handle,
        serve,
        sweeper,
        stop,
    })
}

/// Closes stages past their deadline until told to stop.
async fn sweep(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tick.tick() => {
                let closed = rounds::close_expired_stages(
                    &*state.storage,
                    &state.rounds,
                    &state.config,
                    &state.identity,
                    now_ms(),
                )
                .await;
                match closed {
                    Ok(closed) => {
                        for c in closed {
                            tracing::info!(
                                federation = %c.federation_id,
                                round = c.round,
                                stage = %c.stage,
                                result = ?c.result,
                                "stage deadline passed; stage closed"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "deadline sweep failed"),
                }
            }
        }
    }
}

impl RunningServer {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 fingerprint of the served certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The transparency log's public key, 64 hex digits: devices pin it.
    pub fn log_public_key(&self) -> &str {
        &self.log_public_key
    }

    /// What start-up recovery did with rounds found in flight.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Serves until `signal` resolves (or the server fails), then shuts
    /// down gracefully, giving open requests up to `grace` to finish.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> Result<(), Error> {
        tokio::select! {
            () = signal => self.shutdown(grace).await,
            finished = &mut self.serve => {
                let _ = self.stop.send(true);
                let _ = self.sweeper.await;
                match finished {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Error::Serve(e)),
                    Err(e) => Err(Error::Serve(std::io::Error::other(e))),
                }
            }
        }
    }

    /// Stops accepting connections, lets open requests finish for up to
    /// `grace`, and stops the sweeper. Storage is closed once the last
    /// request holding it is done.
    pub async fn shutdown(self, grace: Duration) -> Result<(), Error> {
        let _ = self.stop.send(true);
        self.handle.graceful_shutdown(Some(grace));
        let served = self.serve.await;
        let _ = self.sweeper.await;
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Serve(e)),
            Err(e) => Err(Error::Serve(std::io::Error::other(e))),
        }
    }
}
