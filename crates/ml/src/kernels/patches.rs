//! The stem's dense convolution as im2col: the `k x k` windows of an image
//! laid out as channels (forward and backward), so that the convolution
//! becomes one 1x1 convolution ([`super::pointwise`]) on `gemm`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::common::{Float, axpy, contiguous, planes};
use super::geometry::Geometry;
use crate::error::Result;

/// The `k x k` windows of `x` `(b, c, h, w)` with SAME padding, as
/// channels: `(b, c * k * k, out_h, out_w)`, channel `i * k * k + tap`
/// holding tap `(ky, kx)` of input channel `i`. A dense convolution is
/// then a 1x1 convolution of these (im2col), which is how the stem runs
/// on the CPU. `None` where our kernels do not run (other devices).
pub(crate) fn patches(x: &Tensor, k: usize, stride: usize) -> Result<Option<Tensor>> {
    let (_, _, h, w) = x.dims4()?;
    let native = x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    if !native || k == 0 || stride == 0 {
        return Ok(None);
    }
    let op = Patches(Geometry::new(h, w, k, stride));
    Ok(Some(x.contiguous()?.apply_op1(op)?))
}

/// See [`patches`].
#[derive(Debug, Clone, Copy)]
struct Patches(Geometry);

fn patches_cpu<T: Float>(g: &Geometry, x: &[T]) -> Vec<T> {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
    let offsets = g.taps();
    let mut y = vec![T::default(); x.len() / in_plane.max(1) * taps * out_plane];
    let scratch = || vec![T::default(); g.phases_len()];
    planes(
        &mut y,
        taps * out_plane,
        taps * out_plane,
        scratch,
        |phases, p, y| {
            g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
            for (plane, &(phase, offset)) in y.chunks_exact_mut(out_plane).zip(&offsets) {
                let rows = phases[phase + offset..].chunks(g.phase_cols);
                for (out, row) in plane.chunks_exact_mut(g.out_w).zip(rows) {
                    out.copy_from_slice(&row[..g.out_w]);
                }
            }
        },
    );
    y
}

/// The gradient of [`patches`]: each window's gradient added back
/// where the window was read.
fn patches_grad_cpu<T: Float>(g: &Geometry, gy: &[T]) -> Vec<T> {
    let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
    let offsets = g.taps();
    let mut gx = vec![T::default(); gy.len() / (taps * out_plane).max(1) * in_plane];
    let scratch = || {
        (
            vec![T::default(); g.wide_len()],
            vec![T::default(); g.phases_len()],
        )
    };
    planes(
        &mut gx,
        in_plane,
        taps * out_plane,
        scratch,
        |(wide, phases), p, gx| {
            let gy = &gy[p * taps * out_plane..(p + 1) * taps * out_plane];
            phases.fill(T::default());
            for (plane, &(phase, offset)) in gy.chunks_exact(out_plane).zip(&offsets) {
                g.widen(plane, wide);
                let start = phase + offset;
                axpy(
                    &mut phases[start..start + wide.len()],
                    T::from_f64(1.0),
                    wide,
                );
            }
            g.merge(phases, gx);
        },
    );
    gx
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        "patches"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (b, c, _, _) = layout.shape().dims4()?;
        let shape = Shape::from((b, c * g.k * g.k, g.out_h, g.out_w));
        let y = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(patches_cpu(g, contiguous(storage, layout)?)),
            CpuStorage::F64(_) => CpuStorage::F64(patches_cpu(g, contiguous(storage, layout)?)),
            _ => candle_core::bail!("patches: f32 or f64 only"),
        };
        Ok((y, shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?.apply_op1_no_bwd(&PatchesGrad(self.0))?,
        ))
    }
}

/// See [`patches_grad_cpu`].
#[derive(Debug, Clone, Copy)]
struct PatchesGrad(Geometry);

impl CustomOp1 for PatchesGrad {
    fn name(&self) -> &'static str {
        "patches-grad"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (b, ck, _, _) = layout.shape().dims4()?;
        let shape = Shape::from((b, ck / (g.k * g.k).max(1), g.h, g.w));
        let gx = match storage {
            CpuStorage::F32(_) => {
                CpuStorage::F32(patches_grad_cpu(g, contiguous(storage, layout)?))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(patches_grad_cpu(g, contiguous(storage, layout)?))
            }
            _ => candle_core::bail!("patches: f32 or f64 only"),
        };
        Ok((gx, shape))
    }
}
