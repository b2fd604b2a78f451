//! Rounds: the seam where the SecAgg+ state machine plugs in, and the
//! server-side lifecycle around it (open, persist every step, resume or
//! abort after a restart, close stages at their deadlines, publish).
//!
//! The server never interprets round state. A protocol implementation
//! ([`RoundProtocol`]; [`crate::secagg::SecAggRounds`] is the real one)
//! turns a formed cohort into a first state, answers polls, takes each
//! device's messages and closes a stage when its deadline passes. Every
//! change goes through [`advance_round`], which persists each step by
//! compare-and-swap so two requests racing on one round cannot both win,
//! and a crash between steps loses nothing that was acknowledged.
//!
//! Deadlines do not abort a round: the sweeper ([`close_expired_stages`])
//! closes the stage with whoever answered, which is how SecAgg+ moves on
//! without devices that dropped out; the protocol aborts (publishing
//! nothing) only when too few remain.

use std::sync::Arc;

/// A round's stage: hearth-fed's, the one definition (re-exported here for
/// the protocol seam's users).
pub use hearth_fed::Stage;
use hearth_fed::{ClientMessage, DeviceId, ServerMessage};

use crate::adapter::{self, GlobalError, PublishContext};
use crate::config::{Config, FederationConfig, SecAggParams};
use crate::identity::ServerIdentity;
pub use crate::live::{LiveRound, LiveRounds};
use crate::storage::{
    CohortMember, GlobalVersion, NewRound, Publication, RoundAbort, RoundParameters, RoundRecord,
    RoundSummary, RoundUpdate, Storage, StorageError, UploadCommitment,
};

/// A protocol state as the server keeps it: the stage and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundState {
    /// Which stage the state is in.
    pub stage: Stage,
    /// The state machine, serialized by the protocol.
    pub blob: Vec<u8>,
}

/// What a protocol gets to build a round's first state.
#[derive(Debug, Clone, Copy)]
pub struct RoundSetup<'a> {
    /// The federation's configuration.
    pub federation: &'a FederationConfig,
    /// The round's number.
    pub round: u64,
    /// The cohort, sorted by device id, with the keys their messages are
    /// signed with.
    pub cohort: &'a [CohortMember],
    /// Neighbourhood size and threshold for this cohort's size.
    pub secagg: SecAggParams,
    /// When the round opens.
    pub now_ms: u64,
}

/// A protocol refused a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

/// What a polling device should do now.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Poll {
    /// Process this message (and answer it).
    Message(ServerMessage),
    /// It answered this stage; others have not yet.
    Wait,
    /// The round carries on without it.
    Excluded(String),
}

/// A device's message to a round, as it arrived.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// A JSON protocol message.
    Message(&'a ClientMessage),
    /// A binary masked upload.
    Upload(&'a [u8]),
}

/// A message with the authenticated device that sent it.
#[derive(Debug, Clone, Copy)]
pub struct RoundInput<'a> {
    /// The server's id for the device.
    pub device_id: &'a str,
    /// The protocol's name for it: its enrolled Ed25519 key. Messages
    /// naming any other device are refused.
    pub sender: DeviceId,
    /// The message.
    pub message: Incoming<'a>,
}

/// What a step may need beyond the stored round.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The federation's configuration.
    pub federation: &'a FederationConfig,
    /// Now.
    pub now_ms: u64,
    /// The current global adapter and the signing key, when the step may
    /// finish the round (unmasking); without it the step saves its state
    /// and leaves the publication to a step that has it.
    pub publish: Option<&'a PublishContext>,
}

/// Why a device's message was refused. The round carries on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The message is malformed or fails the protocol's checks.
    #[error("{0}")]
    Invalid(String),
    /// The message names another device, or the device is not taking part.
    #[error("{0}")]
    NotYours(String),
    /// The round is not in the stage that takes this message.
    #[error("{0}")]
    WrongStage(String),
    /// The device's message for this stage is already in.
    #[error("{0}")]
    AlreadyReceived(String),
    /// The stored state is unusable.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// What the server needs from a round's protocol: a first state, and the
/// decoding of a stored round into the [`LiveRound`] the server keeps in
/// memory and steps ([`crate::live`]).
pub trait RoundProtocol: Send + Sync + 'static {
    /// The first state of a round whose cohort was just formed.
    fn open(&self, setup: &RoundSetup<'_>) -> Result<RoundState, ProtocolError>;
    /// The parameters of a round whose first state is `state`, for the
    /// transparency log: [`open_round`] logs them in the transaction that
    /// stores the round, before any device can be sent them. `None` (the
    /// default) for a protocol with no parameters to log.
    fn parameters(&self, state: &RoundState) -> Result<Option<RoundParameters>, ProtocolError> {
        let _ = state;
        Ok(None)
    }
    /// Decodes a stored round: its state as last stored whole with its
    /// journal ([`RoundRecord::journal`]) replayed.
    fn load(&self, round: &RoundRecord) -> Result<Box<dyn LiveRound>, ProtocolError>;
    /// Whether a stored in-flight state can be carried on by this build
    /// (it decodes, its stage is the stored one). Asked for every round
    /// found in flight when the server starts.
    fn check_resumable(&self, round: &RoundRecord) -> Result<(), ProtocolError> {
        let live = self.load(round)?;
        match live.stage() {
            Some(stage) if stage == round.summary.stage => Ok(()),
            found => Err(ProtocolError(format!(
                "state is in stage {}, stored as stage {}",
                found.map_or("ended", Stage::as_str),
                round.summary.stage
            ))),
        }
    }
}

/// Why a round operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The round is not in flight (never was, or already closed).
    #[error("round {round} of {federation_id} is not in flight")]
    NotInFlight {
        /// Federation id.
        federation_id: String,
        /// Round number.
        round: u64,
    },
    /// The protocol refused.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// Other writers kept winning; the caller may retry later.
    #[error("round {round} of {federation_id} kept changing under {attempts} attempts")]
    Contended {
        /// Federation id.
        federation_id: String,
        /// Round number.
        round: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The blocking task running round work died.
    #[error("round task failed: {0}")]
    Task(String),
}

/// What one protocol step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to persist (a duplicate or ignorable message).
    Unchanged,
    /// The machine moved on: persist its new state. When the step
    /// accepted a masked upload, its commitment goes into the transparency
    /// log in the same transaction as the state
    /// ([`RoundStore::record_upload_commitment`](crate::storage::RoundStore::record_upload_commitment)), so the log shows the upload
    /// if and only if the round holds it.
    Continue {
        /// The new state.
        state: RoundState,
        /// The masked upload this step accepted, if any.
        upload: Option<AcceptedUpload>,
    },
    /// The machine took a message without changing stage: append `entry`
    /// to the round's journal ([`RoundStore::append_round_entry`](crate::storage::RoundStore::append_round_entry)) rather than
    /// storing the state whole, with the upload's commitment when the
    /// message was one (as for [`Step::Continue`]).
    Append {
        /// The stage the round stays in.
        stage: Stage,
        /// What the protocol replays onto the stored state to get the new
        /// one.
        entry: Vec<u8>,
        /// The masked upload this step accepted, if any.
        upload: Option<AcceptedUpload>,
    },
    /// The round finished: publish the new global adapter and close it.
    Publish(Box<PublishStep>),
    /// The round cannot finish (too many dropouts, a detected attack).
    Abort(String),
}

/// A masked upload a step accepted into the round's sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedUpload {
    /// The server's id for the uploading device.
    pub device_id: String,
    /// SHA-256 of the upload bytes exactly as received: the device hashes
    /// what it sent and looks for this in the log.
    pub upload_sha256: [u8; 32],
}

/// A finished round's result.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishStep {
    /// The new global adapter, serialized.
    pub adapter: Vec<u8>,
    /// The global version it becomes.
    pub version: u64,
    /// Devices whose updates are in it.
    pub contributors: u64,
    /// The round's ε at `delta` (`None`: no noise, no bound).
    pub epsilon: Option<f64>,
    /// The federation's δ, which `epsilon` holds with.
    pub delta: f64,
    /// Facts about it for clients (its signed statement among them).
    pub metadata: serde_json::Value,
}

/// What [`advance_round`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Advanced {
    /// Nothing was written.
    Unchanged(RoundSummary),
    /// The new state was saved.
    Saved(RoundSummary),
    /// The result was published and the round closed.
    Published(GlobalVersion),
    /// The round was closed as aborted.
    Aborted(RoundSummary),
}

/// How often [`advance_round`] recomputes a step after losing a race.
pub const MAX_STEP_ATTEMPTS: u32 = 8;

/// Applies one protocol step to a round and persists the result by
/// compare-and-swap. `step` sees the current stored round and must be a
/// pure function of it and the message being handled: on a lost race it is
/// called again with the newer state (at most [`MAX_STEP_ATTEMPTS`] times).
/// A stage change starts that stage's deadline.
pub async fn advance_round<E>(
    storage: &dyn Storage,
    federation: &FederationConfig,
    round: u64,
    now_ms: u64,
    mut step: impl FnMut(&RoundRecord) -> Result<Step, E>,
) -> Result<Result<Advanced, E>, RoundError> {
    for _ in 0..MAX_STEP_ATTEMPTS {
        let record = storage
            .load_round(federation.id.clone(), round)
            .await?
            .filter(|r| r.summary.outcome.is_none())
            .ok_or_else(|| RoundError::NotInFlight {
                federation_id: federation.id.clone(),
                round,
            })?;
        let decided = match step(&record) {
            Ok(decided) => decided,
            Err(e) => return Ok(Err(e)),
        };
        match persist(storage, federation, &record.summary, now_ms, decided).await {
            Ok(advanced) => return Ok(Ok(advanced)),
            Err(StorageError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RoundError::Contended {
        federation_id: federation.id.clone(),
        round,
        attempts: MAX_STEP_ATTEMPTS,
    })
}

/// Writes what one step decided about the stored round `at`, by
/// compare-and-swap on its version ([`StorageError::Conflict`]: someone
/// else wrote first). A stage change starts that stage's deadline.
pub async fn persist(
    storage: &dyn Storage,
    federation: &FederationConfig,
    at: &RoundSummary,
    now_ms: u64,
    decided: Step,
) -> Result<Advanced, StorageError> {
    let round = at.round;
    let expected_version = at.version;
    match decided {
        Step::Unchanged => Ok(Advanced::Unchanged(at.clone())),
        Step::Append {
            stage,
            entry,
            upload,
        } => {
            let update = RoundUpdate {
                federation_id: federation.id.clone(),
                round,
                expected_version,
                stage,
                state: entry,
                stage_deadline_ms: at.stage_deadline_ms,
                at_ms: now_ms,
            };
            let commitment = upload.map(|upload| UploadCommitment {
                federation_id: federation.id.clone(),
                round,
                device_id: upload.device_id,
                upload_sha256: upload.upload_sha256,
                at_ms: now_ms,
            });
            storage
                .append_round_entry(update, commitment)
                .await
                .map(Advanced::Saved)
        }
        Step::Continue {
            state: next,
            upload,
        } => {
            let stage_deadline_ms = if next.stage == at.stage {
                at.stage_deadline_ms
            } else {
                now_ms.saturating_add(duration_ms(federation.deadlines.for_stage(next.stage)))
            };
            let update = RoundUpdate {
                federation_id: federation.id.clone(),
                round,
                expected_version,
                stage: next.stage,
                state: next.blob,
                stage_deadline_ms,
                at_ms: now_ms,
            };
            match upload {
                None => storage.save_round(update).await.map(Advanced::Saved),
                Some(upload) => storage
                    .record_upload_commitment(
                        UploadCommitment {
                            federation_id: federation.id.clone(),
                            round,
                            device_id: upload.device_id,
                            upload_sha256: upload.upload_sha256,
                            at_ms: now_ms,
                        },
                        Some(update),
                    )
                    .await
                    .and_then(|receipt| {
                        receipt.round.map(Advanced::Saved).ok_or_else(|| {
                            StorageError::Corrupt(
                                "a commitment saved with a round update returned no round".into(),
                            )
                        })
                    }),
            }
        }
        Step::Publish(publish) => {
            let PublishStep {
                adapter,
                version,
                contributors,
                epsilon,
                delta,
                metadata,
            } = *publish;
            storage
                .publish_global(Publication {
                    federation_id: federation.id.clone(),
                    round,
                    expected_version,
                    version,
                    contributors,
                    epsilon,
                    delta,
                    adapter,
                    metadata,
                    at_ms: now_ms,
                })
                .await
                .map(Advanced::Published)
        }
        Step::Abort(reason) => storage
            .abort_round(RoundAbort {
                federation_id: federation.id.clone(),
                round,
                expected_version,
                reason,
                at_ms: now_ms,
            })
            .await
            .map(Advanced::Aborted),
    }
}

/// Opens a round for `cohort`: asks the protocol for the first state and
/// stores it. [`StorageError::Conflict`] (inside [`RoundError::Storage`])
/// means another request opened one first.
pub async fn open_round(
    storage: &dyn Storage,
    protocol: &dyn RoundProtocol,
    federation: &FederationConfig,
    mut cohort: Vec<CohortMember>,
    now_ms: u64,
) -> Result<RoundRecord, RoundError> {
    cohort.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let round = storage.last_round_number(federation.id.clone()).await? + 1;
    let size = u32::try_from(cohort.len()).unwrap_or(u32::MAX);
    let first = protocol.open(&RoundSetup {
        federation,
        round,
        cohort: &cohort,
        secagg: federation.secagg.for_cohort(size),
        now_ms,
    })?;
    let deadline = now_ms.saturating_add(duration_ms(federation.deadlines.for_stage(first.stage)));
    let parameters = protocol.parameters(&first)?;
    Ok(storage
        .open_round(NewRound {
            parameters,
            federation_id: federation.id.clone(),
            round,
            cohort: cohort.into_iter().map(|m| m.device_id).collect(),
            stage: first.stage,
            state: first.blob,
            opened_at_ms: now_ms,
            stage_deadline_ms: deadline,
        })
        .await?)
}

/// What to do with a round found in flight when the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Carry on: its clients will check in and continue.
    Resume,
    /// Give it up, recording why.
    Abort(String),
}

/// The one rule for rounds found in flight at start: a round whose current
/// stage's deadline passed (while the server was down) is aborted, since
/// its clients have given up on it; so is one whose state this build
/// cannot carry on. Anything else resumes.
pub fn recovery_rule(round: &RoundRecord, now_ms: u64, protocol: &dyn RoundProtocol) -> Recovery {
    if now_ms > round.summary.stage_deadline_ms {
        return Recovery::Abort(format!(
            "stage {} passed its deadline while the server was down",
            round.summary.stage
        ));
    }
    match protocol.check_resumable(round) {
        Ok(()) => Recovery::Resume,
        Err(e) => Recovery::Abort(format!("state cannot be resumed: {e}")),
    }
}

/// What start-up recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Rounds carried on: (federation, round).
    pub resumed: Vec<(String, u64)>,
    /// Rounds given up: (federation, round, why).
    pub aborted: Vec<(String, u64, String)>,
}

/// Applies [`recovery_rule`] to every round in flight.
pub async fn recover_rounds(
    storage: &dyn Storage,
    protocol: &dyn RoundProtocol,
    now_ms: u64,
) -> Result<RecoveryReport, StorageError> {
    let mut report = RecoveryReport::default();
    for summary in storage.rounds_in_flight().await? {
        let Some(record) = storage
            .load_round(summary.federation_id.clone(), summary.round)
            .await?
        else {
            continue;
        };
        match recovery_rule(&record, now_ms, protocol) {
            Recovery::Resume => {
                storage
                    .append_event(crate::storage::NewEvent {
                        at_ms: now_ms,
                        federation_id: Some(summary.federation_id.clone()),
                        device_id: None,
                        round: Some(summary.round),
                        kind: "round_resumed".into(),
                        detail: serde_json::json!({ "stage": summary.stage }),
                    })
                    .await?;
                report.resumed.push((summary.federation_id, summary.round));
            }
            Recovery::Abort(reason) => {
                abort_if_unchanged(storage, &summary, &reason, now_ms).await?;
                report
                    .aborted
                    .push((summary.federation_id, summary.round, reason));
            }
        }
    }
    Ok(report)
}

/// A stage the sweeper closed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedStage {
    /// Federation id.
    pub federation_id: String,
    /// Round number.
    pub round: u64,
    /// The stage whose deadline passed.
    pub stage: Stage,
    /// What closing it did: the next stage saved, the result published,
    /// or the round aborted.
    pub result: Advanced,
}

/// Closes every in-flight stage whose deadline has passed, through the
/// protocol: the round moves on with whoever answered (or aborts when too
/// few did, or publishes when unmasking completes). A round whose
/// federation is no longer configured, or whose state cannot be closed,
/// is aborted. Run periodically while serving.
pub async fn close_expired_stages(
    storage: &dyn Storage,
    live: &LiveRounds,
    config: &Config,
    identity: &Arc<ServerIdentity>,
    now_ms: u64,
) -> Result<Vec<ClosedStage>, StorageError> {
    let mut closed = Vec::new();
    for summary in storage.rounds_in_flight().await? {
        if now_ms <= summary.stage_deadline_ms {
            continue;
        }
        let mut closed_with = |result: Advanced| {
            closed.push(ClosedStage {
                federation_id: summary.federation_id.clone(),
                round: summary.round,
                stage: summary.stage,
                result,
            });
        };
        let Some(federation) = config.federation(&summary.federation_id) else {
            let reason = "the federation is no longer configured";
            live.forget(&summary.federation_id, summary.round);
            if let Some(aborted) = abort_if_unchanged(storage, &summary, reason, now_ms).await? {
                closed_with(Advanced::Aborted(aborted));
            }
            continue;
        };
        // Only closing unmasking can finish a round.
        let publish = if summary.stage == Stage::Unmasking {
            match adapter::publish_context(storage, federation, identity).await {
                Ok(publish) => Some(publish),
                Err(GlobalError::Storage(e)) => return Err(e),
                Err(e) => {
                    let reason = format!("cannot publish: {e}");
                    live.forget(&summary.federation_id, summary.round);
                    if let Some(aborted) =
                        abort_if_unchanged(storage, &summary, &reason, now_ms).await?
                    {
                        closed_with(Advanced::Aborted(aborted));
                    }
                    continue;
                }
            }
        } else {
            None
        };
        let advanced = live
            .step(
                storage,
                federation,
                summary.round,
                now_ms,
                publish,
                move |round: &mut dyn LiveRound, ctx: &StepContext<'_>, at: &RoundSummary| {
                    if now_ms <= at.stage_deadline_ms {
                        // Someone moved the round on since the sweep looked.
                        return Ok(Step::Unchanged);
                    }
                    round.close_stage(ctx)
                },
            )
            .await;
        match advanced {
            Ok(Ok(Advanced::Unchanged(_))) | Err(RoundError::NotInFlight { .. }) => {}
            Ok(Ok(result)) => closed_with(result),
            Ok(Err(e)) => {
                let reason = format!("state cannot be closed: {e}");
                live.forget(&summary.federation_id, summary.round);
                if let Some(aborted) =
                    abort_if_unchanged(storage, &summary, &reason, now_ms).await?
                {
                    closed_with(Advanced::Aborted(aborted));
                }
            }
            Err(RoundError::Storage(e)) => return Err(e),
            Err(e) => tracing::warn!(
                federation = %summary.federation_id,
                round = summary.round,
                error = %e,
                "could not close an expired stage; the next sweep retries"
            ),
        }
    }
    Ok(closed)
}

/// Aborts a round unless it changed since `summary` was read (then whoever
/// changed it decides; a later sweep looks again).
async fn abort_if_unchanged(
    storage: &dyn Storage,
    summary: &RoundSummary,
    reason: &str,
    now_ms: u64,
) -> Result<Option<RoundSummary>, StorageError> {
    match storage
        .abort_round(RoundAbort {
            federation_id: summary.federation_id.clone(),
            round: summary.round,
            expected_version: summary.version,
            reason: reason.to_owned(),
            at_ms: now_ms,
        })
        .await
    {
        Ok(closed) => Ok(Some(closed)),
        Err(StorageError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Shared handle to a protocol.
pub type SharedProtocol = Arc<dyn RoundProtocol>;

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
