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
//! - every product goes straight to `gemm` (`crate::kernels::gemm`) on
//!   strided views (a head inside a `(tokens, heads*dim)` matrix, a transposed
//!   weight) and writes or accumulates into the buffer it belongs in;
//! - frozen weights only ever get the input's gradient;
//! - the output head and the cross-entropy run per chunk of tokens, forward
//!   and backward together, so only a `(chunk, vocab)` block of logits ever
//!   exists;
//! - attention runs per (sequence, key/value head) in cache, on rayon's
//!   threads, as do the row-wise kernels (RMSNorm, RoPE, SwiGLU, dropout).
//!
//! It computes the same function and gradients as the general path (checked
//! against it in `cpu_step/tests.rs`, dropout masks included, at shapes
//! that span several attention blocks and head chunks, and by finite
//! differences), so a run may use either and resumes the same way.

//!
//! The step is split by concern: `buffers` (what it keeps between steps),
//! `block` (one decoder block, in the order of its layers),
//! `projection` (a frozen linear layer with its adapter), `attention`
//! and `rows` (the row-wise kernels); this file sizes the buffers, runs
//! the blocks and the output head, and hands the gradients back as tensors.

mod attention;
mod block;
mod buffers;
mod low_rank;
mod projection;
mod rows;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use self::buffers::{BlockWeights, Buffers, Dims, Pair, Weights, f32_slice, next};
use self::rows::{rms_norm, rms_norm_backward, softmax_cross_entropy};
use crate::busy_pool;
use crate::error::{MlError, Result};
use crate::fastmath;
use crate::kernels::gemm::{Threads, View, product};
use crate::lora::{Dropout, LoraAdapter, Target};
use crate::models::llama::Llama;

/// Tokens whose logits exist at once in the output head: 256 tokens of
/// SmolLM2's 49,152-word vocabulary are 50 MB of logits, which their
/// gradient then overwrites. Measured on the default 4 x 256 batch: 5%
/// faster per step than 128 (wider products in the head's `gemm`) for 24
/// MiB more peak RSS; 512 was no faster and took 71 MiB more than 128.
const HEAD_CHUNK: usize = 256;

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
        // ~2000 parallel loops a step: see `busy_pool`.
        let loss =
            busy_pool::with_pollers(|| step.run(buffers, &mut pairs, inputs, targets, scale))?;

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

#[cfg(test)]
mod tests;
