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

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_fed::DeviceIdentity;
use hearth_fed::audit::LogAudit;
use hearth_fed::client::{
    Checkin, ClientOptions, FedClient, FedClientError, FederationInfo, GlobalAdapter, Membership,
    RoundCharge, RoundTrainer, TrainerError,
};
use hearth_fed::dp::{DEFAULT_DELTA, zcdp_epsilon};
use hearth_ml::candle::Device;
use hearth_ml::train::TrainConfig;
use hearth_ml::{DeviceChoice, registry};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{Library, MembershipId, NewMembership, NewUpload, Upload};
use serde::{Deserialize, Serialize};

use crate::eligibility::{Decision, DeviceState, ParticipationPolicy};
use crate::error::{PersonalizeError, Result};
use crate::federated::{RoundTraining, lora_config_for, train_from_global};

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

/// Re-verifies, from what this device stored, every federation log it
/// watches (`hearth audit`): each signed head, their consistency, every
/// round's parameters, commitment and adapter evidence, and any split view
/// found before; then, for active memberships, compares this device's
/// latest head with the heads the federation's other devices posted
/// (gossip; a short network budget, and a server that cannot be reached
/// is only noted): two heads of one size with different roots, or a head
/// the log cannot prove consistent with this device's, is a SPLIT VIEW;
/// and replays the whole log to hold its participation entries to the
/// devices' gossiped signed upload commitments (a dropped or swapped
/// upload is UPLOAD CONTRADICTED). Evidence found live is stored with the
/// membership, so every later audit reports it.
pub fn audit(library: &mut Library) -> Result<Vec<AuditOutcome>> {
    let mut outcomes = Vec::new();
    for m in library.memberships()? {
        let mut outcome = AuditOutcome {
            membership: m.id,
            federation_id: m.federation_id.clone(),
            server_url: m.server_url.clone(),
            active: m.left_at.is_none(),
            verified: false,
            checkpoints: 0,
            rounds: 0,
            commitments: 0,
            adapters: 0,
            log_size: None,
            log_root: None,
            parameters: 0,
            gossip_heads: None,
            gossip_note: None,
            uploads_backed: None,
            contradicted_uploads: Vec::new(),
            error: None,
        };
        let record = record_of(&m);
        match record
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|record| {
                hearth_fed::audit::audit_all(&record.audit).map_err(|e| e.to_string())
            }) {
            Ok(report) => {
                outcome.verified = true;
                outcome.checkpoints = report.checkpoints;
                outcome.rounds = report.rounds;
                outcome.commitments = report.commitments;
                outcome.adapters = report.adapters;
                outcome.parameters = report.parameters;
                outcome.log_size = report.head.as_ref().map(|h| h.size);
                outcome.log_root = report.head.as_ref().map(|h| h.root.to_string());
            }
            Err(error) => outcome.error = Some(error),
        }
        if let (true, true, Ok(record)) = (outcome.active, outcome.verified, record) {
            gossip_for_audit(library, &m, record, &mut outcome);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The live part of [`audit`]: gossip with the federation's other devices
/// through its server, within a short network budget.
fn gossip_for_audit(
    library: &mut Library,
    m: &hearth_store::Membership,
    mut record: Record,
    outcome: &mut AuditOutcome,
) {
    let options = hearth_fed::client::ClientOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(20),
        retry_for: std::time::Duration::from_secs(5),
        ..hearth_fed::client::ClientOptions::default()
    };
    let client = load_identity(&key_path(library.root(), &m.federation_id)).and_then(|identity| {
        Ok(FedClient::with_options(
            record.membership.clone(),
            identity,
            options,
        )?)
    });
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            outcome.gossip_note = Some(e.to_string());
            return;
        }
    };
    match client.gossip(&mut record.audit) {
        Ok(report) => outcome.gossip_heads = Some(report.heads),
        Err(FedClientError::Audit(e)) => {
            outcome.verified = false;
            outcome.error = Some(e.to_string());
            keep(library, m, &record);
            return;
        }
        Err(e) => {
            outcome.gossip_note = Some(e.to_string());
            return;
        }
    }
    // The devices' signed word against the log's participation entries.
    match client.audit_uploads(&mut record.audit) {
        Ok(report) => outcome.uploads_backed = Some((report.participations, report.backed)),
        Err(FedClientError::Audit(e)) => {
            outcome.verified = false;
            outcome.error = Some(e.to_string());
            outcome.contradicted_uploads = record
                .audit
                .upload_contradictions()
                .iter()
                .map(|evidence| {
                    let c = &evidence.commitment.commitment;
                    format!("device {} in round {}", c.device, c.round)
                })
                .collect();
            keep(library, m, &record);
        }
        Err(e) => outcome.gossip_note = Some(e.to_string()),
    }
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

/// The name the round trains with (the person's choice, else the
/// federation's model), after checking that its weights are the ones the
/// federation announced.
fn check_base_model(info: &FederationInfo, model: Option<&str>) -> Result<Option<String>> {
    let Some(base) = &info.base_model else {
        return Ok(model.map(str::to_owned));
    };
    let name = model.map_or_else(|| base.id.clone(), str::to_owned);
    let path = registry::resolve(&name)?;
    // One file (GGUF, llama2.c) is identified by its own hash; a folder by
    // what the loader computes over its weight files (memory-mapped, so
    // loading it to ask is cheap).
    let found = if path.is_dir() {
        hearth_ml::load(&path, &Device::Cpu)?.info.sha256
    } else {
        hearth_ml::loaders::sha256_file(&path)?
    };
    if found.eq_ignore_ascii_case(&base.sha256) {
        Ok(Some(name))
    } else {
        Err(PersonalizeError::WrongBaseModel {
            model: base.id.clone(),
            expected: base.sha256.clone(),
            local: name,
            found,
        })
    }
}

/// The text trainer as a round trainer: local LoRA training on this
/// library's texts from the global adapter.
struct TextTrainer<'a> {
    library: RefCell<&'a mut Library>,
    membership: &'a hearth_store::Membership,
    request: RoundTraining,
    round: u64,
    progress: &'a dyn Progress,
    cancel: CancelToken,
    run_id: Cell<Option<i64>>,
}

impl RoundTrainer for TextTrainer<'_> {
    fn admit(&self, round: u64, rho: f64) -> std::result::Result<(), TrainerError> {
        let library = self.library.borrow();
        // Round numbers only grow: one this device was charged for, or an
        // older one, is a replay, refused before any work.
        if let Some(last) = library
            .uploads(self.membership.id)?
            .iter()
            .map(|u| u.round)
            .max()
            .filter(|&last| last >= round)
        {
            return Err(Box::new(PersonalizeError::RoundReplayed { round, last }));
        }
        let spent = library.rho_spent(self.membership.id)?;
        if zcdp_epsilon(spent + rho, self.membership.delta) > self.membership.epsilon_budget {
            return Err(Box::new(PersonalizeError::BudgetExhausted {
                round: self.round,
                budget: self.membership.epsilon_budget,
                delta: self.membership.delta,
            }));
        }
        Ok(())
    }

    fn charge(&self, charge: &RoundCharge) -> std::result::Result<(), TrainerError> {
        self.library.borrow_mut().charge_upload(&NewUpload {
            membership_id: self.membership.id,
            round: charge.round,
            bytes_sent: 0,
            bytes_received: 0,
            rho: charge.rho,
            epsilon: charge.epsilon,
            upload_sha256: hex::encode(charge.upload_sha256),
            global_version: None,
            run_id: self.run_id.get(),
        })?;
        if let Some(survivors) = charge.survivors {
            self.progress.note(&format!(
                "round {}: only {survivors} devices survived, fewer than the noise was split over; \
                 booked at its true cost, epsilon {:.3}",
                charge.round, charge.epsilon
            ));
        }
        Ok(())
    }

    fn delta(&self, global: &GlobalAdapter) -> std::result::Result<Vec<f32>, TrainerError> {
        let mut library = self.library.borrow_mut();
        let update = train_from_global(
            &mut library,
            &self.request,
            global,
            self.progress,
            &self.cancel,
        )?;
        self.run_id.set(Some(update.run_id));
        // Training took over the progress display; hand it back to the
        // round (keys and shares are done, the upload comes next).
        self.progress
            .begin(&format!("federated round {}", self.round), Some(7));
        self.progress.advance(2);
        Ok(update.delta)
    }
}

/// Takes part in rounds of a membership as `hearth fed run` does: while not
/// cancelled (and fewer than `request.rounds` rounds were done), check in
/// (saying whether the policy allows taking part now), wait as the server
/// asks, and when drawn into a round: refuse it if it could take the person
/// past their privacy budget, train locally from the global adapter, upload
/// the clipped, noised, masked change, record the upload, and check the
/// server's transparency log for it (a failed check stops everything).
///
/// Sentences for the person go to `progress.note`; the round's steps and
/// the local training are its tasks. Refuses at once when this device's
/// base model is not the one the federation announced.
pub fn participate(
    library: &mut Library,
    request: &Participation,
    device: &dyn DeviceState,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<ParticipationSummary> {
    let stored = pick(library, request.membership)?;
    let mut record = record_of(&stored)?;
    if record.membership.policy.is_none() {
        // Stored before round policies were pinned at join: pin the one the
        // federation describes now (trust on first use), before any round.
        let identity = load_identity(&key_path(library.root(), &stored.federation_id))?;
        let probe =
            FedClient::with_options(record.membership.clone(), identity, request.client.clone())?;
        record.membership.policy = Some(probe.describe_policy().map_err(from_client)?);
        library.update_membership_record(stored.id, &json(&record)?)?;
    }
    let identity = load_identity(&key_path(library.root(), &stored.federation_id))?;
    let client =
        FedClient::with_options(record.membership.clone(), identity, request.client.clone())?;
    let policy = policy_of(&stored);
    let model = check_base_model(client.federation_info()?, request.model.as_deref())?;
    let mut summary = ParticipationSummary {
        epsilon_budget: stored.epsilon_budget,
        delta: stored.delta,
        ..ParticipationSummary::default()
    };
    let mut told: Option<Vec<String>> = None;
    while !cancel.is_cancelled() && request.rounds.is_none_or(|max| summary.rounds.len() < max) {
        let decision = policy.decide(&device.conditions());
        // Said once per change, not at every check-in.
        if told.as_ref() != Some(&decision.reasons) {
            if !decision.eligible {
                progress.note(&format!(
                    "not eligible now: {}",
                    decision.reasons.join(", ")
                ));
            }
            told = Some(decision.reasons.clone());
        }
        let wait = match client.checkin(decision.eligible).map_err(from_client)? {
            Checkin::ComeBackIn { seconds } => seconds,
            Checkin::Join { round, .. } => {
                let outcome = take_part(
                    library,
                    &stored,
                    &mut record,
                    &client,
                    round,
                    RoundTraining {
                        model: model.clone(),
                        label: request.label.clone(),
                        config: TrainConfig {
                            lora: lora_config_for(
                                client
                                    .federation_info()?
                                    .layout
                                    .tensors()
                                    .iter()
                                    .map(|t| (t.name.as_str(), t.shape.as_slice())),
                            )?,
                            steps: request.steps,
                            batch_size: request.batch_size,
                            seq_len: request.seq_len,
                            learning_rate: request.learning_rate,
                            warmup_steps: 0,
                            ..TrainConfig::default()
                        },
                        device: request.device,
                    },
                    progress,
                    cancel,
                )?;
                summary.rounds.push(outcome);
                0
            }
        };
        if wait > 0 {
            if request.once {
                progress.note(&format!(
                    "no round for this device now; the server asks to come back in {wait} s"
                ));
                summary.next_checkin_secs = Some(wait);
                break;
            }
            let until = Instant::now() + Duration::from_secs(u64::from(wait));
            while Instant::now() < until && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    summary.cancelled = cancel.is_cancelled();
    let rho = library.rho_spent(stored.id)?;
    summary.epsilon_spent = if rho > 0.0 {
        zcdp_epsilon(rho, stored.delta)
    } else {
        0.0
    };
    Ok(summary)
}

/// One round: budget check, training, upload, record, log audit.
#[allow(clippy::too_many_arguments)]
fn take_part(
    library: &mut Library,
    stored: &hearth_store::Membership,
    record: &mut Record,
    client: &FedClient,
    round: u64,
    training: RoundTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RoundOutcome> {
    // Round numbers only grow: one this device was already charged for (or
    // an older one) is a replay, or a round it left; refused before any
    // work. `TextTrainer::admit` checks again once the round is known.
    if let Some(last) = library
        .uploads(stored.id)?
        .iter()
        .map(|u| u.round)
        .max()
        .filter(|&last| last >= round)
    {
        return Err(PersonalizeError::RoundReplayed { round, last });
    }
    // A quick refusal before contacting the round, when even an estimate
    // takes the person past their budget: rounds charge what the last one
    // did (same policy); the first is estimated from the noise multiplier
    // (a lower bound). The exact cost is checked once the round's
    // parameters are known, before anything is announced
    // (`TextTrainer::admit`).
    let spent = library.rho_spent(stored.id)?;
    let info = client.federation_info()?;
    let next = match library.uploads(stored.id)?.last() {
        Some(last) => last.rho,
        None if info.dp.noise_multiplier > 0.0 => 1.0 / (2.0 * info.dp.noise_multiplier.powi(2)),
        None => f64::INFINITY,
    };
    if zcdp_epsilon(spent + next, stored.delta) > stored.epsilon_budget {
        return Err(PersonalizeError::BudgetExhausted {
            round,
            budget: stored.epsilon_budget,
            delta: stored.delta,
        });
    }
    let trainer = TextTrainer {
        library: RefCell::new(library),
        membership: stored,
        request: training,
        round,
        progress,
        cancel: cancel.clone(),
        run_id: Cell::new(None),
    };
    // The cohort is checked against the population this device replays
    // from the log, kept in its audit, so only new entries are fetched.
    let report = client
        .participate_audited(round, &trainer, progress, cancel, &mut record.audit)
        .map_err(from_client)?;
    let run_id = trainer.run_id.get();
    let library = trainer.library.into_inner();
    let upload_sha256 = hex::encode(report.upload_sha256);
    // The charge was booked before the upload left; now its outcome.
    if !library.complete_upload(
        stored.id,
        round,
        report.bytes_sent,
        report.bytes_received,
        report.global_version_after,
    )? {
        return Err(PersonalizeError::Inconsistent(format!(
            "round {round} completed without a booked privacy charge"
        )));
    }
    progress.note(&format!(
        "round {round}: sent {} bytes, epsilon {:.3} this round; global version {} published",
        report.bytes_sent, report.epsilon, report.global_version_after
    ));
    // The server's log must hold this upload and the new global adapter,
    // consistently with everything seen before.
    let verified = match client.audit_round(&mut record.audit, &report) {
        Ok(verified) => verified,
        Err(e) => {
            // This device's upload may be the one the log dropped or
            // swapped: its signed word is what lets other devices see it,
            // so post it anyway (best effort) before stopping.
            if let Ok(mine) = client.sign_upload(&report) {
                let _ = client.gossip_with(&mut record.audit, &[mine]);
            }
            return Err(PersonalizeError::Audit(e.to_string()));
        }
    };
    library.update_membership_record(stored.id, &json(record)?)?;
    // Compare heads with the federation's other devices, posting this
    // device's signed commitment to its upload for them to hold the log
    // to: a split view is kept in the record (so `hearth audit` reports it
    // from then on) and stops this device; gossip that cannot be had is
    // only noted.
    let mine = client.sign_upload(&report).map_err(from_client)?;
    match client.gossip_with(&mut record.audit, &[mine]) {
        Ok(report) => progress.note(&format!(
            "log heads compared with other devices: {} consistent with this one",
            report.consistent
        )),
        Err(FedClientError::Audit(e)) => {
            library.update_membership_record(stored.id, &json(record)?)?;
            return Err(PersonalizeError::Audit(e.to_string()));
        }
        Err(e) => progress.note(&format!("log heads not compared with other devices: {e}")),
    }
    progress.note(&format!(
        "round {round} verified in the server's transparency log ({} entries)",
        verified.head.size
    ));
    Ok(RoundOutcome {
        round,
        bytes_sent: report.bytes_sent,
        bytes_received: report.bytes_received,
        epsilon: report.epsilon,
        global_version: report.global_version_after,
        run_id,
        upload_sha256,
        log_size: verified.head.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_ids_from_the_server_must_be_plain_names() {
        for good in ["notes", "e2e", "team-1.v2", "a_b"] {
            assert!(check_federation_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", "a\\b", "x y"] {
            assert!(check_federation_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn off_by_default_and_nothing_to_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        let conditions = crate::eligibility::Conditions {
            on_power: Some(true),
            idle: Some(true),
            local_hour: 12,
        };
        struct Fixed(crate::eligibility::Conditions);
        impl DeviceState for Fixed {
            fn conditions(&self) -> crate::eligibility::Conditions {
                self.0
            }
        }
        assert!(
            status(&library, &Fixed(conditions))
                .expect("status")
                .is_empty()
        );
        assert!(history(&library).expect("history").is_empty());
        assert!(audit(&mut library).expect("audit").is_empty());
        assert!(matches!(
            leave(&mut library, None),
            Err(PersonalizeError::NotMember(_))
        ));
        assert!(matches!(
            set_policy(&mut library, None, &ParticipationPolicy::default()),
            Err(PersonalizeError::NotMember(_))
        ));
        let blank = JoinRequest {
            server_url: " ".into(),
            certificate_pem: String::new(),
            invite: "x".into(),
            epsilon_budget: 8.0,
            policy: ParticipationPolicy::default(),
        };
        assert!(matches!(
            join(&mut library, &blank),
            Err(PersonalizeError::Invalid(_))
        ));
        let no_budget = JoinRequest {
            server_url: "https://127.0.0.1:1".into(),
            epsilon_budget: f64::NAN,
            ..blank
        };
        assert!(matches!(
            join(&mut library, &no_budget),
            Err(PersonalizeError::Invalid(_))
        ));
    }

    #[test]
    fn identity_keys_round_trip_in_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = key_path(dir.path(), "notes");
        let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
        save_identity(&path, &identity).expect("save");
        let back = load_identity(&path).expect("load");
        assert_eq!(
            back.to_secret_bytes()[..],
            identity.to_secret_bytes()[..],
            "the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(
            load_identity(&path),
            Err(PersonalizeError::Inconsistent(_))
        ));
    }
}
