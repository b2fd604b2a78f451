//! The linear layers of a block: a frozen projection (`x·Wᵀ + b`) with its
//! LoRA adapter (`s·(dropout(x)·Aᵀ)·Bᵀ`), forward and backward. Frozen
//! weights only ever get the input's gradient; the adapter's get theirs.
//!
//! Apart from the block so that the block reads as the order of its layers
//! and this file as what one adapted layer computes.

use super::Step;
use super::buffers::{LoraScratch, Pair};
use super::low_rank;
use crate::error::Result;
use crate::kernels::gemm::{Threads, View, product};
use crate::lora::{Target, mask_rows};
use crate::rng::SplitMix64;

impl Step<'_, '_> {
    /// `out (+)= x·Wᵀ (+ b) + s·(dropout(x)·Aᵀ)·Bᵀ`: projection `target` of
    /// `layer` with its adapter, when it has one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn project(
        &self,
        layer: usize,
        target: Target,
        pair: Option<&Pair>,
        x: &[f32],
        out: &mut [f32],
        accumulate: bool,
        (low, mask): (&mut [f32], &mut Option<SplitMix64>),
        dropped: &mut [f32],
    ) -> Result<()> {
        self.frozen_forward(layer, target, x, out, accumulate)?;
        self.lora_forward(pair, target, x, out, low, mask, dropped)
    }

    /// The adapter's gradients from `d_out`; when `d_in` is given, also
    /// `d_in (+)=` the input's gradient through the frozen weight and the
    /// adapter.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn project_backward(
        &self,
        layer: usize,
        target: Target,
        pair: Option<&mut Pair>,
        x: &[f32],
        (low, mask): (&[f32], Option<SplitMix64>),
        d_out: &[f32],
        d_in: Option<(&mut [f32], bool)>,
        scratch: &mut LoraScratch,
    ) -> Result<()> {
        let d_in = match d_in {
            Some((d_in, accumulate)) => {
                self.frozen_backward(layer, target, d_out, d_in, accumulate)?;
                Some(d_in)
            }
            None => None,
        };
        self.lora_backward(pair, target, x, low, mask, d_out, d_in, scratch)
    }

    /// `out (+)= x·Wᵀ (+ b)` for the frozen projection `target` of `layer`.
    fn frozen_forward(
        &self,
        layer: usize,
        target: Target,
        x: &[f32],
        out: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        let (fan_in, fan_out) = self.dims.shape(target);
        let block = &self.weights.blocks[layer];
        let mut accumulate = accumulate;
        if let Some(bias) = block.biases[target.index()] {
            for row in out.chunks_mut(fan_out) {
                if accumulate {
                    row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                } else {
                    row.copy_from_slice(bias);
                }
            }
            accumulate = true;
        }
        product(
            out,
            fan_out,
            View::new(x, self.dims.tokens, fan_in),
            View::new(block.weights[target.index()], fan_out, fan_in).t(),
            1.0,
            accumulate,
            Threads::All,
        )
    }

    /// `d_in (+)= d_out·W` through the frozen projection `target`.
    fn frozen_backward(
        &self,
        layer: usize,
        target: Target,
        d_out: &[f32],
        d_in: &mut [f32],
        accumulate: bool,
    ) -> Result<()> {
        let (fan_in, fan_out) = self.dims.shape(target);
        product(
            d_in,
            fan_in,
            View::new(d_out, self.dims.tokens, fan_out),
            View::new(
                self.weights.blocks[layer].weights[target.index()],
                fan_out,
                fan_in,
            ),
            1.0,
            accumulate,
            Threads::All,
        )
    }

    /// `out += s·(dropout(x)·Aᵀ)·Bᵀ`, keeping `dropout(x)·Aᵀ` in `low` and
    /// the mask's start in `mask`.
    #[allow(clippy::too_many_arguments)]
    fn lora_forward(
        &self,
        pair: Option<&Pair>,
        target: Target,
        x: &[f32],
        out: &mut [f32],
        low: &mut [f32],
        mask: &mut Option<SplitMix64>,
        dropped: &mut [f32],
    ) -> Result<()> {
        let Some(pair) = pair else {
            return Ok(());
        };
        let d = self.dims;
        let (fan_in, fan_out) = d.shape(target);
        let input: &[f32] = match self.dropout {
            Some(dropout) => {
                let start = dropout.claim(d.tokens * fan_in);
                *mask = Some(start);
                let dropped = &mut dropped[..d.tokens * fan_in];
                mask_rows(
                    dropout.probability(),
                    start,
                    fan_in,
                    dropped,
                    x,
                    |o, s, m| {
                        for ((o, s), m) in o.iter_mut().zip(s).zip(m) {
                            *o = s * m;
                        }
                    },
                );
                &*dropped
            }
            None => {
                *mask = None;
                x
            }
        };
        product(
            low,
            d.rank,
            View::new(input, d.tokens, fan_in),
            View::new(&pair.a, d.rank, fan_in).t(),
            1.0,
            false,
            Threads::All,
        )?;
        product(
            out,
            fan_out,
            View::new(low, d.tokens, d.rank),
            View::new(&pair.b, fan_out, d.rank).t(),
            self.lora_scale,
            true,
            Threads::All,
        )
    }

    /// Gradients of `A` and `B` from `d_out`, and `d_in += ` the adapter's
    /// share of the input gradient when `d_in` is given.
    #[allow(clippy::too_many_arguments)]
    fn lora_backward(
        &self,
        pair: Option<&mut Pair>,
        target: Target,
        x: &[f32],
        low: &[f32],
        mask: Option<SplitMix64>,
        d_out: &[f32],
        d_in: Option<&mut [f32]>,
        scratch: &mut LoraScratch,
    ) -> Result<()> {
        let Some(pair) = pair else {
            return Ok(());
        };
        let LoraScratch {
            dropped,
            d_low,
            d_tmp,
        } = scratch;
        let d = self.dims;
        let (fan_in, fan_out) = d.shape(target);
        let d_low = &mut d_low[..d.tokens * d.rank];
        low_rank::out_side(
            &d_out[..d.tokens * fan_out],
            &low[..d.tokens * d.rank],
            &pair.b,
            self.lora_scale,
            (fan_out, d.rank),
            d_low,
            &mut pair.grad_b,
        );
        let masked = match (self.dropout, mask) {
            (Some(dropout), Some(start)) => Some((dropout.probability(), start)),
            _ => None,
        };
        let input: &[f32] = match masked {
            Some((p, start)) => {
                let dropped = &mut dropped[..d.tokens * fan_in];
                mask_rows(p, start, fan_in, dropped, x, |o, s, m| {
                    for ((o, s), m) in o.iter_mut().zip(s).zip(m) {
                        *o = s * m;
                    }
                });
                &*dropped
            }
            None => x,
        };
        low_rank::in_side(
            d_low,
            &input[..d.tokens * fan_in],
            (fan_in, d.rank),
            &mut pair.grad_a,
        );
        let Some(d_in) = d_in else {
            return Ok(());
        };
        match masked {
            None => product(
                d_in,
                fan_in,
                View::new(d_low, d.tokens, d.rank),
                View::new(&pair.a, d.rank, fan_in),
                1.0,
                true,
                Threads::All,
            ),
            Some((p, start)) => {
                let d_tmp = &mut d_tmp[..d.tokens * fan_in];
                product(
                    d_tmp,
                    fan_in,
                    View::new(d_low, d.tokens, d.rank),
                    View::new(&pair.a, d.rank, fan_in),
                    1.0,
                    false,
                    Threads::All,
                )?;
                mask_rows(p, start, fan_in, d_in, d_tmp, |o, s, m| {
                    for ((o, s), m) in o.iter_mut().zip(s).zip(m) {
                        *o += s * m;
                    }
                });
                Ok(())
            }
        }
    }
}
