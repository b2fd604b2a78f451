//! The row-wise kernels: softmax cross-entropy, RMSNorm, RoPE and SwiGLU,
//! each with its backward, split over rayon's threads a run of rows (or
//! elements) at a time.
//!
//! Apart because they are plain functions of slices, with no state of the
//! step's: each can be read (and checked) on its own.

use rayon::prelude::*;

use super::buffers::{Dims, Weights};
use crate::fastmath;

/// Rows per rayon task in the row-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// The cross-entropy of one row of logits against `target`; the row
/// becomes the loss's gradient, `(softmax - onehot) * per_token`.
#[inline(always)]
pub(super) fn softmax_cross_entropy(row: &mut [f32], target: usize, per_token: f32) -> f64 {
    let max = fastmath::max(row);
    let target_logit = row[target];
    let sum = fastmath::exp_shifted_sum(row, max);
    let inverse = (1.0 / sum) as f32 * per_token;
    for v in row.iter_mut() {
        *v *= inverse;
    }
    row[target] -= per_token;
    sum.ln() + f64::from(max) - f64::from(target_logit)
}

/// `out = x / rms(x) * weight` per row, keeping `1 / rms(x)` in `rstd`.
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32], rstd: &mut [f32]) {
    let width = weight.len();
    out.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .zip(rstd.par_iter_mut())
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((out, x), rstd)| {
            fastmath::vectorized(
                #[inline(always)]
                || {
                    let mean_square = sum_in_lanes(x, x, weight, |v, _, _| v * v) / width as f64;
                    let inverse = 1.0 / (mean_square + eps).sqrt();
                    *rstd = inverse as f32;
                    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                        *o = (f64::from(v) * inverse * f64::from(w)) as f32;
                    }
                },
            )
        });
}

/// `d_x += ` the gradient through [`rms_norm`] of `d_out`.
pub(super) fn rms_norm_backward(
    x: &[f32],
    rstd: &[f32],
    weight: &[f32],
    d_out: &[f32],
    d_x: &mut [f32],
) {
    let width = weight.len();
    d_x.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .zip(d_out.par_chunks(width))
        .zip(rstd.par_iter())
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(((d_x, x), d_out), &r)| {
            fastmath::vectorized(
                #[inline(always)]
                || {
                    let r = f64::from(r);
                    let dot = sum_in_lanes(x, d_out, weight, |x, g, w| x * g * w);
                    let c = dot * r * r * r / width as f64;
                    for (((dx, &x), &g), &w) in d_x.iter_mut().zip(x).zip(d_out).zip(weight) {
                        *dx += (r * f64::from(g) * f64::from(w) - c * f64::from(x)) as f32;
                    }
                },
            )
        });
}

/// `Σ term(a[i], b[i], c[i])` in f64 over the shortest of the three, in
/// independent lanes: a single running sum (what `Iterator::sum` does,
/// since floating-point addition is not associative) waits on each add's
/// latency in turn, and made the norms 3-4% of a training step.
#[inline(always)]
fn sum_in_lanes(a: &[f32], b: &[f32], c: &[f32], term: impl Fn(f64, f64, f64) -> f64) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0f64; LANES];
    let (a_runs, b_runs, c_runs) = (
        a.as_chunks::<LANES>().0,
        b.as_chunks::<LANES>().0,
        c.as_chunks::<LANES>().0,
    );
    for ((a, b), c) in a_runs.iter().zip(b_runs).zip(c_runs) {
        for l in 0..LANES {
            lanes[l] += term(f64::from(a[l]), f64::from(b[l]), f64::from(c[l]));
        }
    }
    let done = a_runs.len().min(b_runs.len()).min(c_runs.len()) * LANES;
    let tail: f64 = a[done..]
        .iter()
        .zip(&b[done..])
        .zip(&c[done..])
        .map(|((&a, &b), &c)| term(f64::from(a), f64::from(b), f64::from(c)))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

/// Rotates each head of each row (rotate-half convention) by its
/// position's angle; `inverse` rotates back (the backward pass).
pub(super) fn rope(x: &mut [f32], width: usize, d: Dims, weights: &Weights<'_>, inverse: bool) {
    let half = d.head_dim / 2;
    let (cos, sin) = (weights.cos, weights.sin);
    x.par_chunks_mut(width)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(row, values)| {
            let position = row % d.seq;
            let cos = &cos[position * half..(position + 1) * half];
            let sin = &sin[position * half..(position + 1) * half];
            let sign = if inverse { -1.0 } else { 1.0 };
            fastmath::vectorized(
                #[inline(always)]
                || {
                    for head in values.chunks_mut(d.head_dim) {
                        let (first, second) = head.split_at_mut(half);
                        for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
                            let s = sign * s;
                            let (x1, x2) = (*a, *b);
                            *a = x1 * c - x2 * s;
                            *b = x2 * c + x1 * s;
                        }
                    }
                },
            )
        });
}

/// Elements per rayon task in the element-wise kernels.
const ELEMENTS_PER_TASK: usize = 16_384;

/// `out = silu(gate) * up`.
pub(super) fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(gate.par_chunks(ELEMENTS_PER_TASK))
        .zip(up.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|((out, gate), up)| {
            fastmath::vectorized(
                #[inline(always)]
                || {
                    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                        *o = g * fastmath::sigmoid(g) * u;
                    }
                },
            )
        });
}

/// On entry `d_up` holds the gradient of `silu(gate) * up`; on return
/// `d_gate` and `d_up` hold those of `gate` and `up`.
pub(super) fn swiglu_backward(gate: &[f32], up: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    d_gate
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(d_up.par_chunks_mut(ELEMENTS_PER_TASK))
        .zip(gate.par_chunks(ELEMENTS_PER_TASK))
        .zip(up.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(((d_gate, d_up), gate), up)| {
            fastmath::vectorized(
                #[inline(always)]
                || {
                    for (((dg, du), &g), &u) in
                        d_gate.iter_mut().zip(d_up.iter_mut()).zip(gate).zip(up)
                    {
                        let s = fastmath::sigmoid(g);
                        let d_act = *du;
                        *du = d_act * g * s;
                        *dg = d_act * u * s * (1.0 + g * (1.0 - s));
                    }
                },
            )
        });
}
