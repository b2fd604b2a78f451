//! One LoRA training step of the Llama model on the CPU, with its forward
//! and backward passes written out by hand.
//!
//! The general path (candle's autograd over [`Llama::forward`]) works on
//! every device, but on the CPU it spends most of a step outside the matrix
//! products: every op allocates (and the kernel zero-fills) a fresh tensor,
//! the gradient store keeps every intermediate's gradient until the
//! backward pass ends, and the `(tokens, vocab)` logits and their gradient
//! exist in full. Measured on SmolLM2-135M it ran at 0.37-0.43x the tokens/s
//! of PyTorch + PEFT in 1.4x its memory.
//!
//! Here a step is what LoRA needs and no more:
//! - the activations the backward pass reads live in buffers sized once per
//!   shape and reused by every step (no allocation, no zero-filling);
//! - every product goes straight to `gemm` ([`crate::kernels::gemm`]) on strided
//!   views (a head inside a `(tokens, heads*dim)` matrix, a transposed
//!   weight) and writes or accumulates into the buffer it belongs in;
//! - frozen weights only ever get the input's gradient;
//! - the output head and the cross-entropy run per chunk of tokens, forward
//!   and backward together, so only a `(chunk, vocab)` block of logits ever
//!   exists;
//! - attention runs per (sequence, key/value head) in cache, on rayon's
//!   threads, as do the row-wise kernels (RMSNorm, RoPE, SwiGLU, dropout).
//!
//! It computes the same function and gradients as the general path (checked
//! against it in `cpu_step_tests.rs`, dropout masks included, at shapes
//! that span several attention blocks and head chunks, and by finite
//! differences), so a run may use either and resumes the same way.

use candle_core::{DType, Layout, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{MlError, Result};
use crate::fastmath;
use crate::kernels::gemm::{Threads, View, product};
use crate::lora::{Dropout, LoraAdapter, Target, mask_rows};
use crate::models::llama::Llama;
use crate::rng::SplitMix64;

/// Tokens whose logits exist at once in the output head.
const HEAD_CHUNK: usize = 128;

/// Rows per rayon task in the row-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// Whether [`CpuStep`] can train `adapter` on `model`: CPU, f32 weights and
/// adapter, contiguous tensors. Otherwise the general path trains it.
pub fn supports(model: &Llama, adapter: &LoraAdapter) -> bool {
    if !model.device().is_cpu() {
        return false;
    }
    let frozen = model.frozen();
    let plain = |t: &Tensor| t.dtype() == DType::F32 && t.is_contiguous();
    let tensors_ok = [
        frozen.embed,
        frozen.head,
        frozen.norm,
        frozen.rope_cos,
        frozen.rope_sin,
    ]
    .into_iter()
    .chain(frozen.blocks.iter().flat_map(|b| {
        [b.input_norm, b.post_norm]
            .into_iter()
            .chain(b.weights)
            .chain(b.biases.into_iter().flatten())
    }))
    .all(plain);
    tensors_ok
        && adapter
            .named_vars()
            .iter()
            .all(|(_, var)| plain(var.as_tensor()))
}

/// The sizes a step works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: usize,
    seq: usize,
    tokens: usize,
    hidden: usize,
    q_width: usize,
    kv_width: usize,
    inter: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    rank: usize,
}

impl Dims {
    /// `(in, out)` of a projection.
    fn shape(&self, target: Target) -> (usize, usize) {
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
struct LayerActivations {
    /// The block's input (residual stream).
    x: Vec<f32>,
    h1: Vec<f32>,
    rstd1: Vec<f32>,
    /// Queries and keys after the rotation; values.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities `(batch, heads, seq, seq)`.
    probs: Vec<f32>,
    /// Attention output before `o_proj`.
    att: Vec<f32>,
    x_mid: Vec<f32>,
    h2: Vec<f32>,
    rstd2: Vec<f32>,
    /// MLP pre-activations.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Each adapted projection's `dropout(x)·Aᵀ`.
    lows: [Vec<f32>; 7],
    /// Where each projection's dropout mask starts in the generator.
    masks: [Option<SplitMix64>; 7],
}

/// Buffers reused from step to step.
struct Buffers {
    dims: Dims,
    layers: Vec<LayerActivations>,
    /// The residual stream; after the forward pass, the last block's output.
    resid: Vec<f32>,
    final_h: Vec<f32>,
    final_rstd: Vec<f32>,
    /// `silu(gate) * up`, recomputed where needed.
    act: Vec<f32>,
    lora: LoraScratch,
    /// Attention's per-task outputs and gradients, before they are
    /// scattered into their heads' columns.
    tasks_q: Vec<f32>,
    tasks_k: Vec<f32>,
    tasks_v: Vec<f32>,
    tasks_ds: Vec<f32>,
    logits: Vec<f32>,
    d_resid: Vec<f32>,
    d_h: Vec<f32>,
    d_att: Vec<f32>,
    d_q: Vec<f32>,
    d_k: Vec<f32>,
    d_v: Vec<f32>,
    d_gate: Vec<f32>,
    d_up: Vec<f32>,
}

/// Scratch space of the adapter's products.
struct LoraScratch {
    /// `x` with a dropout mask applied.
    dropped: Vec<f32>,
    /// Gradient of `dropout(x)·Aᵀ`.
    d_low: Vec<f32>,
    /// The adapter's input gradient before its mask.
    d_tmp: Vec<f32>,
}

impl Buffers {
    fn new(d: Dims, layers: usize, adapted: &[[bool; 7]]) -> Self {
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
struct Pair {
    /// `(rank, in)`.
    a: Vec<f32>,
    /// `(out, rank)`.
    b: Vec<f32>,
    grad_a: Vec<f32>,
    grad_b: Vec<f32>,
}

/// The frozen weights as slices, borrowed from the model's tensors.
struct Weights<'a> {
    embed: &'a [f32],
    head: &'a [f32],
    norm: &'a [f32],
    cos: &'a [f32],
    sin: &'a [f32],
    blocks: Vec<BlockWeights<'a>>,
}

struct BlockWeights<'a> {
    input_norm: &'a [f32],
    post_norm: &'a [f32],
    weights: [&'a [f32]; 7],
    biases: [Option<&'a [f32]>; 7],
}

fn f32_slice<'g>(storage: &'g Storage, layout: &Layout) -> Result<&'g [f32]> {
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
fn next<'g>(slices: &mut impl Iterator<Item = Result<&'g [f32]>>) -> Result<&'g [f32]> {
    slices
        .next()
        .unwrap_or_else(|| Err(MlError::InvalidRequest("a model tensor is missing".into())))
}

/// A LoRA training step on the CPU that keeps its buffers between calls.
pub struct CpuStep {
    buffers: Option<Buffers>,
}

impl Default for CpuStep {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuStep {
    /// A step with no buffers yet (they are sized by the first call).
    pub fn new() -> Self {
        CpuStep { buffers: None }
    }

    /// The loss on `inputs -> targets` (`(batch, seq)` token ids, row-major)
    /// times `scale`, and the gradients of that scaled loss for every
    /// adapter tensor, in [`LoraAdapter::named_vars`] order. `dropout`
    /// draws its masks exactly as the general path does.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grads(
        &mut self,
        model: &Llama,
        adapter: &LoraAdapter,
        inputs: &[u32],
        targets: &[u32],
        (batch, seq): (usize, usize),
        dropout: Option<&Dropout>,
        scale: f32,
    ) -> Result<(f32, Vec<Tensor>)> {
        if !supports(model, adapter) {
            return Err(MlError::InvalidRequest(
                "the CPU training step needs an f32 model and adapter on the CPU".into(),
            ));
        }
        let cfg = model.config();
        let rank = adapter.config().rank;
        let dims = Dims {
            batch,
            seq,
            tokens: batch * seq,
            hidden: cfg.hidden_size,
            q_width: cfg.num_attention_heads * cfg.head_dim(),
            kv_width: cfg.num_key_value_heads * cfg.head_dim(),
            inter: cfg.intermediate_size,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            vocab: cfg.vocab_size,
            rank,
        };
        if batch == 0 || seq == 0 || inputs.len() != dims.tokens || targets.len() != dims.tokens {
            return Err(MlError::InvalidRequest(format!(
                "a {batch}x{seq} batch needs {} inputs and targets, got {} and {}",
                dims.tokens,
                inputs.len(),
                targets.len()
            )));
        }
        if seq > model.max_sequence() {
            return Err(MlError::InvalidRequest(format!(
                "{seq} tokens do not fit this model's context of {} tokens",
                model.max_sequence()
            )));
        }
        if let Some(bad) = inputs
            .iter()
            .chain(targets)
            .find(|&&t| t as usize >= dims.vocab)
        {
            return Err(MlError::InvalidRequest(format!(
                "token {bad} is outside the vocabulary of {}",
                dims.vocab
            )));
        }

        let layers = cfg.num_hidden_layers;
        let mut pairs: Vec<[Option<Pair>; 7]> = Vec::with_capacity(layers);
        for layer in 0..layers {
            let mut row: [Option<Pair>; 7] = Default::default();
            for target in Target::ALL {
                if let Some(pair) = adapter.pair(layer, target) {
                    let a: Vec<f32> = pair.a.as_tensor().flatten_all()?.to_vec1()?;
                    let b: Vec<f32> = pair.b.as_tensor().flatten_all()?.to_vec1()?;
                    row[target.index()] = Some(Pair {
                        grad_a: vec![0.0; a.len()],
                        grad_b: vec![0.0; b.len()],
                        a,
                        b,
                    });
                }
            }
            pairs.push(row);
        }
        let adapted: Vec<[bool; 7]> = pairs
            .iter()
            .map(|row| std::array::from_fn(|i| row[i].is_some()))
            .collect();
        if self
            .buffers
            .as_ref()
            .is_some_and(|b| b.dims != dims || b.layers.len() != layers)
        {
            // Free the old buffers before sizing new ones.
            self.buffers = None;
        }
        let buffers = self
            .buffers
            .get_or_insert_with(|| Buffers::new(dims, layers, &adapted));
        for (layer, row) in adapted.iter().enumerate() {
            for (i, &on) in row.iter().enumerate() {
                let want = if on { dims.tokens * rank } else { 0 };
                buffers.layers[layer].lows[i].resize(want, 0.0);
            }
        }

        let frozen = model.frozen();
        let mut tensors = vec![
            frozen.embed,
            frozen.head,
            frozen.norm,
            frozen.rope_cos,
            frozen.rope_sin,
        ];
        for block in &frozen.blocks {
            tensors.push(block.input_norm);
            tensors.push(block.post_norm);
            tensors.extend(block.weights);
            tensors.extend(block.biases.into_iter().flatten());
        }
        let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
        let mut slices = guards
            .iter()
            .map(|(storage, layout)| f32_slice(storage, layout));
        let slices = &mut slices;
        let (embed, head, norm, cos, sin) = (
            next(slices)?,
            next(slices)?,
            next(slices)?,
            next(slices)?,
            next(slices)?,
        );
        let mut blocks = Vec::with_capacity(layers);
        for block in &frozen.blocks {
            let input_norm = next(slices)?;
            let post_norm = next(slices)?;
            let mut weights = [&[][..]; 7];
            for w in &mut weights {
                *w = next(slices)?;
            }
            let mut biases = [None; 7];
            for (slot, bias) in biases.iter_mut().zip(block.biases) {
                if bias.is_some() {
                    *slot = Some(next(slices)?);
                }
            }
            blocks.push(BlockWeights {
                input_norm,
                post_norm,
                weights,
                biases,
            });
        }
        let weights = Weights {
            embed,
            head,
            norm,
            cos,
            sin,
            blocks,
        };
        let step = Step {
            dims,
            eps: cfg.rms_norm_eps,
            lora_scale: adapter.config().scale() as f32,
            dropout: dropout.filter(|d| d.probability() > 0.0),
            weights: &weights,
        };
        let loss = step.run(buffers, &mut pairs, inputs, targets, scale)?;

        let mut grads = Vec::new();
        for row in pairs {
            // `Target::ALL` is in index order.
            for (target, pair) in Target::ALL.into_iter().zip(row) {
                if let Some(pair) = pair {
                    let (fan_in, fan_out) = dims.shape(target);
                    grads.push(Tensor::from_vec(
                        pair.grad_a,
                        (rank, fan_in),
                        model.device(),
                    )?);
                    grads.push(Tensor::from_vec(
                        pair.grad_b,
                        (fan_out, rank),
                        model.device(),
                    )?);
                }
            }
        }
        Ok((loss, grads))
    }
}

/// One call's fixed inputs.
struct Step<'w, 'd> {
    dims: Dims,
    eps: f64,
    lora_scale: f32,
    dropout: Option<&'d Dropout>,
    weights: &'w Weights<'w>,
}

impl Step<'_, '_> {
    fn run(
        &self,
        buf: &mut Buffers,
        pairs: &mut [[Option<Pair>; 7]],
        inputs: &[u32],
        targets: &[u32],
        scale: f32,
    ) -> Result<f32> {
        let d = self.dims;
        let h = d.hidden;
        for (row, &token) in buf.resid.chunks_mut(h).zip(inputs) {
            let token = token as usize;
            row.copy_from_slice(&self.weights.embed[token * h..(token + 1) * h]);
        }
        for (layer, layer_pairs) in pairs.iter().enumerate() {
            self.block_forward(buf, layer_pairs, layer)?;
        }
        rms_norm(
            &buf.resid,
            self.weights.norm,
            self.eps,
            &mut buf.final_h,
            &mut buf.final_rstd,
        );
        let loss = self.head(buf, targets, scale)?;
        buf.d_resid.fill(0.0);
        rms_norm_backward(
            &buf.resid,
            &buf.final_rstd,
            self.weights.norm,
            &buf.d_h,
            &mut buf.d_resid,
        );
        for layer in (0..buf.layers.len()).rev() {
            self.block_backward(buf, &mut pairs[layer], layer)?;
        }
        Ok(loss)
    }

    /// `out (+)= x·Wᵀ (+ b) + s·(dropout(x)·Aᵀ)·Bᵀ`: projection `target` of
    /// `layer` with its adapter, when it has one.
    #[allow(clippy::too_many_arguments)]
    fn project(
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
    fn project_backward(
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
        let s = self.lora_scale;
        product(
            d_low,
            d.rank,
            View::new(d_out, d.tokens, fan_out),
            View::new(&pair.b, fan_out, d.rank),
            s,
            false,
            Threads::All,
        )?;
        product(
            &mut pair.grad_b,
            d.rank,
            View::new(d_out, d.tokens, fan_out).t(),
            View::new(low, d.tokens, d.rank),
            s,
            false,
            Threads::All,
        )?;
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
        product(
            &mut pair.grad_a,
            fan_in,
            View::new(d_low, d.tokens, d.rank).t(),
            View::new(input, d.tokens, fan_in),
            1.0,
            false,
            Threads::All,
        )?;
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

    fn block_forward(
        &self,
        buf: &mut Buffers,
        pairs: &[Option<Pair>; 7],
        layer: usize,
    ) -> Result<()> {
        let d = self.dims;
        let block = &self.weights.blocks[layer];
        let acts = &mut buf.layers[layer];
        acts.x.copy_from_slice(&buf.resid);
        rms_norm(
            &acts.x,
            block.input_norm,
            self.eps,
            &mut acts.h1,
            &mut acts.rstd1,
        );
        for (target, out) in [
            (Target::QProj, &mut acts.q),
            (Target::KProj, &mut acts.k),
            (Target::VProj, &mut acts.v),
        ] {
            let i = target.index();
            self.project(
                layer,
                target,
                pairs[i].as_ref(),
                &acts.h1,
                out,
                false,
                (&mut acts.lows[i], &mut acts.masks[i]),
                &mut buf.lora.dropped,
            )?;
        }
        rope(&mut acts.q, d.q_width, d, self.weights, false);
        rope(&mut acts.k, d.kv_width, d, self.weights, false);
        attention_forward(
            d,
            (&acts.q, &acts.k, &acts.v),
            &mut acts.probs,
            &mut buf.tasks_q,
            &mut acts.att,
        )?;

        let o = Target::OProj.index();
        acts.x_mid.copy_from_slice(&acts.x);
        self.project(
            layer,
            Target::OProj,
            pairs[o].as_ref(),
            &acts.att,
            &mut acts.x_mid,
            true,
            (&mut acts.lows[o], &mut acts.masks[o]),
            &mut buf.lora.dropped,
        )?;

        rms_norm(
            &acts.x_mid,
            block.post_norm,
            self.eps,
            &mut acts.h2,
            &mut acts.rstd2,
        );
        for (target, out) in [
            (Target::GateProj, &mut acts.gate),
            (Target::UpProj, &mut acts.up),
        ] {
            let i = target.index();
            self.project(
                layer,
                target,
                pairs[i].as_ref(),
                &acts.h2,
                out,
                false,
                (&mut acts.lows[i], &mut acts.masks[i]),
                &mut buf.lora.dropped,
            )?;
        }
        swiglu(&acts.gate, &acts.up, &mut buf.act);
        let down = Target::DownProj.index();
        buf.resid.copy_from_slice(&acts.x_mid);
        self.project(
            layer,
            Target::DownProj,
            pairs[down].as_ref(),
            &buf.act,
            &mut buf.resid,
            true,
            (&mut acts.lows[down], &mut acts.masks[down]),
            &mut buf.lora.dropped,
        )
    }

    /// `buf.d_resid` holds the gradient of the block's output on entry and
    /// of its input on return (not computed for the first block: nothing
    /// below it trains).
    fn block_backward(
        &self,
        buf: &mut Buffers,
        pairs: &mut [Option<Pair>; 7],
        layer: usize,
    ) -> Result<()> {
        let d = self.dims;
        let block = &self.weights.blocks[layer];
        let acts = &buf.layers[layer];
        let [
            q_pair,
            k_pair,
            v_pair,
            o_pair,
            gate_pair,
            up_pair,
            down_pair,
        ] = pairs;

        // MLP: resid = x_mid + down(silu(gate) * up).
        swiglu(&acts.gate, &acts.up, &mut buf.act);
        let adapter_input = |target: Target| {
            let i = target.index();
            (&acts.lows[i][..], acts.masks[i])
        };
        self.project_backward(
            layer,
            Target::DownProj,
            down_pair.as_mut(),
            &buf.act,
            adapter_input(Target::DownProj),
            &buf.d_resid,
            Some((buf.d_up.as_mut_slice(), false)),
            &mut buf.lora,
        )?;
        swiglu_backward(&acts.gate, &acts.up, &mut buf.d_gate, &mut buf.d_up);
        for (pair, target, d_out, accumulate) in [
            (gate_pair, Target::GateProj, &buf.d_gate, false),
            (up_pair, Target::UpProj, &buf.d_up, true),
        ] {
            self.project_backward(
                layer,
                target,
                pair.as_mut(),
                &acts.h2,
                adapter_input(target),
                d_out,
                Some((buf.d_h.as_mut_slice(), accumulate)),
                &mut buf.lora,
            )?;
        }
        rms_norm_backward(
            &acts.x_mid,
            &acts.rstd2,
            block.post_norm,
            &buf.d_h,
            &mut buf.d_resid,
        );

        // Attention: x_mid = x + o(attention(rope(q(h1)), rope(k(h1)), v(h1))).
        self.project_backward(
            layer,
            Target::OProj,
            o_pair.as_mut(),
            &acts.att,
            adapter_input(Target::OProj),
            &buf.d_resid,
            Some((buf.d_att.as_mut_slice(), false)),
            &mut buf.lora,
        )?;
        attention_backward(
            d,
            (&acts.q, &acts.k, &acts.v, &acts.probs),
            &buf.d_att,
            AttentionScratch {
                dq: &mut buf.tasks_q,
                dk: &mut buf.tasks_k,
                dv: &mut buf.tasks_v,
                ds: &mut buf.tasks_ds,
            },
            (&mut buf.d_q, &mut buf.d_k, &mut buf.d_v),
        )?;
        rope(&mut buf.d_q, d.q_width, d, self.weights, true);
        rope(&mut buf.d_k, d.kv_width, d, self.weights, true);
        let below = layer > 0;
        for (pair, target, d_out, accumulate) in [
            (q_pair, Target::QProj, &buf.d_q, false),
            (k_pair, Target::KProj, &buf.d_k, true),
            (v_pair, Target::VProj, &buf.d_v, true),
        ] {
            self.project_backward(
                layer,
                target,
                pair.as_mut(),
                &acts.h1,
                adapter_input(target),
                d_out,
                below.then_some((buf.d_h.as_mut_slice(), accumulate)),
                &mut buf.lora,
            )?;
        }
        if below {
            rms_norm_backward(
                &acts.x,
                &acts.rstd1,
                block.input_norm,
                &buf.d_h,
                &mut buf.d_resid,
            );
        }
        Ok(())
    }

    /// The output head and the mean cross-entropy, forward and backward a
    /// chunk of tokens at a time: returns `scale` times the mean loss and
    /// leaves its gradient with respect to the final normed states in
    /// `buf.d_h`.
    fn head(&self, buf: &mut Buffers, targets: &[u32], scale: f32) -> Result<f32> {
        let d = self.dims;
        let (h, vocab) = (d.hidden, d.vocab);
        let per_token = scale / d.tokens as f32;
        let mut total = 0f64;
        for start in (0..d.tokens).step_by(HEAD_CHUNK) {
            let rows = HEAD_CHUNK.min(d.tokens - start);
            let logits = &mut buf.logits[..rows * vocab];
            product(
                logits,
                vocab,
                View::new(&buf.final_h[start * h..], rows, h),
                View::new(self.weights.head, vocab, h).t(),
                1.0,
                false,
                Threads::All,
            )?;
            total += logits
                .par_chunks_mut(vocab)
                .zip(&targets[start..start + rows])
                .map(|(row, &target)| {
                    fastmath::vectorized(
                        #[inline(always)]
                        || softmax_cross_entropy(row, target as usize, per_token),
                    )
                })
                .collect::<Vec<f64>>()
                .into_iter()
                .sum::<f64>();
            product(
                &mut buf.d_h[start * h..],
                h,
                View::new(logits, rows, vocab),
                View::new(self.weights.head, vocab, h),
                1.0,
                false,
                Threads::All,
            )?;
        }
        Ok((total / d.tokens as f64) as f32 * scale)
    }
}

/// The cross-entropy of one row of logits against `target`; the row
/// becomes the loss's gradient, `(softmax - onehot) * per_token`.
#[inline(always)]
fn softmax_cross_entropy(row: &mut [f32], target: usize, per_token: f32) -> f64 {
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
fn rms_norm(x: &[f32], weight: &[f32], eps: f64, out: &mut [f32], rstd: &mut [f32]) {
    let width = weight.len();
    out.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .zip(rstd.par_iter_mut())
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((out, x), rstd)| {
            fastmath::vectorized(
                #[inline(always)]
                || {
                    let mean_square =
                        x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / width as f64;
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
fn rms_norm_backward(x: &[f32], rstd: &[f32], weight: &[f32], d_out: &[f32], d_x: &mut [f32]) {
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
                    let dot: f64 = x
                        .iter()
                        .zip(d_out)
                        .zip(weight)
                        .map(|((&x, &g), &w)| f64::from(x) * f64::from(g) * f64::from(w))
                        .sum();
                    let c = dot * r * r * r / width as f64;
                    for (((dx, &x), &g), &w) in d_x.iter_mut().zip(x).zip(d_out).zip(weight) {
                        *dx += (r * f64::from(g) * f64::from(w) - c * f64::from(x)) as f32;
                    }
                },
            )
        });
}

/// Rotates each head of each row (rotate-half convention) by its
/// position's angle; `inverse` rotates back (the backward pass).
fn rope(x: &mut [f32], width: usize, d: Dims, weights: &Weights<'_>, inverse: bool) {
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
fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
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
fn swiglu_backward(gate: &[f32], up: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
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
const ATTENTION_BLOCK: usize = 64;

/// The query blocks of a sequence.
fn query_blocks(seq: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
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
/// `per_task` heads) into their columns of a `(tokens, width)` buffer.
fn scatter_heads(dst: &mut [f32], tasks: &[f32], d: Dims, per_task: usize, width: usize) {
    let block = d.seq * d.head_dim;
    let groups = width / d.head_dim / per_task;
    for (index, block) in tasks.chunks(block).enumerate() {
        let (task, j) = (index / per_task, index % per_task);
        let (b, g) = (task / groups, task % groups);
        let head = g * per_task + j;
        for (s, row) in block.chunks(d.head_dim).enumerate() {
            let at = (b * d.seq + s) * width + head * d.head_dim;
            dst[at..at + d.head_dim].copy_from_slice(row);
        }
    }
}

/// Causal softmax attention with grouped key/value heads, one task per
/// (sequence, key/value head); `tasks` (tokens x q_width) is scratch.
fn attention_forward(
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
struct AttentionScratch<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    ds: &'a mut [f32],
}

/// Gradients of queries, keys and values from that of the attention
/// output.
fn attention_backward(
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

#[cfg(test)]
#[path = "cpu_step_tests.rs"]
mod tests;
