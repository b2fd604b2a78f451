//! The real round protocol: hearth-fed's SecAgg+ [`AggregatorRound`],
//! stored as its serde JSON after every step, mapped onto the server's
//! [`Stage`]s, and finished by averaging the unmasked sum into the global
//! adapter and signing the result.
//!
//! | hearth-fed stage | server stage | closes early when |
//! |------------------|--------------|-------------------|
//! | collecting keys | `advertise_keys` | every invited device advertised |
//! | sharing keys | `share_keys` | every advertiser sent its shares |
//! | collecting uploads | `masked_input` | every sharer uploaded |
//! | checking consistency | `consistency_check` | every uploader signed the survivor set |
//! | unmasking | `unmasking` | every signer answered |
//!
//! Otherwise a stage closes at its deadline with whoever answered (the
//! sweeper calls [`RoundProtocol::close_stage`]); hearth-fed aborts the
//! round when too few remain. Round parameters come from the federation:
//! the vector is the adapter's parameter count, the cohort bounds are
//! `min_clients` (also the fewest survivors unmasked, over which the DP
//! noise is split) up to the invited cohort's size, and `k`/`t` are the
//! configured ones (automatic ones are resolved by hearth-fed for the
//! cohort that actually advertised).
//!
//! The server keeps each round decoded in memory ([`crate::live`]): a
//! message is applied to that state and stored as a journal entry (the
//! JSON message, or the upload's bytes) appended in the transaction that
//! acknowledges it; the state is stored whole, as its serde JSON, when a
//! stage changes or the journal has grown to [`JOURNAL_FACTOR`] times the
//! last whole state. Loading replays the journal onto the whole state.
//!
//! What the stored state holds is only what hearth-fed's server states
//! hold: public keys, sealed shares, the *running sum* of masked uploads
//! (after the first upload, that one masked vector; never a plaintext
//! update), and revealed shares. Between whole stores the journal also
//! holds the masked uploads themselves, as received: masked, exactly what
//! the server sees in transit, and gone at the next whole store.

use hearth_fed::api::RoundPoll;
use hearth_fed::dp::zcdp_epsilon;
use hearth_fed::global::{GlobalStatement, adapter_sha256, apply_mean};
use hearth_fed::wire::codec;
use hearth_fed::{
    AggregatorRound, ClientMessage, DeviceId, DeviceStatus, Done, FederationId, GraphSeed, RoundId,
    RoundInfo, ServerError, Stage,
};
use rand::rngs::OsRng;

use crate::adapter::{SIGNATURE_KEY, STATEMENT_KEY};
use crate::config::FederationConfig;
use crate::rounds::{
    AcceptedUpload, Incoming, LiveRound, Poll, ProtocolError, PublishStep, Rejection, RoundInput,
    RoundProtocol, RoundSetup, RoundState, Step, StepContext,
};
use crate::storage::{RoundParameters, RoundRecord};

/// SecAgg+ rounds (Bell et al. 2020) with distributed DP, as implemented
/// by hearth-fed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecAggRounds;

/// The stage a round in `stage` is kept in flight at (`None`: the round
/// ended).
pub fn server_stage(stage: Stage) -> Option<Stage> {
    stage.is_live().then_some(stage)
}

/// The parameters every device of a round checks: from the federation's
/// configuration and the invited cohort's size.
pub fn round_info(
    federation: &FederationConfig,
    round: u64,
    cohort_size: u32,
) -> Result<RoundInfo, ProtocolError> {
    let vector_len = u32::try_from(federation.parameter_count()).map_err(|_| {
        ProtocolError(format!(
            "{} adapter parameters do not fit a round",
            federation.parameter_count()
        ))
    })?;
    let min = federation.min_clients.min(cohort_size);
    let info = RoundInfo {
        federation: FederationId::from_name(&federation.id),
        round: RoundId(round),
        vector_len,
        min_clients: min,
        max_clients: cohort_size,
        min_survivors: min,
        degree: federation.secagg.neighbours,
        threshold: federation.secagg.threshold,
        graph_seed: GraphSeed::random(&mut OsRng),
        dp: federation.dp.protocol,
        threat_model: Some(federation.secagg.threat_model()),
    };
    info.validate()
        .map_err(|e| ProtocolError(format!("round parameters: {e}")))?;
    Ok(info)
}

/// The ε one round of `info` costs each contributor at `delta` (`None`
/// when it adds no noise: no finite guarantee).
pub fn round_epsilon(info: &RoundInfo, delta: f64) -> Option<f64> {
    let dp = info.distributed_dp().ok()?;
    let epsilon = zcdp_epsilon(dp.rho_per_round(info.vector_len as usize), delta);
    epsilon.is_finite().then_some(epsilon)
}

/// The journal may grow to this many times the last whole state before the
/// state is stored whole again: replay and disk stay within a constant of
/// the state, and each message costs its own bytes plus, amortized, a
/// quarter of its size in state writes.
const JOURNAL_FACTOR: usize = 4;
/// The journal may always grow this far (small states early in a round).
const MIN_JOURNAL_BYTES: usize = 1 << 20;
/// Journal entry tags: a JSON [`ClientMessage`], or a binary masked upload.
const ENTRY_MESSAGE: u8 = 1;
const ENTRY_UPLOAD: u8 = 2;

fn decode(round: &RoundRecord) -> Result<AggregatorRound, ProtocolError> {
    let state: AggregatorRound = serde_json::from_slice(&round.state)
        .map_err(|e| ProtocolError(format!("round state does not decode: {e}")))?;
    let info = state.info();
    if info.round.0 != round.summary.round
        || info.federation != FederationId::from_name(&round.summary.federation_id)
    {
        return Err(ProtocolError(format!(
            "state is for round {} of {}, stored as round {} of {}",
            info.round,
            info.federation,
            round.summary.round,
            FederationId::from_name(&round.summary.federation_id)
        )));
    }
    Ok(state)
}

/// The state stored whole: its serde JSON, the form every earlier build
/// stored too, so rounds in flight across an upgrade resume. (The sum is
/// one base64 string in it, not a JSON number per word.) Written once per
/// stage and when the journal outgrows it, never per message.
fn encode(state: &AggregatorRound) -> Result<RoundState, ProtocolError> {
    let stage = server_stage(state.stage()).ok_or_else(|| {
        ProtocolError(format!("a {} round is not stored in flight", state.stage()))
    })?;
    let blob = serde_json::to_vec(state).map_err(|e| ProtocolError(e.to_string()))?;
    Ok(RoundState { stage, blob })
}

/// Applies one journal entry (as [`SecAggLive::journal`] wrote it).
fn replay(state: &mut AggregatorRound, entry: &[u8]) -> Result<(), ProtocolError> {
    let fail = |e: &dyn std::fmt::Display| ProtocolError(format!("journal entry: {e}"));
    match entry.split_first() {
        Some((&ENTRY_MESSAGE, json)) => {
            let message: ClientMessage = serde_json::from_slice(json).map_err(|e| fail(&e))?;
            state.receive(message).map_err(|e| fail(&e))
        }
        Some((&ENTRY_UPLOAD, bytes)) => state
            .receive_upload_bytes(bytes)
            .map(drop)
            .map_err(|e| fail(&e)),
        _ => Err(ProtocolError("journal entry of unknown kind".into())),
    }
}

/// A SecAgg+ round decoded, with what deciding between a journal entry
/// and a whole state needs.
struct SecAggLive {
    /// `None` once the round ended.
    state: Option<AggregatorRound>,
    cohort_size: usize,
    /// Size of the state as last stored whole.
    checkpoint_bytes: usize,
    /// Journal bytes stored since.
    journal_bytes: usize,
}

impl SecAggLive {
    fn state(&self) -> Result<&AggregatorRound, ProtocolError> {
        self.state
            .as_ref()
            .ok_or_else(|| ProtocolError("the round has ended".into()))
    }

    /// The step that stores what a message changed: the message as a
    /// journal entry (`tag`, `body`), or the whole state when the journal
    /// has outgrown it.
    fn journal(
        &mut self,
        tag: u8,
        body: &[u8],
        upload: Option<AcceptedUpload>,
    ) -> Result<Step, ProtocolError> {
        let state = self.state()?;
        let grown = self.journal_bytes + 1 + body.len();
        if grown > MIN_JOURNAL_BYTES.max(JOURNAL_FACTOR * self.checkpoint_bytes) {
            let whole = encode(state)?;
            self.checkpoint_bytes = whole.blob.len();
            self.journal_bytes = 0;
            return Ok(Step::Continue {
                state: whole,
                upload,
            });
        }
        let stage = server_stage(state.stage())
            .ok_or_else(|| ProtocolError(format!("a {} round is not in flight", state.stage())))?;
        let mut entry = Vec::with_capacity(1 + body.len());
        entry.push(tag);
        entry.extend_from_slice(body);
        self.journal_bytes = grown;
        Ok(Step::Append {
            stage,
            entry,
            upload,
        })
    }

    /// Turns a state after a close into the step to persist.
    fn settle(
        &mut self,
        ctx: &StepContext<'_>,
        state: AggregatorRound,
        upload: Option<AcceptedUpload>,
    ) -> Result<Step, ProtocolError> {
        match state {
            AggregatorRound::Aborted(aborted) => Ok(Step::Abort(format!(
                "{} (at {})",
                aborted.reason(),
                aborted.stage()
            ))),
            AggregatorRound::Done(done) => SecAggRounds::finish(ctx, &done),
            next => {
                let whole = encode(&next)?;
                self.checkpoint_bytes = whole.blob.len();
                self.journal_bytes = 0;
                self.state = Some(next);
                Ok(Step::Continue {
                    state: whole,
                    upload,
                })
            }
        }
    }
}

impl LiveRound for SecAggLive {
    fn stage(&self) -> Option<Stage> {
        self.state.as_ref().and_then(|s| server_stage(s.stage()))
    }

    fn poll(&self, device: &DeviceId) -> Result<Poll, ProtocolError> {
        let state = self.state()?;
        Ok(match state.device_status(device) {
            DeviceStatus::Answered => Poll::Wait,
            DeviceStatus::NotTakingPart => Poll::Excluded(format!(
                "this device missed a step before {}",
                state.stage()
            )),
            DeviceStatus::Pending => match state.message_for(device) {
                Ok(message) => Poll::Message(message),
                Err(e) => Poll::Excluded(e.to_string()),
            },
        })
    }

    fn receive(
        &mut self,
        ctx: &StepContext<'_>,
        input: &RoundInput<'_>,
    ) -> Result<Step, Rejection> {
        let state = self
            .state
            .as_mut()
            .ok_or_else(|| ProtocolError("the round has ended".into()))?;
        let (tag, body, upload) = match input.message {
            Incoming::Message(message) => {
                if named_sender(message) != input.sender {
                    return Err(Rejection::NotYours(
                        "the message names another device than the one that signed it".into(),
                    ));
                }
                state.receive(message.clone()).map_err(reject)?;
                let json = serde_json::to_vec(message).map_err(|e| ProtocolError(e.to_string()))?;
                (ENTRY_MESSAGE, std::borrow::Cow::Owned(json), None)
            }
            Incoming::Upload(bytes) => {
                // Check whose it is before anything is added to the sum.
                let (header, _) = codec::decode_header(bytes, state.info().vector_len)
                    .map_err(|e| reject(e.into()))?;
                if header.device != input.sender {
                    return Err(Rejection::NotYours(
                        "the upload names another device than the one that signed it".into(),
                    ));
                }
                state.receive_upload_bytes(bytes).map_err(reject)?;
                // Committed to in the transparency log with the state
                // that holds it (see `Step::Continue`).
                let upload = AcceptedUpload {
                    device_id: input.device_id.to_owned(),
                    upload_sha256: adapter_sha256(bytes),
                };
                (
                    ENTRY_UPLOAD,
                    std::borrow::Cow::Borrowed(bytes),
                    Some(upload),
                )
            }
        };
        let everyone = match state.pending() {
            Some(pending) => pending == 0,
            None => state.advertised() >= self.cohort_size,
        };
        // Unmasking closes into publication, which needs the current global;
        // without it the state is saved and the sweeper finishes the round.
        let can_finish = state.stage() != Stage::Unmasking || ctx.publish.is_some();
        if everyone
            && can_finish
            && let Some(state) = self.state.take()
        {
            return Ok(self.settle(ctx, state.close_stage(), upload)?);
        }
        Ok(self.journal(tag, &body, upload)?)
    }

    fn close_stage(&mut self, ctx: &StepContext<'_>) -> Result<Step, ProtocolError> {
        let state = self.state()?;
        if state.stage() == Stage::Unmasking && ctx.publish.is_none() {
            return Ok(Step::Unchanged);
        }
        let state = self
            .state
            .take()
            .ok_or_else(|| ProtocolError("the round has ended".into()))?;
        self.settle(ctx, state.close_stage(), None)
    }
}

fn reject(e: ServerError) -> Rejection {
    let text = e.to_string();
    match e {
        ServerError::Duplicate { .. } => Rejection::AlreadyReceived(text),
        ServerError::UnexpectedMessage { .. }
        | ServerError::NothingToSend { .. }
        | ServerError::CohortFull { .. } => Rejection::WrongStage(text),
        ServerError::NotInCohort { .. } | ServerError::NotEligible { .. } => {
            Rejection::NotYours(text)
        }
        ServerError::Config(_) => Rejection::Protocol(ProtocolError(text)),
        _ => Rejection::Invalid(text),
    }
}

/// The device a JSON message says it is from.
fn named_sender(message: &ClientMessage) -> DeviceId {
    match message {
        ClientMessage::AdvertiseKeys(m) => m.device,
        ClientMessage::EncryptedShares(m) => m.sender,
        ClientMessage::MaskedUpload(m) => m.device,
        ClientMessage::ConsistencySignature(m) => m.sender,
        ClientMessage::UnmaskResponse(m) => m.sender,
    }
}

impl SecAggRounds {
    /// The round's sum is known: `global + lr · mean`, as safetensors,
    /// signed as the next version.
    fn finish(ctx: &StepContext<'_>, done: &Done) -> Result<Step, ProtocolError> {
        let round = done.info().round.0;
        let publish = ctx
            .publish
            .ok_or_else(|| ProtocolError("finishing a round needs the current global".into()))?;
        let federation = ctx.federation;
        let fail = |e: &dyn std::fmt::Display| ProtocolError(e.to_string());
        if !done.misbehaving().is_empty() {
            tracing::warn!(
                federation = %federation.id,
                round,
                devices = ?done.misbehaving(),
                "devices revealed shares off their owners' commitments; dropped"
            );
        }
        // A sum no honest cohort can produce (a device uploaded huge or
        // unclipped values) is never applied.
        if let Err(reason) = done.check_bounds() {
            return Ok(Step::Abort(format!("{reason} (at unmasking)")));
        }
        let mean = done.decode_mean().map_err(|e| fail(&e))?;
        let updated = apply_mean(
            &publish.current.params,
            &mean,
            federation.server_learning_rate,
        )
        .map_err(|e| fail(&e))?;
        let layout = federation.adapter_layout().map_err(|e| fail(&e))?;
        let adapter = layout.to_safetensors(&updated).map_err(|e| fail(&e))?;
        let contributors = done.contributors().len() as u64;
        let epsilon = round_epsilon(done.info(), federation.dp.delta);
        let statement = GlobalStatement {
            federation: federation.id.clone(),
            version: publish.current.version + 1,
            round,
            adapter_sha256: adapter_sha256(&adapter),
            contributors,
            epsilon,
        };
        let signature = crate::auth::encode(&publish.identity.sign(&statement).to_bytes());
        let metadata = serde_json::json!({
            "format": "safetensors",
            "version": statement.version,
            "round": statement.round,
            "contributors": contributors,
            "epsilon": epsilon,
            "delta": federation.dp.delta,
            "server_learning_rate": federation.server_learning_rate,
            "previous_version": publish.current.version,
            "masks_removed": done.masks_removed(),
            // Devices whose revealed shares were off their owners'
            // commitments: caught, dropped, named.
            "misbehaving_devices": done
                .misbehaving()
                .iter()
                .map(|d| hex::encode(d.as_bytes()))
                .collect::<Vec<_>>(),
            STATEMENT_KEY: statement,
            SIGNATURE_KEY: signature,
        });
        Ok(Step::Publish(Box::new(PublishStep {
            adapter,
            version: statement.version,
            contributors,
            epsilon,
            delta: federation.dp.delta,
            metadata,
        })))
    }
}

impl RoundProtocol for SecAggRounds {
    fn open(&self, setup: &RoundSetup<'_>) -> Result<RoundState, ProtocolError> {
        let size = u32::try_from(setup.cohort.len())
            .map_err(|_| ProtocolError("cohort too large".into()))?;
        let info = round_info(setup.federation, setup.round, size)?;
        let state = AggregatorRound::new(info)
            .map_err(|e| ProtocolError(format!("round parameters: {e}")))?;
        encode(&state)
    }

    fn parameters(&self, state: &RoundState) -> Result<Option<RoundParameters>, ProtocolError> {
        let state: AggregatorRound = serde_json::from_slice(&state.blob)
            .map_err(|e| ProtocolError(format!("round state does not decode: {e}")))?;
        Ok(Some(RoundParameters::of(state.info())))
    }

    fn load(&self, round: &RoundRecord) -> Result<Box<dyn LiveRound>, ProtocolError> {
        let mut state = decode(round)?;
        for entry in &round.journal {
            replay(&mut state, entry)?;
        }
        Ok(Box::new(SecAggLive {
            state: Some(state),
            cohort_size: round.cohort.len(),
            checkpoint_bytes: round.state.len(),
            journal_bytes: round.journal.iter().map(Vec::len).sum(),
        }))
    }
}

/// The poll answer for a round that has ended, given the version it
/// published (if it did).
pub fn ended(outcome: &crate::storage::RoundOutcome, global_version: Option<u64>) -> RoundPoll {
    match (outcome, global_version) {
        (crate::storage::RoundOutcome::Published { .. }, Some(global_version)) => {
            RoundPoll::Done { global_version }
        }
        (crate::storage::RoundOutcome::Published { detail, .. }, None) => RoundPoll::Aborted {
            reason: format!("published, but its version is missing: {detail}"),
        },
        (crate::storage::RoundOutcome::Aborted { detail, .. }, _) => RoundPoll::Aborted {
            reason: detail.clone(),
        },
    }
}
