//! The discrete Gaussian `N_Z(0, σ²)`: `P[X = x] ∝ exp(−x²/(2σ²))` on the
//! integers, sampled by Canonne, Kamath & Steinke, "The Discrete Gaussian for
//! Differential Privacy" (NeurIPS 2020), Algorithms 1–3: Bernoulli(exp(−γ))
//! by a series of Bernoulli trials, a discrete Laplace proposal with integer
//! scale `t = ⌊σ⌋ + 1`, and a rejection step.
//!
//! # Floating point
//!
//! CKS's algorithm is exact with rational `σ²`. Here `σ²` and the Bernoulli
//! parameters `γ/k` are `f64`, and a Bernoulli(p) trial compares a uniform
//! 53-bit fraction with `p`: each trial's probability is off by at most
//! about 2^-53 relative, with no catastrophic cancellation (there is no
//! `exp` call and no inverse-CDF). That is far below the slack in the
//! privacy accounting. The sampler is not constant-time: its running time
//! depends on the sample. It runs only on the device that owns the data.

use rand_core::CryptoRngCore;

use super::DpError;

/// A uniform `f64` in `[0, 1)` with 53 random bits.
pub(crate) fn uniform_unit<R: CryptoRngCore + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `[0, bound)` by rejection (no modulo bias); `bound >= 1`.
pub(crate) fn uniform_below<R: CryptoRngCore + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    let bound = bound.max(1);
    let zone = u64::MAX - (u64::MAX - bound + 1) % bound;
    loop {
        let w = rng.next_u64();
        if w <= zone {
            return w % bound;
        }
    }
}

/// Bernoulli(p) for `p` in `[0, 1]`.
pub(crate) fn bernoulli<R: CryptoRngCore + ?Sized>(rng: &mut R, p: f64) -> bool {
    uniform_unit(rng) < p
}

/// Bernoulli(exp(−γ)) for `γ ∈ [0, 1]` (CKS Algorithm 1): draw
/// A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until one is 0; the answer is
/// whether that k is odd.
fn bernoulli_exp_minus_unit<R: CryptoRngCore + ?Sized>(rng: &mut R, gamma: f64) -> bool {
    let mut k = 1.0f64;
    while bernoulli(rng, gamma / k) {
        k += 1.0;
    }
    k % 2.0 == 1.0
}

/// Bernoulli(exp(−γ)) for any `γ >= 0`: `exp(−γ) = exp(−1)^⌊γ⌋ · exp(−(γ − ⌊γ⌋))`,
/// each factor an independent trial, stopping at the first failure.
pub(crate) fn bernoulli_exp_minus<R: CryptoRngCore + ?Sized>(rng: &mut R, gamma: f64) -> bool {
    let whole = gamma.floor();
    let mut remaining = whole;
    while remaining >= 1.0 {
        if !bernoulli_exp_minus_unit(rng, 1.0) {
            return false;
        }
        remaining -= 1.0;
    }
    bernoulli_exp_minus_unit(rng, gamma - whole)
}

/// The discrete Laplace distribution with integer scale `t`,
/// `P[Y = y] ∝ exp(−|y|/t)` (CKS Algorithm 2 with s = 1).
fn discrete_laplace<R: CryptoRngCore + ?Sized>(rng: &mut R, t: u64) -> i64 {
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_minus_unit(rng, u as f64 / t as f64) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_minus_unit(rng, 1.0) {
            v = v.saturating_add(1);
        }
        let x = u.saturating_add(t.saturating_mul(v));
        let negative = bernoulli(rng, 0.5);
        if negative && x == 0 {
            continue;
        }
        let x = i64::try_from(x).unwrap_or(i64::MAX);
        return if negative { -x } else { x };
    }
}

/// A sampler for `N_Z(0, σ²)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiscreteGaussian {
    sigma: f64,
    sigma2: f64,
    /// The Laplace proposal's scale, `⌊σ⌋ + 1`.
    t: u64,
}

impl DiscreteGaussian {
    /// Largest σ accepted: samples stay far inside `i64`.
    pub const MAX_SIGMA: f64 = 1e15;

    /// A sampler with scale `σ > 0`.
    pub fn new(sigma: f64) -> Result<Self, DpError> {
        if !(sigma.is_finite() && sigma > 0.0 && sigma <= Self::MAX_SIGMA) {
            return Err(DpError::InvalidParameter {
                name: "sigma",
                value: sigma,
            });
        }
        Ok(Self {
            sigma,
            sigma2: sigma * sigma,
            t: sigma.floor() as u64 + 1,
        })
    }

    /// The scale σ.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// One sample (CKS Algorithm 3): propose `Y` from the discrete Laplace
    /// with scale `t`, accept with probability
    /// `exp(−(|Y| − σ²/t)² / (2σ²))`.
    pub fn sample<R: CryptoRngCore + ?Sized>(&self, rng: &mut R) -> i64 {
        let shift = self.sigma2 / self.t as f64;
        loop {
            let y = discrete_laplace(rng, self.t);
            let d = y.unsigned_abs() as f64 - shift;
            if bernoulli_exp_minus(rng, d * d / (2.0 * self.sigma2)) {
                return y;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn moments(samples: &[i64]) -> (f64, f64) {
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = samples
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = StdRng::seed_from_u64(11);
        for gamma in [0.0, 0.3, 1.0, 2.5] {
            let n = 40_000;
            let hits = (0..n)
                .filter(|_| bernoulli_exp_minus(&mut rng, gamma))
                .count();
            let p = (-gamma).exp();
            let se = (p * (1.0 - p) / n as f64).sqrt().max(1e-9);
            let got = hits as f64 / n as f64;
            assert!((got - p).abs() < 5.0 * se + 1e-9, "γ={gamma}: {got} vs {p}");
        }
    }

    #[test]
    fn discrete_gaussian_has_mean_zero_and_variance_sigma_squared() {
        let mut rng = StdRng::seed_from_u64(12);
        for sigma in [0.8, 3.5, 40.0, 2_500.0] {
            let dg = DiscreteGaussian::new(sigma).unwrap();
            let n = 20_000;
            let samples: Vec<i64> = (0..n).map(|_| dg.sample(&mut rng)).collect();
            let (mean, var) = moments(&samples);
            let s2 = sigma * sigma;
            // N_Z(0, σ²) has variance within 1e-3 of σ² for σ >= 0.8; the
            // sample variance has standard error σ² √(2/n) ≈ 1% here.
            assert!(
                mean.abs() < 5.0 * sigma / (n as f64).sqrt(),
                "σ={sigma}: mean {mean}"
            );
            assert!(
                (var / s2 - 1.0).abs() < 0.06,
                "σ={sigma}: var {var} vs {s2}"
            );
        }
    }

    #[test]
    fn discrete_gaussian_is_symmetric_and_integer_shaped() {
        // σ = 1: P[0] : P[1] = 1 : exp(−1/2).
        let mut rng = StdRng::seed_from_u64(13);
        let dg = DiscreteGaussian::new(1.0).unwrap();
        let n = 60_000;
        let samples: Vec<i64> = (0..n).map(|_| dg.sample(&mut rng)).collect();
        let zero = samples.iter().filter(|&&x| x == 0).count() as f64;
        let plus = samples.iter().filter(|&&x| x == 1).count() as f64;
        let minus = samples.iter().filter(|&&x| x == -1).count() as f64;
        let ratio = (plus + minus) / 2.0 / zero;
        assert!((ratio - (-0.5f64).exp()).abs() < 0.03, "ratio {ratio}");
        assert!((plus - minus).abs() / (plus + minus) < 0.03);
    }

    #[test]
    fn bad_sigmas_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e16] {
            assert!(DiscreteGaussian::new(bad).is_err());
        }
    }

    #[test]
    fn uniform_below_is_in_range() {
        let mut rng = StdRng::seed_from_u64(14);
        for bound in [1u64, 2, 3, 10, u64::MAX] {
            for _ in 0..100 {
                assert!(uniform_below(&mut rng, bound) < bound);
            }
        }
    }
}
