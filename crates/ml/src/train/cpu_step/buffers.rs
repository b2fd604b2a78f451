//! The CPU step's memory: the sizes it works with, the activations and
//! gradients it keeps in buffers sized once per shape and reused by every
//! step, the adapter's weights as plain vectors, and the frozen weights
//! borrowed as slices.
//!
//! Apart from the arithmetic so that what a step allocates (and when) can
//! be read in one place.

use candle_core::{Layout, Storage};

use super::HEAD_CHUNK;
use crate::error::{MlError, Result};
use crate::lora::Target;
use crate::rng::SplitMix64;

/// The sizes a step works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dims {
    pub(super) batch: usize,
    pub(super) seq: usize,
    pub(super) tokens: usize,
    pub(super) hidden: usize,
    pub(super) q_width: usize,
    pub(super) kv_width: usize,
    pub(super) inter: usize,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) vocab: usize,
    pub(super) rank: usize,
}

impl Dims {
    /// `(in, out)` of a projection.
    pub(super) fn shape(&self, target: Target) -> (usize, usize) {
        let (h, q, kv, i) = (self.hidden, self.q_width, self.kv_width, self.inter);
        match target {
            Target::QProj => (h, q),
            Target::KProj | Target::VProj => (h, kv),
            Target::OProj => (q, h),
            Target::GateProj | Target::UpProj => (h, i),
            Target::DownProj => (i, h),
        }
    }
}

/// What the backward pass reads of one decoder block.
pub(super) struct LayerActivations {
    /// The block's input (residual stream).
    pub(super) x: Vec<f32>,
    pub(super) h1: Vec<f32>,
    pub(super) rstd1: Vec<f32>,
    /// Queries and keys after the rotation; values.
    pub(super) q: Vec<f32>,
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
    /// Attention probabilities `(batch, heads, seq, seq)`.
    pub(super) probs: Vec<f32>,
    /// Attention output before `o_proj`.
    pub(super) att: Vec<f32>,
    pub(super) x_mid: Vec<f32>,
    pub(super) h2: Vec<f32>,
    pub(super) rstd2: Vec<f32>,
    /// MLP pre-activations.
    pub(super) gate: Vec<f32>,
    pub(super) up: Vec<f32>,
    /// Each adapted projection's `dropout(x)·Aᵀ`.
    pub(super) lows: [Vec<f32>; 7],
    /// Where each projection's dropout mask starts in the generator.
    pub(super) masks: [Option<SplitMix64>; 7],
}

/// Buffers reused from step to step.
pub(super) struct Buffers {
    pub(super) dims: Dims,
    pub(super) layers: Vec<LayerActivations>,
    /// The residual stream; after the forward pass, the last block's output.
    pub(super) resid: Vec<f32>,
    pub(super) final_h: Vec<f32>,
    pub(super) final_rstd: Vec<f32>,
    /// `silu(gate) * up`, recomputed where needed.
    pub(super) act: Vec<f32>,
    pub(super) lora: LoraScratch,
    /// Attention's per-task outputs and gradients, before they are
    /// scattered into their heads' columns.
    pub(super) tasks_q: Vec<f32>,
    pub(super) tasks_k: Vec<f32>,
    pub(super) tasks_v: Vec<f32>,
    pub(super) tasks_ds: Vec<f32>,
    pub(super) logits: Vec<f32>,
    pub(super) d_resid: Vec<f32>,
    pub(super) d_h: Vec<f32>,
    pub(super) d_att: Vec<f32>,
    pub(super) d_q: Vec<f32>,
    pub(super) d_k: Vec<f32>,
    pub(super) d_v: Vec<f32>,
    pub(super) d_gate: Vec<f32>,
    pub(super) d_up: Vec<f32>,
}

/// Scratch space of the adapter's products.
pub(super) struct LoraScratch {
    /// `x` with a dropout mask applied.
    pub(super) dropped: Vec<f32>,
    /// Gradient of `dropout(x)·Aᵀ`.
    pub(super) d_low: Vec<f32>,
    /// The adapter's input gradient before its mask.
    pub(super) d_tmp: Vec<f32>,
}

impl Buffers {
    pub(super) fn new(d: Dims, layers: usize, adapted: &[[bool; 7]]) -> Self {
        let t = d.tokens;
        let widest = d.hidden.max(d.q_width).max(d.inter);
        let zeros = |n: usize| vec![0f32; n];
        Buffers {
            dims: d,
            layers: (0..layers)
                .map(|l| LayerActivations {
                    x: zeros(t * d.hidden),
                    h1: zeros(t * d.hidden),
                    rstd1: zeros(t),
                    q: zeros(t * d.q_width),
                    k: zeros(t * d.kv_width),
                    v: zeros(t * d.kv_width),
                    probs: zeros(d.batch * d.heads * d.seq * d.seq),
                    att: zeros(t * d.q_width),
                    x_mid: zeros(t * d.hidden),
                    h2: zeros(t * d.hidden),
                    rstd2: zeros(t),
                    gate: zeros(t * d.inter),
                    up: zeros(t * d.inter),
                    lows: std::array::from_fn(|i| {
                        if adapted[l][i] {
                            zeros(t * d.rank)
                        } else {
                            Vec::new()
                        }
                    }),
                    masks: [None; 7],
                })
                .collect(),
            resid: zeros(t * d.hidden),
            final_h: zeros(t * d.hidden),
            final_rstd: zeros(t),
            act: zeros(t * d.inter),
            lora: LoraScratch {
                dropped: zeros(t * widest),
                d_low: zeros(t * d.rank),
                d_tmp: zeros(t * widest),
            },
            tasks_q: zeros(t * d.q_width),
            tasks_k: zeros(t * d.kv_width),
            tasks_v: zeros(t * d.kv_width),
            tasks_ds: zeros(d.batch * d.kv_heads * d.seq * d.seq),
            logits: zeros(HEAD_CHUNK.min(t) * d.vocab),
            d_resid: zeros(t * d.hidden),
            d_h: zeros(t * d.hidden),
            d_att: zeros(t * d.q_width),
            d_q: zeros(t * d.q_width),
            d_k: zeros(t * d.kv_width),
            d_v: zeros(t * d.kv_width),
            d_gate: zeros(t * d.inter),
            d_up: zeros(t * d.inter),
        }
    }
}

/// One adapted projection's weights and gradients, as plain vectors.
pub(super) struct Pair {
    /// `(rank, in)`.
    pub(super) a: Vec<f32>,
    /// `(out, rank)`.
    pub(super) b: Vec<f32>,
    pub(super) grad_a: Vec<f32>,
    pub(super) grad_b: Vec<f32>,
}

/// The frozen weights as slices, borrowed from the model's tensors.
pub(super) struct Weights<'a> {
    pub(super) embed: &'a [f32],
    pub(super) head: &'a [f32],
    pub(super) norm: &'a [f32],
    pub(super) cos: &'a [f32],
    pub(super) sin: &'a [f32],
    pub(super) blocks: Vec<BlockWeights<'a>>,
}

pub(super) struct BlockWeights<'a> {
    pub(super) input_norm: &'a [f32],
    pub(super) post_norm: &'a [f32],
    pub(super) weights: [&'a [f32]; 7],
    pub(super) biases: [Option<&'a [f32]>; 7],
}

pub(super) fn f32_slice<'g>(storage: &'g Storage, layout: &Layout) -> Result<&'g [f32]> {
    let Storage::Cpu(cpu) = storage else {
        return Err(MlError::InvalidRequest(
            "the CPU training step needs CPU tensors".into(),
        ));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(MlError::InvalidRequest(
            "the CPU training step needs contiguous tensors".into(),
        ));
    };
    Ok(&cpu.as_slice::<f32>()?[start..end])
}

/// The next borrowed weight.
pub(super) fn next<'g>(slices: &mut impl Iterator<Item = Result<&'g [f32]>>) -> Result<&'g [f32]> {
    slices
        .next()
        .unwrap_or_else(|| Err(MlError::InvalidRequest("a model tensor is missing".into())))
}
