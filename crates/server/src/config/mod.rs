//! The operator's configuration file: where the server listens, where it
//! keeps its data, and each federation it runs.
//!
//! Parsing is strict (`deny_unknown_fields`: a misspelt key is an error, not
//! a silently ignored setting) and every value is checked before anything
//! starts, with an error naming the federation and field. Relative paths
//! are relative to the configuration file's folder, so a server folder can
//! be moved as a whole.

use hearth_fed::graph::ThreatModel;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_fed::global::{AdapterError, AdapterLayout, TensorShape};
use serde::{Deserialize, Serialize};

use hearth_fed::Stage;

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

/// One `[[federation]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Stable identifier used in URLs (`[a-z0-9][a-z0-9._-]*`, at most 64).
    pub id: String,
    /// The frozen model every client trains adapters for.
    pub base_model: BaseModel,
    /// Shape of the adapter being averaged.
    pub adapter: AdapterShape,
    /// Fewest clients a round may start with (after the gather deadline).
    pub min_clients: u32,
    /// Clients a round aims to finish with.
    pub target_clients: u32,
    /// Over-selection factor absorbing dropouts: a round invites
    /// `ceil(target_clients * over_selection)` clients.
    #[serde(default = "default_over_selection")]
    pub over_selection: f64,
    /// How long each stage may take.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// Secure aggregation neighbourhood settings.
    #[serde(default)]
    pub secagg: SecAggConfig,
    /// Differential privacy settings every client applies.
    pub dp: FederationDp,
    /// Step size applied to the decoded average update.
    #[serde(default = "default_server_learning_rate")]
    pub server_learning_rate: f64,
    /// Check-in pacing.
    #[serde(default)]
    pub checkin: CheckinPacing,
}

/// The base model a federation trains against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// Registry name of the model.
    pub id: String,
    /// SHA-256 of the model's weights (lower-case hex).
    pub sha256: String,
}

/// The adapter's tensors, or just its size, or both (then they must agree).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterShape {
    /// Named tensors with their shapes, in the order they are flattened.
    #[serde(default)]
    pub tensors: Vec<TensorSpec>,
    /// Total number of parameters.
    pub parameters: Option<u64>,
}

/// One adapter tensor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name as in the adapter file.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
}

/// Seconds each stage of a round may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// How long to wait for `target_clients * over_selection` devices before
    /// settling for `min_clients`.
    #[serde(default = "default_gather")]
    pub gather_secs: u32,
    /// SecAgg+ stage 0: clients advertise their public keys.
    #[serde(default = "default_short_stage")]
    pub advertise_keys_secs: u32,
    /// SecAgg+ stage 1: clients exchange encrypted key shares.
    #[serde(default = "default_short_stage")]
    pub share_keys_secs: u32,
    /// SecAgg+ stage 2: clients train and upload masked updates.
    #[serde(default = "default_masked_input")]
    pub masked_input_secs: u32,
    /// The consistency round: uploaders sign the survivor set.
    #[serde(default = "default_short_stage")]
    pub consistency_check_secs: u32,
    /// SecAgg+ stage 3: survivors reveal shares to remove masks.
    #[serde(default = "default_short_stage")]
    pub unmasking_secs: u32,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            gather_secs: default_gather(),
            advertise_keys_secs: default_short_stage(),
            share_keys_secs: default_short_stage(),
            masked_input_secs: default_masked_input(),
            consistency_check_secs: default_short_stage(),
            unmasking_secs: default_short_stage(),
        }
    }
}

impl Deadlines {
    /// How long `stage` may take (nothing for a round that ended: only
    /// live stages have deadlines).
    pub fn for_stage(&self, stage: Stage) -> Duration {
        let secs = match stage {
            Stage::CollectingKeys => self.advertise_keys_secs,
            Stage::SharingKeys => self.share_keys_secs,
            Stage::CollectingUploads => self.masked_input_secs,
            Stage::CheckingConsistency => self.consistency_check_secs,
            Stage::Unmasking => self.unmasking_secs,
            Stage::Done | Stage::Aborted => 0,
        };
        Duration::from_secs(u64::from(secs))
    }

    /// How long gathering waits for a full cohort.
    pub fn gather(&self) -> Duration {
        Duration::from_secs(u64::from(self.gather_secs))
    }
}

/// The fraction of a cohort assumed to collude with the server (`γ`) when
/// none is configured.
pub const DEFAULT_CORRUPT_FRACTION: f64 = 0.01;
/// The fraction of a cohort assumed to drop out (`δ`) when none is
/// configured.
pub const DEFAULT_DROPOUT_FRACTION: f64 = 0.05;

/// SecAgg+ neighbourhood size `k` and share threshold `t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecAggConfig {
    /// Neighbours per client; `None` sizes neighbourhoods from the threat
    /// model (Bell et al.'s bounds) for the cohort that forms.
    pub neighbours: Option<u32>,
    /// Shares needed to reconstruct; `None` takes the threat model's (or a
    /// strict majority of an explicit `k`).
    pub threshold: Option<u32>,
    /// `γ`: the fraction of a cohort that may collude with the server
    /// (default [`DEFAULT_CORRUPT_FRACTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt_fraction: Option<f64>,
    /// `δ`: the fraction of a cohort that may drop out (default
    /// [`DEFAULT_DROPOUT_FRACTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_fraction: Option<f64>,
}

/// The `k` and `t` a cohort of a given size runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecAggParams {
    /// Neighbours per client.
    pub neighbours: u32,
    /// Shares needed to reconstruct a secret.
    pub threshold: u32,
}

impl SecAggConfig {
    /// The adversary automatic neighbourhoods are sized against; part of
    /// every round's parameters, so devices resolve the same `k` and `t`.
    pub fn threat_model(&self) -> ThreatModel {
        ThreatModel {
            corrupt_fraction: self.corrupt_fraction.unwrap_or(DEFAULT_CORRUPT_FRACTION),
            dropout_fraction: self.dropout_fraction.unwrap_or(DEFAULT_DROPOUT_FRACTION),
        }
    }

    /// `k` and `t` for a cohort of `n` clients (`n >= 2`).
    ///
    /// Automatic `k` and `t` are the smallest that meet the threat model's
    /// security and correctness bounds for `n` devices (Bell et al. 2020;
    /// see `hearth_fed::graph::ThreatModel`), or the complete graph with a
    /// strict majority when the cohort is too small for any to. An
    /// explicit `k` takes a strict majority as its automatic `t`.
    pub fn for_cohort(&self, n: u32) -> SecAggParams {
        let most = n.saturating_sub(1).max(1);
        if self.neighbours.is_none()
            && let Ok(sized) = self.threat_model().neighbourhood(n)
        {
            return SecAggParams {
                neighbours: sized.degree,
                threshold: self.threshold.unwrap_or(sized.threshold),
            };
        }
        let auto = (u32::BITS - n.saturating_sub(1).leading_zeros()).max(2);
        let neighbours = self.neighbours.unwrap_or(auto).min(most);
        let threshold = self.threshold.unwrap_or(neighbours / 2 + 1);
        SecAggParams {
            neighbours,
            threshold,
        }
    }
}

/// A federation's differential privacy as the operator configures it: the
/// protocol's policy, [`hearth_fed::DpConfig`] (clip norm and noise
/// multiplier, defined once in hearth-fed and carried in every round's
/// parameters), and the δ at which the server states each round's ε.
///
/// Why a server type at all: δ is no round parameter (it is not in
/// `RoundInfo`, whose encoding devices check and the transparency log
/// commits to), yet the configuration file writes it in the same `dp`
/// table as the protocol's two numbers. [`DpTable`] is that table's shape;
/// this type is what the server uses. [`FederationConfig::validate`]
/// checks the values.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(from = "DpTable", into = "DpTable")]
pub struct FederationDp {
    /// What every client clips and noises with.
    pub protocol: hearth_fed::DpConfig,
    /// δ at which each round's ε is stated (published with every version
    /// and used by devices for their own accounting).
    pub delta: f64,
}

/// The `dp` table of a federation's configuration (and of its public
/// description), flat as operators write it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DpTable {
    /// L2 norm each client's update is clipped to.
    clip_norm: f64,
    /// Gaussian noise standard deviation, as a multiple of `clip_norm`.
    noise_multiplier: f64,
    /// δ at which each round's ε is stated.
    #[serde(default = "default_delta")]
    delta: f64,
}

impl From<DpTable> for FederationDp {
    fn from(t: DpTable) -> Self {
        FederationDp {
            protocol: hearth_fed::DpConfig {
                clip_norm: t.clip_norm,
                noise_multiplier: t.noise_multiplier,
            },
            delta: t.delta,
        }
    }
}

impl From<FederationDp> for DpTable {
    fn from(dp: FederationDp) -> Self {
        DpTable {
            clip_norm: dp.protocol.clip_norm,
            noise_multiplier: dp.protocol.noise_multiplier,
            delta: dp.delta,
        }
    }
}

/// How often devices are asked to check in.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinPacing {
    /// Shortest retry delay given.
    #[serde(default = "default_min_retry")]
    pub min_retry_secs: u32,
    /// Longest retry delay given.
    #[serde(default = "default_max_retry")]
    pub max_retry_secs: u32,
    /// Check-ins per second the whole population should settle at; larger
    /// populations are spread over longer delays to hold it.
    #[serde(default = "default_target_rate")]
    pub target_rate_per_sec: f64,
}

impl Default for CheckinPacing {
    fn default() -> Self {
        CheckinPacing {
            min_retry_secs: default_min_retry(),
            max_retry_secs: default_max_retry(),
            target_rate_per_sec: default_target_rate(),
        }
    }
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
fn default_over_selection() -> f64 {
    1.3
}
fn default_server_learning_rate() -> f64 {
    1.0
}
fn default_gather() -> u32 {
    600
}
fn default_short_stage() -> u32 {
    120
}
fn default_masked_input() -> u32 {
    1800
}
fn default_delta() -> f64 {
    hearth_fed::dp::DEFAULT_DELTA
}
fn default_min_retry() -> u32 {
    30
}
fn default_max_retry() -> u32 {
    900
}
fn default_target_rate() -> f64 {
    50.0
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

/// Whether `id` is a usable federation id.
pub fn valid_federation_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.len() <= 64
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl FederationConfig {
    /// Devices invited to a round: `ceil(target_clients * over_selection)`.
    pub fn cohort_target(&self) -> u32 {
        // Validated: target <= 100_000 and over_selection <= 3, so this fits.
        (f64::from(self.target_clients) * self.over_selection).ceil() as u32
    }

    /// Total adapter parameters, from the tensors or the stated count.
    pub fn parameter_count(&self) -> u64 {
        match self.adapter.parameters {
            Some(n) => n,
            None => tensor_parameters(&self.adapter.tensors).unwrap_or(0),
        }
    }

    /// The adapter's tensors in flattening order: the configured tensors,
    /// or one flat tensor when only a count is given.
    pub fn adapter_layout(&self) -> Result<AdapterLayout, AdapterError> {
        if self.adapter.tensors.is_empty() {
            return AdapterLayout::flat(
                usize::try_from(self.parameter_count()).unwrap_or(usize::MAX),
            );
        }
        AdapterLayout::new(
            self.adapter
                .tensors
                .iter()
                .map(|t| TensorShape {
                    name: t.name.clone(),
                    shape: t
                        .shape
                        .iter()
                        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                        .collect(),
                })
                .collect(),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let place = |field: &str| format!("federation {:?}: {field}", self.id);
        if !valid_federation_id(&self.id) {
            return Err(invalid(
                format!("federation {:?}", self.id),
                "id must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        if self.base_model.id.trim().is_empty() {
            return Err(invalid(place("base_model.id"), "must not be empty"));
        }
        let sha = &self.base_model.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(
                place("base_model.sha256"),
                "must be 64 lower-case hex digits",
            ));
        }
        self.validate_adapter(&place)?;
        if self.min_clients < 2 {
            return Err(invalid(
                place("min_clients"),
                "secure aggregation needs at least 2 clients",
            ));
        }
        if self.target_clients < self.min_clients {
            return Err(invalid(
                place("target_clients"),
                format!("must be at least min_clients ({})", self.min_clients),
            ));
        }
        if self.target_clients > 100_000 {
            return Err(invalid(place("target_clients"), "must be at most 100000"));
        }
        if !(1.0..=3.0).contains(&self.over_selection) {
            return Err(invalid(
                place("over_selection"),
                "must be between 1.0 and 3.0",
            ));
        }
        let d = &self.deadlines;
        for (field, secs) in [
            ("deadlines.gather_secs", d.gather_secs),
            ("deadlines.advertise_keys_secs", d.advertise_keys_secs),
            ("deadlines.share_keys_secs", d.share_keys_secs),
            ("deadlines.masked_input_secs", d.masked_input_secs),
            ("deadlines.consistency_check_secs", d.consistency_check_secs),
            ("deadlines.unmasking_secs", d.unmasking_secs),
        ] {
            if secs == 0 || secs > 7 * 24 * 3600 {
                return Err(invalid(
                    place(field),
                    "must be between 1 and 604800 seconds",
                ));
            }
        }
        self.validate_secagg(&place)?;
        if !(self.dp.protocol.clip_norm.is_finite() && self.dp.protocol.clip_norm > 0.0) {
            return Err(invalid(place("dp.clip_norm"), "must be a positive number"));
        }
        if !(self.dp.protocol.noise_multiplier.is_finite()
            && self.dp.protocol.noise_multiplier >= 0.0)
        {
            return Err(invalid(
                place("dp.noise_multiplier"),
                "must be zero or a positive number",
            ));
        }
        if !(self.dp.delta > 0.0 && self.dp.delta < 1.0) {
            return Err(invalid(place("dp.delta"), "must be between 0 and 1"));
        }
        if !(self.server_learning_rate.is_finite() && self.server_learning_rate > 0.0) {
            return Err(invalid(
                place("server_learning_rate"),
                "must be a positive number",
            ));
        }
        let c = &self.checkin;
        if c.min_retry_secs == 0 {
            return Err(invalid(
                place("checkin.min_retry_secs"),
                "must be at least 1",
            ));
        }
        if c.max_retry_secs < c.min_retry_secs || c.max_retry_secs > 86_400 {
            return Err(invalid(
                place("checkin.max_retry_secs"),
                format!(
                    "must be between min_retry_secs ({}) and 86400",
                    c.min_retry_secs
                ),
            ));
        }
        if !(c.target_rate_per_sec.is_finite() && c.target_rate_per_sec > 0.0) {
            return Err(invalid(
                place("checkin.target_rate_per_sec"),
                "must be a positive number",
            ));
        }
        Ok(())
    }

    fn validate_adapter(&self, place: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let adapter = &self.adapter;
        if adapter.tensors.is_empty() && adapter.parameters.is_none() {
            return Err(invalid(
                place("adapter"),
                "give the tensors (name and shape) or the total parameter count",
            ));
        }
        let mut names = HashSet::new();
        for tensor in &adapter.tensors {
            if tensor.name.is_empty() || !names.insert(tensor.name.as_str()) {
                return Err(invalid(
                    place("adapter.tensors"),
                    format!("tensor name {:?} is empty or repeated", tensor.name),
                ));
            }
            if tensor.shape.is_empty() || tensor.shape.contains(&0) {
                return Err(invalid(
                    place("adapter.tensors"),
                    format!(
                        "tensor {:?} needs a shape of non-zero dimensions",
                        tensor.name
                    ),
                ));
            }
        }
        let from_tensors =
            if adapter.tensors.is_empty() {
                None
            } else {
                Some(tensor_parameters(&adapter.tensors).ok_or_else(|| {
                    invalid(place("adapter.tensors"), "parameter count overflows")
                })?)
            };
        match (from_tensors, adapter.parameters) {
            (_, Some(0)) => Err(invalid(place("adapter.parameters"), "must be at least 1")),
            (Some(sum), Some(stated)) if sum != stated => Err(invalid(
                place("adapter.parameters"),
                format!("is {stated} but the tensors hold {sum}"),
            )),
            _ => self
                .adapter_layout()
                .map(drop)
                .map_err(|e| invalid(place("adapter"), e.to_string())),
        }
    }

    fn validate_secagg(&self, place: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let s = &self.secagg;
        if let Err(e) = s.threat_model().validate() {
            return Err(invalid(place("secagg.corrupt_fraction"), e.to_string()));
        }
        if let Some(k) = s.neighbours
            && k < 2
        {
            return Err(invalid(place("secagg.neighbours"), "must be at least 2"));
        }
        // k grows with the cohort, so t must fit the smallest cohort's k and
        // still be a majority of the largest's.
        let smallest = s.for_cohort(self.min_clients);
        let largest = s.for_cohort(self.cohort_target().max(self.min_clients));
        if let Some(t) = s.threshold {
            if t == 0 || t > smallest.neighbours {
                return Err(invalid(
                    place("secagg.threshold"),
                    format!(
                        "must be between 1 and the neighbourhood size of the smallest cohort ({})",
                        smallest.neighbours
                    ),
                ));
            }
            if 2 * t <= largest.neighbours {
                return Err(invalid(
                    place("secagg.threshold"),
                    format!(
                        "must be more than half the neighbourhood size of the largest cohort ({})",
                        largest.neighbours
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn tensor_parameters(tensors: &[TensorSpec]) -> Option<u64> {
    tensors.iter().try_fold(0u64, |sum, t| {
        let count = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))?;
        sum.checked_add(count)
    })
}

#[cfg(test)]
mod tests;
