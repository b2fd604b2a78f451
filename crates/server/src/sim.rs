//! A server in this process, for simulations and demos (`hearth sim`): the
//! same [`start`](crate::start) the binary runs, with its own Tokio runtime
//! so that synchronous callers (threads of blocking `FedClient`s) can drive
//! it, serving HTTPS on loopback with the self-signed certificate it
//! generates in its data folder.
//!
//! ```no_run
//! # fn main() -> Result<(), hearth_server::Error> {
//! let dir = std::path::Path::new("/tmp/hearth-sim-server");
//! # let config_text = "";
//! let server = hearth_server::sim::LocalServer::start(dir, config_text)?;
//! let token = server.invite("notes")?;
//! println!("{} {token}", server.url());
//! server.shutdown()?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{CONFIG_FILE, Config};
use crate::error::Error;
use crate::server::RunningServer;
use crate::tls::TlsPaths;
use crate::{SecAggRounds, ops};

/// How long invites issued by [`LocalServer::invite`] stay valid.
const INVITE_VALIDITY: Duration = Duration::from_secs(3600);

/// A running server owned by the caller; dropped, it stops abruptly.
pub struct LocalServer {
    config: Config,
    url: String,
    cert_pem: String,
    log_public_key: String,
    // `running` must go before `runtime`: its tasks live on the runtime.
    running: Option<RunningServer>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LocalServer {
    /// Writes `config_text` to `dir` (its relative paths are relative to
    /// `dir`), then starts the SecAgg+ server it describes. Listen on
    /// `127.0.0.1:0` to get a free port; the URL is then
    /// `https://127.0.0.1:PORT`.
    pub fn start(dir: &Path, config_text: &str) -> Result<LocalServer, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(CONFIG_FILE);
        std::fs::write(&path, config_text).map_err(io(&path))?;
        let config = Config::load(&path)?;
        // Two workers: enough for loopback clients, and a simulation's
        // CPUs are better spent training.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hearth-sim-server")
            .enable_all()
            .build()
            .map_err(io(dir))?;
        let running = runtime.block_on(crate::start(config.clone(), Arc::new(SecAggRounds)))?;
        let cert = TlsPaths::from_config(&config).cert;
        let cert_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
        let host = running.local_addr().ip();
        let url = format!("https://{host}:{}", running.local_addr().port());
        Ok(LocalServer {
            config,
            url,
            cert_pem,
            log_public_key: running.log_public_key().to_owned(),
            running: Some(running),
            runtime: Some(runtime),
        })
    }

    /// `https://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The certificate (PEM) devices pin.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The transparency log's public key, 64 hex digits.
    pub fn log_public_key(&self) -> &str {
        &self.log_public_key
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A fresh one-time invite to `federation`.
    pub fn invite(&self, federation: &str) -> Result<String, Error> {
        let runtime = self.runtime.as_ref().ok_or_else(stopped)?;
        Ok(runtime
            .block_on(ops::invite(&self.config, federation, INVITE_VALIDITY))?
            .token)
    }

    /// Stops gracefully: open requests get a few seconds to finish.
    pub fn shutdown(mut self) -> Result<(), Error> {
        match (self.running.take(), self.runtime.take()) {
            (Some(running), Some(runtime)) => {
                runtime.block_on(running.shutdown(Duration::from_secs(5)))
            }
            _ => Err(stopped()),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        drop(self.running.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

fn stopped() -> Error {
    Error::Serve(std::io::Error::other("the server was stopped"))
}
