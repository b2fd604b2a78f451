//! What each round of a federation runs with: stage deadlines, SecAgg+
//! neighbourhoods, differential privacy and check-in pacing.

use std::time::Duration;

use hearth_fed::Stage;
use hearth_fed::graph::ThreatModel;
use serde::{Deserialize, Serialize};

/// Seconds each stage of a round may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deadlines {
    /// How long to wait for `target_clients * over_selection` devices before
    /// settling for `min_clients`.
    #[serde(default = "default_gather")]
    pub gather_secs: u32,
    /// SecAgg+ stage 0: clients advertise their public keys.
    #[serde(default = "default_short_stage")]
    pub advertise_keys_secs: u32,
    /// SecAgg+ stage 1: clients exchange encrypted key shares.
    #[serde(default = "default_short_stage")]
    pub share_keys_secs: u32,
    /// SecAgg+ stage 2: clients train and upload masked updates.
    #[serde(default = "default_masked_input")]
    pub masked_input_secs: u32,
    /// The consistency round: uploaders sign the survivor set.
    #[serde(default = "default_short_stage")]
    pub consistency_check_secs: u32,
    /// SecAgg+ stage 3: survivors reveal shares to remove masks.
    #[serde(default = "default_short_stage")]
    pub unmasking_secs: u32,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            gather_secs: default_gather(),
            advertise_keys_secs: default_short_stage(),
            share_keys_secs: default_short_stage(),
            masked_input_secs: default_masked_input(),
            consistency_check_secs: default_short_stage(),
            unmasking_secs: default_short_stage(),
        }
    }
}

impl Deadlines {
    /// How long `stage` may take (nothing for a round that ended: only
    /// live stages have deadlines).
    pub fn for_stage(&self, stage: Stage) -> Duration {
        let secs = match stage {
            Stage::CollectingKeys => self.advertise_keys_secs,
            Stage::SharingKeys => self.share_keys_secs,
            Stage::CollectingUploads => self.masked_input_secs,
            Stage::CheckingConsistency => self.consistency_check_secs,
            Stage::Unmasking => self.unmasking_secs,
            Stage::Done | Stage::Aborted => 0,
        };
        Duration::from_secs(u64::from(secs))
    }

    /// How long gathering waits for a full cohort.
    pub fn gather(&self) -> Duration {
        Duration::from_secs(u64::from(self.gather_secs))
    }
}

/// The fraction of a cohort assumed to collude with the server (`γ`) when
/// none is configured.
pub const DEFAULT_CORRUPT_FRACTION: f64 = 0.01;

/// The fraction of a cohort assumed to drop out (`δ`) when none is
/// configured.
pub const DEFAULT_DROPOUT_FRACTION: f64 = 0.05;

/// SecAgg+ neighbourhood size `k` and share threshold `t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecAggConfig {
    /// Neighbours per client; `None` sizes neighbourhoods from the threat
    /// model (Bell et al.'s bounds) for the cohort that forms.
    pub neighbours: Option<u32>,
    /// Shares needed to reconstruct; `None` takes the threat model's (or a
    /// strict majority of an explicit `k`).
    pub threshold: Option<u32>,
    /// `γ`: the fraction of a cohort that may collude with the server
    /// (default [`DEFAULT_CORRUPT_FRACTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt_fraction: Option<f64>,
    /// `δ`: the fraction of a cohort that may drop out (default
    /// [`DEFAULT_DROPOUT_FRACTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_fraction: Option<f64>,
}

/// The `k` and `t` a cohort of a given size runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecAggParams {
    /// Neighbours per client.
    pub neighbours: u32,
    /// Shares needed to reconstruct a secret.
    pub threshold: u32,
}

impl SecAggConfig {
    /// The adversary automatic neighbourhoods are sized against; part of
    /// every round's parameters, so devices resolve the same `k` and `t`.
    pub fn threat_model(&self) -> ThreatModel {
        ThreatModel {
            corrupt_fraction: self.corrupt_fraction.unwrap_or(DEFAULT_CORRUPT_FRACTION),
            dropout_fraction: self.dropout_fraction.unwrap_or(DEFAULT_DROPOUT_FRACTION),
        }
    }

    /// `k` and `t` for a cohort of `n` clients (`n >= 2`).
    ///
    /// Automatic `k` and `t` are the smallest that meet the threat model's
    /// security and correctness bounds for `n` devices (Bell et al. 2020;
    /// see `hearth_fed::graph::ThreatModel`), or the complete graph with a
    /// strict majority when the cohort is too small for any to. An
    /// explicit `k` takes a strict majority as its automatic `t`.
    pub fn for_cohort(&self, n: u32) -> SecAggParams {
        let most = n.saturating_sub(1).max(1);
        if self.neighbours.is_none()
            && let Ok(sized) = self.threat_model().neighbourhood(n)
        {
            return SecAggParams {
                neighbours: sized.degree,
                threshold: self.threshold.unwrap_or(sized.threshold),
            };
        }
        let auto = (u32::BITS - n.saturating_sub(1).leading_zeros()).max(2);
        let neighbours = self.neighbours.unwrap_or(auto).min(most);
        let threshold = self.threshold.unwrap_or(neighbours / 2 + 1);
        SecAggParams {
            neighbours,
            threshold,
        }
    }
}

/// A federation's differential privacy as the operator configures it: the
/// protocol's policy, [`hearth_fed::DpConfig`] (clip norm and noise
/// multiplier, defined once in hearth-fed and carried in every round's
/// parameters), and the δ at which the server states each round's ε.
///
/// Why a server type at all: δ is no round parameter (it is not in
/// `RoundInfo`, whose encoding devices check and the transparency log
/// commits to), yet the configuration file writes it in the same `dp`
/// table as the protocol's two numbers. `DpTable` is that table's shape;
/// this type is what the server uses. `FederationConfig::validate`
/// checks the values.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(from = "DpTable", into = "DpTable")]
pub struct FederationDp {
    /// What every client clips and noises with.
    pub protocol: hearth_fed::DpConfig,
    /// δ at which each round's ε is stated (published with every version
    /// and used by devices for their own accounting).
    pub delta: f64,
}

/// The `dp` table of a federation's configuration (and of its public
/// description), flat as operators write it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DpTable {
    /// L2 norm each client's update is clipped to.
    clip_norm: f64,
    /// Gaussian noise standard deviation, as a multiple of `clip_norm`.
    noise_multiplier: f64,
    /// δ at which each round's ε is stated.
    #[serde(default = "default_delta")]
    delta: f64,
}

impl From<DpTable> for FederationDp {
    fn from(t: DpTable) -> Self {
        FederationDp {
            protocol: hearth_fed::DpConfig {
                clip_norm: t.clip_norm,
                noise_multiplier: t.noise_multiplier,
            },
            delta: t.delta,
        }
    }
}

impl From<FederationDp> for DpTable {
    fn from(dp: FederationDp) -> Self {
        DpTable {
            clip_norm: dp.protocol.clip_norm,
            noise_multiplier: dp.protocol.noise_multiplier,
            delta: dp.delta,
        }
    }
}

/// How often devices are asked to check in.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinPacing {
    /// Shortest retry delay given.
    #[serde(default = "default_min_retry")]
    pub min_retry_secs: u32,
    /// Longest retry delay given.
    #[serde(default = "default_max_retry")]
    pub max_retry_secs: u32,
    /// Check-ins per second the whole population should settle at; larger
    /// populations are spread over longer delays to hold it.
    #[serde(default = "default_target_rate")]
    pub target_rate_per_sec: f64,
}

impl Default for CheckinPacing {
    fn default() -> Self {
        CheckinPacing {
            min_retry_secs: default_min_retry(),
            max_retry_secs: default_max_retry(),
            target_rate_per_sec: default_target_rate(),
        }
    }
}

fn default_gather() -> u32 {
    600
}

fn default_short_stage() -> u32 {
    120
}

fn default_masked_input() -> u32 {
    1800
}

fn default_delta() -> f64 {
    hearth_fed::dp::DEFAULT_DELTA
}

fn default_min_retry() -> u32 {
    30
}

fn default_max_retry() -> u32 {
    900
}

fn default_target_rate() -> f64 {
    50.0
}
