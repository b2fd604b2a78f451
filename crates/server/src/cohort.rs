//! Cohort forming: when a federation with no round in flight should open
//! one, and whom to invite.
//!
//! Pure functions, so the policy is tested without a server. A round opens
//! as soon as enough eligible devices are around to over-select the target
//! (`ceil(target_clients * over_selection)`, absorbing the usual dropouts),
//! or, once the gathering period has lasted the configured gather deadline,
//! with whoever is there if that reaches `min_clients`. Members are drawn
//! uniformly at random so no device (and no operator) picks who takes part.

use std::time::Duration;

use rand::Rng;
use rand::seq::index;

use crate::config::FederationConfig;

/// The numbers the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CohortPolicy {
    /// Fewest clients a round may start with.
    pub min_clients: usize,
    /// Clients invited when enough are around.
    pub cohort_target: usize,
    /// How long to wait for `cohort_target` before settling for `min_clients`.
    pub gather: Duration,
}

impl CohortPolicy {
    /// The policy a federation's configuration implies.
    pub fn for_federation(federation: &FederationConfig) -> Self {
        CohortPolicy {
            min_clients: federation.min_clients as usize,
            cohort_target: federation.cohort_target() as usize,
            gather: federation.deadlines.gather(),
        }
    }
}

/// Whether to open a round now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Open a round inviting this many devices.
    Open {
        /// Cohort size.
        size: usize,
    },
    /// Keep gathering.
    Wait {
        /// Eligible devices still missing for a full cohort.
        missing: usize,
    },
}

/// Decides whether `eligible` devices, gathered for `gathering_for`, make a round.
pub fn decide(policy: &CohortPolicy, eligible: usize, gathering_for: Duration) -> Decision {
    if eligible >= policy.cohort_target {
        Decision::Open {
            size: policy.cohort_target,
        }
    } else if eligible >= policy.min_clients && gathering_for >= policy.gather {
        Decision::Open { size: eligible }
    } else {
        Decision::Wait {
            missing: policy.cohort_target - eligible,
        }
    }
}

/// Draws `size` distinct candidates uniformly at random (all of them if
/// there are fewer), keeping their original order.
pub fn choose<T: Clone>(candidates: &[T], size: usize, rng: &mut impl Rng) -> Vec<T> {
    let size = size.min(candidates.len());
    let mut picked = index::sample(rng, candidates.len(), size).into_vec();
    picked.sort_unstable();
    picked.into_iter().map(|i| candidates[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const POLICY: CohortPolicy = CohortPolicy {
        min_clients: 3,
        cohort_target: 13,
        gather: Duration::from_secs(600),
    };

    #[test]
    fn a_full_cohort_opens_at_once_and_caps_the_size() {
        assert_eq!(
            decide(&POLICY, 13, Duration::ZERO),
            Decision::Open { size: 13 }
        );
        assert_eq!(
            decide(&POLICY, 500, Duration::ZERO),
            Decision::Open { size: 13 }
        );
    }

    #[test]
    fn a_partial_cohort_waits_for_the_gather_deadline_then_settles() {
        assert_eq!(
            decide(&POLICY, 5, Duration::from_secs(599)),
            Decision::Wait { missing: 8 }
        );
        assert_eq!(
            decide(&POLICY, 5, Duration::from_secs(600)),
            Decision::Open { size: 5 }
        );
        assert_eq!(
            decide(&POLICY, 3, Duration::from_secs(3600)),
            Decision::Open { size: 3 }
        );
    }

    #[test]
    fn fewer_than_min_clients_never_open() {
        assert_eq!(
            decide(&POLICY, 2, Duration::from_secs(1_000_000)),
            Decision::Wait { missing: 11 }
        );
        assert_eq!(
            decide(&POLICY, 0, Duration::ZERO),
            Decision::Wait { missing: 13 }
        );
    }

    #[test]
    fn choose_draws_distinct_members_and_covers_everyone_over_time() {
        let candidates: Vec<u32> = (0..50).collect();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let cohort = choose(&candidates, 13, &mut rng);
            assert_eq!(cohort.len(), 13);
            assert_eq!(cohort.iter().collect::<HashSet<_>>().len(), 13, "distinct");
            assert!(
                cohort.windows(2).all(|w| w[0] < w[1]),
                "original order kept"
            );
            seen.extend(cohort);
        }
        assert_eq!(seen.len(), 50, "every candidate is drawn sometimes");
        assert_eq!(choose(&candidates[..4], 13, &mut rng), [0, 1, 2, 3]);
        assert!(choose::<u32>(&[], 3, &mut rng).is_empty());
    }

    #[test]
    fn choose_is_roughly_uniform() {
        let candidates: Vec<usize> = (0..10).collect();
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = [0u32; 10];
        for _ in 0..2_000 {
            for i in choose(&candidates, 3, &mut rng) {
                counts[i] += 1;
            }
        }
        // Expected 600 each; allow generous slack for a fixed seed.
        assert!(
            counts.iter().all(|&c| (480..=720).contains(&c)),
            "{counts:?}"
        );
    }
}
