//! Request and response shapes of the federation commands.

use hearth_personalize::eligibility::{Conditions, ParticipationPolicy};
use hearth_personalize::federation::{DEFAULT_EPSILON_BUDGET, MembershipStatus, Participation};
use serde::{Deserialize, Serialize};

/// Joining a federation, as the person fills it in.
#[derive(Debug, Clone, Deserialize, ts_rs::TS)]
pub struct JoinFederationRequest {
    /// `https://host:port`.
    pub server_url: String,
    /// The one-time invite token from the operator.
    pub invite: String,
    /// The server's certificate file (PEM) from the operator: an absolute
    /// path (the folder picker gives one).
    pub certificate_path: String,
    /// Total privacy budget, epsilon at delta 1e-5.
    #[serde(default = "default_budget")]
    pub epsilon_budget: f64,
    /// When the device may take part (default: on power, when idle).
    #[serde(default)]
    pub policy: ParticipationPolicy,
}

fn default_budget() -> f64 {
    DEFAULT_EPSILON_BUDGET
}

/// The Federation screen's state.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct FederationOverview {
    /// Active memberships (none: federation is off).
    pub memberships: Vec<MembershipStatus>,
    /// What the device reports about itself now (power, idle, hour).
    pub conditions: Conditions,
}

/// Taking part in rounds. Defaults are `hearth fed run`'s, for one round.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct FederatedRoundRequest {
    /// The membership (the only one when absent).
    pub membership: Option<i64>,
    /// Base model: registry name or path (default: the federation's).
    pub model: Option<String>,
    /// Train on texts with this label only.
    pub label: Option<String>,
    /// Local training steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Local learning rate.
    pub learning_rate: f64,
    /// `auto`, `cpu`, `cuda` or `metal`.
    pub device: String,
    /// Rounds to take part in before the job ends.
    pub rounds: usize,
}

impl Default for FederatedRoundRequest {
    /// The library's ([`Participation::default`]), for one round, so the
    /// app, `hearth fed run` and the library agree.
    fn default() -> Self {
        let participation = Participation::default();
        FederatedRoundRequest {
            membership: participation.membership,
            model: participation.model,
            label: participation.label,
            steps: participation.steps,
            batch_size: participation.batch_size,
            seq_len: participation.seq_len,
            learning_rate: participation.learning_rate,
            device: participation.device.to_string(),
            rounds: 1,
        }
    }
}
