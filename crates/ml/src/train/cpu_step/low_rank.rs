//! The adapter's weight gradients: products with one side `rank` wide and
//! the other a whole batch of activations, each computed in one pass over
//! the activations.
//!
//! As `gemm` calls these three products took 0.22 s of a 3.1 s step
//! (SmolLM2-135M, rank 8 on all seven projections, 1024 tokens): a
//! transposed `(tokens, width)` operand is packed (read and written again)
//! before being multiplied, and `d_out` was read once for `B`'s gradient
//! and again for `d_low`. They are bound by memory, not arithmetic (a
//! rank-8 product does 8 multiply-adds per value read), so here every
//! activation row is read once while its products with all `rank` rows
//! happen in the cache: rayon tasks take a run of tokens each and sum into
//! a `(rank, width)` partial of their own, added at the end. The adapter's
//! whole backward went from 0.27 to 0.22 s a step.

use rayon::prelude::*;

use crate::fastmath;

/// Tokens per rayon task: enough rows to pay for a task's `(rank, width)`
/// partial, several tasks per thread at a batch of 1024 tokens.
const TOKENS_PER_TASK: usize = 64;

/// `d_low = s·d_out·B` `(tokens, rank)` and `grad_b = s·d_outᵀ·low`
/// `(fan_out, rank)`, reading `d_out` `(tokens, fan_out)` once; `b` is `B`
/// `(fan_out, rank)` and `low` `(tokens, rank)`.
pub(super) fn out_side(
    d_out: &[f32],
    low: &[f32],
    b: &[f32],
    s: f32,
    (fan_out, rank): (usize, usize),
    d_low: &mut [f32],
    grad_b: &mut [f32],
) {
    let b_t = transpose(b, fan_out, rank);
    let partial = d_low
        .par_chunks_mut(TOKENS_PER_TASK * rank)
        .zip(d_out.par_chunks(TOKENS_PER_TASK * fan_out))
        .zip(low.par_chunks(TOKENS_PER_TASK * rank))
        .map(|((d_low, d_out), low)| {
            let mut g_t = vec![0f32; rank * fan_out];
            fastmath::vectorized(
                #[inline(always)]
                || {
                    for ((d_low, d), low) in d_low
                        .chunks_exact_mut(rank)
                        .zip(d_out.chunks_exact(fan_out))
                        .zip(low.chunks_exact(rank))
                    {
                        for (((d_low, b_r), g_r), &l) in d_low
                            .iter_mut()
                            .zip(b_t.chunks_exact(fan_out))
                            .zip(g_t.chunks_exact_mut(fan_out))
                            .zip(low)
                        {
                            *d_low = s * fastmath::dot(d, b_r);
                            axpy(g_r, s * l, d);
                        }
                    }
                },
            );
            g_t
        })
        .reduce_with(add);
    match partial {
        Some(g_t) => transpose_into(&g_t, rank, fan_out, grad_b),
        None => grad_b.fill(0.0),
    }
}

/// `grad_a = d_lowᵀ·input` `(rank, fan_in)`, reading `input`
/// `(tokens, fan_in)` once; `d_low` is `(tokens, rank)`.
pub(super) fn in_side(
    d_low: &[f32],
    input: &[f32],
    (fan_in, rank): (usize, usize),
    grad_a: &mut [f32],
) {
    let partial = d_low
        .par_chunks(TOKENS_PER_TASK * rank)
        .zip(input.par_chunks(TOKENS_PER_TASK * fan_in))
        .map(|(d_low, input)| {
            let mut g = vec![0f32; rank * fan_in];
            fastmath::vectorized(
                #[inline(always)]
                || {
                    for (d_low, x) in d_low.chunks_exact(rank).zip(input.chunks_exact(fan_in)) {
                        for (g_r, &dl) in g.chunks_exact_mut(fan_in).zip(d_low) {
                            axpy(g_r, dl, x);
                        }
                    }
                },
            );
            g
        })
        .reduce_with(add);
    match partial {
        Some(g) => grad_a.copy_from_slice(&g),
        None => grad_a.fill(0.0),
    }
}

/// `y += a·x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Two partial sums as one.
fn add(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    a
}

/// `m` `(rows, cols)` transposed.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    transpose_into(m, rows, cols, &mut t);
    t
}

/// `m` `(rows, cols)` transposed into `out` `(cols, rows)`.
fn transpose_into(m: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    for (r, row) in m.chunks_exact(cols).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 0.5)
            .collect()
    }

    /// `Σ_t a[t, i]·b[t, j]` in f64: `aᵀ·b` for `a` `(tokens, n)`, `b`
    /// `(tokens, m)`.
    fn at_b(a: &[f32], b: &[f32], tokens: usize, n: usize, m: usize) -> Vec<f64> {
        let mut out = vec![0f64; n * m];
        for t in 0..tokens {
            for i in 0..n {
                for j in 0..m {
                    out[i * m + j] += f64::from(a[t * n + i]) * f64::from(b[t * m + j]);
                }
            }
        }
        out
    }

    fn assert_close(ours: &[f32], exact: &[f64], what: &str) {
        assert_eq!(ours.len(), exact.len(), "{what}");
        let scale = exact.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (&o, &e)) in ours.iter().zip(exact).enumerate() {
            assert!(
                (f64::from(o) - e).abs() <= 1e-5 * scale,
                "{what}[{i}]: {o} vs {e}"
            );
        }
    }

    /// Token counts around a task's run (one partial task, several, an
    /// uneven last one), at the default rank and at the model's widths.
    #[test]
    fn gradients_match_the_f64_products() {
        for (tokens, fan_out, fan_in, rank) in [
            (1, 16, 24, 1),
            (70, 576, 192, 8),
            (300, 1536, 576, 8),
            (129, 40, 56, 16),
        ] {
            let (d_out, low, b) = (
                values(tokens * fan_out, 1),
                values(tokens * rank, 2),
                values(fan_out * rank, 3),
            );
            let s = 2.0;
            let (mut d_low, mut grad_b) = (vec![9f32; tokens * rank], vec![9f32; fan_out * rank]);
            out_side(
                &d_out,
                &low,
                &b,
                s,
                (fan_out, rank),
                &mut d_low,
                &mut grad_b,
            );
            let mut exact_d_low = vec![0f64; tokens * rank];
            for t in 0..tokens {
                for r in 0..rank {
                    exact_d_low[t * rank + r] = (0..fan_out)
                        .map(|o| f64::from(d_out[t * fan_out + o]) * f64::from(b[o * rank + r]))
                        .sum::<f64>()
                        * f64::from(s);
                }
            }
            assert_close(&d_low, &exact_d_low, "d_low");
            let exact_grad_b: Vec<f64> = at_b(&d_out, &low, tokens, fan_out, rank)
                .into_iter()
                .map(|v| v * f64::from(s))
                .collect();
            assert_close(&grad_b, &exact_grad_b, "grad_b");

            let input = values(tokens * fan_in, 4);
            let mut grad_a = vec![9f32; rank * fan_in];
            in_side(&d_low, &input, (fan_in, rank), &mut grad_a);
            assert_close(
                &grad_a,
                &at_b(&d_low, &input, tokens, rank, fan_in),
                "grad_a",
            );
        }
    }

    #[test]
    fn no_tokens_give_zero_gradients() {
        let (mut grad_b, mut grad_a) = (vec![9f32; 8], vec![9f32; 12]);
        out_side(&[], &[], &[1.0; 8], 1.0, (4, 2), &mut [], &mut grad_b);
        in_side(&[], &[], (6, 2), &mut grad_a);
        assert!(grad_b.iter().chain(&grad_a).all(|&v| v == 0.0));
    }
}
