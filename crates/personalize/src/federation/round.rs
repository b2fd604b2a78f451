//! The round loop (`hearth fed run`): check in when eligible, refuse
//! rounds past the privacy budget or with another base model, train,
//! charge the budget before the upload, upload, record, audit.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use hearth_fed::client::{
    Checkin, FedClient, FedClientError, FederationInfo, GlobalAdapter, RoundCharge, RoundTrainer,
    TrainerError,
};
use hearth_fed::dp::zcdp_epsilon;
use hearth_ml::candle::Device;
use hearth_ml::registry;
use hearth_ml::train::TrainConfig;
use hearth_progress::{CancelToken, Progress};
use hearth_store::{Library, NewUpload};

use crate::eligibility::DeviceState;
use crate::error::{PersonalizeError, Result};
use crate::federated::{RoundTraining, lora_config_for, train_from_global};

use super::{
    Participation, ParticipationSummary, Record, RoundOutcome, from_client, json, key_path,
    load_identity, pick, policy_of, record_of,
};

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
