//! The round policy a device pins when it joins, and checks every round
//! against before it announces anything.
//!
//! A malicious server may announce any parameters for a round. The ones
//! that decide a device's privacy are pinned from the federation's public
//! description at enrolment (over the pinned TLS connection) and kept in
//! the [`Membership`](super::Membership):
//!
//! - the DP policy (clip norm, noise multiplier) and the update's length,
//!   exactly;
//! - the largest noise split: each device adds `σ/√m` of noise where `m` is
//!   the round's `min_survivors`. A server announcing a larger `m` than the
//!   federation declared (say 1,000) and padding the cohort with ids of its
//!   own would aggregate a few real devices with a fraction of the noise
//!   each booked. Rounds may split the noise over fewer devices (more noise
//!   each), never over more;
//! - the largest cohort, and the SecAgg+ neighbourhood settings (degree and
//!   threshold, or the automatic ones), exactly: a server that shrinks
//!   neighbourhoods or lowers the threshold needs fewer colluders to
//!   unmask someone.

use serde::{Deserialize, Serialize};

use crate::dp::DpConfig;
use crate::graph::ThreatModel;
use crate::wire::RoundInfo;

/// What a device agreed to when it joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundPolicy {
    /// Parameters of the update vector.
    pub parameters: u64,
    /// The DP policy every round must use.
    pub dp: DpConfig,
    /// The most devices a round may split the noise over (the federation's
    /// `min_clients`).
    pub max_noise_split: u32,
    /// The largest cohort a round may have.
    pub max_cohort: u32,
    /// SecAgg+ neighbours per device (`None`: automatic, about `log2 n`).
    pub neighbours: Option<u32>,
    /// SecAgg+ threshold (`None`: a strict majority of the neighbours).
    pub threshold: Option<u32>,
    /// What automatic neighbourhoods are sized against; the device resolves
    /// `k` and `t` from it itself, for the cohort it is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_model: Option<ThreatModel>,
}

/// How a round's parameters break the pinned policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Another update length.
    #[error("the round's vector has {announced} parameters, the federation's {pinned}")]
    VectorLen {
        /// Announced.
        announced: u64,
        /// Pinned.
        pinned: u64,
    },
    /// Another clip norm or noise multiplier.
    #[error(
        "the round's DP policy (clip {}, noise {}) is not the federation's (clip {}, noise {})",
        announced.clip_norm, announced.noise_multiplier, pinned.clip_norm, pinned.noise_multiplier
    )]
    Dp {
        /// Announced.
        announced: DpConfig,
        /// Pinned.
        pinned: DpConfig,
    },
    /// Noise split over more devices than the federation declared: each
    /// device's share would be too small.
    #[error(
        "the round splits the noise over {announced} devices; this device agreed to at most {pinned}"
    )]
    NoiseSplit {
        /// Announced `min_survivors`.
        announced: u32,
        /// Pinned maximum.
        pinned: u32,
    },
    /// A cohort larger than the federation's.
    #[error("the round allows {announced} devices; the federation at most {pinned}")]
    Cohort {
        /// Announced `max_clients`.
        announced: u32,
        /// Pinned maximum.
        pinned: u32,
    },
    /// Another threat model (say, fewer colluders assumed, so smaller
    /// neighbourhoods).
    #[error("the round's threat model {announced:?} is not the federation's {pinned:?}")]
    ThreatModel {
        /// Announced.
        announced: Option<ThreatModel>,
        /// Pinned.
        pinned: Option<ThreatModel>,
    },
    /// Other neighbourhood settings.
    #[error(
        "the round's neighbourhood (degree {announced_degree:?}, threshold {announced_threshold:?}) is not the federation's (degree {pinned_degree:?}, threshold {pinned_threshold:?})"
    )]
    Neighbourhood {
        /// Announced degree.
        announced_degree: Option<u32>,
        /// Announced threshold.
        announced_threshold: Option<u32>,
        /// Pinned degree.
        pinned_degree: Option<u32>,
        /// Pinned threshold.
        pinned_threshold: Option<u32>,
    },
}

impl RoundPolicy {
    /// Checks a round's parameters against the pinned policy.
    pub fn check(&self, info: &RoundInfo) -> Result<(), PolicyViolation> {
        if u64::from(info.vector_len) != self.parameters {
            return Err(PolicyViolation::VectorLen {
                announced: u64::from(info.vector_len),
                pinned: self.parameters,
            });
        }
        if info.dp != self.dp {
            return Err(PolicyViolation::Dp {
                announced: info.dp,
                pinned: self.dp,
            });
        }
        if info.min_survivors > self.max_noise_split {
            return Err(PolicyViolation::NoiseSplit {
                announced: info.min_survivors,
                pinned: self.max_noise_split,
            });
        }
        if info.max_clients > self.max_cohort {
            return Err(PolicyViolation::Cohort {
                announced: info.max_clients,
                pinned: self.max_cohort,
            });
        }
        if info.threat_model != self.threat_model {
            return Err(PolicyViolation::ThreatModel {
                announced: info.threat_model,
                pinned: self.threat_model,
            });
        }
        if info.degree != self.neighbours || info.threshold != self.threshold {
            return Err(PolicyViolation::Neighbourhood {
                announced_degree: info.degree,
                announced_threshold: info.threshold,
                pinned_degree: self.neighbours,
                pinned_threshold: self.threshold,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::graph::GraphSeed;
    use crate::ids::{FederationId, RoundId};

    fn policy() -> RoundPolicy {
        RoundPolicy {
            parameters: 64,
            dp: DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.1,
            },
            max_noise_split: 5,
            max_cohort: 20,
            neighbours: None,
            threshold: None,
            threat_model: Some(ThreatModel {
                corrupt_fraction: 0.01,
                dropout_fraction: 0.05,
            }),
        }
    }

    fn honest() -> RoundInfo {
        RoundInfo {
            federation: FederationId::from_bytes([1; 16]),
            round: RoundId(4),
            vector_len: 64,
            min_clients: 5,
            max_clients: 12,
            min_survivors: 5,
            degree: None,
            threshold: None,
            graph_seed: GraphSeed([0; 32]),
            dp: policy().dp,
            threat_model: policy().threat_model,
        }
    }

    #[test]
    fn an_honest_round_passes_and_a_smaller_noise_split_is_fine() {
        assert_eq!(policy().check(&honest()), Ok(()));
        let smaller = RoundInfo {
            min_survivors: 3,
            min_clients: 3,
            ..honest()
        };
        assert_eq!(policy().check(&smaller), Ok(()));
    }

    #[test]
    fn every_privacy_parameter_outside_the_policy_is_refused() {
        let padded = RoundInfo {
            min_survivors: 1000,
            min_clients: 1000,
            max_clients: 1000,
            ..honest()
        };
        assert!(matches!(
            policy().check(&padded),
            Err(PolicyViolation::NoiseSplit {
                announced: 1000,
                pinned: 5
            })
        ));
        let quieter = RoundInfo {
            dp: DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 0.1,
            },
            ..honest()
        };
        assert!(matches!(
            policy().check(&quieter),
            Err(PolicyViolation::Dp { .. })
        ));
        let crowd = RoundInfo {
            max_clients: 21,
            ..honest()
        };
        assert!(matches!(
            policy().check(&crowd),
            Err(PolicyViolation::Cohort { .. })
        ));
        let thin = RoundInfo {
            degree: Some(2),
            ..honest()
        };
        assert!(matches!(
            policy().check(&thin),
            Err(PolicyViolation::Neighbourhood { .. })
        ));
        let trusting = RoundInfo {
            threat_model: Some(ThreatModel {
                corrupt_fraction: 0.0,
                dropout_fraction: 0.05,
            }),
            ..honest()
        };
        assert!(matches!(
            policy().check(&trusting),
            Err(PolicyViolation::ThreatModel { .. })
        ));
        let longer = RoundInfo {
            vector_len: 65,
            ..honest()
        };
        assert!(matches!(
            policy().check(&longer),
            Err(PolicyViolation::VectorLen { .. })
        ));
    }
}
