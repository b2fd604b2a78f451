//! `exp` for the CPU kernels' inner loops.
//!
//! The standard library's `f32::exp` is a call into libm per element, which
//! stops the compiler from vectorising the loops around it; a training step
//! of SmolLM2 takes a few hundred million of them (softmax, SiLU,
//! cross-entropy). This is Cephes' `expf` (Moshier): a range reduction by
//! `ln 2` and a degree-6 polynomial, written with plain arithmetic so loops
//! over slices vectorise. Its relative error is a few ulp over the range
//! where `exp` is a normal f32; below that it returns about `exp(-87)`
//! instead of a subnormal or zero, which no softmax or sigmoid can tell
//! apart. NaN stays NaN.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two so `n * LN2_HI` is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5 * 2^23 rounds an f32 to the nearest integer.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    // n is an integer in [-126, 127] here, and `shifted` holds it in its
    // low mantissa bits (1.5·2²³ + n, one unit per ulp), so its bits less
    // ROUNDER's are n itself: integer arithmetic that vectorises, where
    // `n as i32` (a saturating conversion) went one lane at a time and
    // cost more than the rest of `exp`. This is 2^n exactly.
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `x` rounded to the nearest integer (ties to even), for `|x| < 2²²`:
/// adding 1.5·2²³ leaves the integer in the low mantissa bits, read off as
/// in [`exp`]. Unlike `x.round() as i32` (a libm call and a saturating
/// conversion, one lane at a time) it vectorises.
#[inline(always)]
pub(crate) fn round_small(x: f32) -> i32 {
    ((x + ROUNDER).to_bits().wrapping_sub(ROUNDER.to_bits())) as i32
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Lanes of the reductions below: independent accumulators the compiler
/// can keep in one vector register.
const LANES: usize = 8;

/// Runs `f` compiled for the best instruction set this CPU has (AVX-512,
/// AVX2+FMA, or the baseline), detected at run time: the binary stays
/// portable, and the loops in `f` vectorise as wide as the CPU allows.
/// That needs `f` and everything it calls inlined into the dispatched
/// code: callers mark the closure `#[inline(always)]`, as are the helpers
/// here.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `Σ a[i] * b[i]` over the shorter of the two.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 2 * LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(2 * LANES), b.chunks_exact(2 * LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(a).zip(b) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest value (`-inf` for an empty slice).
#[inline(always)]
pub(crate) fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    rest.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Replaces each value `v` by `e^(v - shift)` and returns their sum,
/// accumulated in f64.
#[inline(always)]
pub(crate) fn exp_shifted_sum(values: &mut [f32], shift: f32) -> f64 {
    let mut lanes = [0f64; LANES];
    let mut chunks = values.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - shift);
            *lane += f64::from(*v);
        }
    }
    let mut sum: f64 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        sum += f64::from(*v);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max(((ours - libm) / libm).abs());
            x += 0.0137;
        }
        assert!(worst < 4.0 * f32::EPSILON, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
    }

    /// The power of two read from the rounding's bits is the one the
    /// integer conversion gives, for every exponent and both infinities.
    #[test]
    fn the_power_of_two_from_the_bits_is_the_converted_one() {
        let by_conversion = |x: f32| {
            let x = x.clamp(-87.0, 88.0);
            let n = (x * LOG2E + ROUNDER) - ROUNDER;
            let r = x - n * LN2_HI - n * LN2_LO;
            let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r
                + 4.166_579_6e-2)
                * r
                + 1.666_666_5e-1)
                * r
                + 0.5;
            let r2 = r * r;
            (p * r2 + r + 1.0) * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        let mut x = -100.0f32;
        while x < 100.0 {
            assert_eq!(exp(x).to_bits(), by_conversion(x).to_bits(), "exp({x})");
            x += 0.001_7;
        }
        for x in [
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.0,
            -87.0,
            87.999,
            -86.999,
        ] {
            assert_eq!(exp(x).to_bits(), by_conversion(x).to_bits(), "exp({x})");
        }
    }

    #[test]
    fn small_values_round_to_the_nearest_integer() {
        let mut x = -40_000.0f32;
        while x < 40_000.0 {
            let want = x.round_ties_even();
            assert_eq!(round_small(x) as f32, want, "{x}");
            x += 0.37;
        }
        for (x, want) in [
            (0.5, 0),
            (1.5, 2),
            (-0.5, 0),
            (-2.5, -2),
            (-0.0, 0),
            (32767.4, 32767),
        ] {
            assert_eq!(round_small(x), want, "{x}");
        }
    }

    #[test]
    fn reductions_cover_every_element() {
        let mut values: Vec<f32> = (0..21).map(|i| (i as f32 * 0.7).sin()).collect();
        let expect_max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&values), expect_max);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let expect: Vec<f32> = values.iter().map(|v| (v - 0.5).exp()).collect();
        let sum = exp_shifted_sum(&mut values, 0.5);
        let expect_sum: f64 = expect.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - expect_sum).abs() < 1e-5);
        for (a, b) in values.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
