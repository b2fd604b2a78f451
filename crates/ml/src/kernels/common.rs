//! What the CPU kernels share: the element types they run in, runtime SIMD
//! dispatch, splitting work over rayon's threads, and ReLU6's backward.
//!
//! Kept apart from the kernels so that each kernel family's module holds
//! only its own arithmetic.

use candle_core::{CpuStorage, Layout, Tensor, WithDType};
use rayon::prelude::*;

use super::gemm::Element;

/// Output elements times taps below which threads are not worth it.
pub(super) const PARALLEL_WORK: usize = 1 << 16;

/// Element types the kernels run in.
pub(crate) trait Float:
    WithDType
    + Element
    + Copy
    + Default
    + PartialOrd
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
{
    /// `min(max(x, 0), 6)`.
    fn relu6(self) -> Self;

    /// `self * a + b` in one rounding: one instruction where the CPU has
    /// fused multiply-add (inside [`vectorized`] on x86-64 it does), a
    /// slow library call where it does not.
    fn mul_add(self, a: Self, b: Self) -> Self;
}
impl Float for f32 {
    #[inline(always)]
    fn relu6(self) -> Self {
        self.clamp(0.0, 6.0)
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
}
impl Float for f64 {
    #[inline(always)]
    fn relu6(self) -> Self {
        self.clamp(0.0, 6.0)
    }

    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}

pub(super) use crate::fastmath::vectorized;

/// `y += a * x`.
#[inline(always)]
pub(super) fn axpy<T: Float>(y: &mut [T], a: T, x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `y[i] += a[0] x[i] + a[1] x[i + 1] + ...`: a run of taps in one pass
/// over `y`, which stays in registers instead of going back to memory
/// after every tap.
#[inline(always)]
pub(super) fn axpy_run<T: Float, const N: usize>(y: &mut [T], a: [T; N], x: &[T]) {
    let n = y.len();
    let xs: [&[T]; N] = std::array::from_fn(|j| &x[j..j + n]);
    for (i, y) in y.iter_mut().enumerate() {
        let mut sum = *y;
        for j in 0..N {
            sum += a[j] * xs[j][i];
        }
        *y = sum;
    }
}

/// `x · y`, in eight independent sums so that it vectorises.
#[inline(always)]
pub(super) fn dot<T: Float>(x: &[T], y: &[T]) -> T {
    let mut sums = [T::default(); 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for i in 0..8 {
            sums[i] += xs[i] * ys[i];
        }
    }
    let mut total = T::default();
    for s in sums {
        total += s;
    }
    for (&a, &b) in xr.iter().zip(yr) {
        total += a * b;
    }
    total
}

/// ReLU6 in place.
#[inline(always)]
pub(super) fn relu6_in_place<T: Float>(y: &mut [T]) {
    for v in y {
        *v = v.relu6();
    }
}

pub(super) fn contiguous<'a, T: Float>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("convolution kernel: non-contiguous input"),
    }
}

/// Whether this thread is one of rayon's: then the caller already
/// splits the work (`EfficientNet::embed` runs images in parallel), and
/// a kernel splitting its own would only add overhead.
pub(super) fn inside_pool() -> bool {
    rayon::current_thread_index().is_some()
}

/// Runs `work(scratch, plane_index, output_plane)` over `out` in chunks
/// of `plane_len` elements, on rayon's threads when it is worth it;
/// `scratch` comes from `init`, once per thread's run of planes, so
/// kernels reuse their buffers instead of allocating per plane.
pub(super) fn planes<T: Float, S>(
    out: &mut [T],
    plane_len: usize,
    work_per_plane: usize,
    init: impl Fn() -> S + Sync + Send,
    work: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    if plane_len == 0 {
        return;
    }
    let count = out.len() / plane_len;
    if count <= 1 || count * work_per_plane < PARALLEL_WORK {
        let mut scratch = init();
        for (i, plane) in out.chunks_mut(plane_len).enumerate() {
            work(&mut scratch, i, plane);
        }
        return;
    }
    let min_planes = PARALLEL_WORK.div_ceil(work_per_plane.max(1)).max(1);
    out.par_chunks_mut(plane_len)
        .with_min_len(min_planes)
        .enumerate()
        .for_each_init(init, |scratch, (i, plane)| work(scratch, i, plane));
}

/// The gradient through the activation of an output `res`: it passes
/// where ReLU6 is not clamping (`0 < y < 6`, as PyTorch's `hardtanh`
/// backward), everywhere without the activation.
pub(super) fn act_grad(res: &Tensor, grad: &Tensor, relu6: bool) -> candle_core::Result<Tensor> {
    if !relu6 {
        return Ok(grad.clone());
    }
    let open = res.gt(0f64)?.mul(&res.lt(6f64)?)?;
    grad.mul(&open.to_dtype(grad.dtype())?)
}
