//! Depthwise convolutions, channels last: a register's worth of channels
//! at a time, several pixels' accumulators in registers across all of
//! their taps, the padding's taps skipped.

use pulp::{Simd, WithSimd};

use super::{Element, Pixels, RowRun, Window, load, store, walk_row};
use crate::error::{MlError, Result};
use crate::kernels::common::Float;

/// `x` convolved channel by channel with `weight` `(k * k, channels)`
/// (tap-major, [`super::transpose`] of a PyTorch weight, so that a tap's
/// weights for a run of channels are contiguous like a pixel's values),
/// TensorFlow SAME padding, plus `bias` `(channels,)`, then ReLU6 if
/// `relu6`, into `buffer`.
pub(crate) fn depthwise<T: Element>(
    x: &Pixels<T>,
    weight: &[T],
    bias: &[T],
    k: usize,
    stride: usize,
    relu6: bool,
    buffer: Vec<T>,
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
    let window = Window::new(x.h, x.w, k, stride);
    let filter = Filter {
        x,
        weights: weight,
        bias,
        window,
        relu6,
    };
    let data = window.rows_of(window.out_w * c, buffer, |oy, out| {
        T::depthwise_row(&filter, oy, out)
    });
    Ok(Pixels {
        data,
        h: window.out_h,
        w: window.out_w,
        channels: c,
    })
}

/// A depthwise layer applied to one input: its weights (tap-major), bias,
/// and where its windows fall.
pub(crate) struct Filter<'a, T> {
    x: &'a Pixels<T>,
    /// `(k * k, channels)`.
    weights: &'a [T],
    bias: &'a [T],
    window: Window,
    relu6: bool,
}

impl<T: Float> Filter<'_, T> {
    /// Channels `first..` of output row `oy`, one value at a time.
    pub(super) fn channels_of_row(&self, oy: usize, out: &mut [T], first: usize) {
        let (x, g) = (self.x, &self.window);
        let c = x.channels;
        let (ky_lo, ky_hi) = g.rows(oy);
        for (ox, out) in out.chunks_exact_mut(c.max(1)).enumerate() {
            let (kx_lo, kx_hi) = g.columns(ox);
            for (channel, out) in out.iter_mut().enumerate().skip(first) {
                let mut acc = self.bias[channel];
                for ky in ky_lo..ky_hi {
                    let iy = oy * g.stride + ky - g.top;
                    for kx in kx_lo..kx_hi {
                        let ix = ox * g.stride + kx - g.left;
                        let v = x.data[(iy * x.w + ix) * c + channel];
                        acc = self.weights[(ky * g.k + kx) * c + channel].mul_add(v, acc);
                    }
                }
                *out = if self.relu6 { acc.relu6() } else { acc };
            }
        }
    }
}

/// One output row of an f32 depthwise convolution, for the widest SIMD
/// the CPU has (written with pulp's vectors: the compiler did not keep a
/// generic version's accumulators in registers).
pub(super) struct SimdRow<'a, 'f> {
    pub(super) filter: &'a Filter<'f, f32>,
    pub(super) oy: usize,
    pub(super) out: &'a mut [f32],
}

impl WithSimd for SimdRow<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let SimdRow { filter, oy, out } = self;
        match (filter.window.k, filter.window.stride) {
            (3, 1) => simd_row::<S, 3, 1>(simd, filter, oy, out),
            (3, 2) => simd_row::<S, 3, 2>(simd, filter, oy, out),
            (5, 1) => simd_row::<S, 5, 1>(simd, filter, oy, out),
            (5, 2) => simd_row::<S, 5, 2>(simd, filter, oy, out),
            _ => filter.channels_of_row(oy, out, 0),
        }
    }
}

/// Output row `oy` of a `K x K` filter at stride `STRIDE`, a register's
/// worth of channels at a time ([`walk_row`]); the channels past the last
/// whole register take the plain loop.
#[inline(always)]
fn simd_row<S: Simd, const K: usize, const STRIDE: usize>(
    simd: S,
    filter: &Filter<'_, f32>,
    oy: usize,
    out: &mut [f32],
) {
    let (c, lanes, g) = (filter.x.channels, S::F32_LANES, &filter.window);
    let whole = c - c % lanes;
    for first in (0..whole).step_by(lanes) {
        let run = Run::<S, K, STRIDE> {
            simd,
            filter,
            oy,
            rows: g.rows(oy),
            bias: load::<S>(&filter.bias[first..]),
            first,
        };
        walk_row(&run, g, out);
    }
    if whole < c {
        filter.channels_of_row(oy, out, whole);
    }
}

/// A register's worth of channels of one output row.
struct Run<'a, 'f, S: Simd, const K: usize, const STRIDE: usize> {
    simd: S,
    filter: &'a Filter<'f, f32>,
    oy: usize,
    /// The filter rows inside the input.
    rows: (usize, usize),
    bias: S::f32s,
    first: usize,
}

impl<S: Simd, const K: usize, const STRIDE: usize> Run<'_, '_, S, K, STRIDE> {
    /// Where input row `iy`, column `ix`, channel `first` is.
    #[inline(always)]
    fn at(&self, iy: usize, ix: usize) -> usize {
        let x = self.filter.x;
        (iy * x.w + ix) * x.channels + self.first
    }
}

impl<S: Simd, const K: usize, const STRIDE: usize> RowRun for Run<'_, '_, S, K, STRIDE> {
    /// Each tap's weights loaded once per group.
    #[inline(always)]
    fn pixels<const P: usize>(&self, ox: &mut usize, end: usize, out: &mut [f32]) {
        let (simd, f) = (self.simd, self.filter);
        let (c, g) = (f.x.channels, &f.window);
        while *ox + P <= end {
            let mut acc = [self.bias; P];
            for ky in self.rows.0..self.rows.1 {
                let iy = self.oy * STRIDE + ky - g.top;
                let row = &f.x.data[self.at(iy, *ox * STRIDE - g.left)..];
                for kx in 0..K {
                    let w = load::<S>(&f.weights[(ky * K + kx) * c + self.first..]);
                    for (p, acc) in acc.iter_mut().enumerate() {
                        let v = load::<S>(&row[(p * STRIDE + kx) * c..]);
                        *acc = simd.mul_add_f32s(w, v, *acc);
                    }
                }
            }
            for (p, acc) in acc.into_iter().enumerate() {
                store(simd, &mut out[(*ox + p) * c + self.first..], acc, f.relu6);
            }
            *ox += P;
        }
    }

    #[inline(always)]
    fn edge(&self, ox: usize, out: &mut [f32]) {
        let f = self.filter;
        let (c, g) = (f.x.channels, &f.window);
        let (kx_lo, kx_hi) = g.columns(ox);
        let mut acc = self.bias;
        for ky in self.rows.0..self.rows.1 {
            let iy = self.oy * g.stride + ky - g.top;
            for kx in kx_lo..kx_hi {
                let ix = ox * g.stride + kx - g.left;
                let w = load::<S>(&f.weights[(ky * K + kx) * c + self.first..]);
                let v = load::<S>(&f.x.data[self.at(iy, ix)..]);
                acc = self.simd.mul_add_f32s(w, v, acc);
            }
        }
        store(self.simd, &mut out[ox * c + self.first..], acc, f.relu6);
    }
}
