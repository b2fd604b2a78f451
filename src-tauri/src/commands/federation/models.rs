//! Response shapes of the federation commands (the requests are the
//! library's: [`hearth_personalize::federation::JoinFederationRequest`]
//! and [`hearth_personalize::federation::FederatedRoundRequest`]).

use hearth_personalize::eligibility::Conditions;
use hearth_personalize::federation::MembershipStatus;
use serde::Serialize;

/// The Federation screen's state.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct FederationOverview {
    /// Active memberships (none: federation is off).
    pub memberships: Vec<MembershipStatus>,
    /// What the device reports about itself now (power, idle, hour).
    pub conditions: Conditions,
}
