//! Llama-family decoder (Touvron et al. 2023, <https://arxiv.org/abs/2302.13971>)
//! with LoRA on any projection.
//!
//! Token embedding, pre-norm blocks of RMSNorm, grouped-query attention with
//! rotary positions and a causal mask, and a SwiGLU MLP; final RMSNorm and a
//! tied or separate output head. Weights are frozen tensors; the only
//! trainable parameters are those of a [`LoraAdapter`] passed to the
//! forward pass, so one loaded model serves the base and any adapter.
//!
//! Two forwards: [`Llama::forward`] over whole sequences (training and
//! scoring; differentiable in [`Mode::Train`]) and [`Llama::forward_cached`]
//! for generation with a key/value cache.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::lora::{Dropout, LoraAdapter, LoraShape, Target};
use crate::ops::{self, Mode, Rope};

/// Longest context the rotary tables are built for, whatever the config says.
const MAX_ROPE_POSITIONS: usize = 32_768;

/// The runtime configuration of a Llama-family model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base frequency.
    pub rope_theta: f64,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the output head shares the token embedding.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
}

/// The sizes a LoRA adapter of this model needs (see [`LoraShape`] for
/// why the adapter takes these instead of the config).
impl From<&Config> for LoraShape {
    fn from(cfg: &Config) -> Self {
        let head_dim = cfg.head_dim();
        LoraShape {
            layers: cfg.num_hidden_layers,
            hidden: cfg.hidden_size,
            q_width: cfg.num_attention_heads * head_dim,
            kv_width: cfg.num_key_value_heads * head_dim,
            intermediate: cfg.intermediate_size,
        }
    }
}

impl Config {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the numbers fit together.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !self.head_dim().is_multiple_of(2)
        {
            return Err(format!(
                "hidden_size {} does not split into {} heads of even width",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "{} attention heads cannot share {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        Ok(())
    }

    /// A tiny random-weight configuration for tests and gradient checks.
    pub fn tiny() -> Self {
        Config {
            vocab_size: 64,
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    #[cfg(test)]
    pub(crate) fn tiny_for_tests() -> Self {
        Self::tiny()
    }
}

/// A Hugging Face `config.json` for the Llama family, as written.
#[derive(Debug, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}

impl HfConfig {
    /// The runtime config, refusing architectures this model does not
    /// implement.
    pub fn into_config(self) -> Result<Config, String> {
        let model_type = self.model_type.as_deref().unwrap_or("llama");
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(format!(
                "model_type {model_type:?} is not a Llama-family model"
            ));
        }
        if let Some(act) = self.hidden_act.as_deref()
            && act != "silu"
        {
            return Err(format!("hidden_act {act:?} is not supported (only silu)"));
        }
        let config = Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            attention_bias: self.attention_bias.unwrap_or(model_type == "qwen2"),
        };
        config.validate()?;
        Ok(config)
    }
}

/// A frozen projection: `y = x·Wᵀ (+ b)`.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(vb: &VarBuilder, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let vb = vb.pp(name);
        Ok(Linear {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: if bias {
                Some(vb.get(out_dim, "bias")?)
            } else {
                None
            },
        })
    }

    /// `x` is `(tokens, in)`. Weights held in a narrower type than `x` are
    /// widened for the product.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = ops::frozen_linear(x, &widen(&self.weight, x.dtype())?, mode)?;
        Ok(match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        })
    }
}

/// `t` in `dtype` (a no-op when it already is).
fn widen(t: &Tensor, dtype: DType) -> Result<Tensor> {
    Ok(if t.dtype() == dtype {
        t.clone()
    } else {
        t.to_dtype(dtype)?
    })
}

/// How a forward pass runs: which adapter (if any), with what dropout, and
/// whether gradients must flow.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// The adapter to apply, or the base model when `None`.
    pub adapter: Option<&'a LoraAdapter>,
    /// Dropout on adapter inputs (training only).
    pub dropout: Option<&'a Dropout>,
    /// Differentiable or fused ops.
    pub mode: Mode,
}

impl Forward<'_> {
    /// Base model, inference.
    pub const BASE: Forward<'static> = Forward {
        adapter: None,
        dropout: None,
        mode: Mode::Infer,
    };

    /// `adapter` (or the base), inference.
    pub fn infer(adapter: Option<&LoraAdapter>) -> Forward<'_> {
        Forward {
            adapter,
            dropout: None,
            mode: Mode::Infer,
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Block {
    fn new(cfg: &Config, vb: &VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let q_out = cfg.num_attention_heads * cfg.head_dim();
        let kv_out = cfg.num_key_value_heads * cfg.head_dim();
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Block {
            input_norm: vb.pp("input_layernorm").get(h, "weight")?,
            q: Linear::new(&attn, "q_proj", h, q_out, cfg.attention_bias)?,
            k: Linear::new(&attn, "k_proj", h, kv_out, cfg.attention_bias)?,
            v: Linear::new(&attn, "v_proj", h, kv_out, cfg.attention_bias)?,
            o: Linear::new(&attn, "o_proj", q_out, h, false)?,
            post_norm: vb.pp("post_attention_layernorm").get(h, "weight")?,
            gate: Linear::new(&mlp, "gate_proj", h, i, false)?,
            up: Linear::new(&mlp, "up_proj", h, i, false)?,
            down: Linear::new(&mlp, "down_proj", i, h, false)?,
        })
    }

    fn linear(&self, target: Target) -> &Linear {
        match target {
            Target::QProj => &self.q,
            Target::KProj => &self.k,
            Target::VProj => &self.v,
            Target::OProj => &self.o,
            Target::GateProj => &self.gate,
            Target::UpProj => &self.up,
            Target::DownProj => &self.down,
        }
    }
}

/// Keys and values of every layer for the positions generated so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A Llama-family language model with frozen weights.
#[derive(Debug, Clone)]
pub struct Llama {
    cfg: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    tied_head: bool,
    rope: Rope,
    device: Device,
}

impl Llama {
    /// Builds the model from Hugging Face-named weights
    /// (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(MlError::InvalidRequest)?;
        let device = vb.device().clone();
        let model = vb.pp("model");
        let embed = model
            .pp("embed_tokens")
            .get((cfg.vocab_size, cfg.hidden_size), "weight")?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, &model.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = model.pp("norm").get(cfg.hidden_size, "weight")?;
        let tied_head = cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight");
        let lm_head = if tied_head {
            embed.clone()
        } else {
            vb.pp("lm_head")
                .get((cfg.vocab_size, cfg.hidden_size), "weight")?
        };
        let positions = cfg.max_position_embeddings.min(MAX_ROPE_POSITIONS);
        let rope = Rope::new(
            cfg.head_dim(),
            positions,
            cfg.rope_theta,
            vb.dtype(),
            &device,
        )?;
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            tied_head,
            rope,
            device,
        })
    }

    /// Holds the frozen projection, embedding and output weights in `dtype`
    /// (bf16 or f16 halve the model's memory); computation stays in the
    /// norms' dtype (f32), widening each weight as it is used.
    pub fn with_weight_dtype(mut self, dtype: DType) -> Result<Self> {
        let narrow = |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?) };
        self.embed = narrow(&self.embed)?;
        self.lm_head = if self.tied_head {
            self.embed.clone()
        } else {
            narrow(&self.lm_head)?
        };
        for block in &mut self.blocks {
            for linear in [
                &mut block.q,
                &mut block.k,
                &mut block.v,
                &mut block.o,
                &mut block.gate,
                &mut block.up,
                &mut block.down,
            ] {
                linear.weight = narrow(&linear.weight)?;
            }
        }
        Ok(self)
    }

    /// The type frozen weights are held in.
    pub fn weight_dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Longest sequence (prompt plus generated tokens) the model accepts.
    pub fn max_sequence(&self) -> usize {
        self.rope.max_positions()
    }

    /// The frozen tensors, for code that computes with them directly (the
    /// CPU training step in [`crate::train::cpu_step`]).
    pub(crate) fn frozen(&self) -> Frozen<'_> {
        let (rope_cos, rope_sin) = self.rope.tables();
        Frozen {
            embed: &self.embed,
            head: &self.lm_head,
            norm: &self.norm,
            rope_cos,
            rope_sin,
            blocks: self
                .blocks
                .iter()
                .map(|block| FrozenBlock {
                    input_norm: &block.input_norm,
                    post_norm: &block.post_norm,
                    weights: Target::ALL.map(|target| &block.linear(target).weight),
                    biases: Target::ALL.map(|target| block.linear(target).bias.as_ref()),
                })
                .collect(),
        }
    }

    /// Logits `(batch, seq, vocab)` for token ids `(batch, seq)`.
    pub fn forward(&self, tokens: &Tensor, how: Forward<'_>) -> Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        self.check_length(seq, 0)?;
        let dtype = self.norm.dtype();
        let mut x = widen(&self.embed.index_select(&tokens.flatten_all()?, 0)?, dtype)?;
        let mask = (seq > 1)
            .then(|| ops::causal_mask(seq, 0, dtype, &self.device))
            .transpose()?;
        for (index, block) in self.blocks.iter().enumerate() {
            x = self.block(index, block, &x, batch, seq, 0, mask.as_ref(), None, how)?;
        }
        let x = ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps, how.mode)?;
        let logits = ops::frozen_linear(&x, &widen(&self.lm_head, dtype)?, how.mode)?;
        Ok(logits.reshape((batch, seq, self.cfg.vocab_size))?)
    }

    /// Logits `(batch, vocab)` of the last position, appending the new
    /// tokens' keys and values to `cache`.
    pub fn forward_cached(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        let offset = cache.len;
        self.check_length(seq, offset)?;
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![None; self.blocks.len()];
        }
        let how = Forward::infer(adapter);
        let dtype = self.norm.dtype();
        let mut x = widen(&self.embed.index_select(&tokens.flatten_all()?, 0)?, dtype)?;
        let mask = (seq > 1)
            .then(|| ops::causal_mask(seq, offset, dtype, &self.device))
            .transpose()?;
        for (index, block) in self.blocks.iter().enumerate() {
            let slot = &mut cache.layers[index];
            x = self.block(
                index,
                block,
                &x,
                batch,
                seq,
                offset,
                mask.as_ref(),
                Some(slot),
                how,
            )?;
        }
        cache.len += seq;
        let last = x
            .reshape((batch, seq, self.cfg.hidden_size))?
            .narrow(1, seq - 1, 1)?
            .squeeze(1)?;
        let last = ops::rms_norm(&last, &self.norm, self.cfg.rms_norm_eps, Mode::Infer)?;
        Ok(last.matmul(&widen(&self.lm_head, dtype)?.t()?)?)
    }

    fn check_length(&self, seq: usize, offset: usize) -> Result<()> {
        if seq == 0 {
            return Err(MlError::InvalidRequest("no tokens to run".into()));
        }
        if offset + seq > self.max_sequence() {
            return Err(MlError::InvalidRequest(format!(
                "{} tokens do not fit this model's context of {} tokens",
                offset + seq,
                self.max_sequence()
            )));
        }
        Ok(())
    }

    /// One projection, plus the adapter's low-rank update when it has one.
    fn project(
        &self,
        layer: usize,
        block: &Block,
        target: Target,
        x: &Tensor,
        how: Forward<'_>,
    ) -> Result<Tensor> {
        let y = block.linear(target).forward(x, how.mode)?;
        match how.adapter {
            Some(adapter) => match adapter.delta(layer, target, x, how.dropout)? {
                Some(delta) => Ok((y + delta)?),
                None => Ok(y),
            },
            None => Ok(y),
        }
    }

    /// One decoder block on `x` of shape `(batch*seq, hidden)`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        layer: usize,
        block: &Block,
        x: &Tensor,
        batch: usize,
        seq: usize,
        offset: usize,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        how: Forward<'_>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (heads, kv_heads, head_dim) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );

        let h = ops::rms_norm(x, &block.input_norm, cfg.rms_norm_eps, how.mode)?;
        let split = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((batch, seq, n, head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.project(layer, block, Target::QProj, &h, how)?, heads)?;
        let k = split(
            self.project(layer, block, Target::KProj, &h, how)?,
            kv_heads,
        )?;
        let v = split(
            self.project(layer, block, Target::VProj, &h, how)?,
            kv_heads,
        )?;
        let q = self.rope.apply(&q, offset, how.mode)?;
        let mut k = self.rope.apply(&k, offset, how.mode)?;
        let mut v = v;
        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.as_ref() {
                k = Tensor::cat(&[past_k, &k], 2)?;
                v = Tensor::cat(&[past_v, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let k = repeat_kv(k, heads / kv_heads)?;
        let v = repeat_kv(v, heads / kv_heads)?;

        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let attention = ops::softmax(&scores, how.mode)?;
        let y = attention
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch * seq, heads * head_dim))?;
        let x = (x + self.project(layer, block, Target::OProj, &y, how)?)?;

        let h = ops::rms_norm(&x, &block.post_norm, cfg.rms_norm_eps, how.mode)?;
        let gate = self
            .project(layer, block, Target::GateProj, &h, how)?
            .silu()?;
        let up = self.project(layer, block, Target::UpProj, &h, how)?;
        let mlp = self.project(layer, block, Target::DownProj, &(gate * up)?, how)?;
        Ok((x + mlp)?)
    }
}

/// Borrowed views of a model's frozen tensors.
pub(crate) struct Frozen<'a> {
    /// Token embedding `(vocab, hidden)`.
    pub embed: &'a Tensor,
    /// Output head `(vocab, hidden)` (the embedding when tied).
    pub head: &'a Tensor,
    /// Final RMSNorm weight.
    pub norm: &'a Tensor,
    /// Rotary tables `(positions, head_dim/2)`.
    pub rope_cos: &'a Tensor,
    /// See `rope_cos`.
    pub rope_sin: &'a Tensor,
    /// Each decoder block's tensors.
    pub blocks: Vec<FrozenBlock<'a>>,
}

/// One decoder block's frozen tensors; projections in [`Target::ALL`] order.
pub(crate) struct FrozenBlock<'a> {
    /// RMSNorm before attention.
    pub input_norm: &'a Tensor,
    /// RMSNorm before the MLP.
    pub post_norm: &'a Tensor,
    /// Projection weights `(out, in)`.
    pub weights: [&'a Tensor; 7],
    /// Projection biases, where the model has them.
    pub biases: [Option<&'a Tensor>; 7],
}

/// Repeats each key/value head `n` times so grouped heads line up with the
/// query heads: `(b, kv, t, d)` to `(b, kv*n, t, d)`.
fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))?)
}

/// Mean cross-entropy of `logits` `(batch, seq, vocab)` against `targets`
/// `(batch, seq)`.
pub fn causal_lm_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (batch, seq, vocab) = logits.dims3()?;
    let logits = logits.reshape((batch * seq, vocab))?;
    let targets = targets.reshape(batch * seq)?;
    // Half-precision logits are scored in f32; f32 and f64 stay as they are.
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits,
    };
    crate::loss::cross_entropy(&logits, &targets)
}

/// Random weights for `cfg` in Hugging Face naming, for tests and
/// benchmarks that need the shape of a model but not its knowledge.
pub fn random_weights(
    cfg: &Config,
    seed: u64,
    device: &Device,
) -> Result<std::collections::HashMap<String, Tensor>> {
    use crate::rng::SplitMix64;
    let mut rng = SplitMix64::new(seed);
    let mut tensor = |shape: &[usize], std: f32| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        // Sums of uniforms: cheap, close enough to a normal for weights.
        let data: Vec<f32> = (0..n)
            .map(|_| (rng.next_f32() + rng.next_f32() + rng.next_f32() - 1.5) * 2.0 * std)
            .collect();
        Ok(Tensor::from_vec(data, shape, device)?)
    };
    let h = cfg.hidden_size;
    let mut weights = std::collections::HashMap::new();
    weights.insert(
        "model.embed_tokens.weight".to_owned(),
        tensor(&[cfg.vocab_size, h], 0.5)?,
    );
    weights.insert(
        "model.norm.weight".to_owned(),
        Tensor::ones(h, DType::F32, device)?,
    );
    if !cfg.tie_word_embeddings {
        weights.insert(
            "lm_head.weight".to_owned(),
            tensor(&[cfg.vocab_size, h], 0.1)?,
        );
    }
    for layer in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{layer}");
        weights.insert(
            format!("{p}.input_layernorm.weight"),
            (Tensor::ones(h, DType::F32, device)? + tensor(&[h], 0.1)?)?,
        );
        weights.insert(
            format!("{p}.post_attention_layernorm.weight"),
            (Tensor::ones(h, DType::F32, device)? + tensor(&[h], 0.1)?)?,
        );
        for target in Target::ALL {
            let (fan_in, fan_out) = target.shape(cfg);
            let std = 1.0 / (fan_in as f32).sqrt();
            weights.insert(
                format!("{p}.{}.weight", target.module()),
                tensor(&[fan_out, fan_in], std)?,
            );
            if cfg.attention_bias && matches!(target, Target::QProj | Target::KProj | Target::VProj)
            {
                weights.insert(
                    format!("{p}.{}.bias", target.module()),
                    tensor(&[fan_out], 0.1)?,
                );
            }
        }
    }
    Ok(weights)
}

/// Log-softmax of logits in f32, last dimension.
pub fn log_probs(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(
        &logits.to_dtype(DType::F32)?,
        D::Minus1,
    )?)
}

#[cfg(test)]
mod tests;
