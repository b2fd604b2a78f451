//! Rounds kept decoded in memory between messages, and stepped off the
//! async runtime.
//!
//! # Why this module exists
//!
//! A SecAgg+ round's state holds the running sum of masked uploads (one
//! `u32` per adapter parameter: 4 MB for 1M parameters) plus every key,
//! sealed share and signature of the cohort. Decoding it from storage for
//! every poll and message, and encoding it whole after every message, made
//! a round of `n` devices cost `O(n · state)` of serialization on the
//! runtime's worker threads: a DoS lever, and every device's poll waited
//! behind it. Here each in-flight round is decoded once into a
//! [`LiveRound`] and kept, with the storage version it is the state of:
//!
//! - a poll reads the round's summary (a small row), and answers from the
//!   live state when its version is the stored one;
//! - a message is applied to the live state and only what it changed is
//!   persisted ([`Step::Append`]: the message itself, journaled) before it
//!   is acknowledged;
//! - when the stored version is not the cached one (another writer, a
//!   failed write, a restart) the round is decoded again from storage, so
//!   the cache is never trusted over storage.
//!
//! Each round has an async mutex: requests on one round are applied one
//! at a time (what the compare-and-swap on its version enforced before,
//! without the recomputation), and requests on other rounds, and
//! `/v1/health`, are not held up. Every piece of round work that costs
//! more than a lookup (decoding, applying a message or an upload to the
//! sum, closing a stage, unmasking, encoding a checkpoint) runs on tokio's
//! blocking pool ([`tokio::task::spawn_blocking`]), never on a worker.
//!
//! # Persistence
//!
//! What is stored stays enough to resume after a kill: the state as last
//! stored whole (the checkpoint) and a journal of the messages accepted
//! since, each written in the transaction that bumps the round's version
//! (and that logs an upload's commitment) before the device is answered.
//! Resuming replays the journal onto the checkpoint; the protocol's state
//! machine is deterministic, so the replayed state is the acknowledged
//! one. The protocol decides when to store the state whole again: at every
//! stage change, and when the journal has outgrown the checkpoint by a
//! constant factor, which bounds both replay and disk to a constant times
//! the state while each message costs only its own bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hearth_fed::{DeviceId, Stage};

use crate::adapter::PublishContext;
use crate::config::FederationConfig;
use crate::rounds::{
    Advanced, Poll, ProtocolError, Rejection, RoundError, RoundInput, SharedProtocol, Step,
    StepContext, persist,
};
use crate::storage::{RoundSummary, Storage, StorageError};

/// A round's protocol state, decoded, as the server keeps it between
/// messages ([`crate::rounds::RoundProtocol::load`] makes one from storage).
pub trait LiveRound: Send + 'static {
    /// The stage it is in (`None`: it ended and is no longer stored).
    fn stage(&self) -> Option<Stage>;
    /// What `device` (a cohort member) should do now.
    fn poll(&self, device: &DeviceId) -> Result<Poll, ProtocolError>;
    /// Takes a device's message, returning what to persist; closes the
    /// stage early when every device it waits for has answered. A refused
    /// message leaves the state exactly as it was.
    fn receive(&mut self, ctx: &StepContext<'_>, input: &RoundInput<'_>)
    -> Result<Step, Rejection>;
    /// The stage's deadline passed: move on with whoever answered, or
    /// abort when too few did. After an error the state may be unusable
    /// (the caller decodes it again from storage).
    fn close_stage(&mut self, ctx: &StepContext<'_>) -> Result<Step, ProtocolError>;
}

/// One round's slot: its live state, and the stored version it is.
#[derive(Default)]
struct Slot {
    live: Option<Box<dyn LiveRound>>,
    version: u64,
}

type Key = (String, u64);

/// The in-flight rounds this server holds decoded (see the module docs).
pub struct LiveRounds {
    protocol: SharedProtocol,
    slots: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for LiveRounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRounds")
            .field("rounds", &self.held())
            .finish_non_exhaustive()
    }
}

impl LiveRounds {
    /// Nothing held yet; rounds are decoded on first use.
    pub fn new(protocol: SharedProtocol) -> Self {
        Self {
            protocol,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The protocol the rounds are decoded with.
    pub fn protocol(&self) -> &SharedProtocol {
        &self.protocol
    }

    /// The rounds held, as (federation, round).
    pub fn held(&self) -> Vec<(String, u64)> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held: Vec<_> = slots.keys().cloned().collect();
        held.sort();
        held
    }

    /// The slot of a round, made if missing.
    fn slot(&self, federation_id: &str, round: u64) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry((federation_id.to_owned(), round)).or_default())
    }

    /// Drops what is held of a round (it ended, or is not in flight).
    pub fn forget(&self, federation_id: &str, round: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.remove(&(federation_id.to_owned(), round));
    }

    /// Makes `slot` hold the stored round `summary` names, decoding it
    /// from storage (off the runtime) unless it already does. Returns the
    /// summary of the stored round the slot now holds.
    async fn current(
        &self,
        storage: &dyn Storage,
        slot: &mut Slot,
        summary: RoundSummary,
    ) -> Result<RoundSummary, RoundError> {
        if slot.live.is_some() && slot.version == summary.version {
            return Ok(summary);
        }
        slot.live = None;
        let not_in_flight = || RoundError::NotInFlight {
            federation_id: summary.federation_id.clone(),
            round: summary.round,
        };
        let record = storage
            .load_round(summary.federation_id.clone(), summary.round)
            .await?
            .filter(|r| r.summary.outcome.is_none())
            .ok_or_else(not_in_flight)?;
        let protocol = Arc::clone(&self.protocol);
        let (summary, live) = tokio::task::spawn_blocking(move || {
            let live = protocol.load(&record);
            (record.summary, live)
        })
        .await
        .map_err(|e| RoundError::Task(e.to_string()))?;
        slot.live = Some(live?);
        slot.version = summary.version;
        // A federation has one round in flight: what is held of its
        // others is stale.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|(f, r), _| *f != summary.federation_id || *r == summary.round);
        Ok(summary)
    }

    /// The summary of a round in flight, or [`RoundError::NotInFlight`]
    /// (and the round forgotten).
    async fn in_flight(
        &self,
        storage: &dyn Storage,
        federation_id: &str,
        round: u64,
    ) -> Result<RoundSummary, RoundError> {
        match storage
            .round_summary(federation_id.to_owned(), round)
            .await?
        {
            Some(summary) if summary.outcome.is_none() => Ok(summary),
            _ => {
                self.forget(federation_id, round);
                Err(RoundError::NotInFlight {
                    federation_id: federation_id.to_owned(),
                    round,
                })
            }
        }
    }

    /// What `device` should do now in a round: `Ok(summary)` with the
    /// answer while it is in flight, or `Err(summary)` once it ended. The
    /// summary is read under the round's lock, so it and the answer are
    /// of one version even while other requests step the round.
    pub async fn poll(
        &self,
        storage: &dyn Storage,
        federation_id: &str,
        round: u64,
        device: &DeviceId,
    ) -> Result<Result<(Poll, RoundSummary), RoundSummary>, RoundError> {
        let not_found = || RoundError::NotInFlight {
            federation_id: federation_id.to_owned(),
            round,
        };
        // Ended (or unknown) rounds are answered without a slot.
        let first = storage
            .round_summary(federation_id.to_owned(), round)
            .await?
            .ok_or_else(not_found)?;
        if first.outcome.is_some() {
            return Ok(Err(first));
        }
        let slot = self.slot(federation_id, round);
        let mut slot = slot.lock().await;
        // Again under the lock: no step of this server is half done.
        let summary = storage
            .round_summary(federation_id.to_owned(), round)
            .await?
            .ok_or_else(not_found)?;
        if summary.outcome.is_some() {
            drop(slot);
            self.forget(federation_id, round);
            return Ok(Err(summary));
        }
        let summary = self.current(storage, &mut slot, summary).await?;
        let live = slot.live.as_ref().ok_or_else(|| {
            RoundError::Protocol(ProtocolError("the round was not decoded".into()))
        })?;
        Ok(Ok((live.poll(device)?, summary)))
    }

    /// Applies one step to an in-flight round and persists it: `step` runs
    /// on the blocking pool with the round's live state, the context, and
    /// the summary of the stored round that state is, and what it
    /// decides is written by compare-and-swap on the stored version. A
    /// step error writes nothing and is the caller's. When storage moved
    /// on under the cached state (another writer) the round is decoded
    /// again and `step` called again, at most
    /// [`crate::rounds::MAX_STEP_ATTEMPTS`] times.
    pub async fn step<E, F>(
        &self,
        storage: &dyn Storage,
        federation: &FederationConfig,
        round: u64,
        now_ms: u64,
        publish: Option<PublishContext>,
        step: F,
    ) -> Result<Result<Advanced, E>, RoundError>
    where
        E: Send + 'static,
        F: Fn(&mut dyn LiveRound, &StepContext<'_>, &RoundSummary) -> Result<Step, E>
            + Send
            + Sync
            + 'static,
    {
        let shared = Arc::new((federation.clone(), publish, step));
        let slot = self.slot(&federation.id, round);
        let mut slot = slot.lock().await;
        for _ in 0..crate::rounds::MAX_STEP_ATTEMPTS {
            let summary = self.in_flight(storage, &federation.id, round).await?;
            let summary = self.current(storage, &mut slot, summary).await?;
            let Some(mut live) = slot.live.take() else {
                continue;
            };
            let shared = Arc::clone(&shared);
            let at = summary.clone();
            let (live, decided) = tokio::task::spawn_blocking(move || {
                let (federation, publish, step) = &*shared;
                let ctx = StepContext {
                    federation,
                    now_ms,
                    publish: publish.as_ref(),
                };
                let decided = step(&mut *live, &ctx, &at);
                (live, decided)
            })
            .await
            .map_err(|e| RoundError::Task(e.to_string()))?;
            let decided = match decided {
                Ok(decided) => decided,
                Err(e) => {
                    // A refusal leaves the state as it was; a failed close
                    // may not have (see `LiveRound::close_stage`): keep
                    // only a state still in flight at the stored stage.
                    if live.stage() == Some(summary.stage) {
                        slot.live = Some(live);
                    }
                    return Ok(Err(e));
                }
            };
            let ends = matches!(decided, Step::Publish(_) | Step::Abort(_));
            match persist(storage, federation, &summary, now_ms, decided).await {
                Ok(advanced) => {
                    match &advanced {
                        Advanced::Saved(saved) if !ends => {
                            slot.version = saved.version;
                            slot.live = Some(live);
                        }
                        Advanced::Unchanged(_) => slot.live = Some(live),
                        _ => {
                            drop(slot);
                            self.forget(&federation.id, round);
                        }
                    }
                    return Ok(Ok(advanced));
                }
                // Someone else wrote first: decode their state and decide
                // again.
                Err(StorageError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RoundError::Contended {
            federation_id: federation.id.clone(),
            round,
            attempts: crate::rounds::MAX_STEP_ATTEMPTS,
        })
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
