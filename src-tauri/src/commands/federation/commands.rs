//! Federation commands: thin wrappers over [`super::helpers`].

use hearth_personalize::eligibility::ParticipationPolicy;
use hearth_personalize::federation::{self, ParticipationSummary, UploadRecord};
use hearth_store::{Membership, MembershipId};
use tauri::State;
use tauri::ipc::Channel;

use super::helpers;
use hearth_personalize::federation::{FederatedRoundRequest, JoinFederationRequest};

use super::models::FederationOverview;
use crate::error::{AppError, Result};
use crate::jobs::{JobEvent, spawn_progress_job};
use crate::state::{DeviceConditions, JobId, JobKind, Jobs, LibraryLocation};

/// Memberships (none: federation is off), privacy spent, eligibility now.
#[tauri::command]
pub async fn federation_status(
    location: State<'_, LibraryLocation>,
    device: State<'_, DeviceConditions>,
) -> Result<FederationOverview> {
    helpers::overview(&location, device.source())
}

/// Joins a federation with an invite; enrolment talks to the server, so it
/// runs on a blocking thread.
#[tauri::command]
pub async fn join_federation(
    location: State<'_, LibraryLocation>,
    request: JoinFederationRequest,
) -> Result<Membership> {
    let location = location.inner().clone();
    tauri::async_runtime::spawn_blocking(move || helpers::join(&location, &request))
        .await
        .map_err(|e| AppError::Internal(format!("joining stopped unexpectedly: {e}")))?
}

/// Leaves a federation (the only one when `membership` is absent); the
/// upload history stays.
#[tauri::command]
pub async fn leave_federation(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    membership: Option<MembershipId>,
) -> Result<Membership> {
    if jobs.is_running(JobKind::Federate) {
        return Err(AppError::Busy(
            "a federated round is running; cancel it first".into(),
        ));
    }
    Ok(federation::leave(&mut location.open()?, membership)?)
}

/// Every upload, to every federation this device joined.
#[tauri::command]
pub async fn federation_history(location: State<'_, LibraryLocation>) -> Result<Vec<UploadRecord>> {
    Ok(federation::history(&location.open()?)?)
}

/// Sets when the device may take part (power, idle, hours).
#[tauri::command]
pub async fn set_participation_policy(
    location: State<'_, LibraryLocation>,
    membership: Option<MembershipId>,
    policy: ParticipationPolicy,
) -> Result<MembershipId> {
    Ok(federation::set_policy(
        &mut location.open()?,
        membership,
        &policy,
    )?)
}

/// Starts taking part in federated rounds (one by default) as a job: it
/// checks in whenever the device is eligible, waits for a round, trains,
/// uploads and verifies. Progress and sentences arrive on `on_event`;
/// `cancel_job` stops it.
#[tauri::command]
pub async fn start_federated_round(
    location: State<'_, LibraryLocation>,
    jobs: State<'_, Jobs>,
    device: State<'_, DeviceConditions>,
    request: Option<FederatedRoundRequest>,
    on_event: Channel<JobEvent<ParticipationSummary>>,
) -> Result<JobId> {
    let participation = request.unwrap_or_default().participation()?;
    let location = location.inner().clone();
    let device = device.inner().clone();
    spawn_progress_job(
        &jobs,
        JobKind::Federate,
        on_event,
        move |progress, cancel| {
            helpers::federate(&location, &participation, device.source(), progress, cancel)
        },
    )
}
