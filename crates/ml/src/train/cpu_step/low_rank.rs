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
//!
//! Within a task, tokens go [`TOKENS_AT_ONCE`] at a time through each row
//! of the partial, so it crosses L2 once per group, not once per token:
//! at 1024 tokens and rank 8, `out_side` 1.13 -> 0.61 ms at width 1536 and
//! 0.50 -> 0.19 ms at 576, `in_side` 0.60 -> 0.45 ms at 1536 (2 threads).

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
                    let groups = d_low
                        .chunks_mut(TOKENS_AT_ONCE * rank)
                        .zip(d_out.chunks(TOKENS_AT_ONCE * fan_out))
                        .zip(low.chunks(TOKENS_AT_ONCE * rank));
                    for ((d_low, d), low) in groups {
                        let shape = (fan_out, rank);
                        match d.len() / fan_out.max(1) {
                            4 => out_side_tokens::<4>(d, low, &b_t, s, shape, d_low, &mut g_t),
                            3 => out_side_tokens::<3>(d, low, &b_t, s, shape, d_low, &mut g_t),
                            2 => out_side_tokens::<2>(d, low, &b_t, s, shape, d_low, &mut g_t),
                            _ => out_side_tokens::<1>(d, low, &b_t, s, shape, d_low, &mut g_t),
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

/// Tokens whose rows meet each of `B`'s columns (or `A`'s gradient's
/// rows) together: each pass over a `rank`-row partial then serves this
/// many tokens, so the partial (48 KiB at SmolLM2's widest, a core's L1
/// cache) goes through L2 once per group instead of once per token. Token
/// by token these products ran at ~22 GFLOP/s a core, bound by those
/// round trips.
const TOKENS_AT_ONCE: usize = 4;

/// Values per register-sized run in the loops below.
const RUN: usize = 16;

/// [`out_side`] for `N` tokens: `d` `(N, fan_out)`, `low` and `d_low`
/// `(N, rank)`; `b_t` (`Bᵀ`) and `g_t` (the partial `grad_bᵀ`) are
/// `(rank, fan_out)`. One pass over each of their rows computes the `N`
/// tokens' dot products with it and adds their share of its gradient.
#[inline(always)]
fn out_side_tokens<const N: usize>(
    d: &[f32],
    low: &[f32],
    b_t: &[f32],
    s: f32,
    (fan_out, rank): (usize, usize),
    d_low: &mut [f32],
    g_t: &mut [f32],
) {
    let rows: [&[f32]; N] = std::array::from_fn(|k| &d[k * fan_out..][..fan_out]);
    let runs = rows.map(|row| row.as_chunks::<RUN>().0);
    for (r, (b_r, g_r)) in b_t
        .chunks_exact(fan_out)
        .zip(g_t.chunks_exact_mut(fan_out))
        .enumerate()
    {
        let weight: [f32; N] = std::array::from_fn(|k| s * low[k * rank + r]);
        let mut sums = [[0f32; RUN]; N];
        let (b_runs, g_runs) = (b_r.as_chunks::<RUN>().0, g_r.as_chunks_mut::<RUN>().0);
        for (i, (b, g)) in b_runs.iter().zip(g_runs.iter_mut()).enumerate() {
            // Copies, so the compiler keeps them in registers: through
            // `g` itself it loaded and stored each lane on its own (it
            // cannot tell `g` from the rows).
            let (b, mut sum) = (*b, *g);
            for k in 0..N {
                let x = runs[k][i];
                for j in 0..RUN {
                    sums[k][j] = x[j].mul_add(b[j], sums[k][j]);
                    sum[j] = weight[k].mul_add(x[j], sum[j]);
                }
            }
            *g = sum;
        }
        let done = b_runs.len() * RUN;
        for k in 0..N {
            let rest = &rows[k][done..];
            let tail: f32 = rest.iter().zip(&b_r[done..]).map(|(x, b)| x * b).sum();
            for (g, &x) in g_r[done..].iter_mut().zip(rest) {
                *g = weight[k].mul_add(x, *g);
            }
            d_low[k * rank + r] = s * (sums[k].iter().sum::<f32>() + tail);
        }
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
                    let groups = d_low
                        .chunks(TOKENS_AT_ONCE * rank)
                        .zip(input.chunks(TOKENS_AT_ONCE * fan_in));
                    for (d_low, x) in groups {
                        let shape = (fan_in, rank);
                        match x.len() / fan_in.max(1) {
                            4 => in_side_tokens::<4>(d_low, x, shape, &mut g),
                            3 => in_side_tokens::<3>(d_low, x, shape, &mut g),
                            2 => in_side_tokens::<2>(d_low, x, shape, &mut g),
                            _ => in_side_tokens::<1>(d_low, x, shape, &mut g),
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

/// [`in_side`] for `N` tokens: `g` `(rank, fan_in)` `+= d_lowᵀ·x` for
/// `d_low` `(N, rank)` and `x` `(N, fan_in)`, each row of `g` read and
/// written once for the `N` tokens.
#[inline(always)]
fn in_side_tokens<const N: usize>(
    d_low: &[f32],
    x: &[f32],
    (fan_in, rank): (usize, usize),
    g: &mut [f32],
) {
    let rows: [&[f32]; N] = std::array::from_fn(|k| &x[k * fan_in..][..fan_in]);
    for (r, g_r) in g.chunks_exact_mut(fan_in).enumerate() {
        // Row by row: `g_r` stays in L1 for the `N` tokens. (Written as one
        // loop over runs and tokens the compiler chose gathers across the
        // tokens, 3x slower.)
        for (k, x) in rows.iter().enumerate() {
            let weight = d_low[k * rank + r];
            for (g, &x) in g_r.iter_mut().zip(*x) {
                *g = weight.mul_add(x, *g);
            }
        }
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
    /// uneven last one, every size of a last group of tokens), at the
    /// default rank and at the model's widths, and at widths that leave a
    /// partial register run.
    #[test]
    fn gradients_match_the_f64_products() {
        for (tokens, fan_out, fan_in, rank) in [
            (1, 16, 24, 1),
            (70, 576, 192, 8),
            (300, 1536, 576, 8),
            (129, 40, 56, 16),
            (67, 200, 72, 3),
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
