//! The device's side of a federation over HTTPS: enrol with an invite,
//! check in, fetch the signed global adapter, and walk a SecAgg+ round
//! (the [`protocol`](crate::protocol) client states) by polling. Blocking,
//! so it runs on whatever thread the caller's scheduler gives it; every
//! wait is bounded and honours a [`CancelToken`].
//!
//! Trust is pinned at enrolment and never re-negotiated: the server's TLS
//! certificate (the only trust anchor of every connection), its Ed25519
//! publication key (every global adapter's signature is checked against
//! it) and its transparency log key (every signed tree head is). All live
//! in the [`Membership`] the caller stores.
//!
//! After each round, [`FedClient::audit_round`] checks the server's
//! transparency log with [`crate::audit`]: the new head extends the one
//! this device verified before, its own upload is committed to, and the
//! adapter it now uses is the one logged. The caller keeps the
//! [`LogAudit`](crate::audit::LogAudit) (from [`FedClient::log_audit`])
//! beside the membership and stores it after every check.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_fed::DeviceIdentity;
//! use hearth_fed::client::{
//!     Checkin, FedClient, GlobalAdapter, RoundCharge, RoundTrainer, TrainerError,
//! };
//! use hearth_progress::{CancelToken, NoProgress};
//!
//! struct Zero;
//! impl RoundTrainer for Zero {
//!     fn charge(&self, charge: &RoundCharge) -> Result<(), TrainerError> {
//!         // A real trainer writes this to disk before returning.
//!         println!("round {}: rho {}", charge.round, charge.rho);
//!         Ok(())
//!     }
//!     fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError> {
//!         Ok(vec![0.0; global.layout().parameter_count()])
//!     }
//! }
//!
//! let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
//! let pem = std::fs::read_to_string("cert.pem")?;
//! let membership = FedClient::enrol("https://127.0.0.1:8443", &pem, "INVITE", &identity)?;
//! let client = FedClient::new(membership, identity)?;
//! let mut audit = client.log_audit()?; // stored, and reloaded later
//! if let Checkin::Join { round, .. } = client.checkin(true)? {
//!     let report = client.participate(round, &Zero, &NoProgress, &CancelToken::new())?;
//!     println!("round {round}: sent {} bytes, ε = {}", report.bytes_sent, report.epsilon);
//!     let verified = client.audit_round(&mut audit, &report)?;
//!     println!("the log's {} entries show this round", verified.head.size);
//! }
//! # Ok(()) }
//! ```

mod audit;
mod gossip;
mod http;
mod policy;
mod round;

use std::sync::OnceLock;
use std::time::Duration;

use ed25519_dalek::Signature;
use hearth_progress::CancelToken;
use serde::{Deserialize, Serialize};

use crate::api::{self, ServerKeyInfo};
use crate::audit::AuditError;
use crate::audit::wire::{self as log_wire, LogKeyResponse};
use crate::crypto::{DeviceIdentity, IdentityKey};
use crate::dp::{DEFAULT_DELTA, DpConfig, DpError};
use crate::global::{AdapterError, AdapterLayout, GlobalStatement, TensorShape};
use crate::ids::FederationId;
use crate::protocol::ClientError;
use crate::request_auth::{self, AuthError};

use http::{Call, Http, Traffic};

pub use policy::{PolicyViolation, RoundPolicy};
pub use round::{ParticipationReport, RoundCharge, RoundTrainer, TrainerError};

/// Largest JSON answer accepted (neighbour keys of a large neighbourhood
/// are the biggest).
const JSON_LIMIT: usize = 16 * 1024 * 1024;
/// Safetensors header and alignment allowance over the raw tensor bytes.
const ADAPTER_SLACK: usize = 1024 * 1024;

/// Why a federation call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FedClientError {
    /// The server URL is not `https://host[:port]`.
    #[error("server URL: {0}")]
    InvalidUrl(String),
    /// The pinned certificate is unusable.
    #[error("pinned certificate: {0}")]
    Certificate(String),
    /// The server could not be reached (or kept failing) within the retry
    /// budget.
    #[error("network: {0}")]
    Transport(String),
    /// The server refused the request.
    #[error("server refused ({status} {kind}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's machine-readable error kind.
        kind: String,
        /// Its explanation.
        message: String,
    },
    /// The server answered something this client cannot read.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
    /// The server's publication key is unusable or changed.
    #[error("server key: {0}")]
    ServerKey(String),
    /// A global adapter whose digest or signature does not check out.
    #[error("global adapter rejected: {0}")]
    GlobalIntegrity(String),
    /// The transparency log key is missing from the membership, unusable,
    /// or not the one an audit state follows.
    #[error("transparency log key: {0}")]
    LogKey(String),
    /// The transparency log does not show what it must (a fork, a
    /// rewritten history, a missing commitment, another adapter than the
    /// one downloaded, a head not signed by the pinned key): the error
    /// says which. The server misbehaved; stop taking part.
    #[error("transparency log audit failed: {0}")]
    Audit(#[from] AuditError),
    /// This device's upload commitment could not be signed.
    #[error("upload commitment: {0}")]
    Commitment(#[from] crate::audit::CommitmentError),
    /// The adapter does not fit the federation's layout.
    #[error("adapter: {0}")]
    Adapter(#[from] AdapterError),
    /// The round protocol refused a server message.
    #[error("round protocol: {0}")]
    Protocol(#[from] ClientError),
    /// The round's parameters break the policy pinned at enrolment: the
    /// device refuses the round before announcing anything.
    #[error("round refused: {0}")]
    Policy(#[from] PolicyViolation),
    /// The membership pinned no round policy (it predates pinning, or the
    /// server did not describe one), so no round can be checked.
    #[error("this membership has no pinned round policy")]
    NoPinnedPolicy,
    /// The update could not be privatised.
    #[error("differential privacy: {0}")]
    Dp(#[from] DpError),
    /// The trainer failed; this device drops out of the round.
    #[error("training: {0}")]
    Trainer(TrainerError),
    /// The trainer's update has the wrong length.
    #[error("the update has {got} parameters, the round expects {expected}")]
    UpdateLength {
        /// The round's vector length.
        expected: usize,
        /// What the trainer returned.
        got: usize,
    },
    /// A request could not be signed.
    #[error("signing: {0}")]
    Auth(#[from] AuthError),
    /// The round carries on without this device.
    #[error("round {round} carries on without this device: {reason}")]
    Excluded {
        /// The round.
        round: u64,
        /// Why.
        reason: String,
    },
    /// The round ended without a result; nothing was published.
    #[error("round {round} was aborted: {reason}")]
    RoundAborted {
        /// The round.
        round: u64,
        /// Why.
        reason: String,
        /// Whether this device had uploaded its masked update.
        uploaded: bool,
    },
    /// The caller cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The round took longer than [`ClientOptions::round_timeout`].
    #[error("round {round} did not finish within {limit:?}")]
    TimedOut {
        /// The round.
        round: u64,
        /// The limit.
        limit: Duration,
    },
}

/// Timeouts and retry budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Connecting to the server.
    pub connect_timeout: Duration,
    /// One request, start to end (uploads included).
    pub request_timeout: Duration,
    /// How long one request keeps retrying through network failures and
    /// server errors (a server restart, say) before giving up.
    pub retry_for: Duration,
    /// Shortest pause between polls, whatever the server suggests.
    pub min_poll_interval: Duration,
    /// Longest pause between polls.
    pub max_poll_interval: Duration,
    /// Longest a whole round may take, training included.
    pub round_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            retry_for: Duration::from_secs(60),
            min_poll_interval: Duration::from_millis(100),
            max_poll_interval: Duration::from_secs(30),
            round_timeout: Duration::from_secs(4 * 3600),
        }
    }
}

/// What a device keeps after joining: where the server is and what it
/// pinned. Store it; it holds no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// `https://host[:port]`.
    pub server_url: String,
    /// The server's certificate (PEM), the only one trusted.
    pub certificate_pem: String,
    /// The federation's name.
    pub federation_id: String,
    /// The id the server gave this device.
    pub device_id: String,
    /// The server's Ed25519 publication key, base64url.
    pub server_key: String,
    /// The transparency log's Ed25519 key (64 hex digits), as served at
    /// enrolment over the pinned connection; `None` in memberships stored
    /// before the log existed (they cannot audit until it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
    /// The round policy pinned from the federation's description at
    /// enrolment; every round is checked against it. `None` in memberships
    /// stored before pinning existed (the caller pins one with
    /// [`FedClient::describe_policy`] before taking part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoundPolicy>,
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkin {
    /// Nothing to do; check in again after this long.
    ComeBackIn {
        /// Seconds to wait.
        seconds: u32,
    },
    /// This device is in the round's cohort.
    Join {
        /// The round.
        round: u64,
        /// Its stage (`advertise_keys`, ...).
        stage: String,
    },
}

/// What the server says about a federation, as far as a device needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationInfo {
    /// The federation's name.
    pub id: String,
    /// The adapter's tensors, in flattening order.
    pub layout: AdapterLayout,
    /// The DP policy every device applies.
    pub dp: DpConfig,
    /// δ at which ε is reported.
    pub delta: f64,
    /// The server's step size.
    pub server_learning_rate: f64,
    /// The base model adapters are trained for, as the operator announced
    /// it; `None` from a server that does not say.
    pub base_model: Option<BaseModel>,
    /// The round policy the description implies; `None` from a server
    /// that does not say its cohort bounds.
    pub policy: Option<RoundPolicy>,
}

/// The base model a federation trains adapters for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseModel {
    /// Its name (a registry name, typically).
    pub id: String,
    /// SHA-256 of its weights, hex: a device whose model file hashes to
    /// anything else must not take part (its update would not fit).
    pub sha256: String,
}

/// A verified global adapter version.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalAdapter {
    statement: GlobalStatement,
    bytes: Vec<u8>,
    layout: AdapterLayout,
}

impl GlobalAdapter {
    /// Its version (0: the initial adapter).
    pub fn version(&self) -> u64 {
        self.statement.version
    }

    /// The round that produced it.
    pub fn round(&self) -> u64 {
        self.statement.round
    }

    /// SHA-256 of [`GlobalAdapter::bytes`].
    pub fn sha256(&self) -> [u8; 32] {
        self.statement.adapter_sha256
    }

    /// The signed statement it was verified against.
    pub fn statement(&self) -> &GlobalStatement {
        &self.statement
    }

    /// The safetensors file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The federation's adapter layout.
    pub fn layout(&self) -> &AdapterLayout {
        &self.layout
    }

    /// The adapter as the flat vector rounds add updates to.
    pub fn parameters(&self) -> Result<Vec<f32>, AdapterError> {
        self.layout.from_safetensors(&self.bytes)
    }
}

/// A device's connection to its federation.
#[derive(Debug)]
pub struct FedClient {
    membership: Membership,
    identity: DeviceIdentity,
    http: Http,
    server_key: IdentityKey,
    options: ClientOptions,
    info: OnceLock<FederationInfo>,
}

#[derive(Serialize)]
struct EnrolBody<'a> {
    invite: &'a str,
    public_key: String,
    signature: String,
}

#[derive(Deserialize)]
struct EnrolAnswer {
    device_id: String,
    federation_id: String,
}

#[derive(Deserialize)]
struct DescribedFederation {
    id: String,
    #[serde(default)]
    base_model: Option<BaseModel>,
    adapter: DescribedAdapter,
    parameters: u64,
    dp: DescribedDp,
    server_learning_rate: f64,
    #[serde(default)]
    min_clients: Option<u32>,
    #[serde(default)]
    cohort_target: Option<u32>,
    #[serde(default)]
    secagg: Option<DescribedSecAgg>,
    #[serde(default)]
    threat_model: Option<crate::graph::ThreatModel>,
}

#[derive(Deserialize)]
struct DescribedSecAgg {
    #[serde(default)]
    neighbours: Option<u32>,
    #[serde(default)]
    threshold: Option<u32>,
}

#[derive(Deserialize)]
struct DescribedAdapter {
    #[serde(default)]
    tensors: Vec<TensorShape>,
}

#[derive(Deserialize)]
struct DescribedDp {
    clip_norm: f64,
    noise_multiplier: f64,
    #[serde(default)]
    delta: Option<f64>,
}

fn parse_server_key(text: &str) -> Result<IdentityKey, FedClientError> {
    let key = request_auth::decode_public_key(text)
        .map_err(|e| FedClientError::ServerKey(e.to_string()))?;
    IdentityKey::from_bytes(key.as_bytes()).map_err(|e| FedClientError::ServerKey(e.to_string()))
}

impl FedClient {
    /// Joins the federation an invite is for: pins `certificate_pem` for
    /// every connection, pins the server's publication key and its
    /// transparency log key (both fetched over that pinned connection), and
    /// enrols `identity` with the invite.
    pub fn enrol(
        server_url: &str,
        certificate_pem: &str,
        invite_token: &str,
        identity: &DeviceIdentity,
    ) -> Result<Membership, FedClientError> {
        Self::enrol_with(
            server_url,
            certificate_pem,
            invite_token,
            identity,
            &ClientOptions::default(),
        )
    }

    /// [`FedClient::enrol`] with explicit timeouts.
    pub fn enrol_with(
        server_url: &str,
        certificate_pem: &str,
        invite_token: &str,
        identity: &DeviceIdentity,
        options: &ClientOptions,
    ) -> Result<Membership, FedClientError> {
        let http = Http::new(server_url, certificate_pem, options)?;
        let traffic = Traffic::default();
        let key: ServerKeyInfo = http
            .send(&get("/v1/server-key", JSON_LIMIT), &traffic, None)?
            .json()?;
        if key.algorithm != api::SERVER_KEY_ALGORITHM {
            return Err(FedClientError::ServerKey(format!(
                "unsupported algorithm {:?}",
                key.algorithm
            )));
        }
        parse_server_key(&key.public_key)?;
        // Pinned now, over the pinned connection, before the server knows
        // this device: from here on only heads signed by it are accepted.
        let log_key: LogKeyResponse = http
            .send(&get(log_wire::KEY_PATH, JSON_LIMIT), &traffic, None)?
            .json()?;
        let log_key = log_key
            .verifying_key()
            .map_err(|e| FedClientError::LogKey(e.to_string()))?;
        let token = request_auth::decode(invite_token, "invite")?;
        let body = serde_json::to_vec(&EnrolBody {
            invite: invite_token,
            public_key: request_auth::encode(&identity.identity_key().to_bytes()),
            signature: request_auth::sign_enrolment(identity, &token),
        })
        .map_err(|e| FedClientError::BadResponse(e.to_string()))?;
        let answer: EnrolAnswer = http
            .send(
                &Call {
                    method: "POST",
                    path: "/v1/enrol",
                    body: &body,
                    content_type: Some("application/json"),
                    signer: None,
                    limit: JSON_LIMIT,
                },
                &traffic,
                None,
            )?
            .json()?;
        // The round policy, pinned over the same connection.
        let policy = describe(&http, &answer.federation_id)?
            .policy
            .ok_or(FedClientError::NoPinnedPolicy)?;
        Ok(Membership {
            server_url: server_url.trim_end_matches('/').to_owned(),
            certificate_pem: certificate_pem.to_owned(),
            federation_id: answer.federation_id,
            device_id: answer.device_id,
            server_key: key.public_key,
            log_key: Some(hex::encode(log_key.as_bytes())),
            policy: Some(policy),
        })
    }

    /// A client for an enrolled device.
    pub fn new(membership: Membership, identity: DeviceIdentity) -> Result<Self, FedClientError> {
        Self::with_options(membership, identity, ClientOptions::default())
    }

    /// [`FedClient::new`] with explicit timeouts.
    pub fn with_options(
        membership: Membership,
        identity: DeviceIdentity,
        options: ClientOptions,
    ) -> Result<Self, FedClientError> {
        let http = Http::new(
            &membership.server_url,
            &membership.certificate_pem,
            &options,
        )?;
        let server_key = parse_server_key(&membership.server_key)?;
        Ok(Self {
            membership,
            identity,
            http,
            server_key,
            options,
            info: OnceLock::new(),
        })
    }

    /// What this device pinned and its ids.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The federation as the protocol names it.
    pub fn federation(&self) -> FederationId {
        FederationId::from_name(&self.membership.federation_id)
    }

    fn signed<'a>(&'a self, method: &'static str, path: &'a str, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            path,
            body,
            content_type: match (method, body.is_empty()) {
                ("GET", _) | (_, true) => None,
                _ => Some("application/json"),
            },
            signer: Some((self.membership.device_id.as_str(), &self.identity)),
            limit: JSON_LIMIT,
        }
    }

    /// Tells the server this device is around, and whether it could take
    /// part in a round now.
    pub fn checkin(&self, eligible: bool) -> Result<Checkin, FedClientError> {
        let path = format!("/v1/federations/{}/checkin", self.membership.federation_id);
        let body = serde_json::json!({ "eligible": eligible }).to_string();
        self.http
            .send(
                &self.signed("POST", &path, body.as_bytes()),
                &Traffic::default(),
                None,
            )?
            .json()
    }

    /// The federation's public description (fetched once, then cached).
    pub fn federation_info(&self) -> Result<&FederationInfo, FedClientError> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let info = describe(&self.http, &self.membership.federation_id)?;
        Ok(self.info.get_or_init(|| info))
    }

    /// The round policy the federation describes now: for pinning it into
    /// a membership stored before pinning existed (trust on first use).
    /// A membership made by [`FedClient::enrol`] pinned it already.
    pub fn describe_policy(&self) -> Result<RoundPolicy, FedClientError> {
        self.federation_info()?
            .policy
            .clone()
            .ok_or(FedClientError::NoPinnedPolicy)
    }

    /// The latest global adapter, checked against the pinned server key
    /// and its own digest.
    pub fn fetch_global(&self) -> Result<GlobalAdapter, FedClientError> {
        self.fetch_global_counted(&Traffic::default(), None)
    }

    fn fetch_global_counted(
        &self,
        traffic: &Traffic,
        cancel: Option<&CancelToken>,
    ) -> Result<GlobalAdapter, FedClientError> {
        let layout = self.federation_info()?.layout.clone();
        let path = format!(
            "/v1/federations/{}/global/latest",
            self.membership.federation_id
        );
        let limit = layout
            .parameter_count()
            .saturating_mul(4)
            .saturating_add(ADAPTER_SLACK);
        let reply = self.http.send(&get(&path, limit), traffic, cancel)?;
        let integrity = |m: String| FedClientError::GlobalIntegrity(m);
        let header = |name: &str| {
            reply
                .header(name)
                .ok_or_else(|| integrity(format!("no {name} header")))
        };
        let number = |name: &str| -> Result<u64, FedClientError> {
            header(name)?
                .parse()
                .map_err(|_| integrity(format!("{name} is not a number")))
        };
        let sha256 = crate::global::adapter_sha256(&reply.body);
        if header(api::GLOBAL_SHA256_HEADER)? != hex::encode(sha256) {
            return Err(integrity(
                "the body does not match its stated sha256".into(),
            ));
        }
        let epsilon_text = header(api::GLOBAL_EPSILON_HEADER)?;
        let epsilon = crate::global::parse_epsilon(epsilon_text)
            .ok_or_else(|| integrity(format!("epsilon {epsilon_text:?} is not a number")))?;
        let statement = GlobalStatement {
            federation: self.membership.federation_id.clone(),
            version: number(api::GLOBAL_VERSION_HEADER)?,
            round: number(api::GLOBAL_ROUND_HEADER)?,
            adapter_sha256: sha256,
            contributors: number(api::GLOBAL_CONTRIBUTORS_HEADER)?,
            epsilon,
        };
        let signature: [u8; 64] =
            request_auth::decode(header(api::GLOBAL_SIGNATURE_HEADER)?, "signature")?
                .try_into()
                .map_err(|_| integrity("the signature is not 64 bytes".into()))?;
        statement
            .verify(&self.server_key, &Signature::from_bytes(&signature))
            .map_err(|_| {
                integrity("the signature does not verify under the pinned server key".into())
            })?;
        // The file must be the layout the federation declares.
        layout.from_safetensors(&reply.body)?;
        Ok(GlobalAdapter {
            statement,
            bytes: reply.body,
            layout,
        })
    }
}

/// The federation's public description, and the round policy it implies.
fn describe(http: &Http, federation: &str) -> Result<FederationInfo, FedClientError> {
    let path = format!("/v1/federations/{federation}");
    let described: DescribedFederation = http
        .send(&get(&path, JSON_LIMIT), &Traffic::default(), None)?
        .json()?;
    let layout = if described.adapter.tensors.is_empty() {
        AdapterLayout::flat(usize::try_from(described.parameters).unwrap_or(usize::MAX))?
    } else {
        AdapterLayout::new(described.adapter.tensors)?
    };
    let dp = DpConfig {
        clip_norm: described.dp.clip_norm,
        noise_multiplier: described.dp.noise_multiplier,
    };
    let policy = match (described.min_clients, described.cohort_target) {
        (Some(min_clients), Some(cohort_target)) => Some(RoundPolicy {
            parameters: layout.parameter_count() as u64,
            dp,
            max_noise_split: min_clients,
            max_cohort: cohort_target,
            neighbours: described.secagg.as_ref().and_then(|s| s.neighbours),
            threshold: described.secagg.as_ref().and_then(|s| s.threshold),
            threat_model: described.threat_model,
        }),
        _ => None,
    };
    Ok(FederationInfo {
        id: described.id,
        layout,
        dp,
        delta: described.dp.delta.unwrap_or(DEFAULT_DELTA),
        server_learning_rate: described.server_learning_rate,
        base_model: described.base_model,
        policy,
    })
}

fn get(path: &str, limit: usize) -> Call<'_> {
    Call {
        method: "GET",
        path,
        body: &[],
        content_type: None,
        signer: None,
        limit,
    }
}
