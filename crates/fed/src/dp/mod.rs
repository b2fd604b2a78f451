//! Distributed differential privacy: what each client does to its update
//! before masking, so that the *sum* the server unmasks is differentially
//! private although no single party adds all the noise.
//!
//! Pipeline on the client ([`DistributedDp::encode`]): clip the flat `f32`
//! update to L2 norm `C`; scale by `s` and round stochastically to integers;
//! add this client's share of the noise, a discrete Gaussian with variance
//! `σ²/n_min` per coordinate where `σ = z·C·s` (noise multiplier `z`, in
//! ring units); reduce mod 2^32. After SecAgg the server holds the sum of
//! at least `n_min` such vectors, carrying noise of variance at least `σ²`:
//! the distributed discrete Gaussian mechanism of Kairouz, Liu & Steinke
//! (ICML 2021). The server decodes with [`DistributedDp::decode_sum`].
//!
//! `n_min` is the round's minimum number of survivors: the server aborts
//! rather than unmask fewer, so the guarantee holds for every published sum.
//! More survivors only add noise (independent noise is post-processing).
//!
//! Neighbouring datasets differ by one client's whole update (add/remove,
//! user-level DP). A client's integer vector has L2 norm at most
//! `C·s + √d` (stochastic rounding moves each of `d` coordinates by less than
//! 1), which is the sensitivity [`DistributedDp::rho_per_round`] charges.

mod accountant;
mod quantize;
mod sampler;

pub use accountant::{
    PrivacyAccountant, PrivacyCharge, distributed_discrete_gaussian_rho, gaussian_rho, zcdp_epsilon,
};
pub use quantize::{
    NOISE_TAIL_SIGMAS, Quantizer, centred_lift, clip_factor, clip_l2, l2_norm, stochastic_round,
    to_ring,
};
pub use sampler::DiscreteGaussian;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::ids::RoundId;

/// The δ at which ε is reported when a federation states none: well below
/// `1/n` for any population Hearth federations are sized for, the usual
/// rule for user-level (ε, δ) statements.
pub const DEFAULT_DELTA: f64 = 1e-5;

/// What can go wrong with DP parameters and inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// A parameter outside its domain.
    #[error("invalid {name}: {value}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A NaN or infinity in an update.
    #[error("update coordinate {index} is not finite")]
    NonFinite {
        /// Where.
        index: usize,
    },
    /// The round was already charged to the accountant.
    #[error("round {round} is already recorded")]
    AlreadyRecorded {
        /// The round.
        round: RoundId,
    },
}

/// A federation's DP policy for a round, part of the round info.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// L2 clipping norm `C`, in update units.
    pub clip_norm: f64,
    /// Noise multiplier `z`: the summed noise has standard deviation `z·C`
    /// (in update units). 0 disables noise (and privacy: ρ is infinite).
    pub noise_multiplier: f64,
}

/// The client encoder and server decoder for one round's DP parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DistributedDp {
    config: DpConfig,
    noise_shares: u32,
    max_contributors: u32,
    quantizer: Quantizer,
    client_noise: Option<DiscreteGaussian>,
}

impl DistributedDp {
    /// Parameters for sums of between `noise_shares` and `max_contributors`
    /// clients.
    pub fn new(
        config: DpConfig,
        noise_shares: u32,
        max_contributors: u32,
    ) -> Result<Self, DpError> {
        let quantizer = Quantizer::for_sum(
            config.clip_norm,
            config.noise_multiplier,
            max_contributors,
            noise_shares,
        )?;
        let total_sigma = config.noise_multiplier * config.clip_norm * quantizer.scale();
        let client_noise = if config.noise_multiplier > 0.0 {
            Some(DiscreteGaussian::new(
                total_sigma / f64::from(noise_shares).sqrt(),
            )?)
        } else {
            None
        };
        Ok(Self {
            config,
            noise_shares,
            max_contributors,
            quantizer,
            client_noise,
        })
    }

    /// The policy.
    pub fn config(&self) -> DpConfig {
        self.config
    }

    /// The fixed-point scale.
    pub fn quantizer(&self) -> Quantizer {
        self.quantizer
    }

    /// Number of clients the noise is split over (`n_min`).
    pub fn noise_shares(&self) -> u32 {
        self.noise_shares
    }

    /// Most clients a sum may have without wrapping.
    pub fn max_contributors(&self) -> u32 {
        self.max_contributors
    }

    /// σ of the noise in a sum of `n_min` clients, in ring units (`z·C·s`).
    pub fn total_sigma(&self) -> f64 {
        self.config.noise_multiplier * self.config.clip_norm * self.quantizer.scale()
    }

    /// σ of one client's noise, in ring units (`σ / √n_min`).
    pub fn client_sigma(&self) -> f64 {
        self.client_noise.map_or(0.0, |n| n.sigma())
    }

    /// Clip, quantize, add this client's noise share, reduce mod 2^32.
    pub fn encode<R: CryptoRngCore + ?Sized>(
        &self,
        update: &[f32],
        rng: &mut R,
    ) -> Result<Vec<u32>, DpError> {
        let factor = clip_factor(update, self.config.clip_norm)?;
        let mut ints = self.quantizer.quantize(update, factor, rng);
        if let Some(noise) = &self.client_noise {
            for v in ints.iter_mut() {
                *v = v.wrapping_add(noise.sample(rng));
            }
        }
        Ok(ints.into_iter().map(to_ring).collect())
    }

    /// The sum of the contributors' updates, in update units.
    pub fn decode_sum(&self, sum: &[u32]) -> Vec<f32> {
        self.quantizer.dequantize(sum)
    }

    /// The mean over `contributors` clients, in update units.
    pub fn decode_mean(&self, sum: &[u32], contributors: usize) -> Vec<f32> {
        let n = contributors.max(1) as f64;
        sum.iter()
            .map(|&w| (f64::from(centred_lift(w)) / self.quantizer.scale() / n) as f32)
            .collect()
    }

    /// The zCDP cost `ρ` of one round with `dim`-dimensional updates (for
    /// [`PrivacyAccountant::record`]); infinite without noise.
    pub fn rho_per_round(&self, dim: usize) -> f64 {
        let Some(noise) = self.client_noise else {
            return f64::INFINITY;
        };
        let sensitivity = self.config.clip_norm * self.quantizer.scale() + (dim as f64).sqrt();
        distributed_discrete_gaussian_rho(sensitivity, noise.sigma(), self.noise_shares, dim)
    }

    /// The true cost of a round whose sum carries only `shares` devices'
    /// noise (each this round's client share), e.g. when fewer devices
    /// survived than the noise was split over: more than
    /// [`DistributedDp::rho_per_round`] when `shares` is below the split.
    /// Infinite without noise or with no share at all.
    pub fn rho_with_noise_shares(&self, dim: usize, shares: u32) -> f64 {
        let Some(noise) = self.client_noise else {
            return f64::INFINITY;
        };
        if shares == 0 {
            return f64::INFINITY;
        }
        let sensitivity = self.config.clip_norm * self.quantizer.scale() + (dim as f64).sqrt();
        distributed_discrete_gaussian_rho(sensitivity, noise.sigma(), shares, dim)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fewer_noise_shares_cost_more() {
        let dp = DistributedDp::new(
            DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            },
            10,
            20,
        )
        .unwrap();
        let nominal = dp.rho_per_round(1000);
        assert_eq!(dp.rho_with_noise_shares(1000, 10), nominal);
        let thin = dp.rho_with_noise_shares(1000, 2);
        assert!(thin > 4.0 * nominal, "{thin} vs {nominal}");
        assert!(dp.rho_with_noise_shares(1000, 20) < nominal);
        assert_eq!(dp.rho_with_noise_shares(1000, 0), f64::INFINITY);
    }

    #[test]
    fn noiseless_pipeline_sums_to_within_rounding() {
        let mut rng = StdRng::seed_from_u64(31);
        let dp = DistributedDp::new(
            DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 0.0,
            },
            5,
            10,
        )
        .unwrap();
        let updates: Vec<Vec<f32>> = (0..10)
            .map(|_| (0..200).map(|_| rng.gen_range(-0.1f32..0.1)).collect())
            .collect();
        let mut sum = vec![0u32; 200];
        let mut float_sum = vec![0f64; 200];
        for u in &updates {
            let enc = dp.encode(u, &mut rng).unwrap();
            crate::mask::add_into(&mut sum, &enc);
            let f = clip_factor(u, 1.0).unwrap();
            for (a, &x) in float_sum.iter_mut().zip(u) {
                *a += f64::from(x) * f;
            }
        }
        let decoded = dp.decode_sum(&sum);
        let step = 1.0 / dp.quantizer().scale();
        for (d, f) in decoded.iter().zip(&float_sum) {
            assert!((f64::from(*d) - f).abs() <= 10.0 * step + 1e-6);
        }
        assert_eq!(dp.rho_per_round(200), f64::INFINITY);
    }

    #[test]
    fn noise_is_split_so_the_sum_has_sigma_squared() {
        let dp = DistributedDp::new(
            DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            },
            4,
            8,
        )
        .unwrap();
        let n = f64::from(dp.noise_shares());
        assert!(
            (dp.client_sigma() * dp.client_sigma() * n / dp.total_sigma().powi(2) - 1.0).abs()
                < 1e-12
        );
        // Four clients' noise on a zero update: the decoded sum has standard
        // deviation z·C = 1 in update units.
        let mut rng = StdRng::seed_from_u64(32);
        let dim = 4000;
        let mut sum = vec![0u32; dim];
        for _ in 0..4 {
            crate::mask::add_into(&mut sum, &dp.encode(&vec![0.0; dim], &mut rng).unwrap());
        }
        let decoded = dp.decode_sum(&sum);
        let var = decoded.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / dim as f64;
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
        // ρ ≈ 1/(2 z²) = 0.5, inflated slightly by the rounding sensitivity.
        let rho = dp.rho_per_round(dim);
        assert!(rho > 0.5 && rho < 0.5001, "{rho}");
    }
}
