//! The operator's configuration file: where the server listens, where it
//! keeps its data, and each federation it runs.
//!
//! Parsing is strict (`deny_unknown_fields`: a misspelt key is an error, not
//! a silently ignored setting) and every value is checked before anything
//! starts, with an error naming the federation and field. Relative paths
//! are relative to the configuration file's folder, so a server folder can
//! be moved as a whole.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name `init` writes and commands look for by default.
pub const CONFIG_FILE: &str = "hearth-server.toml";

/// A configuration file as `init` writes it: one small federation, every
/// setting present with its default, ready to edit.
pub const EXAMPLE_CONFIG: &str = r#"# hearth-server configuration. Relative paths are relative to this file.

[server]
listen = "127.0.0.1:8443"
data_dir = "."
request_timeout_secs = 30
max_concurrent_requests = 1024
# Limits that keep clients without a key from tying the server up: the TLS
# handshake, each request head and each idle gap between requests must
# take less than header_timeout_secs; connections open at once, in all and
# from one address (an IPv6 /64 counts as one); requests in flight from one
# address. Raise the per-address ones if many devices share an address.
header_timeout_secs = 10
max_connections = 4096
max_connections_per_ip = 64
max_requests_per_ip = 32

[server.tls]
# Operator-supplied PEM files; leave both out to use the self-signed
# certificate `hearth-server init` generates under <data_dir>/tls/.
# cert = "/etc/hearth/cert.pem"
# key = "/etc/hearth/key.pem"
# Extra names for the self-signed certificate (localhost, 127.0.0.1 and ::1
# are always included).
names = []

[[federation]]
id = "notes"
server_learning_rate = 1.0
min_clients = 3
target_clients = 10
over_selection = 1.3

[federation.base_model]
id = "smollm2-135m-instruct"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[federation.adapter]
# Either the tensors (name and shape) or the total parameter count, or both.
parameters = 16384
tensors = [
    { name = "model.layers.0.self_attn.q_proj.lora_A.weight", shape = [8, 1024] },
    { name = "model.layers.0.self_attn.q_proj.lora_B.weight", shape = [1024, 8] },
]

[federation.deadlines]
gather_secs = 600
advertise_keys_secs = 120
share_keys_secs = 120
masked_input_secs = 1800
consistency_check_secs = 120
unmasking_secs = 120

[federation.secagg]
# neighbours = 8    # leave out to size neighbourhoods from the threat model below
# threshold = 5     # leave out for the threat model's (or a strict majority)
# corrupt_fraction = 0.01   # devices that may collude with the server (default 1%)
# dropout_fraction = 0.05   # devices that may drop out of a round (default 5%)

[federation.dp]
clip_norm = 1.0
noise_multiplier = 1.0
# delta = 1e-5     # the δ each round's ε is stated at

[federation.checkin]
min_retry_secs = 30
max_retry_secs = 900
target_rate_per_sec = 50.0
"#;

/// Everything in a configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[server]` section.
    pub server: ServerConfig,
    /// The `[[federation]]` entries.
    #[serde(default, rename = "federation")]
    pub federations: Vec<FederationConfig>,
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Folder holding the database and the generated certificate.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Certificate settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Longest a request may take before it is answered 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Requests served at once; more wait their turn, briefly (see
    /// [`crate::limits`]).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Longest a TLS handshake, a request head, or the idle gap before the
    /// next request on a connection may take; the connection is closed
    /// after it.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Connections open at once; more are closed as they arrive.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Requests in flight at once from one address (IPv6: one /64); more
    /// are answered 429.
    #[serde(default = "default_max_requests_per_ip")]
    pub max_requests_per_ip: usize,
}

/// The `[server.tls]` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Operator-supplied certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Operator-supplied private key (PEM).
    pub key: Option<PathBuf>,
    /// Extra subject names for the self-signed certificate.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".")
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_concurrent() -> usize {
    1024
}
fn default_header_timeout() -> u64 {
    10
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_ip() -> usize {
    64
}
fn default_max_requests_per_ip() -> usize {
    32
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("configuration: {place}: {problem}")]
    Invalid {
        /// `server.listen`, `federation "notes": min_clients`, ...
        place: String,
        /// What is wrong and what would be right.
        problem: String,
    },
}

fn invalid(place: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        place: place.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads, parses and validates a configuration file, resolving relative
    /// paths against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text; relative paths are joined
    /// to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.server.data_dir = resolve(base, &config.server.data_dir);
        if let Some(cert) = &mut config.server.tls.cert {
            *cert = resolve(base, cert);
        }
        if let Some(key) = &mut config.server.tls.key {
            *key = resolve(base, key);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if server.request_timeout_secs == 0 {
            return Err(invalid("server.request_timeout_secs", "must be at least 1"));
        }
        for (field, value) in [
            (
                "server.max_concurrent_requests",
                server.max_concurrent_requests,
            ),
            ("server.max_connections", server.max_connections),
            (
                "server.max_connections_per_ip",
                server.max_connections_per_ip,
            ),
            ("server.max_requests_per_ip", server.max_requests_per_ip),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if server.header_timeout_secs == 0 {
            return Err(invalid("server.header_timeout_secs", "must be at least 1"));
        }
        if server.tls.cert.is_some() != server.tls.key.is_some() {
            return Err(invalid(
                "server.tls",
                "give both cert and key, or neither for the self-signed certificate",
            ));
        }
        for name in &server.tls.names {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(invalid(
                    "server.tls.names",
                    format!("{name:?} is not a host name or IP address"),
                ));
            }
        }
        let mut ids = HashSet::new();
        for federation in &self.federations {
            federation.validate()?;
            if !ids.insert(federation.id.as_str()) {
                return Err(invalid(
                    format!("federation {:?}", federation.id),
                    "the id is used twice",
                ));
            }
        }
        Ok(())
    }

    /// The federation with this id.
    pub fn federation(&self, id: &str) -> Option<&FederationConfig> {
        self.federations.iter().find(|f| f.id == id)
    }

    /// Where the database lives.
    pub fn database_path(&self) -> PathBuf {
        self.server.data_dir.join(crate::storage::DATABASE_FILE)
    }
}

/// `path` relative to `base` (absolute paths stay), without `.` parts.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let mut clean: PathBuf = joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if clean.as_os_str().is_empty() {
        clean = PathBuf::from(".");
    }
    clean
}

mod federation;
mod round;
#[cfg(test)]
mod tests;

pub use federation::{AdapterShape, BaseModel, FederationConfig, TensorSpec, valid_federation_id};
pub use round::{
    CheckinPacing, DEFAULT_CORRUPT_FRACTION, DEFAULT_DROPOUT_FRACTION, Deadlines, FederationDp,
    SecAggConfig, SecAggParams,
};
