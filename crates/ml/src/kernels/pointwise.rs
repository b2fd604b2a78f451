//! 1x1 convolutions with their bias and activation as one operation: on the
//! CPU, a matrix product per image written into an output that already
//! holds the bias (so there is no separate bias pass and no zeroing), and
//! ReLU6 applied block by block while the block is still in cache; one
//! allocation instead of three. Elsewhere, candle's matmul and
//! [`super::bias_act::bias_act`].
//!
//! Its own module because it is EfficientNet's hottest kernel (expansion,
//! projection, head, and the stem through [`super::patches`]), and the one
//! that reaches `gemm` (through [`super::gemm`]) for its products.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::common::{
    Float, PARALLEL_WORK, act_grad, contiguous, inside_pool, relu6_in_place, vectorized,
};
use super::gemm::{self, Threads, View};
use crate::error::{MlError, Result};

/// Bytes of output a column block spans: it is clamped right after the
/// product writes it, while it is in the core's L2 cache.
const BLOCK_BYTES: usize = 256 << 10;

/// `x` `(b, c, h, w)` through the 1x1 convolution `weight`
/// `(out, c, 1, 1)`, plus `bias` `(out,)`, then ReLU6 if `relu6`.
pub(crate) fn conv(x: &Tensor, weight: &Tensor, bias: &Tensor, relu6: bool) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (out_channels, per_filter, kh, kw) = weight.dims4()?;
    if (per_filter, kh, kw) != (c, 1, 1) || bias.elem_count() != out_channels {
        return Err(MlError::InvalidRequest(format!(
            "1x1 convolution of {c} channels with weights {:?} and bias {:?}",
            weight.dims(),
            bias.dims()
        )));
    }
    let native = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == x.dtype()
        && bias.dtype() == x.dtype();
    if native {
        return Ok(x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            Pointwise { relu6 },
        )?);
    }
    let weight = weight.reshape((out_channels, c))?;
    let x = x.reshape((b, c, h * w))?;
    let y = if b == 1 {
        weight.matmul(&x.squeeze(0)?)?.unsqueeze(0)?
    } else {
        weight.broadcast_left(b)?.matmul(&x)?
    };
    super::bias_act::bias_act(&y.reshape((b, out_channels, h, w))?, bias, relu6)
}

#[derive(Debug, Clone, Copy)]
struct Pointwise {
    relu6: bool,
}

/// `dst (m x n, rows dst_rs apart) += lhs (m x k, row-major) · rhs
/// (k x n, rows rhs_rs apart)`, on this thread. candle's safe matmul cannot
/// accumulate into an output we prepared (it allocates and zeroes a fresh
/// one), which is the point of this operation; [`gemm::product`] can.
fn gemm_accumulate<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    lhs: &[T],
    rhs: &[T],
    rhs_rs: usize,
) -> candle_core::Result<()> {
    gemm::product(
        dst,
        dst_rs,
        View::new(lhs, m, k),
        View::rows_apart(rhs, k, n, rhs_rs),
        T::ONE,
        true,
        Threads::One,
    )
    .map_err(|_| {
        candle_core::Error::Msg(format!(
            "1x1 convolution: a {m}x{k}x{n} product out of its buffers"
        ))
    })
}

/// The output, image by image: bias rows, then the product added in
/// column blocks, each clamped as soon as it is written. Images (or,
/// for a single image outside rayon's pool, groups of output rows) go
/// to rayon's threads.
fn forward<T: Float>(
    x: &[T],
    w: &[T],
    bias: &[T],
    (b, c, hw): (usize, usize, usize),
    relu6: bool,
) -> candle_core::Result<Vec<T>> {
    let out_channels = bias.len();
    let mut y = Vec::with_capacity(b * out_channels * hw);
    for _ in 0..b {
        for &v in bias {
            y.extend(std::iter::repeat_n(v, hw));
        }
    }
    let threads = rayon::current_num_threads();
    let wanted = if inside_pool() || b >= threads || out_channels * c * hw < PARALLEL_WORK {
        1
    } else {
        threads.div_ceil(b)
    };
    let splits = (1..=wanted.min(out_channels))
        .rev()
        .find(|s| out_channels.is_multiple_of(*s))
        .unwrap_or(1);
    let rows = out_channels / splits;
    let block = (BLOCK_BYTES / size_of::<T>() / rows.max(c).max(1)).max(16);
    if rows == 0 || hw == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(rows * hw)
        .enumerate()
        .try_for_each(|(task, y)| {
            let image = task / splits;
            let first_row = (task % splits) * rows;
            let x = &x[image * c * hw..(image + 1) * c * hw];
            let w = &w[first_row * c..(first_row + rows) * c];
            vectorized(
                #[inline(always)]
                || {
                    for start in (0..hw).step_by(block) {
                        let n = block.min(hw - start);
                        gemm_accumulate((rows, n, c), &mut y[start..], hw, w, &x[start..], hw)?;
                        if relu6 {
                            for row in y.chunks_exact_mut(hw) {
                                relu6_in_place(&mut row[start..start + n]);
                            }
                        }
                    }
                    Ok::<(), candle_core::Error>(())
                },
            )
        })?;
    Ok(y)
}

impl CustomOp3 for Pointwise {
    fn name(&self) -> &'static str {
        "conv1x1-bias-relu6"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let out_channels = l3.shape().elem_count();
        if l2.shape().elem_count() != out_channels * c {
            candle_core::bail!("1x1 convolution: weights {:?} for {c} channels", l2.shape());
        }
        let sizes = (b, c, h * w);
        let y = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                sizes,
                self.relu6,
            )?),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                sizes,
                self.relu6,
            )?),
            _ => candle_core::bail!("1x1 convolution: f32 or f64 only"),
        };
        Ok((y, Shape::from((b, out_channels, h, w))))
    }

    /// Through the activation, then a matrix product's backward:
    /// `dx = wᵀ g`, `dw = Σ_images g xᵀ`, `db = Σ g`.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = act_grad(res, grad, self.relu6)?;
        let (b, c, h, w) = x.dims4()?;
        let out_channels = weight.dim(0)?;
        let g = grad.reshape((b, out_channels, h * w))?;
        let weight = weight.reshape((out_channels, c))?;
        let grad_x = weight
            .t()?
            .broadcast_left(b)?
            .matmul(&g)?
            .reshape((b, c, h, w))?;
        let grad_w = g
            .matmul(&x.reshape((b, c, h * w))?.t()?)?
            .sum(0)?
            .reshape((out_channels, c, 1, 1))?;
        let grad_bias = grad.sum((0, 2, 3))?;
        Ok((Some(grad_x), Some(grad_w), Some(grad_bias)))
    }
}
