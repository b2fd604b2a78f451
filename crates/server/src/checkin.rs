//! The check-in decision: join a round, or come back later (and when).
//!
//! A device checks in; if it is in the cohort of the round in flight it is
//! told to join at the current stage. Otherwise, with no round in flight,
//! the check-in may be the one that completes a cohort: the
//! [`cohort`](mod@crate::cohort) policy decides and a random cohort is drawn
//! from the recently eligible devices. Everyone not needed now gets a
//! [`pace`](mod@crate::pace)-steered delay.

use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::cohort::{self, CohortPolicy, Decision};
use crate::config::{CheckinPacing, FederationConfig};
use crate::error::AppError;
use crate::pace::{self, Phase};
use hearth_fed::Stage;

use crate::rounds::{self, RoundError};
use crate::storage::{DeviceRecord, StorageError};

/// What a device says when it checks in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinRequest {
    /// Whether the device could take part in a round now (idle, charging,
    /// unmetered network). Only eligible devices are drawn into cohorts.
    #[serde(default = "default_eligible")]
    pub eligible: bool,
}

impl Default for CheckinRequest {
    fn default() -> Self {
        CheckinRequest { eligible: true }
    }
}

fn default_eligible() -> bool {
    true
}

/// The server's answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckinResponse {
    /// Nothing to do now; check in again after this long.
    ComeBackIn {
        /// Seconds to wait.
        seconds: u32,
    },
    /// The device is in this round's cohort; continue at this stage.
    Join {
        /// Round number.
        round: u64,
        /// The stage the round is in.
        stage: Stage,
    },
}

/// How recently a device must have been eligible to be drawn: the longest
/// delay it can be given, plus the shortest as grace for a slow request.
pub fn eligibility_window_ms(pacing: &CheckinPacing) -> u64 {
    (u64::from(pacing.max_retry_secs) + u64::from(pacing.min_retry_secs)) * 1000
}

fn come_back(pacing: &CheckinPacing, phase: Phase, population: u64) -> CheckinResponse {
    // The rng lives only inside this synchronous call (it is not Send).
    let seconds = pace::retry_after_secs(pacing, phase, population, &mut rand::thread_rng());
    CheckinResponse::ComeBackIn { seconds }
}

/// Decides the answer to `device`'s check-in (already recorded).
pub async fn respond(
    state: &AppState,
    federation: &FederationConfig,
    device: &DeviceRecord,
    now_ms: u64,
) -> Result<CheckinResponse, AppError> {
    let storage = &*state.storage;
    let id = &federation.id;
    let pacing = &federation.checkin;
    let eligible_since = now_ms.saturating_sub(eligibility_window_ms(pacing));
    let policy = CohortPolicy::for_federation(federation);

    // Two passes at most: losing the race to open a round means another
    // check-in just opened one, and the second pass sees it.
    for _ in 0..2 {
        if let Some(round) = storage.round_in_flight(id.clone()).await? {
            if storage
                .is_member(id.clone(), round.round, device.id.clone())
                .await?
            {
                return Ok(CheckinResponse::Join {
                    round: round.round,
                    stage: round.stage,
                });
            }
            let counts = storage.device_counts(id.clone(), eligible_since).await?;
            let remaining = round.stage_deadline_ms.saturating_sub(now_ms) / 1000;
            return Ok(come_back(
                pacing,
                Phase::RoundInFlight {
                    stage_remaining_secs: remaining,
                },
                counts.active,
            ));
        }

        let counts = storage.device_counts(id.clone(), eligible_since).await?;
        let record = storage
            .federation(id.clone())
            .await?
            .ok_or_else(|| AppError::Internal(format!("federation {id} is not in storage")))?;
        let gathering_for =
            std::time::Duration::from_millis(now_ms.saturating_sub(record.gathering_since_ms));
        let eligible = usize::try_from(counts.eligible).unwrap_or(usize::MAX);
        let Decision::Open { size } = cohort::decide(&policy, eligible, gathering_for) else {
            return Ok(come_back(pacing, Phase::Gathering, counts.active));
        };
        let candidates = storage.eligible_devices(id.clone(), eligible_since).await?;
        let members = cohort::choose(&candidates, size, &mut rand::thread_rng());
        if members.len() < policy.min_clients {
            // Devices dropped out between counting and drawing.
            return Ok(come_back(pacing, Phase::Gathering, counts.active));
        }
        match rounds::open_round(
            storage,
            &**state.rounds.protocol(),
            federation,
            members,
            now_ms,
        )
        .await
        {
            Ok(round) => {
                tracing::info!(
                    federation = %id,
                    round = round.summary.round,
                    cohort = round.summary.cohort_size,
                    "round opened"
                );
                if round.cohort.binary_search(&device.id).is_ok() {
                    return Ok(CheckinResponse::Join {
                        round: round.summary.round,
                        stage: round.summary.stage,
                    });
                }
                let remaining = round.summary.stage_deadline_ms.saturating_sub(now_ms) / 1000;
                return Ok(come_back(
                    pacing,
                    Phase::RoundInFlight {
                        stage_remaining_secs: remaining,
                    },
                    counts.active,
                ));
            }
            Err(RoundError::Storage(StorageError::Conflict(_))) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(come_back(pacing, Phase::Gathering, 0))
}
