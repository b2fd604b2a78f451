//! Bias and activation in one pass (after a convolution that does not fuse
//! them, and on devices without our kernels): a CPU kernel with its
//! backward (one pass instead of candle's three, each allocating a tensor),
//! or candle's ops elsewhere.
//!
//! The fallback every other kernel family ends in off the CPU, so it sits
//! apart from them.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::common::{Float, act_grad, contiguous, planes, vectorized};
use crate::error::Result;

/// ReLU6, `min(max(x, 0), 6)`; differentiable (candle's maximum and minimum
/// have backward passes).
fn relu6_tensor(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0f64, 6f64)?)
}

/// `x + bias` per channel of `(b, c, h, w)`, then ReLU6 if `relu6`.
pub(crate) fn bias_act(x: &Tensor, bias: &Tensor, relu6: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let native = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && bias.dtype() == x.dtype();
    if !native {
        let y = x.broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
        return if relu6 { relu6_tensor(&y) } else { Ok(y) };
    }
    Ok(x.contiguous()?
        .apply_op2(&bias.contiguous()?, BiasAct { relu6 })?)
}

#[derive(Debug, Clone, Copy)]
struct BiasAct {
    relu6: bool,
}

fn bias_act_cpu<T: Float>(x: &[T], bias: &[T], plane: usize, relu6: bool) -> Vec<T> {
    let channels = bias.len().max(1);
    let mut y = vec![T::default(); x.len()];
    planes(
        &mut y,
        plane,
        plane,
        || (),
        |_, p, y| {
            let b = bias[p % channels];
            let x = &x[p * plane..(p + 1) * plane];
            vectorized(
                #[inline(always)]
                || {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if relu6 { (x + b).relu6() } else { x + b };
                    }
                },
            );
        },
    );
    y
}

impl CustomOp2 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-relu6"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        if l2.shape().elem_count() != c {
            candle_core::bail!("bias of {} for {c} channels", l2.shape().elem_count());
        }
        let plane = h * w;
        let y = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(bias_act_cpu(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                plane,
                self.relu6,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(bias_act_cpu(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                plane,
                self.relu6,
            )),
            _ => candle_core::bail!("bias-relu6: f32 or f64 only"),
        };
        Ok((y, l1.shape().clone()))
    }

    /// The bias's gradient is the activation's summed per channel.
    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_x = act_grad(res, grad, self.relu6)?;
        let grad_bias = grad_x.sum((0, 2, 3))?;
        Ok((Some(grad_x), Some(grad_bias)))
    }
}
