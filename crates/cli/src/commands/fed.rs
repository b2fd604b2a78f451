//! `hearth fed ...` and `hearth audit`: opting in to a federation, taking
//! part in rounds when the device is eligible, and seeing (and checking)
//! everything that was shared.
//!
//! Federation is off until the person joins one. What a round sends is
//! only a clipped, noised, quantized and masked change to the shared
//! adapter; every upload is recorded with its size, the privacy it spent
//! and the hash of the exact bytes sent, which the server's transparency
//! log must then contain (checked after every round).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hearth_fed::DeviceIdentity;
use hearth_fed::audit::LogAudit;
use hearth_fed::client::{
    Checkin, FedClient, GlobalAdapter, Membership, RoundTrainer, TrainerError,
};
use hearth_fed::dp::zcdp_epsilon;
use hearth_ml::candle::{Device, Tensor};
use hearth_personalize::eligibility::{DeviceState, LinuxDeviceState, ParticipationPolicy};
use hearth_personalize::federated::{RoundTraining, lora_config_for, train_round};
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::{Library, NewMembership, NewUpload};
use serde::{Deserialize, Serialize};

use crate::args::{FedCommand, FedJoinArgs, FedRunArgs};
use crate::output;
use crate::progress_bar::Bar;

/// What the library keeps about a membership (no secrets: the device's
/// key is in its own file).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    membership: Membership,
    /// The transparency-log auditor: pinned log key and verified heads.
    audit: LogAudit,
}

/// The device's identity key for a membership: a file only the person can
/// read, beside the library database.
fn key_path(library: &Library, federation: &str) -> PathBuf {
    library
        .root()
        .join("federation")
        .join(format!("{federation}.key"))
}

fn save_identity(path: &std::path::Path, identity: &DeviceIdentity) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(&identity.to_secret_bytes()[..])?;
    file.sync_all()?;
    Ok(())
}

fn load_identity(path: &std::path::Path) -> Result<DeviceIdentity> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .with_context(|| format!("{} is not a device key", path.display()))?;
    Ok(DeviceIdentity::from_secret_bytes(&secret))
}

pub fn fed(mut library: Library, command: FedCommand) -> Result<ExitCode> {
    match command {
        FedCommand::Join(args) => join(&mut library, args),
        FedCommand::Status { json } => status(&library, json),
        FedCommand::Leave { id } => {
            let memberships = library.active_memberships()?;
            let Some(membership) = memberships.iter().find(|m| id.is_none_or(|id| m.id == id))
            else {
                bail!("not a member of any federation");
            };
            if id.is_none() && memberships.len() > 1 {
                bail!("member of several federations: name one (hearth fed status)");
            }
            library.leave_federation(membership.id)?;
            println!(
                "left federation {} at {}: this device takes part in no more rounds; its upload history stays (hearth fed history)",
                membership.federation_id, membership.server_url
            );
            Ok(ExitCode::SUCCESS)
        }
        FedCommand::History { json } => history(&library, json),
        FedCommand::Run(args) => run(&mut library, args),
    }
}

fn join(library: &mut Library, args: FedJoinArgs) -> Result<ExitCode> {
    let certificate = std::fs::read_to_string(&args.cert)
        .with_context(|| format!("reading the server certificate {}", args.cert.display()))?;
    let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
    let membership = FedClient::enrol(&args.url, &certificate, &args.invite, &identity)?;
    let audit = FedClient::new(
        membership.clone(),
        DeviceIdentity::from_secret_bytes(&identity.to_secret_bytes()),
    )?
    .log_audit()?;
    let path = key_path(library, &membership.federation_id);
    save_identity(&path, &identity)?;
    let policy = ParticipationPolicy {
        require_power: !args.any_power,
        require_idle: !args.any_load,
        hours: args.hours,
    };
    let record = Record {
        membership: membership.clone(),
        audit,
    };
    let id = library.join_federation(&NewMembership {
        server_url: membership.server_url.clone(),
        federation_id: membership.federation_id.clone(),
        device_id: membership.device_id.clone(),
        record: serde_json::to_string(&record)?,
        epsilon_budget: args.epsilon_budget,
        delta: hearth_fed::dp::DEFAULT_DELTA,
        policy: serde_json::to_string(&policy)?,
    })?;
    println!(
        "joined federation {} at {} as device {} (membership {id})",
        membership.federation_id, membership.server_url, membership.device_id
    );
    println!(
        "what is shared, only during `hearth fed run` and only when eligible: a change to the \
shared adapter, clipped, noised for differential privacy (budget epsilon {} at delta {:e}), \
quantized and masked so the server can only add it to the others; never your texts, photos or \
adapters. Every upload is listed by `hearth fed history` and checked against the server's \
public log.",
        args.epsilon_budget,
        hearth_fed::dp::DEFAULT_DELTA
    );
    Ok(ExitCode::SUCCESS)
}

fn status(library: &Library, json: bool) -> Result<ExitCode> {
    let memberships = library.active_memberships()?;
    let decision = LinuxDeviceState::default().conditions();
    let mut rows = Vec::new();
    for m in &memberships {
        let policy: ParticipationPolicy = serde_json::from_str(&m.policy).unwrap_or_default();
        let spent = zcdp_epsilon(library.rho_spent(m.id)?, m.delta);
        let uploads = library.uploads(m.id)?.len();
        rows.push(serde_json::json!({
            "membership": m.id,
            "server": m.server_url,
            "federation": m.federation_id,
            "device": m.device_id,
            "joined_at": m.joined_at,
            "uploads": uploads,
            "epsilon_spent": if library.rho_spent(m.id)? > 0.0 { Some(spent) } else { None },
            "epsilon_budget": m.epsilon_budget,
            "delta": m.delta,
            "eligible_now": policy.decide(&decision),
        }));
    }
    if json {
        output::json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "federation is off: this device is a member of no federation, and nothing leaves it"
        );
        return Ok(ExitCode::SUCCESS);
    }
    for row in rows {
        println!(
            "membership {}: federation {} at {} (device {})",
            row["membership"], row["federation"], row["server"], row["device"]
        );
        println!(
            "  {} uploads; privacy spent: epsilon {} of {} (delta {})",
            row["uploads"],
            row["epsilon_spent"]
                .as_f64()
                .map_or("0".to_owned(), |e| format!("{e:.3}")),
            row["epsilon_budget"],
            row["delta"]
        );
        let eligible = &row["eligible_now"];
        if eligible["eligible"].as_bool() == Some(true) {
            println!("  eligible to take part now");
        } else {
            println!("  not eligible now: {}", eligible["reasons"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn history(library: &Library, json: bool) -> Result<ExitCode> {
    let mut all = Vec::new();
    for m in library.active_memberships()? {
        for upload in library.uploads(m.id)? {
            all.push((m.federation_id.clone(), m.delta, upload));
        }
    }
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|(f, _, u)| serde_json::json!({"federation": f, "upload": u}))
            .collect();
        output::json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("nothing has been uploaded");
    }
    for (federation, _, u) in &all {
        println!(
            "{}  federation {federation} round {:>4}: sent {} bytes, received {} bytes, epsilon {:.3}, upload sha256 {}",
            u.uploaded_at,
            u.round,
            u.bytes_sent,
            u.bytes_received,
            u.epsilon,
            &u.upload_sha256[..16]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The text trainer as a round trainer: local LoRA training on this
/// library's texts from the global adapter.
struct TextTrainer<'a> {
    library: RefCell<&'a mut Library>,
    request: RoundTraining,
    cancel: CancelToken,
    run_id: RefCell<Option<i64>>,
}

impl RoundTrainer for TextTrainer<'_> {
    fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError> {
        let tensors: HashMap<String, Tensor> =
            hearth_ml::candle::safetensors::load_buffer(global.bytes(), &Device::Cpu)?;
        let order: Vec<(String, Vec<usize>)> = global
            .layout()
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let mut library = self.library.borrow_mut();
        let update = train_round(
            &mut library,
            &self.request,
            &tensors,
            &hex::encode(global.sha256()),
            &order,
            &Bar::new(false),
            &self.cancel,
        )?;
        *self.run_id.borrow_mut() = Some(update.run_id);
        Ok(update.delta)
    }
}

fn run(library: &mut Library, args: FedRunArgs) -> Result<ExitCode> {
    let memberships = library.active_memberships()?;
    let Some(stored) = memberships.first().cloned() else {
        bail!(
            "not a member of any federation: federation is off (hearth fed join URL --invite TOKEN --cert PEM)"
        );
    };
    let mut record: Record = serde_json::from_str(&stored.record)
        .context("the stored membership record is unreadable")?;
    let identity = load_identity(&key_path(library, &stored.federation_id))?;
    let client = FedClient::new(record.membership.clone(), identity)?;
    let policy: ParticipationPolicy = serde_json::from_str(&stored.policy).unwrap_or_default();
    let device = LinuxDeviceState::default();
    let cancel = CancelToken::new();
    let on_interrupt = cancel.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.cancel());
    let mut rounds_done = 0usize;
    while !cancel.is_cancelled() && args.rounds.is_none_or(|max| rounds_done < max) {
        let decision = policy.decide(&device.conditions());
        if !decision.eligible {
            eprintln!("not eligible now: {}", decision.reasons.join(", "));
        }
        let wait = match client.checkin(decision.eligible)? {
            Checkin::ComeBackIn { seconds } => seconds,
            Checkin::Join { round, .. } => {
                // Refuse before training when the round could take the
                // person past their budget: rounds charge what the last
                // one did (same policy); the first is estimated from the
                // federation's noise multiplier.
                let spent = library.rho_spent(stored.id)?;
                let info = client.federation_info()?;
                let next = match library.uploads(stored.id)?.last() {
                    Some(last) => last.rho,
                    None if info.dp.noise_multiplier > 0.0 => {
                        1.0 / (2.0 * info.dp.noise_multiplier.powi(2))
                    }
                    None => f64::INFINITY,
                };
                if zcdp_epsilon(spent + next, stored.delta) > stored.epsilon_budget {
                    bail!(
                        "taking part in round {round} would spend more than your privacy budget (epsilon {} at delta {:e}); not participating",
                        stored.epsilon_budget,
                        stored.delta
                    );
                }
                let lora = lora_config_for(
                    info.layout
                        .tensors()
                        .iter()
                        .map(|t| (t.name.as_str(), t.shape.as_slice())),
                )?;
                let trainer = TextTrainer {
                    library: RefCell::new(&mut *library),
                    request: RoundTraining {
                        model: args.model.clone(),
                        label: args.label.clone(),
                        config: hearth_ml::train::TrainConfig {
                            lora,
                            steps: args.steps,
                            batch_size: args.batch,
                            seq_len: args.seq,
                            learning_rate: args.learning_rate,
                            warmup_steps: 0,
                            ..hearth_ml::train::TrainConfig::default()
                        },
                        device: args.device,
                    },
                    cancel: cancel.clone(),
                    run_id: RefCell::new(None),
                };
                let report = client.participate(round, &trainer, &NoProgress, &cancel)?;
                let run_id = *trainer.run_id.borrow();
                drop(trainer);
                library.record_upload(&NewUpload {
                    membership_id: stored.id,
                    round,
                    bytes_sent: report.bytes_sent,
                    bytes_received: report.bytes_received,
                    rho: report.rho,
                    epsilon: report.epsilon,
                    upload_sha256: hex::encode(report.upload_sha256),
                    global_version: Some(report.global_version_after),
                    run_id,
                })?;
                println!(
                    "round {round}: sent {} bytes, epsilon {:.3} this round; global version {} published",
                    report.bytes_sent, report.epsilon, report.global_version_after
                );
                // The server's log must hold this upload and the new global
                // adapter, consistently with everything seen before.
                match client.audit_round(&mut record.audit, &report) {
                    Ok(_) => {
                        library.update_membership_record(
                            stored.id,
                            &serde_json::to_string(&record)?,
                        )?;
                        println!("  verified in the server's transparency log");
                    }
                    Err(error) => {
                        bail!(
                            "the server's transparency log does not check out ({error}); stopping participation"
                        );
                    }
                }
                rounds_done += 1;
                0
            }
        };
        if wait > 0 {
            if args.once {
                println!("no round for this device now; the server asks to come back in {wait} s");
                break;
            }
            let until = std::time::Instant::now() + Duration::from_secs(u64::from(wait));
            while std::time::Instant::now() < until && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hearth audit`: re-verifies everything stored about every federation
/// log this device watches.
pub fn audit(library: Library) -> Result<ExitCode> {
    let memberships = library.active_memberships()?;
    if memberships.is_empty() {
        println!("no federation memberships: nothing to audit");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for m in memberships {
        let record: Record = serde_json::from_str(&m.record)
            .context("the stored membership record is unreadable")?;
        match hearth_fed::audit::audit_all(&record.audit) {
            Ok(report) => println!("federation {}: {report:?}", m.federation_id),
            Err(error) => {
                failed = true;
                println!("federation {}: FAILED: {error}", m.federation_id);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
