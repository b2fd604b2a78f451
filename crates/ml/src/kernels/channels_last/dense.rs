//! The stem's dense convolution, direct: from the image's `(channels, h,
//! w)` planes to channels-last outputs, a register's worth of output
//! channels at a time, several pixels' accumulators in registers, each
//! input value broadcast to the register of weights it multiplies.
//!
//! Its own kernel because the stem has three input channels: as an im2col
//! copy and a `gemm` (27-long sums into 32 outputs) it cost about three
//! times as much, most of it in the copy and the product's overheads.

use pulp::{Simd, WithSimd};

use super::{Element, Pixels, RowRun, Window, load, store, walk_row};
use crate::error::{MlError, Result};
use crate::kernels::common::Float;

/// `image` `(channels, h, w)` convolved with `weight` `(channels * k * k,
/// out)` (row-major: input channel `i`, tap `(ky, kx)` in row `(i * k +
/// ky) * k + kx`, the transpose of a PyTorch weight), TensorFlow SAME
/// padding, plus `bias` `(out,)`, then ReLU6 if `relu6`, into `buffer`.
pub(crate) fn dense<T: Element>(
    image: &[T],
    (channels, h, w): (usize, usize, usize),
    weight: &[T],
    bias: &[T],
    (k, stride): (usize, usize),
    relu6: bool,
    buffer: Vec<T>,
) -> Result<Pixels<T>> {
    let outs = bias.len();
    if image.len() != channels * h * w || weight.len() != channels * k * k * outs || stride == 0 {
        return Err(MlError::InvalidRequest(format!(
            "{k}x{k} convolution (stride {stride}) of a {channels}x{h}x{w} image of {} values \
             with {} weights, {outs} biases",
            image.len(),
            weight.len()
        )));
    }
    let window = Window::new(h, w, k, stride);
    let conv = Dense {
        image,
        weights: weight,
        bias,
        window,
        relu6,
    };
    let data = window.rows_of(window.out_w * outs, buffer, |oy, out| {
        T::dense_row(&conv, oy, out)
    });
    Ok(Pixels {
        data,
        h: window.out_h,
        w: window.out_w,
        channels: outs,
    })
}

/// A dense convolution applied to one image.
pub(crate) struct Dense<'a, T> {
    /// `(channels, h, w)`.
    image: &'a [T],
    /// `(channels * k * k, outs)`.
    weights: &'a [T],
    bias: &'a [T],
    window: Window,
    relu6: bool,
}

impl<T: Float> Dense<'_, T> {
    /// Output channels `first..` of output row `oy`, one value at a time.
    pub(super) fn channels_of_row(&self, oy: usize, out: &mut [T], first: usize) {
        let (g, outs) = (&self.window, self.bias.len());
        let (ky_lo, ky_hi) = g.rows(oy);
        for (ox, out) in out.chunks_exact_mut(outs.max(1)).enumerate() {
            let (kx_lo, kx_hi) = g.columns(ox);
            for (o, out) in out.iter_mut().enumerate().skip(first) {
                let mut acc = self.bias[o];
                for (c, plane) in self.image.chunks_exact(g.h * g.w).enumerate() {
                    for ky in ky_lo..ky_hi {
                        let iy = oy * g.stride + ky - g.top;
                        for kx in kx_lo..kx_hi {
                            let ix = ox * g.stride + kx - g.left;
                            let tap = (c * g.k + ky) * g.k + kx;
                            acc = self.weights[tap * outs + o].mul_add(plane[iy * g.w + ix], acc);
                        }
                    }
                }
                *out = if self.relu6 { acc.relu6() } else { acc };
            }
        }
    }
}

/// One output row of an f32 dense convolution, for the widest SIMD the
/// CPU has.
pub(super) struct SimdRow<'a, 'f> {
    pub(super) conv: &'a Dense<'f, f32>,
    pub(super) oy: usize,
    pub(super) out: &'a mut [f32],
}

impl WithSimd for SimdRow<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let SimdRow { conv, oy, out } = self;
        match (conv.window.k, conv.window.stride) {
            (3, 2) => simd_row::<S, 3, 2>(simd, conv, oy, out),
            (3, 1) => simd_row::<S, 3, 1>(simd, conv, oy, out),
            _ => conv.channels_of_row(oy, out, 0),
        }
    }
}

/// Output row `oy` of a `K x K` convolution at stride `STRIDE`, a
/// register's worth of output channels at a time ([`walk_row`]); output
/// channels past the last whole register take the plain loop.
#[inline(always)]
fn simd_row<S: Simd, const K: usize, const STRIDE: usize>(
    simd: S,
    conv: &Dense<'_, f32>,
    oy: usize,
    out: &mut [f32],
) {
    let (outs, lanes, g) = (conv.bias.len(), S::F32_LANES, &conv.window);
    let whole = outs - outs % lanes;
    for first in (0..whole).step_by(lanes) {
        let run = Run::<S, K, STRIDE> {
            simd,
            conv,
            oy,
            rows: g.rows(oy),
            bias: load::<S>(&conv.bias[first..]),
            first,
        };
        walk_row(&run, g, out);
    }
    if whole < outs {
        conv.channels_of_row(oy, out, whole);
    }
}

/// A register's worth of output channels of one output row.
struct Run<'a, 'f, S: Simd, const K: usize, const STRIDE: usize> {
    simd: S,
    conv: &'a Dense<'f, f32>,
    oy: usize,
    /// The filter rows inside the image.
    rows: (usize, usize),
    bias: S::f32s,
    first: usize,
}

impl<S: Simd, const K: usize, const STRIDE: usize> Run<'_, '_, S, K, STRIDE> {
    /// The weights of tap `(c, ky, kx)` for this run's output channels.
    #[inline(always)]
    fn weights(&self, c: usize, ky: usize, kx: usize) -> S::f32s {
        let outs = self.conv.bias.len();
        load::<S>(&self.conv.weights[((c * K + ky) * K + kx) * outs + self.first..])
    }
}

impl<S: Simd, const K: usize, const STRIDE: usize> RowRun for Run<'_, '_, S, K, STRIDE> {
    /// Each input value broadcast to the register of weights it
    /// multiplies.
    #[inline(always)]
    fn pixels<const P: usize>(&self, ox: &mut usize, end: usize, out: &mut [f32]) {
        let (simd, conv) = (self.simd, self.conv);
        let (g, outs) = (&conv.window, conv.bias.len());
        while *ox + P <= end {
            let mut acc = [self.bias; P];
            for (c, plane) in conv.image.chunks_exact(g.h * g.w).enumerate() {
                for ky in self.rows.0..self.rows.1 {
                    let iy = self.oy * STRIDE + ky - g.top;
                    let row = &plane[iy * g.w + *ox * STRIDE - g.left..];
                    for kx in 0..K {
                        let w = self.weights(c, ky, kx);
                        for (p, acc) in acc.iter_mut().enumerate() {
                            let v = simd.splat_f32s(row[p * STRIDE + kx]);
                            *acc = simd.mul_add_f32s(w, v, *acc);
                        }
                    }
                }
            }
            for (p, acc) in acc.into_iter().enumerate() {
                store(
                    simd,
                    &mut out[(*ox + p) * outs + self.first..],
                    acc,
                    conv.relu6,
                );
            }
            *ox += P;
        }
    }

    #[inline(always)]
    fn edge(&self, ox: usize, out: &mut [f32]) {
        let conv = self.conv;
        let (g, outs) = (&conv.window, conv.bias.len());
        let (kx_lo, kx_hi) = g.columns(ox);
        let mut acc = self.bias;
        for (c, plane) in conv.image.chunks_exact(g.h * g.w).enumerate() {
            for ky in self.rows.0..self.rows.1 {
                let iy = self.oy * g.stride + ky - g.top;
                for kx in kx_lo..kx_hi {
                    let ix = ox * g.stride + kx - g.left;
                    let v = self.simd.splat_f32s(plane[iy * g.w + ix]);
                    acc = self.simd.mul_add_f32s(self.weights(c, ky, kx), v, acc);
                }
            }
        }
        store(
            self.simd,
            &mut out[ox * outs + self.first..],
            acc,
            conv.relu6,
        );
    }
}
