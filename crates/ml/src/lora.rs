//! LoRA adapters (Hu et al. 2021, <https://arxiv.org/abs/2106.09685>): for a
//! frozen projection `W`, learn `B·A` of rank `r` so the layer computes
//! `W·x + (alpha/r)·B·A·dropout(x)`. Only `A` and `B` are trained, so an
//! update is megabytes, not the model.
//!
//! Tensor names follow PEFT (`base_model.model.model.layers.N.self_attn.
//! q_proj.lora_A.weight`), so adapters move between Hearth and the wider
//! ecosystem unchanged.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::rng::SplitMix64;

/// PEFT's prefix for a causal language model's tensors.
pub const PEFT_PREFIX: &str = "base_model.model.model.layers";

/// The sizes of a model that LoRA needs: its number of layers and the
/// widths its projections map between.
///
/// Adapters take this rather than the model's configuration so that this
/// module depends on no model: `models::llama` builds its layers around
/// [`LoraAdapter`], [`Target`] and [`Dropout`], and a `lora -> llama`
/// import back made the two a cycle. A model converts its own configuration
/// (`From<&llama::Config>`), so callers still pass `model.config()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraShape {
    /// Decoder layers, each with one set of projections.
    pub layers: usize,
    /// The residual stream's width.
    pub hidden: usize,
    /// Width of all query heads together (`heads * head_dim`).
    pub q_width: usize,
    /// Width of all key (or value) heads together (`kv_heads * head_dim`).
    pub kv_width: usize,
    /// The MLP's inner width.
    pub intermediate: usize,
}

/// A projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Attention query.
    QProj,
    /// Attention key.
    KProj,
    /// Attention value.
    VProj,
    /// Attention output.
    OProj,
    /// MLP gate.
    GateProj,
    /// MLP up.
    UpProj,
    /// MLP down.
    DownProj,
}

impl Target {
    /// Every target, in layer order.
    pub const ALL: [Target; 7] = [
        Target::QProj,
        Target::KProj,
        Target::VProj,
        Target::OProj,
        Target::GateProj,
        Target::UpProj,
        Target::DownProj,
    ];

    /// The checkpoint name (`q_proj`).
    pub fn name(self) -> &'static str {
        match self {
            Target::QProj => "q_proj",
            Target::KProj => "k_proj",
            Target::VProj => "v_proj",
            Target::OProj => "o_proj",
            Target::GateProj => "gate_proj",
            Target::UpProj => "up_proj",
            Target::DownProj => "down_proj",
        }
    }

    /// The module path inside a layer (`self_attn.q_proj`).
    pub fn module(self) -> String {
        let block = match self {
            Target::QProj | Target::KProj | Target::VProj | Target::OProj => "self_attn",
            _ => "mlp",
        };
        format!("{block}.{}", self.name())
    }

    /// `(in_features, out_features)` of this projection in a model.
    pub fn shape(self, model: impl Into<LoraShape>) -> (usize, usize) {
        let LoraShape {
            hidden,
            q_width: q,
            kv_width: kv,
            intermediate,
            ..
        } = model.into();
        match self {
            Target::QProj => (hidden, q),
            Target::KProj | Target::VProj => (hidden, kv),
            Target::OProj => (q, hidden),
            Target::GateProj | Target::UpProj => (hidden, intermediate),
            Target::DownProj => (intermediate, hidden),
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().trim_end_matches("_proj");
        Target::ALL
            .into_iter()
            .find(|t| t.name().trim_end_matches("_proj") == name)
            .ok_or_else(|| {
                format!("unknown LoRA target {s:?} (expected q, k, v, o, gate, up or down)")
            })
    }
}

/// The shape of an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the adapter's input during training.
    pub dropout: f32,
    /// Which projections are adapted.
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: Target::ALL.to_vec(),
        }
    }
}

impl LoraConfig {
    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 || self.rank > 1024 {
            return Err(MlError::InvalidRequest(format!(
                "LoRA rank {} is out of range 1..=1024",
                self.rank
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(MlError::InvalidRequest(format!(
                "LoRA dropout {} is out of range [0, 1)",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(MlError::InvalidRequest(
                "LoRA needs at least one target projection".into(),
            ));
        }
        Ok(())
    }
}

/// One adapted projection: `A` is `(rank, in)`, `B` is `(out, rank)`.
#[derive(Debug)]
pub struct LoraPair {
    /// Down-projection.
    pub a: Var,
    /// Up-projection, initialised to zero so a new adapter changes nothing.
    pub b: Var,
}

/// Dropout with a generator whose state is saved with the run. The
/// generator sits behind a lock so that a training step can run on
/// rayon's threads; only one of them draws at a time.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: Mutex<SplitMix64>,
}

impl Dropout {
    /// Dropout with probability `p`, drawing from `rng`.
    pub fn new(p: f32, rng: SplitMix64) -> Self {
        Dropout {
            p,
            rng: Mutex::new(rng),
        }
    }

    /// The generator's current state (for checkpoints).
    pub fn rng(&self) -> SplitMix64 {
        *self.generator()
    }

    /// The generator, whole even if a thread panicked while holding it
    /// (each update is one store).
    fn generator(&self) -> std::sync::MutexGuard<'_, SplitMix64> {
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The drop probability.
    pub(crate) fn probability(&self) -> f32 {
        self.p
    }

    /// Claims the next `len` draws (one mask over `len` elements, exactly
    /// the draws [`Dropout::apply`] would make) and returns the generator
    /// state the mask starts from, for [`mask_rows`].
    pub(crate) fn claim(&self, len: usize) -> SplitMix64 {
        let mut rng = self.generator();
        let start = *rng;
        *rng = start.skipped(len as u64);
        start
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = {
            let mut rng = self.generator();
            (0..x.elem_count())
                .map(|_| if rng.next_f32() < self.p { 0.0 } else { keep })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// `f(row, out_row, src_row, mask_row)` over the rows of a `(rows, width)`
/// mask drawn with drop probability `p` from `start` (the mask
/// [`Dropout::apply`] makes from that state), in parallel: the mask values
/// (0 or `1/(1-p)`) are written to a per-row scratch before `f` sees them.
pub(crate) fn mask_rows(
    p: f32,
    start: SplitMix64,
    width: usize,
    out: &mut [f32],
    src: &[f32],
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) {
    use rayon::prelude::*;
    let keep = 1.0 / (1.0 - p);
    out.par_chunks_mut(width)
        .zip(src.par_chunks(width))
        .enumerate()
        .for_each_init(
            || vec![0f32; width],
            |mask, (row, (out, src))| {
                let mut rng = start.skipped((row * width) as u64);
                for m in mask.iter_mut() {
                    *m = if rng.next_f32() < p { 0.0 } else { keep };
                }
                f(out, src, mask);
            },
        );
}

/// A set of LoRA pairs for every layer of a model.
#[derive(Debug)]
pub struct LoraAdapter {
    config: LoraConfig,
    layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    /// A fresh adapter: `A` uniform in `±1/sqrt(in)` (PEFT's Kaiming-uniform
    /// with `a = sqrt(5)`), `B` zero, drawn from `seed`.
    pub fn new(
        config: &LoraConfig,
        model: impl Into<LoraShape>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let model = model.into();
        config.validate()?;
        let mut rng = SplitMix64::fork(seed, 0x10a4);
        let mut layers = Vec::with_capacity(model.layers);
        for _ in 0..model.layers {
            let mut pairs: [Option<LoraPair>; 7] = Default::default();
            for &target in &config.targets {
                let (fan_in, fan_out) = target.shape(model);
                let bound = 1.0 / (fan_in as f32).sqrt();
                let a: Vec<f32> = (0..config.rank * fan_in)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                    .collect();
                let a = Tensor::from_vec(a, (config.rank, fan_in), device)?;
                let b = Tensor::zeros((fan_out, config.rank), DType::F32, device)?;
                pairs[target.index()] = Some(LoraPair {
                    a: Var::from_tensor(&a)?,
                    b: Var::from_tensor(&b)?,
                });
            }
            layers.push(pairs);
        }
        Ok(LoraAdapter {
            config: config.clone(),
            layers,
        })
    }

    /// The adapter's shape.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The pair adapting `target` in `layer`, if any.
    pub fn pair(&self, layer: usize, target: Target) -> Option<&LoraPair> {
        self.layers.get(layer)?[target.index()].as_ref()
    }

    /// `(alpha/r)·B·A·dropout(x)` for `x` of shape `(tokens, in)`, or `None`
    /// when this projection is not adapted.
    pub fn delta(
        &self,
        layer: usize,
        target: Target,
        x: &Tensor,
        dropout: Option<&Dropout>,
    ) -> Result<Option<Tensor>> {
        let Some(pair) = self.pair(layer, target) else {
            return Ok(None);
        };
        let x = match dropout {
            Some(dropout) => dropout.apply(x)?,
            None => x.clone(),
        };
        let low = x.matmul(&pair.a.as_tensor().t()?)?;
        let up = low.matmul(&pair.b.as_tensor().t()?)?;
        Ok(Some((up * self.config.scale())?))
    }

    /// A copy with every tensor converted to `dtype` (gradient checks run
    /// in f64).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let convert =
            |var: &Var| -> Result<Var> { Ok(Var::from_tensor(&var.as_tensor().to_dtype(dtype)?)?) };
        let layers = self
            .layers
            .iter()
            .map(|pairs| {
                let mut out: [Option<LoraPair>; 7] = Default::default();
                for (slot, pair) in out.iter_mut().zip(pairs) {
                    if let Some(pair) = pair {
                        *slot = Some(LoraPair {
                            a: convert(&pair.a)?,
                            b: convert(&pair.b)?,
                        });
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        Ok(LoraAdapter {
            config: self.config.clone(),
            layers,
        })
    }

    /// Every trainable tensor with its PEFT name, in a stable order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for (layer, pairs) in self.layers.iter().enumerate() {
            for target in Target::ALL {
                if let Some(pair) = &pairs[target.index()] {
                    let base = format!("{PEFT_PREFIX}.{layer}.{}", target.module());
                    out.push((format!("{base}.lora_A.weight"), &pair.a));
                    out.push((format!("{base}.lora_B.weight"), &pair.b));
                }
            }
        }
        out
    }

    /// [`LoraAdapter::named_vars`] with owned handles (a `Var` is a cheap,
    /// shared reference to its storage).
    pub fn named_vars_owned(&self) -> Vec<(String, Var)> {
        self.named_vars()
            .into_iter()
            .map(|(n, v)| (n, v.clone()))
            .collect()
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The adapter's tensors by PEFT name (copies, detached from training).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.named_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().detach().to_device(&Device::Cpu)?)))
            .collect()
    }

    /// Builds an adapter from PEFT-named tensors, checking every shape
    /// against the model.
    pub fn from_tensors(
        config: &LoraConfig,
        model: impl Into<LoraShape>,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let model = model.into();
        config.validate()?;
        let mut layers = Vec::with_capacity(model.layers);
        let mut used = 0;
        for layer in 0..model.layers {
            let mut pairs: [Option<LoraPair>; 7] = Default::default();
            for &target in &config.targets {
                let (fan_in, fan_out) = target.shape(model);
                let base = format!("{PEFT_PREFIX}.{layer}.{}", target.module());
                let get = |name: &str, shape: (usize, usize)| -> Result<Var> {
                    let tensor = tensors.get(name).ok_or_else(|| {
                        MlError::AdapterMismatch(format!("tensor {name} is missing"))
                    })?;
                    if tensor.dims() != [shape.0, shape.1] {
                        return Err(MlError::AdapterMismatch(format!(
                            "{name} has shape {:?}, this model needs {:?}",
                            tensor.dims(),
                            [shape.0, shape.1]
                        )));
                    }
                    Ok(Var::from_tensor(
                        &tensor.to_dtype(DType::F32)?.to_device(device)?,
                    )?)
                };
                pairs[target.index()] = Some(LoraPair {
                    a: get(&format!("{base}.lora_A.weight"), (config.rank, fan_in))?,
                    b: get(&format!("{base}.lora_B.weight"), (fan_out, config.rank))?,
                });
                used += 2;
            }
            layers.push(pairs);
        }
        if used != tensors.len() {
            return Err(MlError::AdapterMismatch(format!(
                "the adapter has {} tensors but this model and configuration use {used} (a different number of layers?)",
                tensors.len()
            )));
        }
        Ok(LoraAdapter {
            config: config.clone(),
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::llama::Config;

    #[test]
    fn targets_parse_short_and_long_names() {
        assert_eq!("q".parse::<Target>(), Ok(Target::QProj));
        assert_eq!("down_proj".parse::<Target>(), Ok(Target::DownProj));
        assert!("lm_head".parse::<Target>().is_err());
        assert_eq!(Target::GateProj.module(), "mlp.gate_proj");
    }

    #[test]
    fn new_adapter_changes_nothing_and_round_trips() {
        let cfg = Config::tiny_for_tests();
        let device = Device::Cpu;
        let lora = LoraConfig::default();
        let adapter = LoraAdapter::new(&lora, &cfg, 1, &device).expect("adapter");
        let x = Tensor::ones((3, cfg.hidden_size), DType::F32, &device).expect("x");
        let delta = adapter
            .delta(0, Target::QProj, &x, None)
            .expect("delta")
            .expect("adapted");
        assert_eq!(
            delta
                .sum_all()
                .expect("sum")
                .to_scalar::<f32>()
                .expect("scalar"),
            0.0
        );
        let tensors = adapter.tensors().expect("tensors");
        assert_eq!(tensors.len(), cfg.num_hidden_layers * 7 * 2);
        let back = LoraAdapter::from_tensors(&lora, &cfg, &tensors, &device).expect("from tensors");
        assert_eq!(back.parameter_count(), adapter.parameter_count());

        let other = Config {
            hidden_size: cfg.hidden_size * 2,
            ..cfg.clone()
        };
        assert!(matches!(
            LoraAdapter::from_tensors(&lora, &other, &tensors, &device),
            Err(MlError::AdapterMismatch(_))
        ));
    }
}
