//! Convolutions for a forward pass that needs no gradient, in the
//! channels-last layout: one image's activations as a `(pixels, channels)`
//! matrix ([`Pixels`]).
//!
//! The NCHW kernels beside this one carry the backward passes fine-tuning
//! needs, but in that layout a depthwise convolution vectorises along a
//! plane's rows, which in EfficientNet's deep layers are 14 or 7 pixels wide
//! for up to 1152 channels: most of its time went to per-plane set-up,
//! copies into the padded phase layout and short remainders, and it took
//! ~40% of an embedding. With the channels last, a depthwise tap is one
//! multiply-add over a register of a pixel's channels (contiguous, a
//! multiple of 16 in EfficientNet), with each pixel's accumulators in
//! registers for all of its taps; padding is taps skipped, not zeros
//! copied. The 1x1 convolutions are the same `gemm` products, transposed,
//! over blocks of consecutive pixels, so a block's bias (and a residual) is
//! written just before the product accumulates onto it, and clamped just
//! after, while it is in cache.
//!
//! - [`pointwise`]: 1x1 convolutions (expansion, projection, head).
//! - [`depthwise`]: depthwise convolutions, SIMD across channels.
//! - [`dense`]: the stem's 3x3 convolution of the RGB planes, direct
//!   (an im2col copy and a `gemm` with 27-long sums cost it three times as
//!   much).
//!
//! Work splits over rayon's threads only outside the pool: the model runs
//! the images of a batch in parallel, each on one thread, and a single
//! image splits its blocks and rows.
//!
//! Every kernel writes its output into a buffer it is given (emptied
//! first): the model passes back the buffers of activations it no longer
//! needs, so that after the first image a thread allocates nothing. Fresh
//! multi-megabyte allocations went back to the system on every free and
//! cost a page fault per 4 KiB on every reuse (7% of an embedding in the
//! kernel's page zeroing alone).

use pulp::Simd;
use rayon::prelude::*;

use super::common::{Float, inside_pool};
use super::geometry::same_padding;

mod dense;
mod depthwise;
mod pointwise;
#[cfg(test)]
mod tests;

pub(crate) use dense::dense;
pub(crate) use depthwise::depthwise;
pub(crate) use pointwise::pointwise;

/// One image's activations, channels last: pixel `(y, x)`'s channels are
/// `data[(y * w + x) * channels..][..channels]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pixels<T> {
    pub(crate) data: Vec<T>,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) channels: usize,
}

impl<T: Float> Pixels<T> {
    /// From `(channels, h, w)` planes.
    #[cfg(test)]
    pub(crate) fn from_planes(planes: &[T], (channels, h, w): (usize, usize, usize)) -> Self {
        let pixels = h * w;
        let mut data = vec![T::default(); channels * pixels];
        for (c, plane) in planes
            .chunks_exact(pixels.max(1))
            .take(channels)
            .enumerate()
        {
            for (p, &v) in plane.iter().enumerate() {
                data[p * channels + c] = v;
            }
        }
        Pixels {
            data,
            h,
            w,
            channels,
        }
    }

    /// Back to `(channels, h, w)` planes.
    pub(crate) fn to_planes(&self) -> Vec<T> {
        let pixels = self.h * self.w;
        let mut planes = vec![T::default(); self.data.len()];
        for (p, pixel) in self.data.chunks_exact(self.channels.max(1)).enumerate() {
            for (c, &v) in pixel.iter().enumerate() {
                planes[c * pixels + p] = v;
            }
        }
        planes
    }

    /// The mean over pixels of each channel (global average pooling).
    pub(crate) fn mean(&self) -> Vec<T> {
        let mut sums = vec![T::default(); self.channels];
        for pixel in self.data.chunks_exact(self.channels.max(1)) {
            for (s, &v) in sums.iter_mut().zip(pixel) {
                *s += v;
            }
        }
        let scale = T::from_f64(1.0 / (self.h * self.w).max(1) as f64);
        sums.into_iter().map(|s| s * scale).collect()
    }
}

/// `(rows, len / rows)` row-major to its transpose, in tiles of 16 rows
/// so that both sides stream through the cache: PyTorch's `(out, in)`
/// and `(channels, taps)` weights to the `(in, out)` and `(taps,
/// channels)` these kernels read.
pub(crate) fn transpose<T: Float>(m: &[T], rows: usize) -> Vec<T> {
    let cols = m.len() / rows.max(1);
    let mut t = vec![T::default(); m.len()];
    for first in (0..rows).step_by(16) {
        let tile = 16.min(rows - first);
        for c in 0..cols {
            for r in first..first + tile {
                t[c * rows + r] = m[r * cols + c];
            }
        }
    }
    t
}

/// Where the `k x k` SAME-padded windows of a convolution fall on an
/// `h x w` input. The padding is never materialised: a window's taps
/// outside the input are skipped.
#[derive(Debug, Clone, Copy)]
struct Window {
    k: usize,
    stride: usize,
    /// Padding before the first row and column.
    top: usize,
    left: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
}

impl Window {
    fn new(h: usize, w: usize, k: usize, stride: usize) -> Self {
        let (top, _, out_h) = same_padding(h, k, stride);
        let (left, _, out_w) = same_padding(w, k, stride);
        Window {
            k,
            stride,
            top,
            left,
            h,
            w,
            out_h,
            out_w,
        }
    }

    /// The filter rows (`lo..hi`) inside the input for output row `oy`.
    #[inline(always)]
    fn rows(&self, oy: usize) -> (usize, usize) {
        self.inside(oy, self.top, self.h)
    }

    /// The filter columns (`lo..hi`) inside the input for output column
    /// `ox`.
    #[inline(always)]
    fn columns(&self, ox: usize) -> (usize, usize) {
        self.inside(ox, self.left, self.w)
    }

    #[inline(always)]
    fn inside(&self, o: usize, pad: usize, len: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = pad.saturating_sub(start).min(self.k);
        let hi = (len + pad).saturating_sub(start).min(self.k);
        (lo, hi.max(lo))
    }

    /// Output columns whose windows lie wholly inside the input
    /// (`lo..hi`): the rest are the edges.
    #[inline(always)]
    fn interior_columns(&self) -> (usize, usize) {
        let lo = self.left.div_ceil(self.stride).min(self.out_w);
        let hi = match (self.w + self.left).checked_sub(self.k) {
            Some(last_start) => (last_start / self.stride + 1).min(self.out_w),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// The output, `row_len` values per output row, each row written by
    /// `row(oy, out)`: in order on this thread inside rayon's pool (each
    /// row zeroed just before, while in cache), on rayon's threads
    /// outside it. The values go into `buffer` (emptied first), so that a
    /// caller can recycle its allocations.
    fn rows_of<T: Float>(
        &self,
        row_len: usize,
        mut buffer: Vec<T>,
        row: impl Fn(usize, &mut [T]) + Sync,
    ) -> Vec<T> {
        buffer.clear();
        buffer.reserve(self.out_h * row_len);
        let mut y = buffer;
        if row_len == 0 {
            return y;
        }
        if inside_pool() || self.out_h <= 1 {
            for oy in 0..self.out_h {
                y.resize(y.len() + row_len, T::default());
                row(oy, &mut y[oy * row_len..]);
            }
        } else {
            y.resize(self.out_h * row_len, T::default());
            y.par_chunks_mut(row_len)
                .enumerate()
                .for_each(|(oy, out)| row(oy, out));
        }
        y
    }
}

/// The element types of these kernels: [`Float`]s with rows of their own
/// for the convolutions that are not `gemm` products. f32, what the app
/// runs, has explicit SIMD; f64, for the tests' exact comparisons, the
/// plain loops.
pub(crate) trait Element: Float {
    /// Output row `oy` of a depthwise convolution.
    fn depthwise_row(filter: &depthwise::Filter<'_, Self>, oy: usize, out: &mut [Self]);

    /// Output row `oy` of a dense convolution.
    fn dense_row(conv: &dense::Dense<'_, Self>, oy: usize, out: &mut [Self]);
}

impl Element for f64 {
    fn depthwise_row(filter: &depthwise::Filter<'_, Self>, oy: usize, out: &mut [Self]) {
        filter.channels_of_row(oy, out, 0);
    }

    fn dense_row(conv: &dense::Dense<'_, Self>, oy: usize, out: &mut [Self]) {
        conv.channels_of_row(oy, out, 0);
    }
}

impl Element for f32 {
    fn depthwise_row(filter: &depthwise::Filter<'_, Self>, oy: usize, out: &mut [Self]) {
        pulp::Arch::new().dispatch(depthwise::SimdRow { filter, oy, out });
    }

    fn dense_row(conv: &dense::Dense<'_, Self>, oy: usize, out: &mut [Self]) {
        pulp::Arch::new().dispatch(dense::SimdRow { conv, oy, out });
    }
}

/// A register's worth of channels of one output row, as the SIMD kernels
/// compute it ([`walk_row`]).
trait RowRun {
    /// Output pixel `ox`, whose window may reach past the input's sides.
    fn edge(&self, ox: usize, out: &mut [f32]);

    /// Output pixels from `*ox` on in groups of `P`, while whole groups
    /// fit before `end` (all of their windows inside the input), each
    /// pixel's accumulator a register.
    fn pixels<const P: usize>(&self, ox: &mut usize, end: usize, out: &mut [f32]);
}

/// One run of an output row: the pixels at the edges one by one, those
/// whose windows lie inside the input eight at a time (independent chains
/// of fused multiply-adds, enough to keep both FMA units busy), then four,
/// two and one for the rest.
#[inline(always)]
fn walk_row(run: &impl RowRun, window: &Window, out: &mut [f32]) {
    let (inner_lo, inner_hi) = window.interior_columns();
    for ox in 0..inner_lo {
        run.edge(ox, out);
    }
    let mut ox = inner_lo;
    run.pixels::<8>(&mut ox, inner_hi, out);
    run.pixels::<4>(&mut ox, inner_hi, out);
    run.pixels::<2>(&mut ox, inner_hi, out);
    run.pixels::<1>(&mut ox, inner_hi, out);
    for ox in inner_hi..window.out_w {
        run.edge(ox, out);
    }
}

/// The register's worth of values at the start of `values` (which holds
/// at least that many; indexing panics otherwise, as a slice would).
#[inline(always)]
fn load<S: Simd>(values: &[f32]) -> S::f32s {
    S::as_simd_f32s(values).0[0]
}

/// Stores `acc` at the start of `out`, through ReLU6 if `relu6`.
#[inline(always)]
fn store<S: Simd>(simd: S, out: &mut [f32], acc: S::f32s, relu6: bool) {
    let value = if relu6 {
        simd.min_f32s(
            simd.max_f32s(acc, simd.splat_f32s(0.0)),
            simd.splat_f32s(6.0),
        )
    } else {
        acc
    };
    S::as_mut_simd_f32s(out).0[0] = value;
}
