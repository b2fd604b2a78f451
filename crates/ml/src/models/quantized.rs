//! Inference on a GGUF's quantized weights: the Llama-family decoder of
//! [`super::llama`], for generation on the CPU, with a LoRA adapter added
//! by its own low-rank product.
//!
//! The projections stay in the file's blocks ([`crate::qmatmul`]): about
//! 5 bits a weight for Q4_1 instead of 32, which is what bounds decoding
//! speed. Norms, rotary positions and attention run in f32 over plain
//! buffers, with a key/value cache grown in place. Q and K rows are put
//! back in Hugging Face's order at load, as [`crate::loaders::gguf`] does,
//! so adapters trained on the f32 model apply unchanged. Checked against
//! [`super::llama::Llama::forward_cached`] on the real default model in
//! `tests/quantized.rs`.

use rayon::prelude::*;

use crate::busy_pool;
use crate::error::{MlError, Result};
use crate::fastmath;
use crate::lora::Target;
use crate::models::llama::Config;
use crate::qmatmul::{QWeight, WIDENED_FROM_TOKENS, Workspace, widen_halves};

mod adapter;
mod load;

pub use adapter::QAdapter;
use adapter::{add_update, small_update};
pub use load::{load, load_with};

/// One decoder block's weights.
#[derive(Debug, Clone)]
struct QBlock {
    input_norm: Vec<f32>,
    post_norm: Vec<f32>,
    /// Projections in [`Target::ALL`] order.
    proj: Vec<QWeight>,
    /// Biases of q, k and v (Qwen2), in that order.
    bias: [Option<Vec<f32>>; 3],
}

/// A Llama-family model on quantized weights, inference only.
#[derive(Debug, Clone)]
pub struct QuantizedLlama {
    cfg: Config,
    embed: QWeight,
    /// The output head when it is not the embedding.
    head: Option<QWeight>,
    norm: Vec<f32>,
    blocks: Vec<QBlock>,
    /// The rotary frequencies, `head_dim/2` of them. Each forward pass
    /// computes the `cos` and `sin` of its own positions (a few dozen per
    /// token) instead of the model holding tables for its whole context
    /// (2 MiB for SmolLM2's 8192 positions, resident for nothing).
    rope_frequencies: Vec<f64>,
    positions: usize,
}

/// `cos` and `sin` of position × frequency for one forward pass's
/// positions, `(tokens, head_dim/2)`.
struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// Keys and values of every layer for the positions run so far, in IEEE
/// half precision (their bits), as llama.cpp keeps them by default: half
/// the memory of f32 (SmolLM2 at 2048 positions: 45 instead of 90 MiB),
/// and attention reads half the bytes. Rounding a key or value to f16
/// moves it by at most 2⁻¹¹ of itself (within f16's range, ±65504, which
/// llama.cpp's f16 default relies on too).
#[derive(Debug, Clone, Default)]
pub struct QCache {
    keys: Vec<Vec<u16>>,
    values: Vec<Vec<u16>>,
    len: usize,
    /// The passes' activations, kept between passes.
    scratch: Scratch,
}

/// Room for a forward pass's activations, owned by the cache and grown on
/// the caller's thread before the pass starts. A pass runs on whichever
/// of rayon's threads takes it, and each thread allocates from its own
/// malloc arena: activations allocated inside the pass were freed and
/// allocated anew in every arena in turn, which left each pool thread's
/// arena holding a pass's worth of freed memory (5 MiB net RSS of
/// SmolLM2's generation). Buffers are sized for the pass's tokens; a
/// decoding step after a prompt reuses the prompt's.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// The residual stream, `(t, hidden)`.
    x: Vec<f32>,
    /// The normed stream, `(t, hidden)`.
    normed: Vec<f32>,
    /// Queries and attention's output, `(t, heads·dim)`.
    q: Vec<f32>,
    attended: Vec<f32>,
    /// Keys and values of the pass, `(t, kv_heads·dim)`.
    k: Vec<f32>,
    v: Vec<f32>,
    /// The output projection's and the down projection's output.
    out: Vec<f32>,
    /// The MLP's gate and up projections, `(t, intermediate)`.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Where the projections' products work.
    work: Workspace,
}

impl Scratch {
    /// Sizes every buffer for `t` tokens of a model configured by `cfg`.
    fn size_for(&mut self, cfg: &Config, t: usize) {
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let (qw, kvw) = (
            cfg.num_attention_heads * cfg.head_dim(),
            cfg.num_key_value_heads * cfg.head_dim(),
        );
        for (buffer, width) in [
            (&mut self.x, h),
            (&mut self.normed, h),
            (&mut self.q, qw),
            (&mut self.attended, qw),
            (&mut self.k, kvw),
            (&mut self.v, kvw),
            (&mut self.out, h),
            (&mut self.gate, inter),
            (&mut self.up, inter),
        ] {
            buffer.resize(t * width, 0.0);
        }
        let group_rows = (qw + 2 * kvw).max(2 * inter).max(h);
        self.work.reserve(t, group_rows, h.max(qw).max(inter));
    }
}

impl QCache {
    /// Room for `t` more positions in each of `layers` layers of
    /// `width`-wide keys and values (amortized, as `Vec` grows), after
    /// dropping whatever a pass that failed part-way appended past `len`.
    fn reserve(&mut self, layers: usize, t: usize, width: usize) {
        if self.keys.len() != layers {
            self.keys = vec![Vec::new(); layers];
            self.values = vec![Vec::new(); layers];
        }
        let needed = (self.len + t) * width;
        for cached in self.keys.iter_mut().chain(&mut self.values) {
            cached.truncate(self.len * width);
            cached.reserve(needed - cached.len());
        }
    }

    /// An empty cache with room for `positions` positions in each of
    /// `layers` layers of `width`-wide keys and values. Room reserved but
    /// never written costs address space, not memory; growing by doubling
    /// instead held up to twice the positions used, and both the old and
    /// the new buffers of every layer at each doubling.
    fn with_room(layers: usize, positions: usize, width: usize) -> Self {
        let room = || {
            (0..layers)
                .map(|_| Vec::with_capacity(positions * width))
                .collect()
        };
        QCache {
            keys: room(),
            values: room(),
            ..QCache::default()
        }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl QuantizedLlama {
    fn new(
        cfg: Config,
        embed: QWeight,
        head: Option<QWeight>,
        norm: Vec<f32>,
        blocks: Vec<QBlock>,
    ) -> Self {
        let positions = cfg.max_position_embeddings.min(32_768);
        let (head_dim, half) = (cfg.head_dim(), cfg.head_dim() / 2);
        let rope_frequencies: Vec<f64> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        QuantizedLlama {
            cfg,
            embed,
            head,
            norm,
            blocks,
            rope_frequencies,
            positions,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Longest sequence (prompt plus generated tokens) the model accepts.
    pub fn max_sequence(&self) -> usize {
        self.positions
    }

    /// Bytes held by the weights.
    pub fn weight_bytes(&self) -> usize {
        self.embed.bytes()
            + self.head.as_ref().map_or(0, QWeight::bytes)
            + self
                .blocks
                .iter()
                .map(|b| b.proj.iter().map(QWeight::bytes).sum::<usize>())
                .sum::<usize>()
    }

    /// An empty cache with room for `positions` positions (at most the
    /// model's context), which a generation of known length never grows.
    pub fn cache_for(&self, positions: usize) -> QCache {
        QCache::with_room(
            self.blocks.len(),
            positions.min(self.positions),
            self.cfg.num_key_value_heads * self.cfg.head_dim(),
        )
    }

    /// Logits `(vocab,)` of the last of `tokens`, appending their keys and
    /// values to `cache`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut QCache,
        adapter: Option<&QAdapter>,
    ) -> Result<Vec<f32>> {
        let offset = cache.len;
        if tokens.is_empty() {
            return Err(MlError::InvalidRequest("no tokens to run".into()));
        }
        if offset + tokens.len() > self.positions {
            return Err(MlError::InvalidRequest(format!(
                "{} tokens do not fit this model's context of {} tokens",
                offset + tokens.len(),
                self.positions
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.embed.rows()) {
            return Err(MlError::InvalidRequest(format!(
                "token {bad} is outside the vocabulary of {}",
                self.embed.rows()
            )));
        }
        // The cache grows here, on the caller's thread, not on whichever of
        // the pool's threads runs the pass: passes land on different
        // threads, and each thread allocates from its own malloc arena, so
        // a cache grown inside the pool leaves its outgrown buffers behind
        // in every arena in turn.
        cache.reserve(
            self.blocks.len(),
            tokens.len(),
            self.cfg.num_key_value_heads * self.cfg.head_dim(),
        );
        cache.scratch.size_for(&self.cfg, tokens.len());
        let mut logits = vec![0f32; self.head.as_ref().unwrap_or(&self.embed).rows()];
        // The whole pass runs on one of rayon's threads, the others
        // polling for its ~120 parallel loops' work: see `busy_pool`.
        busy_pool::with_pollers(|| self.forward_in_pool(tokens, cache, adapter, &mut logits))?;
        Ok(logits)
    }

    /// [`Self::forward`]'s work, on a thread of rayon's pool: the logits
    /// of the last token into `logits`, in buffers `cache` holds.
    fn forward_in_pool(
        &self,
        tokens: &[u32],
        cache: &mut QCache,
        adapter: Option<&QAdapter>,
        logits: &mut [f32],
    ) -> Result<()> {
        let cfg = &self.cfg;
        let (t, h) = (tokens.len(), cfg.hidden_size);
        let QCache {
            keys,
            values,
            len,
            scratch,
        } = cache;
        let offset = *len;
        for (&id, row) in tokens.iter().zip(scratch.x.chunks_mut(h)) {
            self.embed.row_into(id as usize, row);
        }
        let rope = self.rope_table(offset, t);
        for (layer, block) in self.blocks.iter().enumerate() {
            let cached = (&mut keys[layer], &mut values[layer]);
            self.block(layer, block, (t, offset), &rope, cached, scratch, adapter)?;
        }
        *len += t;
        let last = &mut scratch.normed[..h];
        last.copy_from_slice(&scratch.x[(t - 1) * h..][..h]);
        rms_norm(last, &self.norm, cfg.rms_norm_eps as f32);
        let head = self.head.as_ref().unwrap_or(&self.embed);
        QWeight::forward_group_into([head], last, 1, [logits], &mut scratch.work)
    }

    /// Projections of the same `x` `(t, in)` (one parallel product for
    /// all), each with its bias and the adapter's update.
    #[allow(clippy::too_many_arguments)]
    fn project<const N: usize>(
        &self,
        layer: usize,
        block: &QBlock,
        targets: [Target; N],
        x: &[f32],
        t: usize,
        adapter: Option<&QAdapter>,
        mut ys: [&mut [f32]; N],
        work: &mut Workspace,
    ) -> Result<()> {
        let weights = targets.map(|target| &block.proj[target.index()]);
        let pairs = targets.map(|target| {
            adapter
                .and_then(|adapter| adapter.layers.get(layer))
                .and_then(|pairs| pairs[target.index()].as_ref())
        });
        let scale = adapter.map_or(0.0, |adapter| adapter.scale);
        // Decoding: the adapter's few products run beside the quantized
        // ones (on whichever thread is free) instead of after them on one.
        let products = |ys: &mut [&mut [f32]; N], work: &mut Workspace| -> Result<()> {
            QWeight::forward_group_into(weights, x, t, ys.each_mut().map(|y| &mut **y), work)
        };
        let mut updates = if t < WIDENED_FROM_TOKENS && pairs.iter().any(Option::is_some) {
            let (done, updates) = rayon::join(
                || products(&mut ys, work),
                || {
                    std::array::from_fn(|i| {
                        let shape = (weights[i].cols(), weights[i].rows());
                        pairs[i].map(|(a, bt)| small_update(a, bt, x, shape, scale))
                    })
                },
            );
            done?;
            updates
        } else {
            products(&mut ys, work)?;
            [const { None }; N]
        };
        for (((target, w), y), (pair, update)) in targets
            .into_iter()
            .zip(weights)
            .zip(&mut ys)
            .zip(pairs.into_iter().zip(&mut updates))
        {
            if let Some(bias) = match target {
                Target::QProj => block.bias[0].as_ref(),
                Target::KProj => block.bias[1].as_ref(),
                Target::VProj => block.bias[2].as_ref(),
                _ => None,
            } {
                for row in y.chunks_mut(w.rows()) {
                    row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                }
            }
            if let Some(update) = update.take() {
                y.iter_mut().zip(&update).for_each(|(y, u)| *y += u);
            } else if let Some((a, bt)) = pair {
                // A prompt: each task adds the update of a few tokens
                // straight into their outputs (nothing allocated).
                let shape = (w.cols(), w.rows());
                y.par_chunks_mut(shape.1 * UPDATE_TOKENS_PER_TASK)
                    .zip(x.par_chunks(shape.0 * UPDATE_TOKENS_PER_TASK))
                    .for_each(|(y, x)| add_update(a, bt, x, shape, scale, y));
            }
        }
        Ok(())
    }

    /// One decoder block on the stream `scratch.x` of `t` tokens from
    /// position `offset`, appending to the layer's cached keys and values.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        layer: usize,
        block: &QBlock,
        (t, offset): (usize, usize),
        rope: &RopeTable,
        (keys, values): (&mut Vec<u16>, &mut Vec<u16>),
        scratch: &mut Scratch,
        adapter: Option<&QAdapter>,
    ) -> Result<()> {
        let Scratch {
            x,
            normed,
            q,
            attended,
            k,
            v,
            out,
            gate,
            up,
            work,
        } = scratch;
        let cfg = &self.cfg;
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let (heads, kv_heads, dim) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let kv_width = kv_heads * dim;
        normed.copy_from_slice(x);
        for row in normed.chunks_mut(h) {
            rms_norm(row, &block.input_norm, eps);
        }
        self.project(
            layer,
            block,
            [Target::QProj, Target::KProj, Target::VProj],
            normed,
            t,
            adapter,
            [q, k, v],
            work,
        )?;
        for i in 0..t {
            rope.apply(&mut q[i * heads * dim..][..heads * dim], i);
            rope.apply(&mut k[i * kv_width..][..kv_width], i);
        }
        // `forward` reserved room and cut both to `offset` positions.
        keys.extend(k.iter().map(|&k| half::f16::from_f32(k).to_bits()));
        values.extend(v.iter().map(|&v| half::f16::from_f32(v).to_bits()));
        let (keys, values) = (&keys[..], &values[..]);

        // Attention: every (token, head) on its own, causal over the cache.
        let group = heads / kv_heads;
        let scale = 1.0 / (dim as f32).sqrt();
        attended.fill(0.0);
        let attend = |task: usize, out: &mut [f32]| {
            let (i, head) = (task / heads, task % heads);
            let kv = head / group;
            let query = &q[(i * heads + head) * dim..][..dim];
            let seen = offset + i + 1;
            fastmath::vectorized(
                #[inline(always)]
                || {
                    // One cached row at a time, widened to f32.
                    let mut row = vec![0f32; dim];
                    // A plain loop, not `map().collect()`: the collecting
                    // is compiled out of line, without the vector
                    // instructions `vectorized` enables, and the widening
                    // and dot products inside it with it.
                    let mut scores = vec![0f32; seen];
                    for (p, score) in scores.iter_mut().enumerate() {
                        widen_halves(&keys[p * kv_width + kv * dim..][..dim], &mut row);
                        *score = fastmath::dot(query, &row) * scale;
                    }
                    let top = fastmath::max(&scores);
                    let mut total = 0f32;
                    for s in &mut scores {
                        *s = fastmath::exp(*s - top);
                        total += *s;
                    }
                    let inverse = 1.0 / total;
                    for (p, &w) in scores.iter().enumerate() {
                        widen_halves(&values[p * kv_width + kv * dim..][..dim], &mut row);
                        for (o, v) in out.iter_mut().zip(&row) {
                            *o += w * inverse * v;
                        }
                    }
                },
            )
        };
        // One token's heads are too little work to share between threads.
        if t == 1 {
            attended
                .chunks_mut(dim)
                .enumerate()
                .for_each(|(task, out)| attend(task, out));
        } else {
            attended
                .par_chunks_mut(dim)
                .enumerate()
                .for_each(|(task, out)| attend(task, out));
        }
        let o = [&mut out[..]];
        self.project(layer, block, [Target::OProj], attended, t, adapter, o, work)?;
        x.iter_mut().zip(&*out).for_each(|(x, o)| *x += o);

        normed.copy_from_slice(x);
        for row in normed.chunks_mut(h) {
            rms_norm(row, &block.post_norm, eps);
        }
        self.project(
            layer,
            block,
            [Target::GateProj, Target::UpProj],
            normed,
            t,
            adapter,
            [gate, up],
            work,
        )?;
        fastmath::vectorized(
            #[inline(always)]
            || {
                for (g, u) in gate.iter_mut().zip(&*up) {
                    *g = *g * fastmath::sigmoid(*g) * u;
                }
            },
        );
        let down = [&mut out[..]];
        self.project(
            layer,
            block,
            [Target::DownProj],
            gate,
            t,
            adapter,
            down,
            work,
        )?;
        x.iter_mut().zip(&*out).for_each(|(x, d)| *x += d);
        Ok(())
    }

    /// The rotary table of positions `offset..offset + t`.
    fn rope_table(&self, offset: usize, t: usize) -> RopeTable {
        let half = self.rope_frequencies.len();
        let mut table = RopeTable {
            half,
            cos: Vec::with_capacity(t * half),
            sin: Vec::with_capacity(t * half),
        };
        for p in offset..offset + t {
            for f in &self.rope_frequencies {
                let angle = (p as f64 * f) as f32;
                table.cos.push(angle.cos());
                table.sin.push(angle.sin());
            }
        }
        table
    }
}

impl RopeTable {
    /// Rotary positions on the heads of the pass's token `i` (Hugging
    /// Face's half-split layout), in place.
    fn apply(&self, heads: &mut [f32], i: usize) {
        let half = self.half;
        let cos = &self.cos[i * half..][..half];
        let sin = &self.sin[i * half..][..half];
        for head in heads.chunks_exact_mut(2 * half) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// Tokens of a prompt per rayon task of an adapter's update: 64 tokens
/// make 16 tasks, enough for threads that finish their share unevenly.
const UPDATE_TOKENS_PER_TASK: usize = 4;

/// `x ← x / rms(x) · weight`, in place.
fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean = fastmath::dot(x, x) / x.len() as f32;
    let inverse = 1.0 / (mean + eps).sqrt();
    x.iter_mut()
        .zip(weight)
        .for_each(|(x, w)| *x *= inverse * w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_with_room_never_moves_within_it() {
        let (layers, width) = (2, 4);
        let mut cache = QCache::with_room(layers, 10, width);
        let buffers = |cache: &QCache| -> Vec<(*const u16, usize)> {
            cache
                .keys
                .iter()
                .chain(&cache.values)
                .map(|v| (v.as_ptr(), v.capacity()))
                .collect()
        };
        let before = buffers(&cache);
        for t in [6, 1, 3] {
            cache.reserve(layers, t, width);
            for cached in cache.keys.iter_mut().chain(&mut cache.values) {
                cached.extend(std::iter::repeat_n(1u16, t * width));
            }
            cache.len += t;
            assert_eq!(buffers(&cache), before, "after {} positions", cache.len);
        }
        // Past its room it grows as any cache does.
        cache.reserve(layers, 1, width);
        assert!(cache.keys.iter().all(|k| k.capacity() >= 11 * width));
    }
}
