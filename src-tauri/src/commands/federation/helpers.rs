//! The federation commands' logic, over `hearth_personalize::federation`
//! (the calls `hearth fed join|status|history|leave|run` make).

use std::path::Path;

use hearth_personalize::eligibility::{DeviceState, LinuxDeviceState};
use hearth_personalize::federation::{self, JoinRequest, Participation, ParticipationSummary};
use hearth_progress::{CancelToken, Progress};
use hearth_store::Membership;

use super::models::{FederatedRoundRequest, FederationOverview, JoinFederationRequest};
use crate::commands::personalize::helpers::device;
use crate::error::{AppError, Result};
use crate::state::LibraryLocation;

/// Largest certificate file read (a chain of a few certificates is a few
/// kilobytes).
const CERTIFICATE_LIMIT: u64 = 256 * 1024;

/// The PEM text of the certificate file at `path`, which must be absolute
/// (the app has no working folder a person would mean).
pub fn certificate(path: &str) -> Result<String> {
    let path = Path::new(path.trim());
    if !path.is_absolute() {
        return Err(AppError::InvalidInput(
            "choose the server's certificate file (its full path)".into(),
        ));
    }
    let unreadable = |e: std::io::Error| {
        AppError::InvalidInput(format!(
            "cannot read the certificate {}: {e}",
            path.display()
        ))
    };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > CERTIFICATE_LIMIT {
        return Err(AppError::InvalidInput(format!(
            "{} is {size} bytes, too large for a certificate",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(AppError::InvalidInput(format!(
            "{} is not a PEM certificate",
            path.display()
        )));
    }
    Ok(text)
}

/// Joins a federation (network: run it off the async runtime's workers).
pub fn join(location: &LibraryLocation, request: &JoinFederationRequest) -> Result<Membership> {
    let certificate_pem = certificate(&request.certificate_path)?;
    let mut library = location.open()?;
    Ok(federation::join(
        &mut library,
        &JoinRequest {
            server_url: request.server_url.trim().to_owned(),
            certificate_pem,
            invite: request.invite.trim().to_owned(),
            epsilon_budget: request.epsilon_budget,
            policy: request.policy.clone(),
        },
    )?)
}

/// Memberships and this device's conditions now.
pub fn overview(
    location: &LibraryLocation,
    device: &dyn DeviceState,
) -> Result<FederationOverview> {
    let library = location.open()?;
    Ok(FederationOverview {
        memberships: federation::status(&library, device)?,
        conditions: device.conditions(),
    })
}

/// The workflow's request for a round request.
pub fn participation(request: &FederatedRoundRequest) -> Result<Participation> {
    if request.rounds == 0 {
        return Err(AppError::InvalidInput(
            "take part in at least one round".into(),
        ));
    }
    let blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Participation {
        membership: request.membership,
        model: blank(&request.model),
        label: blank(&request.label),
        steps: request.steps,
        batch_size: request.batch_size,
        seq_len: request.seq_len,
        learning_rate: request.learning_rate,
        device: device(&request.device)?,
        rounds: Some(request.rounds),
        once: false,
        ..Participation::default()
    })
}

/// Takes part in rounds until `participation.rounds` are done or the job
/// is cancelled (the loop `hearth fed run --rounds N` runs).
pub fn federate(
    location: &LibraryLocation,
    participation: &Participation,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<ParticipationSummary> {
    let mut library = location.open()?;
    Ok(federation::participate(
        &mut library,
        participation,
        &LinuxDeviceState::default(),
        progress,
        cancel,
    )?)
}
