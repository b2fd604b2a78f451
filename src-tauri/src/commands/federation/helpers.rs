//! The federation commands' logic, over `hearth_personalize::federation`
//! (the calls `hearth fed join|status|history|leave|run` make).

use hearth_personalize::eligibility::DeviceState;
use hearth_personalize::federation::{
    self, JoinFederationRequest, Participation, ParticipationSummary,
};
use hearth_progress::{CancelToken, Progress};
use hearth_store::Membership;

use super::models::FederationOverview;
use crate::error::{AppError, Result};
use crate::state::LibraryLocation;

/// Joins a federation (network: run it off the async runtime's workers).
/// The certificate must be named by its full path: the app has no working
/// folder a person would mean.
pub fn join(location: &LibraryLocation, request: &JoinFederationRequest) -> Result<Membership> {
    if !request.certificate_path.is_absolute() {
        return Err(AppError::InvalidInput(
            "choose the server's certificate file (its full path)".into(),
        ));
    }
    let join = request.join_request()?;
    let mut library = location.open()?;
    Ok(federation::join(&mut library, &join)?)
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

/// Takes part in rounds until `participation.rounds` are done or the job
/// is cancelled (the loop `hearth fed run --rounds N` runs).
pub fn federate(
    location: &LibraryLocation,
    participation: &Participation,
    device: &dyn DeviceState,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<ParticipationSummary> {
    let mut library = location.open()?;
    Ok(federation::participate(
        &mut library,
        participation,
        device,
        progress,
        cancel,
    )?)
}
