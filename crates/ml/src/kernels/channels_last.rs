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
//! multiply-add over a pixel's channels (contiguous, a multiple of 16 in
//! EfficientNet), with the accumulators in registers for all of a pixel's
//! taps; padding is taps skipped, not zeros copied. The 1x1 convolutions
//! are the same `gemm` products, transposed, over blocks of consecutive
//! pixels, so a block's bias (and a residual) is written just before the
//! product accumulates onto it, and clamped just after, while it is in
//! cache; nothing is zero-filled first.
//!
//! Work splits over rayon's threads only outside the pool: the model runs
//! the images of a batch in parallel, each on one thread, and a single
//! image splits its blocks and rows.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use super::common::{Float, inside_pool, relu6_in_place, vectorized};
use super::gemm::{self, Threads, View};
use super::geometry::same_padding;
use crate::error::{MlError, Result};

/// Bytes of output (or input) a 1x1 convolution's block of pixels spans,
/// so that it is still in the core's L2 cache when it is clamped.
const BLOCK_BYTES: usize = 256 << 10;

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

/// The `k x k` windows of a `(channels, h, w)` image with TensorFlow SAME
/// padding, one row of `channels * k * k` per output pixel (input channel
/// `i`, tap `(ky, kx)` at column `(i * k + ky) * k + kx`, the order of a
/// `(out, channels, k, k)` weight): im2col, so that a dense convolution
/// is a [`pointwise`] one.
pub(crate) fn patches<T: Float>(
    image: &[T],
    (channels, h, w): (usize, usize, usize),
    k: usize,
    stride: usize,
) -> Result<Pixels<T>> {
    if image.len() != channels * h * w || k == 0 || stride == 0 {
        return Err(MlError::InvalidRequest(format!(
            "{k}x{k} windows (stride {stride}) of a {channels}x{h}x{w} image of {} values",
            image.len()
        )));
    }
    let (top, _, out_h) = same_padding(h, k, stride);
    let (left, _, out_w) = same_padding(w, k, stride);
    let columns = channels * k * k;
    let mut data = vec![T::default(); out_h * out_w * columns];
    let window = Window {
        k,
        stride,
        top,
        left,
        h,
        w,
    };
    for (oy, rows) in data.chunks_exact_mut((out_w * columns).max(1)).enumerate() {
        for (ox, row) in rows.chunks_exact_mut(columns.max(1)).enumerate() {
            for (c, plane) in image.chunks_exact(h * w).enumerate() {
                let taps = &mut row[c * k * k..(c + 1) * k * k];
                match k {
                    3 => window.taps::<T, 3>(plane, (oy, ox), taps),
                    5 => window.taps::<T, 5>(plane, (oy, ox), taps),
                    _ => window.any_taps(plane, (oy, ox), taps),
                }
            }
        }
    }
    Ok(Pixels {
        data,
        h: out_h,
        w: out_w,
        channels: columns,
    })
}

/// Where the `k x k` windows of one `h x w` plane fall (SAME padding).
struct Window {
    k: usize,
    stride: usize,
    top: usize,
    left: usize,
    h: usize,
    w: usize,
}

impl Window {
    /// The window's taps of one plane at output `(oy, ox)`, into `taps`
    /// (`k * k`, zero where the window reaches past the plane), for a
    /// size known at compile time: a copy the compiler unrolls instead
    /// of a `memcpy` call for three values.
    #[inline(always)]
    fn taps<T: Float, const K: usize>(
        &self,
        plane: &[T],
        (oy, ox): (usize, usize),
        taps: &mut [T],
    ) {
        for ky in 0..K {
            let Some(iy) = (oy * self.stride + ky)
                .checked_sub(self.top)
                .filter(|&iy| iy < self.h)
            else {
                continue;
            };
            let row = &plane[iy * self.w..(iy + 1) * self.w];
            for kx in 0..K {
                if let Some(&v) = (ox * self.stride + kx)
                    .checked_sub(self.left)
                    .and_then(|ix| row.get(ix))
                {
                    taps[ky * K + kx] = v;
                }
            }
        }
    }

    /// [`Self::taps`] for any size.
    fn any_taps<T: Float>(&self, plane: &[T], (oy, ox): (usize, usize), taps: &mut [T]) {
        let k = self.k;
        for ky in 0..k {
            let Some(iy) = (oy * self.stride + ky)
                .checked_sub(self.top)
                .filter(|&iy| iy < self.h)
            else {
                continue;
            };
            for kx in 0..k {
                if let Some(ix) = (ox * self.stride + kx)
                    .checked_sub(self.left)
                    .filter(|&ix| ix < self.w)
                {
                    taps[ky * k + kx] = plane[iy * self.w + ix];
                }
            }
        }
    }
}

/// `x` through the 1x1 convolution `weight` `(channels, out)` (row-major:
/// the transpose of a PyTorch weight),
/// plus `bias` `(out,)`, plus `residual` (`out` channels, `x`'s size) if
/// given, then ReLU6 if `relu6`.
pub(crate) fn pointwise<T: Float>(
    x: &Pixels<T>,
    weight: &[T],
    bias: &[T],
    residual: Option<&Pixels<T>>,
    relu6: bool,
) -> Result<Pixels<T>> {
    let (c, out, pixels) = (x.channels, bias.len(), x.h * x.w);
    let residual_fits = residual.is_none_or(|r| {
        (r.h, r.w, r.channels, r.data.len()) == (x.h, x.w, out, x.data.len() / c.max(1) * out)
    });
    if weight.len() != out * c || x.data.len() != pixels * c || !residual_fits {
        return Err(MlError::InvalidRequest(format!(
            "1x1 convolution of {}x{}x{c} pixels with {} weights, {out} biases",
            x.h,
            x.w,
            weight.len()
        )));
    }
    if out == 0 || pixels == 0 {
        return Ok(Pixels {
            data: Vec::new(),
            h: x.h,
            w: x.w,
            channels: out,
        });
    }
    let block = (BLOCK_BYTES / size_of::<T>() / out.max(c).max(1)).max(16);
    // Each pixel's outputs start as the bias (and the residual): a block
    // of bias rows is copied in one go.
    let bias_rows = if residual.is_none() {
        bias.repeat(block.min(pixels))
    } else {
        Vec::new()
    };
    let start_rows = |y: &mut Vec<T>, first: usize, rows: usize| match residual {
        Some(r) => {
            for pixel in r.data[first * out..(first + rows) * out].chunks_exact(out) {
                y.extend(pixel.iter().zip(bias).map(|(&r, &b)| r + b));
            }
        }
        None => {
            for chunk in (0..rows).step_by(block) {
                y.extend_from_slice(&bias_rows[..block.min(rows - chunk) * out]);
            }
        }
    };
    // Adds the product to rows `first..` already in `y`, then clamps them.
    let product = |y: &mut [T], first: usize| -> Result<()> {
        let rows = y.len() / out.max(1);
        vectorized(
            #[inline(always)]
            || {
                gemm::product(
                    y,
                    out,
                    View::new(&x.data[first * c..(first + rows) * c], rows, c),
                    View::new(weight, c, out),
                    T::ONE,
                    true,
                    Threads::One,
                )?;
                if relu6 {
                    relu6_in_place(y);
                }
                Ok(())
            },
        )
    };
    let mut y = Vec::with_capacity(pixels * out);
    if inside_pool() || pixels <= block {
        for first in (0..pixels).step_by(block) {
            let rows = block.min(pixels - first);
            let at = y.len();
            start_rows(&mut y, first, rows);
            product(&mut y[at..], first)?;
        }
    } else {
        start_rows(&mut y, 0, pixels);
        y.par_chunks_mut(block * out)
            .enumerate()
            .try_for_each(|(i, y)| product(y, i * block))?;
    }
    Ok(Pixels {
        data: y,
        h: x.h,
        w: x.w,
        channels: out,
    })
}

/// `x` convolved channel by channel with `weight` `(channels, k * k)`,
/// TensorFlow SAME padding, plus `bias` `(channels,)`, then ReLU6 if
/// `relu6`.
pub(crate) fn depthwise<T: Element>(
    x: &Pixels<T>,
    weight: &[T],
    bias: &[T],
    k: usize,
    stride: usize,
    relu6: bool,
) -> Result<Pixels<T>> {
    let (c, taps) = (x.channels, k * k);
    if weight.len() != c * taps || bias.len() != c || stride == 0 || x.data.len() != x.h * x.w * c {
        return Err(MlError::InvalidRequest(format!(
            "{k}x{k} depthwise convolution (stride {stride}) of {}x{}x{c} pixels with {} weights, {} biases",
            x.h,
            x.w,
            weight.len(),
            bias.len()
        )));
    }
    // Tap-major, so that a tap's weights for a run of channels are
    // contiguous like a pixel's values.
    let mut by_tap = vec![T::default(); weight.len()];
    for (channel, filter) in weight.chunks_exact(taps.max(1)).enumerate() {
        for (tap, &v) in filter.iter().enumerate() {
            by_tap[tap * c + channel] = v;
        }
    }
    let (top, _, out_h) = same_padding(x.h, k, stride);
    let (left, _, out_w) = same_padding(x.w, k, stride);
    let filter = Filter {
        weights: &by_tap,
        bias,
        k,
        stride,
        top,
        left,
        out_w,
        relu6,
    };
    let row = |oy: usize, out: &mut [T]| T::depthwise_row(&filter, x, oy, out);
    let row_len = out_w * c;
    let mut y = Vec::with_capacity(out_h * row_len);
    if row_len > 0 {
        if inside_pool() || out_h <= 1 {
            // Each row zeroed just before it is written, while in cache.
            for oy in 0..out_h {
                y.resize(y.len() + row_len, T::default());
                row(oy, &mut y[oy * row_len..]);
            }
        } else {
            y.resize(out_h * row_len, T::default());
            y.par_chunks_mut(row_len)
                .enumerate()
                .for_each(|(oy, out)| row(oy, out));
        }
    }
    Ok(Pixels {
        data: y,
        h: out_h,
        w: out_w,
        channels: c,
    })
}

/// A depthwise layer: its weights (tap-major), bias, and where its
/// windows fall. The padding is never materialised: a window's taps
/// outside the input are skipped.
pub(crate) struct Filter<'a, T> {
    /// `(k * k, channels)`.
    weights: &'a [T],
    bias: &'a [T],
    k: usize,
    stride: usize,
    /// SAME padding before the first row and column.
    top: usize,
    left: usize,
    out_w: usize,
    relu6: bool,
}

impl<T: Float> Filter<'_, T> {
    /// The filter taps (`lo..hi`) that land inside an input of length
    /// `len` for output position `o`, padded by `pad` before.
    #[inline(always)]
    fn inside(&self, o: usize, pad: usize, len: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = pad.saturating_sub(start).min(self.k);
        let hi = (len + pad).saturating_sub(start).min(self.k);
        (lo, hi.max(lo))
    }

    /// Output positions whose windows lie wholly inside an input of
    /// length `len` padded by `pad`: `lo..hi` of `0..out`.
    #[inline(always)]
    fn interior(&self, pad: usize, len: usize, out: usize) -> (usize, usize) {
        let lo = pad.div_ceil(self.stride).min(out);
        let hi = match (len + pad).checked_sub(self.k) {
            Some(last_start) => (last_start / self.stride + 1).min(out),
            None => 0,
        };
        (lo, hi.max(lo))
    }

    /// Channels `first..` of output row `oy`, one value at a time.
    #[inline(always)]
    fn channels_of_row(&self, x: &Pixels<T>, oy: usize, out: &mut [T], first: usize) {
        let (c, k) = (x.channels, self.k);
        let (ky_lo, ky_hi) = self.inside(oy, self.top, x.h);
        for (ox, out) in out.chunks_exact_mut(c.max(1)).enumerate() {
            let (kx_lo, kx_hi) = self.inside(ox, self.left, x.w);
            for (channel, out) in out.iter_mut().enumerate().skip(first) {
                let mut acc = self.bias[channel];
                for ky in ky_lo..ky_hi {
                    let iy = oy * self.stride + ky - self.top;
                    for kx in kx_lo..kx_hi {
                        let ix = ox * self.stride + kx - self.left;
                        let v = x.data[(iy * x.w + ix) * c + channel];
                        acc = self.weights[(ky * k + kx) * c + channel].mul_add(v, acc);
                    }
                }
                *out = if self.relu6 { acc.relu6() } else { acc };
            }
        }
    }
}

/// The element types of this module's kernels: [`Float`]s with a
/// depthwise row of their own. f32, what the app runs, has explicit SIMD
/// ([`DepthwiseRow`]); f64, for the tests' exact comparisons, the plain
/// loop.
pub(crate) trait Element: Float {
    /// Output row `oy` of a depthwise convolution.
    fn depthwise_row(filter: &Filter<'_, Self>, x: &Pixels<Self>, oy: usize, out: &mut [Self]);
}

impl Element for f64 {
    fn depthwise_row(filter: &Filter<'_, Self>, x: &Pixels<Self>, oy: usize, out: &mut [Self]) {
        filter.channels_of_row(x, oy, out, 0);
    }
}

impl Element for f32 {
    fn depthwise_row(filter: &Filter<'_, Self>, x: &Pixels<Self>, oy: usize, out: &mut [Self]) {
        pulp::Arch::new().dispatch(DepthwiseRow { filter, x, oy, out });
    }
}

/// One output row of an f32 depthwise convolution, for the widest SIMD
/// the CPU has (written with pulp's vectors: the compiler did not keep a
/// generic version's accumulators in registers).
struct DepthwiseRow<'a, 'f> {
    filter: &'a Filter<'f, f32>,
    x: &'a Pixels<f32>,
    oy: usize,
    out: &'a mut [f32],
}

impl WithSimd for DepthwiseRow<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let DepthwiseRow { filter, x, oy, out } = self;
        match (filter.k, filter.stride) {
            (3, 1) => simd_row::<S, 3, 1>(simd, filter, x, oy, out),
            (3, 2) => simd_row::<S, 3, 2>(simd, filter, x, oy, out),
            (5, 1) => simd_row::<S, 5, 1>(simd, filter, x, oy, out),
            (5, 2) => simd_row::<S, 5, 2>(simd, filter, x, oy, out),
            _ => filter.channels_of_row(x, oy, out, 0),
        }
    }
}

/// Output row `oy` of a `K x K` filter at stride `STRIDE`, a register's
/// worth of channels at a time: the pixels whose windows lie inside the
/// input in groups ([`Run::pixels`]), those at the edges one by one
/// ([`Run::edge`]). The channels past the last whole register take the
/// plain loop.
#[inline(always)]
fn simd_row<S: Simd, const K: usize, const STRIDE: usize>(
    simd: S,
    filter: &Filter<'_, f32>,
    x: &Pixels<f32>,
    oy: usize,
    out: &mut [f32],
) {
    let (c, lanes) = (x.channels, S::F32_LANES);
    let (ky_lo, ky_hi) = filter.inside(oy, filter.top, x.h);
    let (inner_lo, inner_hi) = filter.interior(filter.left, x.w, filter.out_w);
    let whole = c - c % lanes;
    for first in (0..whole).step_by(lanes) {
        let run = Run {
            simd,
            filter,
            x,
            oy,
            rows: (ky_lo, ky_hi),
            bias: load::<S>(&filter.bias[first..]),
            first,
        };
        for ox in 0..inner_lo {
            run.edge::<K>(ox, out);
        }
        // Eight pixels at a time: independent chains of fused
        // multiply-adds, enough to keep both FMA units busy; then four,
        // two, one for the rest.
        let mut ox = inner_lo;
        run.pixels::<K, STRIDE, 8>(&mut ox, inner_hi, out);
        run.pixels::<K, STRIDE, 4>(&mut ox, inner_hi, out);
        run.pixels::<K, STRIDE, 2>(&mut ox, inner_hi, out);
        run.pixels::<K, STRIDE, 1>(&mut ox, inner_hi, out);
        for ox in inner_hi..filter.out_w {
            run.edge::<K>(ox, out);
        }
    }
    if whole < c {
        filter.channels_of_row(x, oy, out, whole);
    }
}

/// A register's worth of channels of one output row.
struct Run<'a, 'f, S: Simd> {
    simd: S,
    filter: &'a Filter<'f, f32>,
    x: &'a Pixels<f32>,
    oy: usize,
    /// The filter rows inside the input.
    rows: (usize, usize),
    bias: S::f32s,
    first: usize,
}

impl<S: Simd> Run<'_, '_, S> {
    /// Where input row `iy`, column `ix`, channel `first` is.
    #[inline(always)]
    fn at(&self, iy: usize, ix: usize) -> usize {
        (iy * self.x.w + ix) * self.x.channels + self.first
    }

    /// Pixels from `*ox` on in groups of `P` while whole groups fit
    /// before `end` (all of their columns inside the input): every
    /// pixel's accumulator a register, each tap's weights loaded once
    /// per group.
    #[inline(always)]
    fn pixels<const K: usize, const STRIDE: usize, const P: usize>(
        &self,
        ox: &mut usize,
        end: usize,
        out: &mut [f32],
    ) {
        let (simd, f, c) = (self.simd, self.filter, self.x.channels);
        while *ox + P <= end {
            let mut acc = [self.bias; P];
            for ky in self.rows.0..self.rows.1 {
                let iy = self.oy * STRIDE + ky - f.top;
                let row = &self.x.data[self.at(iy, *ox * STRIDE - f.left)..];
                for kx in 0..K {
                    let w = load::<S>(&f.weights[(ky * K + kx) * c + self.first..]);
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let v = load::<S>(&row[(p * STRIDE + kx) * c..]);
                        *acc = simd.mul_add_f32s(w, v, *acc);
                    }
                }
            }
            for (p, acc) in acc.into_iter().enumerate() {
                self.store(out, *ox + p, acc);
            }
            *ox += P;
        }
    }

    /// Pixel `ox`, whose window may reach past the input's sides.
    #[inline(always)]
    fn edge<const K: usize>(&self, ox: usize, out: &mut [f32]) {
        let (f, c) = (self.filter, self.x.channels);
        let (kx_lo, kx_hi) = f.inside(ox, f.left, self.x.w);
        let mut acc = self.bias;
        for ky in self.rows.0..self.rows.1 {
            let iy = self.oy * f.stride + ky - f.top;
            for kx in kx_lo..kx_hi {
                let ix = ox * f.stride + kx - f.left;
                let w = load::<S>(&f.weights[(ky * K + kx) * c + self.first..]);
                let v = load::<S>(&self.x.data[self.at(iy, ix)..]);
                acc = self.simd.mul_add_f32s(w, v, acc);
            }
        }
        self.store(out, ox, acc);
    }

    /// Pixel `ox`'s channels of the run, through ReLU6 if the layer has it.
    #[inline(always)]
    fn store(&self, out: &mut [f32], ox: usize, acc: S::f32s) {
        let simd = self.simd;
        let value = if self.filter.relu6 {
            simd.min_f32s(
                simd.max_f32s(acc, simd.splat_f32s(0.0)),
                simd.splat_f32s(6.0),
            )
        } else {
            acc
        };
        let (registers, _) = S::as_mut_simd_f32s(&mut out[ox * self.x.channels + self.first..]);
        registers[0] = value;
    }
}

/// The register's worth of values at the start of `values` (which holds
/// at least that many; indexing panics otherwise, as a slice would).
#[inline(always)]
fn load<S: Simd>(values: &[f32]) -> S::f32s {
    S::as_simd_f32s(values).0[0]
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::rng::SplitMix64;

    fn random(n: usize, rng: &mut SplitMix64) -> Vec<f64> {
        (0..n)
            .map(|_| f64::from(rng.next_f32()) * 4.0 - 2.0)
            .collect()
    }

    /// `(rows, cols)` row-major to `(cols, rows)`.
    fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let mut t = vec![0.0; m.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = m[r * cols + c];
            }
        }
        t
    }

    fn planes_tensor(p: &Pixels<f64>) -> Tensor {
        Tensor::from_vec(p.to_planes(), (1, p.channels, p.h, p.w), &Device::Cpu).expect("tensor")
    }

    fn close(ours: &Tensor, reference: &Tensor, what: &str) {
        assert_eq!(ours.dims(), reference.dims(), "{what}");
        let diff = (ours - reference)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>())
            .expect("diff");
        assert!(diff < 1e-12, "{what}: differs by {diff:e}");
    }

    /// Every kernel agrees with the NCHW kernels (which are checked against
    /// candle's convolutions) for kernel sizes 1, 3, 5, both strides, odd
    /// and even sizes, with and without ReLU6, at channel counts that use
    /// the large tile, the small one and single channels.
    #[test]
    fn channels_last_kernels_agree_with_the_planar_ones() {
        let mut rng = SplitMix64::new(11);
        for (c, h, w) in [(3, 9, 8), (83, 7, 7), (16, 6, 11), (1, 1, 1), (144, 4, 3)] {
            let x = Pixels::from_planes(&random(c * h * w, &mut rng), (c, h, w));
            assert_eq!(Pixels::from_planes(&x.to_planes(), (c, h, w)), x);
            let planes = planes_tensor(&x);
            for relu6 in [false, true] {
                for k in [3, 5] {
                    for stride in [1, 2] {
                        let wt = random(c * k * k, &mut rng);
                        let b = random(c, &mut rng);
                        let ours = depthwise(&x, &wt, &b, k, stride, relu6).expect("depthwise");
                        let wt = Tensor::from_vec(wt, (c, 1, k, k), &Device::Cpu).expect("w");
                        let b = Tensor::from_vec(b, c, &Device::Cpu).expect("b");
                        let reference =
                            super::super::depthwise::conv(&planes, &wt, &b, stride, relu6)
                                .expect("reference");
                        close(&planes_tensor(&ours), &reference, "depthwise");

                        let patched = patches(&x.to_planes(), (c, h, w), k, stride).expect("p");
                        let reference = super::super::patches::patches(&planes, k, stride)
                            .expect("patches")
                            .expect("cpu");
                        close(&planes_tensor(&patched), &reference, "patches");
                    }
                }
                let out = 20;
                let wt = random(out * c, &mut rng);
                let b = random(out, &mut rng);
                let residual = Pixels::from_planes(&random(out * h * w, &mut rng), (out, h, w));
                let by_input = transpose(&wt, out, c);
                let ours = pointwise(&x, &by_input, &b, Some(&residual), relu6).expect("pointwise");
                let wt = Tensor::from_vec(wt, (out, c, 1, 1), &Device::Cpu).expect("w");
                let b = Tensor::from_vec(b, out, &Device::Cpu).expect("b");
                let product = super::super::pointwise::conv(&planes, &wt, &b, false)
                    .and_then(|y| Ok((y + planes_tensor(&residual))?))
                    .and_then(|y| Ok(if relu6 { y.clamp(0.0, 6.0)? } else { y }))
                    .expect("reference");
                close(&planes_tensor(&ours), &product, "pointwise");
            }
        }
    }

    /// The 1x1 convolution splits a large image into blocks of pixels,
    /// on rayon's threads outside the pool and in order inside it; both
    /// agree with one product.
    #[test]
    fn pointwise_blocks_agree_inside_and_outside_the_pool() {
        let mut rng = SplitMix64::new(12);
        let (c, h, w, out) = (24, 60, 50, 40);
        let x = Pixels::from_planes(&random(c * h * w, &mut rng), (c, h, w));
        let wt = random(out * c, &mut rng);
        let b = random(out, &mut rng);
        let outside = pointwise(&x, &wt, &b, None, true).expect("outside");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let inside = pool.install(|| pointwise(&x, &wt, &b, None, true).expect("inside"));
        assert_eq!(outside, inside);
        let mut expected = vec![0f64; h * w * out];
        for p in 0..h * w {
            for o in 0..out {
                let dot: f64 = (0..c).map(|i| x.data[p * c + i] * wt[i * out + o]).sum();
                expected[p * out + o] = (dot + b[o]).clamp(0.0, 6.0);
            }
        }
        let worst = expected
            .iter()
            .zip(&inside.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{worst:e}");
    }

    #[test]
    fn mismatched_sizes_are_errors() {
        let x = Pixels::from_planes(&[0.0f64; 12], (3, 2, 2));
        assert!(pointwise(&x, &[0.0; 5], &[0.0; 2], None, false).is_err());
        assert!(depthwise(&x, &[0.0; 26], &[0.0; 3], 3, 1, false).is_err());
        assert!(depthwise(&x, &[0.0; 27], &[0.0; 3], 3, 0, false).is_err());
        assert!(patches(&[0.0f64; 11], (3, 2, 2), 3, 2).is_err());
    }

    #[test]
    fn mean_pools_every_pixel() {
        let x = Pixels::from_planes(&[1.0f64, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0], (2, 2, 2));
        assert_eq!(x.mean(), vec![2.5, 10.0]);
    }
}
