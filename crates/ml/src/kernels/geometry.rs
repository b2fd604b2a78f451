//! Where a SAME-padded convolution reads: TensorFlow's padding rule, and
//! the phase layout the depthwise and patch (im2col) kernels share.
//!
//! Both kernel families walk the same padded, stride-split planes; the
//! geometry sits here so that neither owns the other's layout.

use super::common::Float;

/// Elements of output a kernel accumulates at a time: a few rows, which
/// stay in the L1 cache while every tap adds to them.
const BLOCK_ELEMENTS: usize = 2048;

/// TensorFlow `"SAME"` padding of one spatial dimension:
/// `(before, after, output length)`. The output is `ceil(input / stride)`,
/// the total padding what that needs, split with the extra element after
/// (so a 3x3 stride-2 convolution of an even size pads `(0, 1)`, a 5x5
/// `(1, 2)`; stride 1 pads `k/2` on both sides).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    if input == 0 || stride == 0 {
        return (0, 0, 0);
    }
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, out)
}

/// Sizes of one depthwise convolution, and the layout its kernels work
/// in.
///
/// The zero-padded input plane is split into `stride²` phases
/// (`phase[a][b][r][c] = padded[r * stride + a][c * stride + b]`), each
/// `phase_rows x phase_cols`. Output element `(oy, ox)` then reads, for
/// tap `(ky, kx)`, phase `(ky % stride, kx % stride)` at
/// `(oy + ky / stride, ox + kx / stride)`. Outputs are accumulated with
/// the phases' row length (`phase_cols`; the extra columns are
/// scratch), so each tap is one long contiguous multiply-add over a
/// block of rows, which vectorises, instead of a short loop per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad_top: usize,
    pub(super) pad_left: usize,
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    pub(super) phase_rows: usize,
    pub(super) phase_cols: usize,
    /// Elements per phase, with slack for the scratch columns' reads.
    pub(super) phase_len: usize,
}

impl Geometry {
    pub(super) fn new(h: usize, w: usize, k: usize, stride: usize) -> Self {
        let (pad_top, _, out_h) = same_padding(h, k, stride);
        let (pad_left, _, out_w) = same_padding(w, k, stride);
        let stride = stride.max(1);
        // What the outputs read, and at least the whole input (a 1x1
        // stride-2 convolution skips the last row of an even input).
        let padded_h = ((out_h.max(1) - 1) * stride + k).max(pad_top + h);
        let padded_w = ((out_w.max(1) - 1) * stride + k).max(pad_left + w);
        let phase_rows = padded_h.div_ceil(stride);
        let phase_cols = padded_w.div_ceil(stride);
        Geometry {
            h,
            w,
            k,
            stride,
            pad_top,
            pad_left,
            out_h,
            out_w,
            phase_rows,
            phase_cols,
            phase_len: phase_rows * phase_cols + k,
        }
    }

    /// Length of an output plane in the phases' row layout.
    pub(super) fn wide_len(&self) -> usize {
        self.out_h * self.phase_cols
    }

    /// Length of all the phases of a plane.
    pub(super) fn phases_len(&self) -> usize {
        self.stride * self.stride * self.phase_len
    }

    /// Output rows accumulated at a time.
    pub(super) fn block_rows(&self) -> usize {
        (BLOCK_ELEMENTS / self.phase_cols.max(1)).clamp(1, self.out_h.max(1))
    }

    /// `(index of the phase, offset in it)` of each tap.
    pub(super) fn taps(&self) -> Vec<(usize, usize)> {
        let s = self.stride;
        let mut taps = Vec::with_capacity(self.k * self.k);
        for ky in 0..self.k {
            for kx in 0..self.k {
                let phase = (ky % s) * s + kx % s;
                taps.push((phase * self.phase_len, (ky / s) * self.phase_cols + kx / s));
            }
        }
        taps
    }

    /// The taps in runs that read one phase row at consecutive offsets
    /// (`kx = b, b + stride, ...` of one `ky`): `(where the first reads,
    /// the taps' indices)`, so that one pass adds them all.
    pub(super) fn tap_runs(&self) -> Vec<(usize, Vec<usize>)> {
        let (s, offsets) = (self.stride, self.taps());
        let mut runs = Vec::new();
        for ky in 0..self.k {
            for b in 0..s.min(self.k) {
                let taps: Vec<usize> = (b..self.k).step_by(s).map(|kx| ky * self.k + kx).collect();
                let (phase, offset) = offsets[taps[0]];
                runs.push((phase + offset, taps));
            }
        }
        runs
    }

    /// Where input element `(iy, ix)` lives in the phases.
    pub(super) fn phase_index(&self, iy: usize, ix: usize) -> usize {
        let s = self.stride;
        let (py, px) = (iy + self.pad_top, ix + self.pad_left);
        ((py % s) * s + px % s) * self.phase_len + (py / s) * self.phase_cols + px / s
    }

    /// For input row `iy` and each column phase `b`: the first input
    /// column in that phase and where it goes in the phases (the rest
    /// of the phase's columns follow every `stride` input columns).
    pub(super) fn row_runs(&self, iy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let s = self.stride;
        (0..s.min(self.w)).map(move |ix| (ix, self.phase_index(iy, ix)))
    }

    /// Splits an input plane into `phases` (`phases_len()` long). Only
    /// the input's own positions are written: the padding keeps what
    /// `phases` had there, zeros when it was allocated zeroed, so a
    /// buffer can be reused for every plane of one geometry.
    #[inline(always)]
    pub(super) fn split_into<T: Float>(&self, plane: &[T], phases: &mut [T]) {
        let s = self.stride;
        for (iy, row) in plane.chunks_exact(self.w).enumerate() {
            if s == 1 {
                let start = self.phase_index(iy, 0);
                phases[start..start + self.w].copy_from_slice(row);
                continue;
            }
            if s == 2 && self.w >= 2 {
                // Even and odd columns into two phases, pairwise so
                // that it vectorises.
                let (even, odd) = (self.phase_index(iy, 0), self.phase_index(iy, 1));
                let (lo, hi) = (even.min(odd), even.max(odd));
                let (head, tail) = phases.split_at_mut(hi);
                let (first, second) = (&mut head[lo..], tail);
                let (to_even, to_odd) = if even < odd {
                    (first, second)
                } else {
                    (second, first)
                };
                let pairs = row.chunks_exact(2);
                if let Some(&last) = pairs.remainder().first() {
                    to_even[self.w / 2] = last;
                }
                for ((pair, e), o) in pairs.zip(to_even.iter_mut()).zip(to_odd.iter_mut()) {
                    *e = pair[0];
                    *o = pair[1];
                }
                continue;
            }
            for (first, start) in self.row_runs(iy) {
                let run = row[first..].iter().step_by(s);
                for (dst, &v) in phases[start..].iter_mut().zip(run) {
                    *dst = v;
                }
            }
        }
    }

    /// The inverse of [`Self::split_into`] (padding dropped).
    #[inline(always)]
    pub(super) fn merge<T: Float>(&self, phases: &[T], plane: &mut [T]) {
        for (iy, row) in plane.chunks_exact_mut(self.w).enumerate() {
            if self.stride == 1 {
                let start = self.phase_index(iy, 0);
                row.copy_from_slice(&phases[start..start + self.w]);
                continue;
            }
            for (first, start) in self.row_runs(iy) {
                let run = row[first..].iter_mut().step_by(self.stride);
                for (dst, &v) in run.zip(&phases[start..]) {
                    *dst = v;
                }
            }
        }
    }

    /// An output plane in the wide layout, scratch columns zero.
    #[inline(always)]
    pub(super) fn widen<T: Float>(&self, plane: &[T], wide: &mut [T]) {
        for (row, out) in wide
            .chunks_exact_mut(self.phase_cols)
            .zip(plane.chunks_exact(self.out_w))
        {
            row[..self.out_w].copy_from_slice(out);
        }
    }
}
