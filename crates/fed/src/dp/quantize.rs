//! Clipping and fixed-point encoding of a float update into Z_2^32, the ring
//! SecAgg sums in.

use rand_core::CryptoRngCore;

use super::DpError;
use super::sampler::bernoulli;

/// The Euclidean norm, accumulated in `f64`.
pub fn l2_norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// The factor that scales `v` to L2 norm at most `clip_norm`: `1` if it is
/// already within, `clip_norm / ‖v‖` otherwise. Non-finite entries are an
/// error (a NaN would make every later bound meaningless).
pub fn clip_factor(v: &[f32], clip_norm: f64) -> Result<f64, DpError> {
    if !(clip_norm.is_finite() && clip_norm > 0.0) {
        return Err(DpError::InvalidParameter {
            name: "clip_norm",
            value: clip_norm,
        });
    }
    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
        return Err(DpError::NonFinite { index });
    }
    let norm = l2_norm(v);
    Ok(if norm > clip_norm {
        clip_norm / norm
    } else {
        1.0
    })
}

/// Scales `v` in place to L2 norm at most `clip_norm`; returns the norm it
/// had.
pub fn clip_l2(v: &mut [f32], clip_norm: f64) -> Result<f64, DpError> {
    let factor = clip_factor(v, clip_norm)?;
    let before = l2_norm(v);
    if factor < 1.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) * factor) as f32;
        }
    }
    Ok(before)
}

/// Randomized rounding of `y` to `⌊y⌋` or `⌈y⌉`, with
/// `P[⌈y⌉] = y − ⌊y⌋`, so `E[round(y)] = y` exactly: the quantization error
/// is unbiased and averages out across clients instead of accumulating.
pub fn stochastic_round<R: CryptoRngCore + ?Sized>(y: f64, rng: &mut R) -> i64 {
    let floor = y.floor();
    let up = bernoulli(rng, y - floor);
    // |y| < 2^31 for every caller (see `Quantizer`), so the cast is exact.
    floor as i64 + i64::from(up)
}

/// `v mod 2^32`: two's complement truncation is exactly reduction mod 2^32.
pub fn to_ring(v: i64) -> u32 {
    v as u32
}

/// The centred lift of a ring element to `[−2^31, 2^31)`: the unique
/// integer congruent to `v` in that range.
pub fn centred_lift(v: u32) -> i32 {
    v as i32
}

/// Fixed-point scale between update units and ring units: a value `x`
/// becomes `round(x · scale)` (stochastically).
///
/// # Why this scale
///
/// The sum is decoded by the centred lift, which is correct as long as every
/// coordinate of the true integer sum lies in `[−2^31, 2^31)`. With `n` at
/// most `max_contributors` clients, each clipped to L2 norm `C` (so every
/// coordinate `|x| <= C`), each rounded value is within `|x|·s + 1`, and the
/// summed noise is a sum of independent discrete Gaussians with total
/// standard deviation at most `σ_max = z·C·s·√(n_max / n_min)` (each client
/// adds variance `(z·C·s)² / n_min`; see [`super::DistributedDp`]). So
///
/// `|coordinate of the sum| <= n_max (C s + 1) + τ σ_max`
///
/// except with probability at most `2 exp(−τ²/2)` per coordinate
/// (Canonne, Kamath & Steinke 2020 show `N_Z(0, σ²)` is σ-sub-Gaussian, and
/// a sum of independent sub-Gaussians is sub-Gaussian with the summed
/// variance proxy). We take `τ = 12` (≈ 1.1e-31 per coordinate, below 1e-22 for a
/// billion coordinates) and solve for the largest `s` that keeps the bound
/// below `2^31 − 1`:
///
/// `s = (2^31 − 1 − n_max) / (C (n_max + τ z √(n_max / n_min)))`,
///
/// shaved by 2^-20 for floating-point slack in clipping. Rounding then costs
/// at most `1/s` per coordinate per client. Kairouz et al. (2021) reach
/// finer scales with a random rotation and modular clipping; we keep the
/// worst-case bound so that wrap-around is impossible rather than unlikely,
/// at the price of a coarser grid when cohorts are large.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantizer {
    scale: f64,
}

/// The τ of the wrap-around bound: summed noise stays within τ standard
/// deviations except with probability `2 exp(−τ²/2)` per coordinate.
pub const NOISE_TAIL_SIGMAS: f64 = 12.0;

/// The largest magnitude a centred-lifted coordinate can have.
const RING_HALF: f64 = 2_147_483_647.0; // 2^31 - 1

impl Quantizer {
    /// A quantizer with an explicit scale (ring units per update unit).
    pub fn with_scale(scale: f64) -> Result<Self, DpError> {
        if !(scale.is_finite() && scale > 0.0 && scale <= RING_HALF) {
            return Err(DpError::InvalidParameter {
                name: "scale",
                value: scale,
            });
        }
        Ok(Self { scale })
    }

    /// The largest scale at which `max_contributors` clipped, noised updates
    /// cannot wrap (see the type's documentation).
    pub fn for_sum(
        clip_norm: f64,
        noise_multiplier: f64,
        max_contributors: u32,
        noise_shares: u32,
    ) -> Result<Self, DpError> {
        if !(clip_norm.is_finite() && clip_norm > 0.0) {
            return Err(DpError::InvalidParameter {
                name: "clip_norm",
                value: clip_norm,
            });
        }
        if !(noise_multiplier.is_finite() && noise_multiplier >= 0.0) {
            return Err(DpError::InvalidParameter {
                name: "noise_multiplier",
                value: noise_multiplier,
            });
        }
        if noise_shares == 0 || noise_shares > max_contributors {
            return Err(DpError::InvalidParameter {
                name: "noise_shares",
                value: f64::from(noise_shares),
            });
        }
        let n_max = f64::from(max_contributors);
        if n_max >= RING_HALF / 2.0 {
            return Err(DpError::InvalidParameter {
                name: "max_contributors",
                value: n_max,
            });
        }
        let spread = (n_max / f64::from(noise_shares)).sqrt();
        let scale = (RING_HALF - n_max)
            / (clip_norm * (n_max + NOISE_TAIL_SIGMAS * noise_multiplier * spread))
            * (1.0 - 1.0 / f64::from(1u32 << 20));
        Self::with_scale(scale)
    }

    /// Ring units per update unit.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `round(x · factor · scale)` for each coordinate, stochastically, as
    /// integers (before noise and reduction mod 2^32).
    pub fn quantize<R: CryptoRngCore + ?Sized>(
        &self,
        v: &[f32],
        factor: f64,
        rng: &mut R,
    ) -> Vec<i64> {
        v.iter()
            .map(|&x| stochastic_round(f64::from(x) * factor * self.scale, rng))
            .collect()
    }

    /// Decodes a ring vector (one update, or a sum of updates) back to
    /// update units by the centred lift.
    pub fn dequantize(&self, v: &[u32]) -> Vec<f32> {
        v.iter()
            .map(|&w| (f64::from(centred_lift(w)) / self.scale) as f32)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn clipping_bounds_the_norm_and_keeps_direction() {
        let mut v = vec![3.0f32, 4.0];
        assert_eq!(clip_l2(&mut v, 1.0).unwrap(), 5.0);
        assert!((l2_norm(&v) - 1.0).abs() < 1e-6);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut small = vec![0.1f32, 0.1];
        clip_l2(&mut small, 1.0).unwrap();
        assert_eq!(small, vec![0.1, 0.1]);
        let mut zero = vec![0.0f32; 4];
        clip_l2(&mut zero, 1.0).unwrap();
        assert_eq!(zero, vec![0.0; 4]);
        assert_eq!(
            clip_l2(&mut [1.0, f32::NAN], 1.0),
            Err(DpError::NonFinite { index: 1 })
        );
        assert!(clip_l2(&mut [1.0], 0.0).is_err());
    }

    #[test]
    fn quantize_dequantize_error_is_below_one_step() {
        let mut rng = StdRng::seed_from_u64(21);
        let q = Quantizer::with_scale(1000.0).unwrap();
        let v: Vec<f32> = (0..5000).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let ring: Vec<u32> = q
            .quantize(&v, 1.0, &mut rng)
            .into_iter()
            .map(to_ring)
            .collect();
        let back = q.dequantize(&ring);
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= 1.0 / 1000.0 + 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        let mut rng = StdRng::seed_from_u64(22);
        for y in [0.3f64, -1.75, 12.5, 7.0] {
            let n = 100_000;
            let mean = (0..n)
                .map(|_| stochastic_round(y, &mut rng) as f64)
                .sum::<f64>()
                / n as f64;
            let frac = y - y.floor();
            let se = (frac * (1.0 - frac) / n as f64).sqrt();
            assert!((mean - y).abs() <= 5.0 * se + 1e-12, "y={y}: mean {mean}");
            // And only the two neighbouring integers ever appear.
            let r = stochastic_round(y, &mut rng) as f64;
            assert!(r == y.floor() || r == y.ceil());
        }
    }

    #[test]
    fn centred_lift_inverts_ring_reduction() {
        for v in [
            0i64,
            1,
            -1,
            12345,
            -98765,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
        ] {
            assert_eq!(i64::from(centred_lift(to_ring(v))), v);
        }
    }

    #[test]
    fn scale_makes_the_worst_case_sum_fit() {
        let (c, z, n_max, n_min) = (2.0, 1.1, 1300u32, 1000u32);
        let q = Quantizer::for_sum(c, z, n_max, n_min).unwrap();
        let s = q.scale();
        let sigma_max = z * c * s * (f64::from(n_max) / f64::from(n_min)).sqrt();
        let worst = f64::from(n_max) * (c * s + 1.0) + NOISE_TAIL_SIGMAS * sigma_max;
        assert!(worst < RING_HALF, "{worst}");
        assert!(
            worst > RING_HALF * 0.999,
            "scale should be as fine as allowed"
        );
        assert!(Quantizer::for_sum(c, z, 10, 11).is_err());
        assert!(Quantizer::for_sum(c, -1.0, 10, 5).is_err());
    }
}
