//! Depthwise convolution with TensorFlow SAME padding, its bias and ReLU6
//! as one operation: a CPU kernel of its own with a backward pass (input
//! and weight gradients), or candle's grouped convolution and
//! [`super::bias_act::bias_act`] elsewhere.
//!
//! Its own module because candle runs a grouped convolution as one
//! convolution per channel, which for EfficientNet's thousands of depthwise
//! channels is many times slower than this kernel.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::common::{
    Float, act_grad, axpy, axpy_run, contiguous, dot, planes, relu6_in_place, vectorized,
};
use super::geometry::{Geometry, same_padding};
use crate::error::Result;

/// `x` `(b, c, h, w)` convolved with `weight` `(c, 1, k, k)`, channel by
/// channel, SAME padding, plus `bias` `(c,)`, then ReLU6 if `relu6`.
pub(crate) fn conv(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    relu6: bool,
) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let (filters, per_filter, k, k2) = weight.dims4()?;
    if (filters, per_filter, k2) != (c, 1, k) || bias.elem_count() != c || stride == 0 {
        return Err(crate::error::MlError::InvalidRequest(format!(
            "depthwise convolution of {c} channels with weights {:?}, bias {:?}, stride {stride}",
            weight.dims(),
            bias.dims()
        )));
    }
    let geometry = Geometry::new(h, w, k, stride);
    let native = x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
        && weight.dtype() == x.dtype()
        && bias.dtype() == x.dtype();
    if native {
        let x = x.contiguous()?;
        return Ok(x.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            Forward { geometry, relu6 },
        )?);
    }
    let (top, bottom, _) = same_padding(h, k, stride);
    let (left, right, _) = same_padding(w, k, stride);
    let y = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?
        .conv2d(weight, 0, stride, 1, c)?;
    super::bias_act::bias_act(&y, bias, relu6)
}

/// `y[b, c] = act(bias[c] + sum over taps of w[c, tap] * x[b, c]
/// (shifted, strided))`.
#[derive(Debug, Clone, Copy)]
struct Forward {
    geometry: Geometry,
    relu6: bool,
}

fn forward<T: Float>(g: &Geometry, x: &[T], w: &[T], bias: &[T], relu6: bool) -> Vec<T> {
    let channels = bias.len().max(1);
    let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
    let runs = g.tap_runs();
    let block_rows = g.block_rows();
    let mut y = vec![T::default(); x.len() / in_plane.max(1) * out_plane];
    let scratch = || {
        (
            vec![T::default(); g.phases_len()],
            vec![T::default(); block_rows * g.phase_cols],
        )
    };
    planes(
        &mut y,
        out_plane,
        out_plane * taps,
        scratch,
        |(phases, acc), p, y| {
            let c = p % channels;
            let w = &w[c * taps..(c + 1) * taps];
            vectorized(
                #[inline(always)]
                || {
                    g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
                    for (block, out) in y.chunks_mut(block_rows * g.out_w).enumerate() {
                        let rows = out.len() / g.out_w;
                        let first = block * block_rows * g.phase_cols;
                        let acc = &mut acc[..rows * g.phase_cols];
                        acc.fill(bias[c]);
                        for (start, taps) in &runs {
                            let x = &phases[start + first..];
                            match taps[..] {
                                [a] => axpy_run(acc, [w[a]], x),
                                [a, b] => axpy_run(acc, [w[a], w[b]], x),
                                [a, b, c] => axpy_run(acc, [w[a], w[b], w[c]], x),
                                [a, b, c, d] => axpy_run(acc, [w[a], w[b], w[c], w[d]], x),
                                [a, b, c, d, e] => axpy_run(acc, [w[a], w[b], w[c], w[d], w[e]], x),
                                _ => {
                                    for (i, &tap) in taps.iter().enumerate() {
                                        axpy_run(acc, [w[tap]], &x[i..]);
                                    }
                                }
                            }
                        }
                        for (out, row) in out
                            .chunks_exact_mut(g.out_w)
                            .zip(acc.chunks_exact(g.phase_cols))
                        {
                            out.copy_from_slice(&row[..g.out_w]);
                            if relu6 {
                                relu6_in_place(out);
                            }
                        }
                    }
                },
            );
        },
    );
    y
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-bias-relu6"
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
        let g = &self.geometry;
        let (b, c, _, _) = l1.shape().dims4()?;
        if l2.shape().elem_count() != c * g.k * g.k || l3.shape().elem_count() != c {
            candle_core::bail!(
                "depthwise convolution: weights {:?}, bias {:?} for {c} channels",
                l2.shape(),
                l3.shape()
            );
        }
        let shape = Shape::from((b, c, g.out_h, g.out_w));
        let y = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                g,
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                self.relu6,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                g,
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                self.relu6,
            )),
            _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
        };
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = act_grad(res, grad, self.relu6)?.contiguous()?;
        let grad_x = grad.apply_op2_no_bwd(w, &GradInput(self.geometry))?;
        let grad_w = x.apply_op2_no_bwd(&grad, &GradWeight(self.geometry))?;
        let grad_bias = grad.sum((0, 2, 3))?;
        Ok((Some(grad_x), Some(grad_w), Some(grad_bias)))
    }
}

/// `dL/dx[b, c]`: every output's gradient sent back to the inputs it read.
#[derive(Debug, Clone, Copy)]
struct GradInput(Geometry);

fn grad_input<T: Float>(g: &Geometry, gy: &[T], w: &[T], channels: usize) -> Vec<T> {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
    let offsets = g.taps();
    let mut gx = vec![T::default(); gy.len() / out_plane.max(1) * in_plane];
    let scratch = || {
        (
            vec![T::default(); g.wide_len()],
            vec![T::default(); g.phases_len()],
        )
    };
    planes(
        &mut gx,
        in_plane,
        out_plane * taps,
        scratch,
        |(wide, phases), p, gx| {
            let w = &w[(p % channels) * taps..(p % channels + 1) * taps];
            vectorized(
                #[inline(always)]
                || {
                    g.widen(&gy[p * out_plane..(p + 1) * out_plane], wide);
                    phases.fill(T::default());
                    for (&wt, &(phase, offset)) in w.iter().zip(&offsets) {
                        let start = phase + offset;
                        axpy(&mut phases[start..start + wide.len()], wt, wide);
                    }
                    g.merge(phases, gx);
                },
            );
        },
    );
    gx
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (b, c, _, _) = l1.shape().dims4()?;
        let shape = Shape::from((b, c, g.h, g.w));
        let gx = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(grad_input(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(grad_input(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
            }
            _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
        };
        Ok((gx, shape))
    }
}

/// `dL/dw[c, tap]`: per plane, then summed over the batch.
#[derive(Debug, Clone, Copy)]
struct GradWeight(Geometry);

fn grad_weight<T: Float>(g: &Geometry, x: &[T], gy: &[T], channels: usize) -> Vec<T> {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
    let offsets = g.taps();
    let count = x.len() / in_plane.max(1);
    let mut partial = vec![T::default(); count * taps];
    let scratch = || {
        (
            vec![T::default(); g.phases_len()],
            vec![T::default(); g.wide_len()],
        )
    };
    planes(
        &mut partial,
        taps,
        out_plane * taps,
        scratch,
        |(phases, wide), p, gw| {
            vectorized(
                #[inline(always)]
                || {
                    g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
                    g.widen(&gy[p * out_plane..(p + 1) * out_plane], wide);
                    for (gw, &(phase, offset)) in gw.iter_mut().zip(&offsets) {
                        let start = phase + offset;
                        *gw = dot(wide, &phases[start..start + wide.len()]);
                    }
                },
            );
        },
    );
    let mut gw = vec![T::default(); channels * taps];
    for (p, plane) in partial.chunks(taps).enumerate() {
        let c = p % channels;
        for (acc, &v) in gw[c * taps..(c + 1) * taps].iter_mut().zip(plane) {
            *acc += v;
        }
    }
    gw
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (_, c, _, _) = l1.shape().dims4()?;
        let shape = Shape::from((c, 1, g.k, g.k));
        let gw = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(grad_weight(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(grad_weight(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
            }
            _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
        };
        Ok((gw, shape))
    }
}
