//! The normalisation, attention and position ops of a decoder, in two
//! flavours chosen by [`Mode`].
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` are fast but have
//! no backward pass: gradients silently stop at them (candle issues #2168,
//! #3569). Training therefore uses compositions of differentiable ops;
//! inference, which needs no gradients, uses the fused kernels. The two are
//! checked against each other in the tests below.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, D, DType, Device, Layout, Shape, Storage, Tensor, WithDType,
};
use rayon::prelude::*;

use crate::error::Result;

/// Whether gradients must flow through the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Differentiable ops only.
    Train,
    /// Fused kernels, no backward.
    Infer,
}

/// `x·Wᵀ` for a frozen `W` (`x` is `(tokens, in)`, `W` is `(out, in)`).
///
/// Under [`Mode::Train`] on the CPU this is a custom op whose backward pass
/// computes only the input's gradient. candle's matmul backward always
/// computes both sides, so a plain product would also compute (and keep,
/// until the step ends) a gradient the size of every frozen weight: a third
/// of the backward's work and the model's size again in memory, for
/// nothing, since LoRA never updates `W`. Other devices use the plain
/// product.
pub fn frozen_linear(x: &Tensor, weight: &Tensor, mode: Mode) -> Result<Tensor> {
    if mode == Mode::Infer || !x.device().is_cpu() {
        return Ok(x.matmul(&weight.t()?)?);
    }
    Ok(x.contiguous()?.apply_op1(FrozenLinear {
        weight_t: weight.t()?,
    })?)
}

struct FrozenLinear {
    /// `Wᵀ`, a transposed view of the frozen weight: `(in, out)`.
    weight_t: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = layout.shape().dims2()?;
        let (k_weight, n) = self.weight_t.dims2()?;
        if k != k_weight {
            candle_core::bail!(
                "frozen-linear: input has {k} features, the weight expects {k_weight}"
            );
        }
        let (weight, weight_layout) = self.weight_t.storage_and_layout();
        let Storage::Cpu(weight) = &*weight else {
            candle_core::bail!("frozen-linear: the weight is not on the CPU");
        };
        let out = storage.matmul(weight, (1, m, n, k), layout, weight_layout)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight_t.t()?)?))
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`.
///
/// Training on the CPU uses a fused op with its own backward (one output
/// kept, instead of six intermediates and their gradients); elsewhere a
/// composition of differentiable ops.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    Ok(match mode {
        Mode::Infer => candle_nn::ops::rms_norm(x, weight, eps as f32)?,
        Mode::Train if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) => {
            x.contiguous()?.apply_op1(FusedRmsNorm {
                weight: weight.to_dtype(x.dtype())?,
                eps,
            })?
        }
        Mode::Train => {
            let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inverse_rms = (mean_square + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&inverse_rms)?.broadcast_mul(weight)?
        }
    })
}

/// Softmax over the last dimension.
///
/// Training on the CPU uses a fused op whose backward needs only its output
/// (`y * (g - sum(g * y))`); elsewhere a composition of differentiable ops.
pub fn softmax(x: &Tensor, mode: Mode) -> Result<Tensor> {
    Ok(match mode {
        Mode::Infer => candle_nn::ops::softmax_last_dim(x)?,
        Mode::Train if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) => {
            x.contiguous()?.apply_op1(FusedSoftmax)?
        }
        Mode::Train => {
            // Subtracting the row maximum changes nothing mathematically, so
            // it needs no gradient of its own.
            let max = x.max_keepdim(D::Minus1)?.detach();
            let exp = x.broadcast_sub(&max)?.exp()?;
            let sum = exp.sum_keepdim(D::Minus1)?;
            exp.broadcast_div(&sum)?
        }
    })
}

/// Dispatches a custom op's CPU forward to its `forward::<f32>` or
/// `forward::<f64>` by the input's dtype.
macro_rules! float_forward {
    ($op:expr, $storage:expr, $layout:expr) => {
        match $storage.dtype() {
            DType::F32 => $op.forward::<f32>($storage, $layout),
            DType::F64 => $op.forward::<f64>($storage, $layout),
            other => candle_core::bail!("{}: unsupported dtype {other:?}", $op.name()),
        }
    };
}
pub(crate) use float_forward;

/// The values of a contiguous CPU tensor and the length of its last
/// dimension (its rows).
pub(crate) fn cpu_rows<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(&'a [T], usize)> {
    let width = layout.shape().dims().last().copied().unwrap_or(1).max(1);
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused op: input must be contiguous");
    };
    Ok((&storage.as_slice::<T>()?[start..end], width))
}

struct FusedSoftmax;

impl FusedSoftmax {
    fn forward<T: WithDType>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, width) = cpu_rows::<T>(storage, layout)?;
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .for_each(|(out, row)| {
                let max = row
                    .iter()
                    .map(|v| v.to_f64())
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (o, v) in out.iter_mut().zip(row) {
                    let e = (v.to_f64() - max).exp();
                    sum += e;
                    *o = T::from_f64(e);
                }
                for o in out.iter_mut() {
                    *o = T::from_f64(o.to_f64() / sum);
                }
            });
        Ok((T::to_cpu_storage_owned(out), layout.shape().clone()))
    }
}

impl CustomOp1 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_forward!(self, storage, layout)
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad * y)?.sum_keepdim(D::Minus1)?;
        Ok(Some((y * grad.broadcast_sub(&dot)?)?))
    }
}

struct FusedRmsNorm {
    weight: Tensor,
    eps: f64,
}

impl FusedRmsNorm {
    fn forward<T: WithDType>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, width) = cpu_rows::<T>(storage, layout)?;
        let weight: Vec<f64> = self.weight.to_dtype(DType::F64)?.to_vec1()?;
        if weight.len() != width {
            candle_core::bail!("rms-norm: {width} features, {} weights", weight.len());
        }
        let eps = self.eps;
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .for_each(|(out, row)| {
                let mean_square =
                    row.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() / width as f64;
                let inverse_rms = 1.0 / (mean_square + eps).sqrt();
                for ((o, v), w) in out.iter_mut().zip(row).zip(&weight) {
                    *o = T::from_f64(v.to_f64() * inverse_rms * w);
                }
            });
        Ok((T::to_cpu_storage_owned(out), layout.shape().clone()))
    }
}

impl CustomOp1 for FusedRmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_forward!(self, storage, layout)
    }

    /// With `r = 1/sqrt(mean(x^2) + eps)` and `gw = g * w`:
    /// `dx = r * gw - x * r^3 * mean(gw * x)`.
    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let x = x.detach();
        let gw = grad.broadcast_mul(&self.weight)?;
        let inverse_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let dot = (&gw * &x)?.mean_keepdim(D::Minus1)?;
        let first = gw.broadcast_mul(&inverse_rms)?;
        let second = x.broadcast_mul(&(inverse_rms.powf(3.0)? * dot)?)?;
        Ok(Some((first - second)?))
    }
}

/// Rotary position tables for head dimension `head_dim`, positions
/// `0..max_positions`: `cos` and `sin` of shape `(max_positions, head_dim/2)`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for the half-split ("rotate half") convention of Hugging Face
    /// Llama checkpoints.
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inverse_frequencies: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let inverse_frequencies = Tensor::from_vec(inverse_frequencies, (1, half), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let angles = positions.broadcast_mul(&inverse_frequencies)?;
        Ok(Rope {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// The `cos` and `sin` tables, `(max_positions, head_dim/2)` each.
    pub(crate) fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// The longest sequence the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` of shape `(batch, heads, seq, head_dim)` whose first
    /// position is `offset`.
    pub fn apply(&self, x: &Tensor, offset: usize, mode: Mode) -> Result<Tensor> {
        let (_, _, seq, head_dim) = x.dims4()?;
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        Ok(match mode {
            Mode::Infer => candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?,
            Mode::Train if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) => {
                x.contiguous()?.apply_op1(FusedRope {
                    cos: cos.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
                    sin: sin.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
                })?
            }
            Mode::Train => {
                let half = head_dim / 2;
                let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?;
                let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?;
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                (x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?
            }
        })
    }
}

/// Rotary embedding (half-split) as one op with a backward: the rotation
/// is orthogonal, so the gradient is the same rotation with `sin` negated.
/// Replaces eight intermediates (narrows, a negation, a concatenation, two
/// products and a sum) and their gradients per call.
struct FusedRope {
    /// `(seq, head_dim/2)` row-major, for the positions of this call.
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl FusedRope {
    fn forward<T: WithDType>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, width) = cpu_rows::<T>(storage, layout)?;
        let half = width / 2;
        let seq = self.cos.len() / half.max(1);
        if seq == 0 || layout.shape().dims().get(2) != Some(&seq) {
            candle_core::bail!(
                "fused-rope: tables for {seq} positions, input {:?}",
                layout.shape()
            );
        }
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .enumerate()
            .for_each(|(row, (out, x))| {
                let position = row % seq;
                let cos = &self.cos[position * half..(position + 1) * half];
                let sin = &self.sin[position * half..(position + 1) * half];
                for i in 0..half {
                    let (a, b) = (x[i].to_f64(), x[i + half].to_f64());
                    out[i] = T::from_f64(a * cos[i] - b * sin[i]);
                    out[i + half] = T::from_f64(b * cos[i] + a * sin[i]);
                }
            });
        Ok((T::to_cpu_storage_owned(out), layout.shape().clone()))
    }
}

impl CustomOp1 for FusedRope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_forward!(self, storage, layout)
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let inverse = FusedRope {
            cos: self.cos.clone(),
            sin: self.sin.iter().map(|s| -s).collect(),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// An additive causal mask for `seq` new positions after `offset` cached
/// ones: 0 where a query may attend, -inf where it may not. Shape
/// `(seq, offset + seq)`.
pub fn causal_mask(seq: usize, offset: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = offset + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > i + offset {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (seq, total), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    #[test]
    fn train_and_infer_flavours_agree() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &device).expect("randn");
        let weight = Tensor::randn(0f32, 1.0, 8, &device).expect("randn");
        let norm = |mode| rms_norm(&x, &weight, 1e-5, mode).expect("rms_norm");
        assert!(max_abs_diff(&norm(Mode::Train), &norm(Mode::Infer)) < 1e-5);
        let soft = |mode| softmax(&x, mode).expect("softmax");
        assert!(max_abs_diff(&soft(Mode::Train), &soft(Mode::Infer)) < 1e-6);
        let rope = Rope::new(8, 16, 10_000.0, DType::F32, &device).expect("rope");
        let rot = |mode| rope.apply(&x, 3, mode).expect("rope");
        assert!(max_abs_diff(&rot(Mode::Train), &rot(Mode::Infer)) < 1e-5);
    }

    #[test]
    fn frozen_linear_matches_matmul_and_passes_only_the_input_gradient() {
        let device = Device::Cpu;
        let x = candle_core::Var::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &device).expect("x");
        let w = Tensor::new(&[[1.0f32, 0.0, -1.0], [0.5, 0.5, 0.5]], &device).expect("w");
        let y = frozen_linear(x.as_tensor(), &w, Mode::Train).expect("forward");
        let expected = x.as_tensor().matmul(&w.t().expect("t")).expect("matmul");
        assert!(max_abs_diff(&y, &expected) < 1e-6);
        let grads = y.sum_all().expect("sum").backward().expect("backward");
        let dx: Vec<Vec<f32>> = grads
            .get(x.as_tensor())
            .expect("dx")
            .to_vec2()
            .expect("vec");
        assert_eq!(dx, vec![vec![1.5, 0.5, -0.5]; 2]);
        assert!(grads.get(&w).is_none(), "no gradient for the frozen weight");
    }

    #[test]
    fn mask_hides_the_future_only() {
        let mask = causal_mask(2, 1, DType::F32, &Device::Cpu).expect("mask");
        let rows: Vec<Vec<f32>> = mask.to_vec2().expect("vec");
        assert_eq!(rows[0], vec![0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(rows[1], vec![0.0, 0.0, 0.0]);
    }
}
