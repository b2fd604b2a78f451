//! One round over HTTP: the client state machine of
//! [`protocol::client`](crate::protocol::client), each step's message
//! posted to its endpoint and each next message obtained by polling.
//!
//! The update is trained only after the shares arrived (step 4): the key
//! stages have short deadlines, the upload stage the long one, so a slow
//! trainer never costs the device its place in the cohort. The privatised
//! update exists only inside this call: it is clipped, noised, quantized
//! and masked before anything leaves, and the state holding the masking
//! secrets is consumed step by step (a crash or error simply drops the
//! device from the round, which the protocol tolerates).

use std::time::{Duration, Instant};

use hearth_progress::{CancelToken, Progress};
use rand::rngs::OsRng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::http::{Call, Traffic, sleep};
use super::{FedClient, FedClientError, GlobalAdapter};
use crate::api::{RoundEndpoint, RoundPoll, RoundReceipt};
use crate::audit::LogAudit;
use crate::dp::zcdp_epsilon;
use crate::protocol::{ClientError, ClientRound};
use crate::wire::{RoundInfo, ServerMessage};

/// What a trainer may fail with.
pub type TrainerError = Box<dyn std::error::Error + Send + Sync>;

/// A privacy charge to book, durably, before anything it pays for leaves
/// the device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundCharge {
    /// The round.
    pub round: u64,
    /// zCDP `rho` of this device's contribution.
    pub rho: f64,
    /// The same as ε at the federation's δ.
    pub epsilon: f64,
    /// SHA-256 of the masked upload this charge pays for.
    pub upload_sha256: [u8; 32],
    /// `Some(n)` when the charge was raised after the fact: the round's
    /// survivor set had `n` devices, fewer than the noise split assumed, so
    /// the upload carries less noise in the sum than booked at first.
    pub survivors: Option<u32>,
}

/// Produces this device's update for a round. The protocol takes any flat
/// `f32` vector of the federation's parameter count (in the layout's
/// order); the text LoRA trainer is one implementation.
pub trait RoundTrainer {
    /// Called with the round number and its exact privacy cost (zCDP
    /// `rho`, from the round's own noise and cohort) once the round's
    /// parameters passed the pinned policy, before this device announces
    /// anything for the round; an error withdraws the device, which the
    /// server then counts as a dropout before key exchange. The person's
    /// privacy budget is enforced here, and a round number this device has
    /// already been charged for (a replay) is refused here.
    fn admit(&self, round: u64, rho: f64) -> Result<(), TrainerError> {
        let _ = (round, rho);
        Ok(())
    }

    /// Books a privacy charge durably. Called with the round's cost after
    /// the update is masked and *before* the upload is sent, so a cancel,
    /// a crash, a time-out or an abort after the upload still leaves the
    /// charge on the books; called again with a higher `rho` if the survivor
    /// set turns out smaller than the noise split assumed (keep the larger
    /// charge per round). An error keeps the upload on the device.
    fn charge(&self, charge: &RoundCharge) -> Result<(), TrainerError>;

    /// The update (new local adapter minus `global`, typically), flat.
    fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError>;

    /// Sees this device's own clipped, noised, quantized update just before
    /// it is masked: for audits of what was contributed (and for tests).
    /// Nothing leaves the device through it.
    fn encoded(&self, quantized: &[u32]) {
        let _ = quantized;
    }
}

/// What taking part in a round cost and produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipationReport {
    /// The round.
    pub round: u64,
    /// Request body bytes sent, every attempt counted.
    pub bytes_sent: u64,
    /// Response body bytes received (the global adapter included).
    pub bytes_received: u64,
    /// zCDP ρ this round charged this device.
    pub rho: f64,
    /// The same as ε at the federation's δ (infinite without noise).
    pub epsilon: f64,
    /// δ of `epsilon`.
    pub delta: f64,
    /// The global version the round published.
    pub global_version_after: u64,
    /// SHA-256 of the masked upload exactly as sent: what the server's
    /// transparency log must hold this device's commitment to
    /// ([`FedClient::audit_round`]).
    pub upload_sha256: [u8; 32],
    /// The round's parameters as this device received them (and bound
    /// every signature to): the log must hold them
    /// ([`FedClient::audit_round`]).
    pub round_info: RoundInfo,
    /// The signed tree head the round's cohort was checked under (enrolled,
    /// none revoked): [`FedClient::audit_round`] joins it to this device's
    /// verified history. `None` for a report that checked no cohort.
    pub cohort_head: Option<hearth_ledger::SignedTreeHead>,
}

/// State shared by the steps of one participation.
struct Walk<'a> {
    client: &'a FedClient,
    round: u64,
    traffic: Traffic,
    cancel: &'a CancelToken,
    deadline: Instant,
    uploaded: bool,
}

impl Walk<'_> {
    fn check(&self) -> Result<(), FedClientError> {
        if self.cancel.is_cancelled() {
            return Err(FedClientError::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(FedClientError::TimedOut {
                round: self.round,
                limit: self.client.options.round_timeout,
            });
        }
        Ok(())
    }

    fn path(&self, endpoint: RoundEndpoint) -> String {
        endpoint.path(&self.client.membership.federation_id, self.round)
    }

    fn poll(&self) -> Result<RoundPoll, FedClientError> {
        let path = self.path(RoundEndpoint::Poll);
        self.client
            .http
            .send(
                &self.client.signed("GET", &path, &[]),
                &self.traffic,
                Some(self.cancel),
            )?
            .json()
    }

    /// Polls until the server has a message for this device; waits as it
    /// says, within the client's bounds.
    fn next_message(&self) -> Result<ServerMessage, FedClientError> {
        let options = &self.client.options;
        loop {
            self.check()?;
            match self.poll()? {
                RoundPoll::Message { message } => return Ok(message),
                RoundPoll::Wait { retry_after_ms } => {
                    let pause = Duration::from_millis(retry_after_ms)
                        .clamp(options.min_poll_interval, options.max_poll_interval);
                    sleep(pause.min(self.remaining()), Some(self.cancel))?;
                }
                other => return Err(self.ended(other)),
            }
        }
    }

    /// Polls until the round is published (or aborted).
    fn outcome(&self) -> Result<u64, FedClientError> {
        let options = &self.client.options;
        loop {
            self.check()?;
            match self.poll()? {
                RoundPoll::Done { global_version } => return Ok(global_version),
                RoundPoll::Wait { retry_after_ms } => {
                    let pause = Duration::from_millis(retry_after_ms)
                        .clamp(options.min_poll_interval, options.max_poll_interval);
                    sleep(pause.min(self.remaining()), Some(self.cancel))?;
                }
                RoundPoll::Message { message } => {
                    return Err(FedClientError::BadResponse(format!(
                        "a {} after this device finished the round",
                        kind(&message)
                    )));
                }
                other => return Err(self.ended(other)),
            }
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The error for a poll answer that ends this device's part.
    fn ended(&self, answer: RoundPoll) -> FedClientError {
        match answer {
            RoundPoll::Aborted { reason } => FedClientError::RoundAborted {
                round: self.round,
                reason,
                uploaded: self.uploaded,
            },
            RoundPoll::Excluded { reason } => FedClientError::Excluded {
                round: self.round,
                reason,
            },
            RoundPoll::Done { global_version } => FedClientError::Excluded {
                round: self.round,
                reason: format!(
                    "the round finished (global version {global_version}) without this device"
                ),
            },
            RoundPoll::Message { message } => {
                FedClientError::BadResponse(format!("unexpected {}", kind(&message)))
            }
            RoundPoll::Wait { .. } => FedClientError::BadResponse("unexpected wait".into()),
        }
    }

    /// Posts a step's message. A message the server already holds (the
    /// answer to an earlier attempt was lost) counts as delivered.
    fn post(
        &self,
        endpoint: RoundEndpoint,
        body: &[u8],
        content_type: &'static str,
    ) -> Result<(), FedClientError> {
        self.check()?;
        let path = self.path(endpoint);
        let mut call: Call<'_> = self.client.signed("POST", &path, body);
        call.content_type = Some(content_type);
        match self
            .client
            .http
            .send(&call, &self.traffic, Some(self.cancel))
        {
            Ok(reply) => {
                let _receipt: RoundReceipt = reply.json()?;
                Ok(())
            }
            Err(FedClientError::Rejected { kind, .. }) if kind == "already_received" => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn post_json(
        &self,
        endpoint: RoundEndpoint,
        message: &impl Serialize,
    ) -> Result<(), FedClientError> {
        let body =
            serde_json::to_vec(message).map_err(|e| FedClientError::BadResponse(e.to_string()))?;
        self.post(endpoint, &body, "application/json")
    }
}

fn kind(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::RoundInfo(_) => "round info",
        ServerMessage::NeighbourKeys(_) => "neighbour keys message",
        ServerMessage::SharesForDevice(_) => "shares message",
        ServerMessage::SurvivorSet(_) => "survivor set",
        ServerMessage::UnmaskRequest(_) => "unmask request",
    }
}

fn expected(what: &str, got: &ServerMessage) -> FedClientError {
    FedClientError::BadResponse(format!("expected {what}, got a {}", kind(got)))
}

impl FedClient {
    /// Takes part in `round` (which a check-in said to join): advertises
    /// round keys, shares its masking secrets with its neighbours, trains
    /// with `trainer` from the current global adapter, clips, noises and
    /// quantizes the update with the federation's DP policy, masks and
    /// uploads it, helps unmask the sum, and waits for the published
    /// version. Every wait is bounded by [`ClientOptions::round_timeout`]
    /// and ends early on `cancel`.
    ///
    /// The cohort is checked against a fresh audit of the log (a replay of
    /// the whole log, trusting the first head it sees): a device that keeps
    /// its audit calls [`FedClient::participate_audited`] instead.
    ///
    /// [`ClientOptions::round_timeout`]: super::ClientOptions::round_timeout
    pub fn participate(
        &self,
        round: u64,
        trainer: &dyn RoundTrainer,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<ParticipationReport, FedClientError> {
        let mut audit = self.log_audit()?;
        self.participate_audited(round, trainer, progress, cancel, &mut audit)
    }

    /// [`FedClient::participate`] with the device's stored audit of the
    /// log: before sealing a share, the round's cohort is checked against
    /// the federation's population replayed from the log, under a head
    /// joined to `audit`'s verified history
    /// ([`LogAudit::check_cohort`]). Only the entries since the last
    /// round are fetched. `audit` may move on (a newer head, a longer
    /// replay) even when the round then fails: store it either way.
    pub fn participate_audited(
        &self,
        round: u64,
        trainer: &dyn RoundTrainer,
        progress: &dyn Progress,
        cancel: &CancelToken,
        audit: &mut LogAudit,
    ) -> Result<ParticipationReport, FedClientError> {
        progress.begin(&format!("federated round {round}"), Some(7));
        let result = self.walk(round, trainer, progress, cancel, audit);
        progress.end();
        result
    }

    fn walk(
        &self,
        round: u64,
        trainer: &dyn RoundTrainer,
        progress: &dyn Progress,
        cancel: &CancelToken,
        audit: &mut LogAudit,
    ) -> Result<ParticipationReport, FedClientError> {
        let mut walk = Walk {
            client: self,
            round,
            traffic: Traffic::default(),
            cancel,
            deadline: Instant::now() + self.options.round_timeout,
            uploaded: false,
        };
        let delta = self.federation_info()?.delta;

        // Step 1: the round's parameters, checked to be this federation's
        // and this round; fresh signed round keys.
        let info: RoundInfo = match walk.next_message()? {
            ServerMessage::RoundInfo(info) => info,
            other => return Err(expected("round info", &other)),
        };
        if info.federation != self.federation() || info.round.0 != round {
            return Err(FedClientError::BadResponse(format!(
                "round info is for federation {} round {}, not {} round {round}",
                info.federation,
                info.round,
                self.federation()
            )));
        }
        let layout_len = self.federation_info()?.layout.parameter_count();
        if info.vector_len as usize != layout_len {
            return Err(FedClientError::BadResponse(format!(
                "round vector has {} parameters, the federation's adapter {layout_len}",
                info.vector_len
            )));
        }
        // Every privacy-relevant parameter against what this device agreed
        // to when it joined, before it announces anything.
        self.membership
            .policy
            .as_ref()
            .ok_or(FedClientError::NoPinnedPolicy)?
            .check(&info)?;
        let dp = info.distributed_dp()?;
        let rho = dp.rho_per_round(info.vector_len as usize);
        trainer.admit(round, rho).map_err(FedClientError::Trainer)?;
        self.check_parameters_logged(&info, &walk.traffic)?;
        let (advert, state) = ClientRound::new(&self.identity, info.clone(), &mut OsRng)?;
        walk.post_json(RoundEndpoint::Keys, &advert)?;
        progress.advance(1);

        // Steps 2–3: neighbours' keys in, sealed shares out.
        let keys = match walk.next_message()? {
            ServerMessage::NeighbourKeys(keys) => keys,
            other => return Err(expected("neighbour keys", &other)),
        };
        let (shares, state) = state.receive_neighbours(&keys, &mut OsRng)?;
        // The cohort passed the state machine's checks (sorted, within the
        // round's bounds, this device in it). No share leaves for a device
        // the federation's public log does not show enrolled, or shows
        // revoked: the server cannot pick this device's neighbours, or pad
        // the survivors, with keys of its own.
        let cohort_head =
            self.check_cohort_in_log(audit, info.round, &keys.cohort, &walk.traffic)?;
        walk.post_json(RoundEndpoint::Shares, &shares)?;
        progress.advance(2);

        // Step 4: the shares sealed to this device; then train.
        let forwarded = match walk.next_message()? {
            ServerMessage::SharesForDevice(forwarded) => forwarded,
            other => return Err(expected("shares", &other)),
        };
        let ready = state.receive_shares(&forwarded)?;
        walk.check()?;
        let global = self.fetch_global_counted(&walk.traffic, Some(cancel))?;
        progress.note(&format!(
            "training from global version {}",
            global.version()
        ));
        let update = trainer.delta(&global).map_err(FedClientError::Trainer)?;
        walk.check()?;
        if update.len() != info.vector_len as usize {
            return Err(FedClientError::UpdateLength {
                expected: info.vector_len as usize,
                got: update.len(),
            });
        }
        progress.advance(3);

        // Step 5: privatise, mask, upload.
        let quantized = dp.encode(&update, &mut OsRng)?;
        drop(update);
        trainer.encoded(&quantized);
        let (upload, state) = ready.upload(&quantized)?;
        drop(quantized);
        let upload_bytes = upload.encode();
        // Hashed here, over the bytes that go on the wire, so the audit
        // looks for exactly what the server received.
        let upload_sha256: [u8; 32] = Sha256::digest(&upload_bytes).into();
        // Booked before a byte of it leaves: whatever happens next (a
        // cancel, a crash, an abort), the upload is paid for.
        trainer
            .charge(&RoundCharge {
                round,
                rho,
                epsilon: zcdp_epsilon(rho, delta),
                upload_sha256,
                survivors: None,
            })
            .map_err(FedClientError::Trainer)?;
        walk.post(
            RoundEndpoint::Upload,
            &upload_bytes,
            "application/octet-stream",
        )?;
        drop(upload_bytes);
        walk.uploaded = true;
        progress.advance(4);

        // Steps 6–7: the consistency round. Sign the survivor set (only one
        // that includes this device); nothing is revealed yet.
        let survivors = match walk.next_message()? {
            ServerMessage::SurvivorSet(survivors) => survivors,
            other => return Err(expected("the survivor set", &other)),
        };
        let (signature, state) = match state.sign_survivors(&self.identity, &survivors) {
            Ok(signed) => signed,
            Err(ClientError::TooFewSurvivorsInRound { have, need }) => {
                // Fewer devices than the noise was split over: whatever the
                // server does with this upload, it carries only `have` noise
                // shares. Book the true, higher cost, then refuse.
                let true_rho = dp.rho_with_noise_shares(info.vector_len as usize, have as u32);
                trainer
                    .charge(&RoundCharge {
                        round,
                        rho: true_rho,
                        epsilon: zcdp_epsilon(true_rho, delta),
                        upload_sha256,
                        survivors: Some(have as u32),
                    })
                    .map_err(FedClientError::Trainer)?;
                return Err(ClientError::TooFewSurvivorsInRound { have, need }.into());
            }
            Err(e) => return Err(e.into()),
        };
        walk.post_json(RoundEndpoint::Consistency, &signature)?;
        progress.advance(5);

        // Steps 8–9: with t neighbours' signatures over the same set,
        // reveal what the server needs to unmask the sum.
        let request = match walk.next_message()? {
            ServerMessage::UnmaskRequest(request) => request,
            other => return Err(expected("an unmask request", &other)),
        };
        let response = state.respond(&request)?;
        walk.post_json(RoundEndpoint::Unmask, &response)?;
        progress.advance(6);

        let global_version_after = walk.outcome()?;
        progress.advance(7);
        Ok(ParticipationReport {
            round,
            bytes_sent: walk.traffic.sent.get(),
            bytes_received: walk.traffic.received.get(),
            rho,
            epsilon: zcdp_epsilon(rho, delta),
            delta,
            global_version_after,
            upload_sha256,
            round_info: info,
            cohort_head: Some(cohort_head),
        })
    }
}
