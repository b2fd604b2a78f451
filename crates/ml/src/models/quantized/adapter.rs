//! A LoRA adapter in the form the quantized model applies it: each pair's
//! matrices in bf16, `B` transposed, and the few-token product that runs
//! beside the quantized projections while decoding.

use candle_core::DType;

use super::QuantizedLlama;
use crate::error::{MlError, Result};
use crate::fastmath;
use crate::lora::{LoraAdapter, Target};
use crate::models::llama::Config;

/// One adapted projection: `A` `(rank, in)` and `Bᵀ` `(rank, out)` as
/// bf16 bits. `B` is kept transposed so its product is `rank`
/// vectorised row updates of the output instead of one rank-long dot
/// product per output value. bf16 because decoding reads every adapter
/// matrix once a token and is bound by memory: SmolLM2's adapter at rank
/// 8 on all seven projections is 9.8 MB a token in f32, a tenth of the
/// Q4_1 weights; in bf16 decoding with the adapter was 7 to 11% faster.
/// bf16 keeps f32's range; rounding each adapter weight to 8 significant
/// bits moves it by at most 2⁻⁸ of itself, which `tests/quantized.rs`
/// checks on the logits against the f32 model with the f32 adapter.
pub(super) type Pair = (Vec<u16>, Vec<u16>);

/// `v` rounded to bf16 (to nearest, ties to even), as bits.
fn to_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// A bf16 value (its bits) widened to f32, exactly: a shift, which
/// vectorises (half's own conversion branches on NaN).
#[inline(always)]
fn widen(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// `Σ a[i]·x[i]` of bf16 `a` and f32 `x`, over the shorter of the two.
#[inline(always)]
fn dot_bf16(a: &[u16], x: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (a_chunks, x_chunks) = (a.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(x_chunks.remainder())
        .map(|(&a, x)| widen(a) * x)
        .sum();
    for (a, x) in a_chunks.zip(x_chunks) {
        for ((lane, &a), x) in lanes.iter_mut().zip(a).zip(x) {
            *lane += widen(a) * x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A LoRA adapter's matrices in bf16, ready for [`QuantizedLlama`].
#[derive(Debug, Clone)]
pub struct QAdapter {
    pub(super) scale: f32,
    /// Per layer, per target: `A` `(rank, in)` and `Bᵀ` `(rank, out)`.
    pub(super) layers: Vec<Vec<Option<Pair>>>,
}

impl QAdapter {
    /// The matrices of `adapter`, checked against `model`'s shapes.
    pub fn new(adapter: &LoraAdapter, model: &QuantizedLlama) -> Result<Self> {
        Self::for_config(adapter, &model.cfg)
    }

    /// The matrices of `adapter`, checked against the shapes of a model
    /// configured by `cfg`.
    pub(super) fn for_config(adapter: &LoraAdapter, cfg: &Config) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for layer in 0..cfg.num_hidden_layers {
            let mut pairs = Vec::with_capacity(Target::ALL.len());
            for target in Target::ALL {
                let Some(pair) = adapter.pair(layer, target) else {
                    pairs.push(None);
                    continue;
                };
                let (a, b) = (pair.a.as_tensor(), pair.b.as_tensor());
                let (rank, fan_in) = a.dims2()?;
                let (fan_out, rank_b) = b.dims2()?;
                if (fan_in, fan_out) != target.shape(cfg) || rank != rank_b {
                    return Err(MlError::InvalidRequest(format!(
                        "adapter {} of layer {layer} is {rank}x{fan_in} and {fan_out}x{rank_b}, \
                         which does not fit the model",
                        target.name()
                    )));
                }
                let flat = |t: &candle_core::Tensor| -> Result<Vec<u16>> {
                    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                    // Not `into_iter`: collecting in place would keep the
                    // f32 buffer, twice the bf16 values' size.
                    Ok(values.iter().map(|&v| to_bf16(v)).collect())
                };
                pairs.push(Some((flat(a)?, flat(&b.t()?.contiguous()?)?)));
            }
            layers.push(pairs);
        }
        Ok(QAdapter {
            scale: adapter.config().scale() as f32,
            layers,
        })
    }
}

/// `scale · (x·Aᵀ)·Bᵀ` for a few tokens `x` `(t, in)`, from the bf16
/// `A` `(rank, in)` and `Bᵀ` `(rank, out)`: two thin products, rank wide.
pub(super) fn small_update(
    a: &[u16],
    bt: &[u16],
    x: &[f32],
    shape: (usize, usize),
    scale: f32,
) -> Vec<f32> {
    let mut y = vec![0f32; x.len() / shape.0.max(1) * shape.1];
    add_update(a, bt, x, shape, scale, &mut y);
    y
}

/// `y += scale · (x·Aᵀ)·Bᵀ` for tokens `x` `(t, in)` and `y` `(t, out)`,
/// token by token: per token, `rank` dot products with `A`'s rows and
/// `rank` scaled additions of `Bᵀ`'s. At rank 8 that is 16 multiply-adds
/// per weight of the projection's pair, read from bf16 without an f32
/// copy (a prompt's tokens share the pair while it stays in cache).
pub(super) fn add_update(
    a: &[u16],
    bt: &[u16],
    x: &[f32],
    (fan_in, fan_out): (usize, usize),
    scale: f32,
    y: &mut [f32],
) {
    fastmath::vectorized(
        #[inline(always)]
        || {
            for (x, y) in x.chunks_exact(fan_in).zip(y.chunks_exact_mut(fan_out)) {
                for (a, b) in a.chunks_exact(fan_in).zip(bt.chunks_exact(fan_out)) {
                    let low = dot_bf16(a, x) * scale;
                    y.iter_mut().zip(b).for_each(|(y, &b)| *y += low * widen(b));
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_and_widens_exactly() {
        for v in [
            0.0f32,
            1.0,
            -2.5,
            2f32.powi(-20),
            2f32.powi(100),
            f32::INFINITY,
        ] {
            assert_eq!(widen(to_bf16(v)), v, "{v} is a bf16 value");
        }
        // Seven stored mantissa bits: 1 + 2⁻⁸ is halfway, ties to the
        // even 1.0; a little more rounds up to 1 + 2⁻⁷.
        assert_eq!(widen(to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        assert_eq!(
            widen(to_bf16(1.0 + 1.5 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-7)
        );
        assert!(widen(to_bf16(f32::NAN)).is_nan());
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin()).collect();
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).cos()).collect();
        let bits: Vec<u16> = a.iter().map(|&v| to_bf16(v)).collect();
        let want: f32 = bits.iter().zip(&x).map(|(&a, x)| widen(a) * x).sum();
        assert!((dot_bf16(&bits, &x) - want).abs() < 1e-5);
    }
}
