//! Pace steering: how long a device that is not needed right now should
//! wait before checking in again.
//!
//! Three pressures, combined by taking the largest and then clamping to the
//! federation's `[min_retry_secs, max_retry_secs]`:
//! - while a federation gathers a cohort, devices come back soon (the
//!   minimum), so once a round opens its members hear about it quickly;
//! - while a round is in flight, a device outside it has nothing to do
//!   before the current stage ends;
//! - the whole population together should check in at about
//!   `target_rate_per_sec`, so a large population gets longer delays.
//!
//! Every delay is then spread by ±20% jitter so devices told the same thing
//! at the same moment do not return in lockstep.

use rand::Rng;

use crate::config::CheckinPacing;

/// Relative spread applied to every delay.
pub const JITTER: f64 = 0.2;

/// What the federation is doing, from a non-member device's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No round in flight: a cohort is being gathered.
    Gathering,
    /// A round is running without this device; its stage ends in this many
    /// seconds.
    RoundInFlight {
        /// Seconds until the current stage's deadline.
        stage_remaining_secs: u64,
    },
}

/// The delay before jitter, in seconds.
pub fn base_delay_secs(pacing: &CheckinPacing, phase: Phase, population: u64) -> f64 {
    let min = f64::from(pacing.min_retry_secs);
    let max = f64::from(pacing.max_retry_secs);
    // Population / rate is the period at which the population's check-ins
    // average out to the target rate.
    let load = population as f64 / pacing.target_rate_per_sec;
    let phase_delay = match phase {
        Phase::Gathering => min,
        Phase::RoundInFlight {
            stage_remaining_secs,
        } => stage_remaining_secs as f64,
    };
    phase_delay.max(load).clamp(min, max)
}

/// Seconds to tell the device to wait: the base delay with jitter, within
/// the configured bounds.
pub fn retry_after_secs(
    pacing: &CheckinPacing,
    phase: Phase,
    population: u64,
    rng: &mut impl Rng,
) -> u32 {
    let base = base_delay_secs(pacing, phase, population);
    let spread = rng.gen_range(1.0 - JITTER..=1.0 + JITTER);
    let secs = (base * spread).round().clamp(
        f64::from(pacing.min_retry_secs),
        f64::from(pacing.max_retry_secs),
    );
    // Clamped to a u32 range above.
    secs as u32
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const PACING: CheckinPacing = CheckinPacing {
        min_retry_secs: 30,
        max_retry_secs: 900,
        target_rate_per_sec: 10.0,
    };

    #[test]
    fn gathering_is_shorter_than_a_round_in_flight() {
        let gathering = base_delay_secs(&PACING, Phase::Gathering, 10);
        let busy = base_delay_secs(
            &PACING,
            Phase::RoundInFlight {
                stage_remaining_secs: 300,
            },
            10,
        );
        assert_eq!(gathering, 30.0);
        assert_eq!(busy, 300.0);
    }

    #[test]
    fn large_populations_wait_longer_up_to_the_maximum() {
        assert_eq!(base_delay_secs(&PACING, Phase::Gathering, 100), 30.0);
        assert_eq!(base_delay_secs(&PACING, Phase::Gathering, 2_000), 200.0);
        assert_eq!(base_delay_secs(&PACING, Phase::Gathering, 1_000_000), 900.0);
        let long_stage = Phase::RoundInFlight {
            stage_remaining_secs: 100_000,
        };
        assert_eq!(base_delay_secs(&PACING, long_stage, 0), 900.0);
        let ending = Phase::RoundInFlight {
            stage_remaining_secs: 0,
        };
        assert_eq!(base_delay_secs(&PACING, ending, 0), 30.0);
    }

    #[test]
    fn jitter_spreads_delays_within_bounds() {
        let mut rng = StdRng::seed_from_u64(3);
        let phase = Phase::RoundInFlight {
            stage_remaining_secs: 100,
        };
        let delays: Vec<u32> = (0..500)
            .map(|_| retry_after_secs(&PACING, phase, 0, &mut rng))
            .collect();
        assert!(
            delays.iter().all(|&d| (80..=120).contains(&d)),
            "{delays:?}"
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 20, "delays are spread, not identical");
        // Jitter never leaves the configured range.
        for _ in 0..500 {
            let d = retry_after_secs(&PACING, Phase::Gathering, 0, &mut rng);
            assert!((30..=36).contains(&d), "{d}");
            let d = retry_after_secs(&PACING, Phase::Gathering, u64::MAX, &mut rng);
            assert!((720..=900).contains(&d), "{d}");
        }
    }
}
