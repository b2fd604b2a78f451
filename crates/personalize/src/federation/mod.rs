//! Taking part in a federation, opt-in: the workflows `hearth fed ...`,
//! `hearth audit` and the app's Federation and Audit screens share.
//!
//! Federation is off until the person joins one ([`join`]); with no
//! membership nothing here touches the network. What a round sends is only
//! a clipped, noised, quantized and masked change to the shared adapter
//! (the protocol is hearth-fed's; the local training is
//! [`crate::federated::train_round`]); every upload is recorded with its
//! size, the privacy it spent and the hash of the exact bytes sent, which
//! the server's transparency log must then contain (checked after every
//! round, re-checked by [`audit`]).
//!
//! - [`join`], [`leave`], [`set_policy`]: membership, and when the device
//!   may take part ([`ParticipationPolicy`], kept with the membership).
//! - [`status`], [`history`]: what the person can see: memberships, privacy
//!   spent, eligibility now, every upload.
//! - [`participate`]: the round loop (`hearth fed run`): check in when
//!   eligible, refuse rounds past the privacy budget or with another base
//!   model, train, upload, record, audit.
//! - [`audit`]: re-verify every stored transparency-log checkpoint.
//!
//! The device's signing key is the only secret: it lives in a file only the
//! person can read (`federation/<federation>.key` in the library folder),
//! never in the database.

use std::path::{Path, PathBuf};

use hearth_fed::DeviceIdentity;
use hearth_fed::audit::LogAudit;
use hearth_fed::client::{ClientOptions, FedClient, FedClientError, Membership};
use hearth_fed::dp::{DEFAULT_DELTA, zcdp_epsilon};
use hearth_ml::DeviceChoice;
use hearth_store::{Library, MembershipId, NewMembership, Upload};
use serde::{Deserialize, Serialize};

use crate::eligibility::{Decision, DeviceState, ParticipationPolicy};
use crate::error::{PersonalizeError, Result};

mod audit;
mod request;
mod round;
#[cfg(test)]
mod tests;

pub use audit::audit;
pub use request::{FederatedRoundRequest, JoinFederationRequest};
pub use round::participate;

/// The privacy budget a membership gets unless the person sets another:
/// total epsilon at delta [`DEFAULT_DELTA`].
pub const DEFAULT_EPSILON_BUDGET: f64 = 8.0;

/// What the library keeps about a membership (no secrets: the device's
/// key is in its own file).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    membership: Membership,
    /// The transparency-log auditor: pinned log key and verified heads.
    audit: LogAudit,
}

/// Joining a federation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `https://host:port`.
    pub server_url: String,
    /// The server's certificate (PEM), pinned as the only one trusted.
    pub certificate_pem: String,
    /// The one-time invite token from the operator.
    pub invite: String,
    /// Total privacy budget: epsilon at delta [`DEFAULT_DELTA`].
    pub epsilon_budget: f64,
    /// When this device may take part.
    pub policy: ParticipationPolicy,
}

/// A membership as the person sees it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MembershipStatus {
    /// The membership (`hearth fed leave ID`).
    pub id: MembershipId,
    /// The server.
    pub server_url: String,
    /// The federation.
    pub federation_id: String,
    /// This device's id in it.
    pub device_id: String,
    /// When it joined (UTC).
    pub joined_at: String,
    /// The rounds this device uploaded to, oldest first.
    pub rounds: Vec<u64>,
    /// Bytes sent over every round.
    pub bytes_sent: u64,
    /// Privacy spent so far: epsilon at `delta` (0 before any upload).
    pub epsilon_spent: f64,
    /// The budget: total epsilon allowed at `delta`.
    pub epsilon_budget: f64,
    /// The delta both are stated at.
    pub delta: f64,
    /// When the device may take part.
    pub policy: ParticipationPolicy,
    /// Whether it may right now, and why not.
    pub eligible_now: Decision,
    /// Entries in the server's transparency log as last verified by this
    /// device (0 before its first round).
    pub log_size: u64,
}

/// One upload, with the federation it went to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UploadRecord {
    /// The federation.
    pub federation_id: String,
    /// Its server.
    pub server_url: String,
    /// The delta of its epsilon.
    pub delta: f64,
    /// The upload.
    #[serde(flatten)]
    pub upload: Upload,
}

/// The result of re-verifying one membership's stored log evidence.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AuditOutcome {
    /// The membership.
    pub membership: MembershipId,
    /// The federation.
    pub federation_id: String,
    /// Its server.
    pub server_url: String,
    /// Whether this device still takes part.
    pub active: bool,
    /// Whether everything verified.
    pub verified: bool,
    /// Signed tree heads replayed.
    pub checkpoints: usize,
    /// Rounds whose evidence was re-checked.
    pub rounds: usize,
    /// This device's upload commitments re-checked.
    pub commitments: usize,
    /// Published global adapters re-checked.
    pub adapters: usize,
    /// Entries in the log at the latest verified head.
    pub log_size: Option<u64>,
    /// The latest verified root, hex.
    pub log_root: Option<String>,
    /// Round parameters re-checked in the log.
    pub parameters: usize,
    /// Heads other devices posted that were compared with this device's
    /// (gossip, for active memberships); `None` when the server could not
    /// be asked.
    pub gossip_heads: Option<usize>,
    /// Why gossip could not be had, when it could not (not a failure of
    /// the audit: the stored evidence still verified).
    pub gossip_note: Option<String>,
    /// The log's participation entries of the federation, and how many of
    /// them are backed by their device's gossiped signed commitment (for
    /// active memberships; `None` when the server could not be asked).
    pub uploads_backed: Option<(usize, usize)>,
    /// Every device commitment the log contradicts (a dropped or swapped
    /// upload), one line each; the audit then fails.
    pub contradicted_uploads: Vec<String>,
    /// What failed, when something did (a `SPLIT VIEW: ...` when the log
    /// showed other devices another history).
    pub error: Option<String>,
}

/// How to take part in rounds (`hearth fed run`'s flags).
#[derive(Debug, Clone)]
pub struct Participation {
    /// The membership; the only active one when `None`.
    pub membership: Option<MembershipId>,
    /// The base model: registry name or path (default: the federation's).
    pub model: Option<String>,
    /// Train on texts with this label only.
    pub label: Option<String>,
    /// Local training steps per round.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Local learning rate.
    pub learning_rate: f64,
    /// Where to train.
    pub device: DeviceChoice,
    /// Stop after this many rounds (`None`: until cancelled).
    pub rounds: Option<usize>,
    /// Check in once; stop when there is no round for this device now.
    pub once: bool,
    /// Timeouts and retries of the connection.
    pub client: ClientOptions,
}

impl Default for Participation {
    fn default() -> Self {
        Participation {
            membership: None,
            model: None,
            label: None,
            steps: 20,
            batch_size: 4,
            seq_len: 128,
            learning_rate: 1e-3,
            device: DeviceChoice::Auto,
            rounds: None,
            once: false,
            client: ClientOptions::default(),
        }
    }
}

/// One round this device contributed to.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RoundOutcome {
    /// The round.
    pub round: u64,
    /// Bytes sent (every message of the round).
    pub bytes_sent: u64,
    /// Bytes received (the global adapter included).
    pub bytes_received: u64,
    /// Epsilon this round alone spent.
    pub epsilon: f64,
    /// The global version the round published.
    pub global_version: u64,
    /// The local training run.
    pub run_id: Option<i64>,
    /// SHA-256 of the masked upload as sent, hex.
    pub upload_sha256: String,
    /// Entries in the transparency log that showed this round.
    pub log_size: u64,
}

/// What [`participate`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ParticipationSummary {
    /// The rounds contributed to, verified in the server's log.
    pub rounds: Vec<RoundOutcome>,
    /// Privacy spent in this membership so far, epsilon at `delta`.
    pub epsilon_spent: f64,
    /// The budget.
    pub epsilon_budget: f64,
    /// The delta.
    pub delta: f64,
    /// With `once`: no round now; the server asked to come back in this
    /// many seconds.
    pub next_checkin_secs: Option<u32>,
    /// Stopped because it was asked to (between rounds).
    pub cancelled: bool,
}

/// The device's identity key for a membership: a file only the person can
/// read, beside the library database.
pub fn key_path(library: &Path, federation: &str) -> PathBuf {
    library.join("federation").join(format!("{federation}.key"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersonalizeError + '_ {
    move |source| PersonalizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn save_identity(path: &Path, identity: &DeviceIdentity) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(&identity.to_secret_bytes()[..])
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

fn load_identity(path: &Path) -> Result<DeviceIdentity> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        PersonalizeError::Inconsistent(format!("{} is not a device key", path.display()))
    })?;
    Ok(DeviceIdentity::from_secret_bytes(&secret))
}

/// A federation id names a file: only plain names are accepted from the
/// server (no separators, no leading dot).
fn check_federation_id(id: &str) -> Result<()> {
    let plain = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(FedClientError::BadResponse(format!(
            "the server named its federation {id:?}, which is not a plain name"
        ))
        .into())
    }
}

fn record_of(stored: &hearth_store::Membership) -> Result<Record> {
    serde_json::from_str(&stored.record).map_err(|e| {
        PersonalizeError::Inconsistent(format!(
            "the stored record of membership {} is unreadable: {e}",
            stored.id
        ))
    })
}

fn policy_of(stored: &hearth_store::Membership) -> ParticipationPolicy {
    // An unreadable policy falls back to the strictest default (power and
    // idle required), never to "any time".
    serde_json::from_str(&stored.policy).unwrap_or_default()
}

fn json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| PersonalizeError::Inconsistent(format!("serializing a record: {e}")))
}

/// The active membership `id`, or the only active one.
fn pick(library: &Library, id: Option<MembershipId>) -> Result<hearth_store::Membership> {
    let memberships = library.active_memberships()?;
    match id {
        Some(id) => memberships.into_iter().find(|m| m.id == id).ok_or_else(|| {
            PersonalizeError::NotMember(format!("no active federation membership {id}"))
        }),
        None if memberships.len() > 1 => Err(PersonalizeError::Invalid(
            "member of several federations: name one (hearth fed status lists them)".into(),
        )),
        None => memberships.into_iter().next().ok_or_else(|| {
            PersonalizeError::NotMember(
                "federation is off: this device is a member of no federation".into(),
            )
        }),
    }
}

/// Joins the federation `request.invite` is for: enrols a fresh device key
/// (pinning the server's certificate, publication key and log key), saves
/// the key in a file only the person can read, and records the membership
/// with its privacy budget and participation policy.
pub fn join(library: &mut Library, request: &JoinRequest) -> Result<hearth_store::Membership> {
    let url = request.server_url.trim();
    if url.is_empty() {
        return Err(PersonalizeError::Invalid(
            "give the server's address".into(),
        ));
    }
    if request.invite.trim().is_empty() {
        return Err(PersonalizeError::Invalid(
            "give the invite token from the federation's operator".into(),
        ));
    }
    if !(request.epsilon_budget.is_finite() && request.epsilon_budget > 0.0) {
        return Err(PersonalizeError::Invalid(
            "the privacy budget must be a positive number".into(),
        ));
    }
    if let Some((start, end)) = request.policy.hours
        && (start > 23 || end > 23)
    {
        return Err(PersonalizeError::Invalid(
            "hours are 0 to 23, local time".into(),
        ));
    }
    let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
    let membership = FedClient::enrol(
        url,
        &request.certificate_pem,
        request.invite.trim(),
        &identity,
    )?;
    check_federation_id(&membership.federation_id)?;
    // Refused before the key file is written: it would replace the key of
    // the membership this device already has.
    if library.active_memberships()?.iter().any(|m| {
        m.server_url == membership.server_url && m.federation_id == membership.federation_id
    }) {
        return Err(hearth_store::StoreError::AlreadyMember(format!(
            "already a member of federation {} at {}",
            membership.federation_id, membership.server_url
        ))
        .into());
    }
    let audit = FedClient::new(
        membership.clone(),
        DeviceIdentity::from_secret_bytes(&identity.to_secret_bytes()),
    )?
    .log_audit()?;
    save_identity(
        &key_path(library.root(), &membership.federation_id),
        &identity,
    )?;
    let record = Record {
        membership: membership.clone(),
        audit,
    };
    let id = library.join_federation(&NewMembership {
        server_url: membership.server_url.clone(),
        federation_id: membership.federation_id.clone(),
        device_id: membership.device_id.clone(),
        record: json(&record)?,
        epsilon_budget: request.epsilon_budget,
        delta: DEFAULT_DELTA,
        policy: json(&request.policy)?,
    })?;
    library
        .membership(id)?
        .ok_or_else(|| PersonalizeError::Inconsistent(format!("membership {id} vanished")))
}

fn describe(
    library: &Library,
    stored: &hearth_store::Membership,
    eligible_now: Decision,
) -> Result<MembershipStatus> {
    let uploads = library.uploads(stored.id)?;
    let rho = library.rho_spent(stored.id)?;
    let log_size = record_of(stored).map_or(0, |record| record.audit.size());
    Ok(MembershipStatus {
        id: stored.id,
        server_url: stored.server_url.clone(),
        federation_id: stored.federation_id.clone(),
        device_id: stored.device_id.clone(),
        joined_at: stored.joined_at.clone(),
        rounds: uploads.iter().map(|u| u.round).collect(),
        bytes_sent: uploads.iter().map(|u| u.bytes_sent).sum(),
        epsilon_spent: if rho > 0.0 {
            zcdp_epsilon(rho, stored.delta)
        } else {
            0.0
        },
        epsilon_budget: stored.epsilon_budget,
        delta: stored.delta,
        policy: policy_of(stored),
        eligible_now,
        log_size,
    })
}

/// Every active membership, with privacy spent and whether `device` may
/// take part now. Empty: federation is off.
pub fn status(library: &Library, device: &dyn DeviceState) -> Result<Vec<MembershipStatus>> {
    let conditions = device.conditions();
    library
        .active_memberships()?
        .iter()
        .map(|m| describe(library, m, policy_of(m).decide(&conditions)))
        .collect()
}

/// Every upload this device made, to every federation it joined (left ones
/// too: what was shared stays visible), oldest membership first.
pub fn history(library: &Library) -> Result<Vec<UploadRecord>> {
    let mut all = Vec::new();
    for m in library.memberships()? {
        for upload in library.uploads(m.id)? {
            all.push(UploadRecord {
                federation_id: m.federation_id.clone(),
                server_url: m.server_url.clone(),
                delta: m.delta,
                upload,
            });
        }
    }
    Ok(all)
}

/// Leaves membership `id` (the only one when `None`): the device takes part
/// in no more rounds; its upload history stays.
pub fn leave(library: &mut Library, id: Option<MembershipId>) -> Result<hearth_store::Membership> {
    let membership = pick(library, id)?;
    library.leave_federation(membership.id)?;
    Ok(membership)
}

/// Sets when the device may take part in membership `id` (the only one when
/// `None`). `hearth fed run` and the app read it before every check-in.
pub fn set_policy(
    library: &mut Library,
    id: Option<MembershipId>,
    policy: &ParticipationPolicy,
) -> Result<MembershipId> {
    if let Some((start, end)) = policy.hours
        && (start > 23 || end > 23)
    {
        return Err(PersonalizeError::Invalid(
            "hours are 0 to 23, local time".into(),
        ));
    }
    let membership = pick(library, id)?;
    library.update_membership_policy(membership.id, &json(policy)?)?;
    Ok(membership.id)
}

/// Stores a membership's record after an audit kept new evidence, so
/// every later `hearth audit` reports it (best effort: the outcome already
/// says what failed).
fn keep(library: &mut Library, m: &hearth_store::Membership, record: &Record) {
    if let Ok(text) = json(record) {
        let _ = library.update_membership_record(m.id, &text);
    }
}

/// A client error as the workflow's: cancellation (asked for directly, or
/// while training) is [`PersonalizeError::Cancelled`].
fn from_client(error: FedClientError) -> PersonalizeError {
    match error {
        FedClientError::Cancelled => PersonalizeError::Cancelled,
        FedClientError::Trainer(inner)
            if matches!(
                inner.downcast_ref::<PersonalizeError>(),
                Some(PersonalizeError::Cancelled)
            ) =>
        {
            PersonalizeError::Cancelled
        }
        FedClientError::Trainer(inner)
            if matches!(
                inner.downcast_ref::<PersonalizeError>(),
                Some(
                    PersonalizeError::BudgetExhausted { .. }
                        | PersonalizeError::RoundReplayed { .. }
                )
            ) =>
        {
            match inner.downcast::<PersonalizeError>() {
                Ok(error) => *error,
                Err(other) => FedClientError::Trainer(other).into(),
            }
        }
        other => other.into(),
    }
}
