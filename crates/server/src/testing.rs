//! A protocol for the server's own tests: its state is the round's setup
//! and a count of messages, journaled one entry per message, enough to
//! test the lifecycle (persistence, restart, the live cache, the sweeper)
//! around any protocol. A hook can hold a stage close on the blocking
//! pool, to show that round work does not stall the runtime.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use hearth_fed::{DeviceId, Stage};
use serde::{Deserialize, Serialize};

use crate::live::LiveRound;
use crate::rounds::{
    Poll, ProtocolError, Rejection, RoundInput, RoundProtocol, RoundSetup, RoundState, Step,
    StepContext,
};
use crate::storage::RoundRecord;

/// A close held until released: `started` is told when a close begins,
/// and the close waits (at most a minute) for `release`.
pub(crate) struct Hold {
    pub started: tokio::sync::mpsc::UnboundedSender<()>,
    pub release: Mutex<mpsc::Receiver<()>>,
}

/// The counting protocol; `hold` (if any) holds every stage close.
#[derive(Default, Clone)]
pub(crate) struct Counter {
    pub hold: Option<Arc<Hold>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CounterState {
    pub round: u64,
    pub cohort: Vec<String>,
    pub neighbours: u32,
    pub threshold: u32,
    pub stage: Stage,
    pub messages: u32,
}

pub(crate) fn decode(round: &RoundRecord) -> Result<CounterState, ProtocolError> {
    let mut state: CounterState =
        serde_json::from_slice(&round.state).map_err(|e| ProtocolError(e.to_string()))?;
    // Each journal entry is one message.
    state.messages += u32::try_from(round.journal.len()).unwrap_or(u32::MAX);
    Ok(state)
}

pub(crate) fn encode(state: &CounterState) -> RoundState {
    RoundState {
        stage: state.stage,
        blob: serde_json::to_vec(state).unwrap_or_default(),
    }
}

struct Live {
    state: CounterState,
    hold: Option<Arc<Hold>>,
}

impl RoundProtocol for Counter {
    fn open(&self, setup: &RoundSetup<'_>) -> Result<RoundState, ProtocolError> {
        Ok(encode(&CounterState {
            round: setup.round,
            cohort: setup.cohort.iter().map(|m| m.device_id.clone()).collect(),
            neighbours: setup.secagg.neighbours,
            threshold: setup.secagg.threshold,
            stage: Stage::CollectingKeys,
            messages: 0,
        }))
    }

    fn load(&self, round: &RoundRecord) -> Result<Box<dyn LiveRound>, ProtocolError> {
        let state = decode(round)?;
        if state.round != round.summary.round {
            return Err(ProtocolError("another round's state".into()));
        }
        Ok(Box::new(Live {
            state,
            hold: self.hold.clone(),
        }))
    }
}

impl LiveRound for Live {
    fn stage(&self) -> Option<Stage> {
        Some(self.state.stage)
    }

    fn poll(&self, _: &DeviceId) -> Result<Poll, ProtocolError> {
        Ok(Poll::Wait)
    }

    fn receive(&mut self, _: &StepContext<'_>, _: &RoundInput<'_>) -> Result<Step, Rejection> {
        self.state.messages += 1;
        Ok(Step::Append {
            stage: self.state.stage,
            entry: vec![1],
            upload: None,
        })
    }

    fn close_stage(&mut self, _: &StepContext<'_>) -> Result<Step, ProtocolError> {
        if let Some(hold) = &self.hold {
            let _ = hold.started.send(());
            let release = hold.release.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = release.recv_timeout(Duration::from_secs(60));
        }
        self.state.stage = match self.state.stage {
            Stage::CollectingKeys => Stage::SharingKeys,
            Stage::SharingKeys => Stage::CollectingUploads,
            Stage::CollectingUploads => Stage::CheckingConsistency,
            Stage::CheckingConsistency => Stage::Unmasking,
            Stage::Unmasking => return Ok(Step::Abort("a counter has no sum".into())),
            Stage::Done | Stage::Aborted => {
                return Err(ProtocolError(
                    "a counter that ended has no stage to close".into(),
                ));
            }
        };
        Ok(Step::Continue {
            state: encode(&self.state),
            upload: None,
        })
    }
}

/// When test rounds start.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// The example configuration's first federation.
pub(crate) fn federation() -> crate::config::FederationConfig {
    crate::config::Config::parse(crate::config::EXAMPLE_CONFIG, std::path::Path::new("."))
        .expect("example")
        .federations
        .remove(0)
}

/// Stores [`federation`] and enrols `devices` eligible devices in it.
pub(crate) async fn setup(
    s: &crate::storage::SqliteStorage,
    devices: u8,
) -> (
    crate::config::FederationConfig,
    Vec<crate::storage::CohortMember>,
) {
    use crate::storage::prelude::*;
    use crate::storage::{Checkin, CohortMember, Enrolment, FederationSync, NewInvite};
    let fed = federation();
    s.sync_federation(FederationSync {
        id: fed.id.clone(),
        config_json: "{}".into(),
        at_ms: T0,
    })
    .await
    .expect("sync");
    let mut members = Vec::new();
    for n in 1..=devices {
        s.create_invite(NewInvite {
            federation_id: fed.id.clone(),
            token_sha256: [n; 32],
            created_at_ms: T0,
            expires_at_ms: T0 + 10_000,
        })
        .await
        .expect("invite");
        let d = s
            .enrol(Enrolment {
                token_sha256: [n; 32],
                device_id: format!("dev-{n}"),
                public_key: [n; 32],
                at_ms: T0,
            })
            .await
            .expect("enrol");
        s.record_checkin(Checkin {
            device_id: d.id.clone(),
            at_ms: T0,
            eligible: true,
        })
        .await
        .expect("checkin");
        members.push(CohortMember {
            device_id: d.id,
            public_key: d.public_key,
        });
    }
    (fed, members)
}
