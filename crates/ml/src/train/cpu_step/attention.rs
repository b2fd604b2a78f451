//! Causal softmax attention with grouped key/value heads, forward and
//! backward, one task per (sequence, key/value head) on rayon's threads,
//! in query blocks so the products skip most of the masked triangle.
//!
//! Apart because it is the one part of the block whose memory layout
//! (task-major scratch scattered back into heads' columns) differs from
//! the rest.

use rayon::prelude::*;

use super::buffers::Dims;
use crate::error::Result;
use crate::fastmath;
use crate::kernels::gemm::{Threads, View, product};

/// A head's rows `rows` (a `(len, head_dim)` block) inside a
/// `(tokens, width)` buffer.
fn head_rows(
    data: &[f32],
    d: Dims,
    (batch, head): (usize, usize),
    rows: std::ops::Range<usize>,
    width: usize,
) -> View<'_> {
    View::rows_apart(
        &data[(batch * d.seq + rows.start) * width + head * d.head_dim..],
        rows.len(),
        d.head_dim,
        width,
    )
}

/// Query rows per block of the causal attention: a block of queries
/// `r0..r1` only looks at keys `0..r1`, so the products skip most of the
/// masked upper triangle.
pub(super) const ATTENTION_BLOCK: usize = 64;

/// The query blocks of a sequence.
pub(super) fn query_blocks(seq: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..seq)
        .step_by(ATTENTION_BLOCK)
        .map(move |r0| r0..(r0 + ATTENTION_BLOCK).min(seq))
}

/// `(rows.len(), cols)` block at `rows.start` of a row-major `(seq, seq)`
/// matrix.
fn square_rows<'a>(
    square: &'a [f32],
    seq: usize,
    rows: &std::ops::Range<usize>,
    cols: usize,
) -> View<'a> {
    View::rows_apart(&square[rows.start * seq..], rows.len(), cols, seq)
}

/// Copies task-major `(seq, head_dim)` blocks (task `(b, g)`, then its
/// `per_task` heads) into their columns of a `(tokens, width)` buffer, a
/// run of token rows per rayon task (a layer makes 4 such copies, 0.9% of
/// a step's profile when they ran on one thread with the other idle).
fn scatter_heads(dst: &mut [f32], tasks: &[f32], d: Dims, per_task: usize, width: usize) {
    let block = d.seq * d.head_dim;
    let groups = width / d.head_dim / per_task;
    dst.par_chunks_mut(width)
        .enumerate()
        .with_min_len(SCATTER_ROWS_PER_TASK)
        .for_each(|(token, row)| {
            let (b, s) = (token / d.seq, token % d.seq);
            for (head, out) in row.chunks_exact_mut(d.head_dim).enumerate() {
                let (g, j) = (head / per_task, head % per_task);
                let index = (b * groups + g) * per_task + j;
                out.copy_from_slice(&tasks[index * block + s * d.head_dim..][..d.head_dim]);
            }
        });
}

/// Token rows per rayon task of [`scatter_heads`].
const SCATTER_ROWS_PER_TASK: usize = 32;

/// Causal softmax attention with grouped key/value heads, one task per
/// (sequence, key/value head); `tasks` (tokens x q_width) is scratch.
pub(super) fn attention_forward(
    d: Dims,
    (q, k, v): (&[f32], &[f32], &[f32]),
    probs: &mut [f32],
    tasks: &mut [f32],
    att: &mut [f32],
) -> Result<()> {
    let group = d.heads / d.kv_heads;
    let square = d.seq * d.seq;
    let block = d.seq * d.head_dim;
    let scale = 1.0 / (d.head_dim as f32).sqrt();
    probs
        .par_chunks_mut(group * square)
        .zip(tasks.par_chunks_mut(group * block))
        .enumerate()
        .try_for_each(|(task, (probs, out))| -> Result<()> {
            let (b, g) = (task / d.kv_heads, task % d.kv_heads);
            for (j, (p, out)) in probs
                .chunks_mut(square)
                .zip(out.chunks_mut(block))
                .enumerate()
            {
                let head = g * group + j;
                for rows in query_blocks(d.seq) {
                    let seen = rows.end;
                    product(
                        &mut p[rows.start * d.seq..],
                        d.seq,
                        head_rows(q, d, (b, head), rows.clone(), d.q_width),
                        head_rows(k, d, (b, g), 0..seen, d.kv_width).t(),
                        scale,
                        false,
                        Threads::One,
                    )?;
                    for i in rows.clone() {
                        let row = &mut p[i * d.seq..i * d.seq + seen];
                        fastmath::vectorized(
                            #[inline(always)]
                            || {
                                let (now, future) = row.split_at_mut(i + 1);
                                future.fill(0.0);
                                let max = fastmath::max(now);
                                let inverse = (1.0 / fastmath::exp_shifted_sum(now, max)) as f32;
                                now.iter_mut().for_each(|v| *v *= inverse);
                            },
                        );
                    }
                    product(
                        &mut out[rows.start * d.head_dim..],
                        d.head_dim,
                        square_rows(p, d.seq, &rows, seen),
                        head_rows(v, d, (b, g), 0..seen, d.kv_width),
                        1.0,
                        false,
                        Threads::One,
                    )?;
                }
            }
            Ok(())
        })?;
    scatter_heads(att, tasks, d, group, d.q_width);
    Ok(())
}

/// Scratch of [`attention_backward`]: task-major gradients and one
/// `(seq, seq)` block per task.
pub(super) struct AttentionScratch<'a> {
    pub(super) dq: &'a mut [f32],
    pub(super) dk: &'a mut [f32],
    pub(super) dv: &'a mut [f32],
    pub(super) ds: &'a mut [f32],
}

/// Gradients of queries, keys and values from that of the attention
/// output.
pub(super) fn attention_backward(
    d: Dims,
    (q, k, v, probs): (&[f32], &[f32], &[f32], &[f32]),
    d_att: &[f32],
    scratch: AttentionScratch<'_>,
    (d_q, d_k, d_v): (&mut [f32], &mut [f32], &mut [f32]),
) -> Result<()> {
    let group = d.heads / d.kv_heads;
    let square = d.seq * d.seq;
    let block = d.seq * d.head_dim;
    let scale = 1.0 / (d.head_dim as f32).sqrt();
    scratch
        .dq
        .par_chunks_mut(group * block)
        .zip(scratch.dk.par_chunks_mut(block))
        .zip(scratch.dv.par_chunks_mut(block))
        .zip(scratch.ds.par_chunks_mut(square))
        .enumerate()
        .try_for_each(|(task, (((dq, dk), dv), ds))| -> Result<()> {
            let (b, g) = (task / d.kv_heads, task % d.kv_heads);
            dk.fill(0.0);
            dv.fill(0.0);
            for (j, dq) in dq.chunks_mut(block).enumerate() {
                let head = g * group + j;
                let at = (b * d.heads + head) * square;
                let p = &probs[at..at + square];
                for rows in query_blocks(d.seq) {
                    let seen = rows.end;
                    let d_out = head_rows(d_att, d, (b, head), rows.clone(), d.q_width);
                    product(
                        &mut ds[rows.start * d.seq..],
                        d.seq,
                        d_out,
                        head_rows(v, d, (b, g), 0..seen, d.kv_width).t(),
                        1.0,
                        false,
                        Threads::One,
                    )?;
                    for i in rows.clone() {
                        let ds = &mut ds[i * d.seq..i * d.seq + seen];
                        let p = &p[i * d.seq..i * d.seq + seen];
                        fastmath::vectorized(
                            #[inline(always)]
                            || {
                                let dot = fastmath::dot(ds, p);
                                for (g, &p) in ds.iter_mut().zip(p) {
                                    *g = p * (*g - dot);
                                }
                            },
                        );
                    }
                    let ds_rows = square_rows(ds, d.seq, &rows, seen);
                    product(
                        &mut dq[rows.start * d.head_dim..],
                        d.head_dim,
                        ds_rows,
                        head_rows(k, d, (b, g), 0..seen, d.kv_width),
                        scale,
                        false,
                        Threads::One,
                    )?;
                    product(
                        dk,
                        d.head_dim,
                        ds_rows.t(),
                        head_rows(q, d, (b, head), rows.clone(), d.q_width),
                        scale,
                        true,
                        Threads::One,
                    )?;
                    product(
                        dv,
                        d.head_dim,
                        square_rows(p, d.seq, &rows, seen).t(),
                        d_out,
                        1.0,
                        true,
                        Threads::One,
                    )?;
                }
            }
            Ok(())
        })?;
    scatter_heads(d_q, scratch.dq, d, group, d.q_width);
    scatter_heads(d_k, scratch.dk, d, 1, d.kv_width);
    scatter_heads(d_v, scratch.dv, d, 1, d.kv_width);
    Ok(())
}
