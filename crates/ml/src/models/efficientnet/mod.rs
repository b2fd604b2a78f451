//! EfficientNet-Lite (Tan and Le 2019, <https://arxiv.org/abs/1905.11946>;
//! the Lite variants for mobile CPUs) as an ImageNet-1k classifier and
//! image embedder.
//!
//! A 3x3 stride-2 stem, a stack of MBConv blocks (optional 1x1 expansion,
//! depthwise kxk convolution, 1x1 projection, a residual connection when
//! the shape allows), a 1x1 head to 1280 channels, global average pooling
//! (the embedding) and a linear classifier. The Lite variants drop
//! squeeze-and-excitation and use ReLU6 instead of swish, which keeps them
//! fast and quantisation-friendly; Lite0 has 4.7M parameters.
//!
//! Weights use the tensor names of `lukemelas/EfficientNet-PyTorch`
//! (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ...), which is how the
//! published Lite0 checkpoint is written. The checkpoint was converted from
//! TensorFlow, so convolutions pad like TensorFlow's `"SAME"`: from the input
//! size, and asymmetrically for stride 2 (more after than before).
//!
//! BatchNorm runs in inference mode (running statistics, eps 1e-3; some
//! running variances are exactly zero, so eps matters) and is folded into the
//! preceding convolution at load time: one convolution with a bias instead
//! of a convolution and four per-channel operations.
//!
//! The forward pass is differentiable, so the last blocks can be fine-tuned
//! ([`EfficientNet::make_trainable`], [`EfficientNet::features_until`],
//! [`EfficientNet::forward_tail`]).
//!
//! On the CPU every convolution is one operation with its bias and ReLU6,
//! each with its backward, so inference and fine-tuning run the same code:
//! 1x1 convolutions are a `gemm` product accumulated onto the bias (the stem
//! too, as a 1x1 convolution of its 3x3 patches), and depthwise
//! convolutions a kernel of our own (candle runs a grouped
//! convolution as one convolution per channel, which for EfficientNet's
//! thousands of depthwise channels is many times slower). The kernels
//! vectorise for the CPU's widest SIMD, detected at run time; they live in
//! `crate::kernels`, one module per kernel family, so this file holds
//! only the model. Other devices use candle's operations.
//!
//! When nothing needs a gradient (embeddings, the frozen prefix of
//! fine-tuning), the CPU runs a second pass over the same folded weights,
//! channels last and without autograd (`channels_last.rs`): depthwise
//! convolutions vectorise across channels there instead of along rows as
//! short as 7 pixels, which made embeddings ~1.45x faster. It runs each
//! image of a batch on its own, the images in parallel, so that
//! activations stay in cache. Tests check both passes against each other
//! at Lite0's shapes.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
pub use crate::kernels::geometry::same_padding;
use crate::kernels::{bias_act::bias_act, depthwise, patches::patches, pointwise};
use crate::rng::SplitMix64;
use channels_last::Until;

mod channels_last;

/// One stage of MBConv blocks (the first block of a stage may change the
/// resolution and width; the repeats keep them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Depthwise kernel size (3 or 5).
    pub kernel_size: usize,
    /// Stride of the stage's first block (1 or 2).
    pub stride: usize,
    /// Width of the expanded (depthwise) layer over the block's input width.
    pub expand_ratio: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Number of blocks.
    pub repeats: usize,
}

/// The architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Input channels (3: RGB).
    pub in_channels: usize,
    /// Width of the stem.
    pub stem_channels: usize,
    /// The stages, in order.
    pub stages: Vec<StageConfig>,
    /// Width of the head, which is the embedding width.
    pub head_channels: usize,
    /// Classifier outputs.
    pub num_classes: usize,
    /// BatchNorm epsilon.
    pub batch_norm_eps: f64,
}

/// One MBConv block, as [`Config::blocks`] unrolls the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Depthwise kernel size.
    pub kernel_size: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Expansion ratio (1: no expansion convolution).
    pub expand_ratio: usize,
}

impl BlockConfig {
    /// Width of the depthwise layer.
    pub fn expanded_channels(&self) -> usize {
        self.in_channels * self.expand_ratio
    }

    /// Whether the block adds its input to its output.
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

impl Config {
    /// EfficientNet-Lite0 for ImageNet-1k (224x224 inputs).
    pub fn lite0() -> Self {
        let stage = |kernel_size, stride, expand_ratio, out_channels, repeats| StageConfig {
            kernel_size,
            stride,
            expand_ratio,
            out_channels,
            repeats,
        };
        Config {
            in_channels: 3,
            stem_channels: 32,
            stages: vec![
                stage(3, 1, 1, 16, 1),
                stage(3, 2, 6, 24, 2),
                stage(5, 2, 6, 40, 2),
                stage(3, 2, 6, 80, 3),
                stage(5, 1, 6, 112, 3),
                stage(5, 2, 6, 192, 4),
                stage(3, 1, 6, 320, 1),
            ],
            head_channels: 1280,
            num_classes: 1000,
            batch_norm_eps: 1e-3,
        }
    }

    /// A tiny configuration for tests and gradient checks: every kind of
    /// block (with and without expansion, residual or not, kernel 3 and 5,
    /// stride 1 and 2).
    pub fn tiny() -> Self {
        let stage = |kernel_size, stride, expand_ratio, out_channels, repeats| StageConfig {
            kernel_size,
            stride,
            expand_ratio,
            out_channels,
            repeats,
        };
        Config {
            in_channels: 3,
            stem_channels: 8,
            stages: vec![
                stage(3, 1, 1, 8, 1),
                stage(3, 2, 2, 12, 2),
                stage(5, 2, 3, 16, 1),
            ],
            head_channels: 24,
            num_classes: 5,
            batch_norm_eps: 1e-3,
        }
    }

    /// The MBConv blocks in order (`_blocks.0`, `_blocks.1`, ...).
    pub fn blocks(&self) -> Vec<BlockConfig> {
        let mut blocks = Vec::new();
        let mut in_channels = self.stem_channels;
        for stage in &self.stages {
            for repeat in 0..stage.repeats {
                blocks.push(BlockConfig {
                    in_channels,
                    out_channels: stage.out_channels,
                    kernel_size: stage.kernel_size,
                    stride: if repeat == 0 { stage.stride } else { 1 },
                    expand_ratio: stage.expand_ratio,
                });
                in_channels = stage.out_channels;
            }
        }
        blocks
    }

    /// Width of the last block's output.
    pub fn last_block_channels(&self) -> usize {
        self.blocks()
            .last()
            .map_or(self.stem_channels, |b| b.out_channels)
    }

    /// Checks the numbers make a network.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("in_channels", self.in_channels),
            ("stem_channels", self.stem_channels),
            ("head_channels", self.head_channels),
            ("num_classes", self.num_classes),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.kernel_size == 0 || s.stride == 0 || s.expand_ratio == 0 || s.out_channels == 0 {
                return Err(format!("stage {i}: sizes must be positive"));
            }
        }
        if self.batch_norm_eps.is_nan() || self.batch_norm_eps <= 0.0 {
            return Err("batch_norm_eps must be positive".into());
        }
        Ok(())
    }
}

/// How a [`ConvBn`] convolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    /// Dense kxk with SAME padding (the stem).
    Dense,
    /// 1x1 stride 1: a matrix product.
    Pointwise,
    /// One kxk filter per channel, SAME padding.
    Depthwise,
}

/// A convolution with its BatchNorm folded in: `conv(x, w') + b'`.
#[derive(Debug, Clone)]
struct ConvBn {
    /// `(out, in / groups, k, k)`.
    weight: Tensor,
    /// `(out,)`.
    bias: Tensor,
    kind: ConvKind,
    stride: usize,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn load(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        kind: ConvKind,
        eps: f64,
    ) -> Result<Self> {
        let per_group = if kind == ConvKind::Depthwise {
            1
        } else {
            in_channels
        };
        let weight = vb
            .pp(conv)
            .get((out_channels, per_group, kernel, kernel), "weight")?;
        let bn = vb.pp(bn);
        let gamma = bn.get(out_channels, "weight")?;
        let beta = bn.get(out_channels, "bias")?;
        let mean = bn.get(out_channels, "running_mean")?;
        let var = bn.get(out_channels, "running_var")?;
        // Folded in f64: scale = gamma / sqrt(var + eps).
        let f64s = |t: &Tensor| t.to_dtype(DType::F64);
        let scale = f64s(&gamma)?.div(&(f64s(&var)? + eps)?.sqrt()?)?;
        let folded_weight = f64s(&weight)?
            .broadcast_mul(&scale.reshape((out_channels, 1, 1, 1))?)?
            .to_dtype(vb.dtype())?;
        let folded_bias = (f64s(&beta)? - f64s(&mean)?.mul(&scale)?)?.to_dtype(vb.dtype())?;
        Ok(ConvBn {
            weight: folded_weight,
            bias: folded_bias,
            kind,
            stride,
        })
    }

    /// The convolution, its bias, and ReLU6 if `relu6`.
    fn forward(&self, x: &Tensor, relu6: bool) -> Result<Tensor> {
        match self.kind {
            ConvKind::Pointwise => pointwise::conv(x, &self.weight, &self.bias, relu6),
            ConvKind::Dense => {
                let (_, _, h, w) = x.dims4()?;
                let (out_channels, in_channels, k, _) = self.weight.dims4()?;
                if let Some(patches) = patches(x, k, self.stride)? {
                    let weight = self
                        .weight
                        .reshape((out_channels, in_channels * k * k, 1, 1))?;
                    return pointwise::conv(&patches, &weight, &self.bias, relu6);
                }
                let (top, bottom, _) = same_padding(h, k, self.stride);
                let (left, right, _) = same_padding(w, k, self.stride);
                let y = x
                    .pad_with_zeros(2, top, bottom)?
                    .pad_with_zeros(3, left, right)?
                    .conv2d(&self.weight, 0, self.stride, 1, 1)?;
                bias_act(&y, &self.bias, relu6)
            }
            ConvKind::Depthwise => depthwise::conv(x, &self.weight, &self.bias, self.stride, relu6),
        }
    }

    /// Plain tensors again, with the current values.
    fn freeze(&mut self) {
        self.weight = self.weight.detach();
        self.bias = self.bias.detach();
    }

    /// The folded weight and bias as trainable variables.
    fn make_trainable(&mut self, name: &str) -> Result<Vec<(String, Var)>> {
        let weight = Var::from_tensor(&self.weight)?;
        let bias = Var::from_tensor(&self.bias)?;
        self.weight = weight.as_tensor().clone();
        self.bias = bias.as_tensor().clone();
        Ok(vec![
            (format!("{name}.weight"), weight),
            (format!("{name}.bias"), bias),
        ])
    }
}

/// Expansion (optional), depthwise, projection; residual when shapes allow.
#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl MbConv {
    fn load(vb: &VarBuilder, cfg: &BlockConfig, eps: f64) -> Result<Self> {
        let mid = cfg.expanded_channels();
        let expand = if cfg.expand_ratio != 1 {
            Some(ConvBn::load(
                vb,
                "_expand_conv",
                "_bn0",
                cfg.in_channels,
                mid,
                1,
                1,
                ConvKind::Pointwise,
                eps,
            )?)
        } else {
            None
        };
        let depthwise = ConvBn::load(
            vb,
            "_depthwise_conv",
            "_bn1",
            mid,
            mid,
            cfg.kernel_size,
            cfg.stride,
            ConvKind::Depthwise,
            eps,
        )?;
        let project = ConvBn::load(
            vb,
            "_project_conv",
            "_bn2",
            mid,
            cfg.out_channels,
            1,
            1,
            ConvKind::Pointwise,
            eps,
        )?;
        Ok(MbConv {
            expand,
            depthwise,
            project,
            residual: cfg.residual(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(expand) => expand.forward(x, true)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward(&h, true)?;
        let h = self.project.forward(&h, false)?;
        if self.residual { Ok((h + x)?) } else { Ok(h) }
    }
}

/// One class and its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// Class index (ImageNet-1k: 0..1000).
    pub class: usize,
    /// Softmax probability.
    pub probability: f32,
}

/// EfficientNet-Lite with folded BatchNorm.
#[derive(Debug, Clone)]
pub struct EfficientNet {
    cfg: Config,
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    /// `(classes, head_channels)`.
    fc_weight: Tensor,
    /// `(classes,)`.
    fc_bias: Tensor,
}

impl EfficientNet {
    /// Builds the network from weights named like lukemelas'
    /// EfficientNet-PyTorch, folding each BatchNorm into its convolution.
    /// The weights' dtype and device are `vb`'s.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(MlError::InvalidRequest)?;
        let eps = cfg.batch_norm_eps;
        let stem = ConvBn::load(
            &vb,
            "_conv_stem",
            "_bn0",
            cfg.in_channels,
            cfg.stem_channels,
            3,
            2,
            ConvKind::Dense,
            eps,
        )?;
        let blocks = cfg
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, block)| MbConv::load(&vb.pp(format!("_blocks.{i}")), block, eps))
            .collect::<Result<Vec<_>>>()?;
        let head = ConvBn::load(
            &vb,
            "_conv_head",
            "_bn1",
            cfg.last_block_channels(),
            cfg.head_channels,
            1,
            1,
            ConvKind::Pointwise,
            eps,
        )?;
        let fc = vb.pp("_fc");
        Ok(EfficientNet {
            cfg: cfg.clone(),
            stem,
            blocks,
            head,
            fc_weight: fc.get((cfg.num_classes, cfg.head_channels), "weight")?,
            fc_bias: fc.get(cfg.num_classes, "bias")?,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of MBConv blocks (16 for Lite0).
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Width of the embedding ([`Self::embed`]).
    pub fn embedding_dim(&self) -> usize {
        self.cfg.head_channels
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.fc_weight.device()
    }

    /// The dtype of the weights (inputs must match).
    pub fn dtype(&self) -> DType {
        self.fc_weight.dtype()
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (_, c, h, w) = x.dims4().map_err(|_| {
            MlError::InvalidRequest(format!(
                "expected images as (batch, channels, height, width), got {:?}",
                x.dims()
            ))
        })?;
        if c != self.cfg.in_channels || h == 0 || w == 0 {
            return Err(MlError::InvalidRequest(format!(
                "expected ({}, H, W) images, got {:?}",
                self.cfg.in_channels,
                x.dims()
            )));
        }
        Ok(())
    }

    /// The stem and the blocks before block `k` (`0..=num_blocks`):
    /// the feature map that [`Self::forward_tail`] continues from. To
    /// fine-tune the last `K` blocks, run this once per image with
    /// `k = num_blocks - K` (it needs no gradient) and train the tail.
    pub fn features_until(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        self.check_input(x)?;
        self.check_block(k)?;
        if let Some(features) = self.channels_last(x, Until::Block(k))? {
            return Ok(features);
        }
        per_image(x, |x| self.stem_and_blocks(x, k))
    }

    /// The stem and blocks `..k` on the batch as it is.
    fn stem_and_blocks(&self, x: &Tensor, k: usize) -> Result<Tensor> {
        let mut h = self.stem.forward(x, true)?;
        for block in &self.blocks[..k] {
            h = block.forward(&h)?;
        }
        Ok(h)
    }

    /// Blocks `k..`, the head and global average pooling: the
    /// `(batch, embedding_dim)` embedding, from the output of
    /// [`Self::features_until`]`(x, k)`.
    pub fn forward_tail(&self, h: &Tensor, k: usize) -> Result<Tensor> {
        self.check_block(k)?;
        let mut h = h.clone();
        for block in &self.blocks[k..] {
            h = block.forward(&h)?;
        }
        let h = self.head.forward(&h, true)?;
        Ok(h.mean(D::Minus1)?.mean(D::Minus1)?)
    }

    fn check_block(&self, k: usize) -> Result<()> {
        if k > self.blocks.len() {
            return Err(MlError::InvalidRequest(format!(
                "block {k} does not exist (the network has {})",
                self.blocks.len()
            )));
        }
        Ok(())
    }

    /// The `(batch, embedding_dim)` embedding of `(batch, 3, H, W)` images
    /// (224x224 for Lite0, prepared by [`crate::vision::preprocess()`]).
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        if let Some(embedding) = self.channels_last(x, Until::Embedding)? {
            return Ok(embedding);
        }
        self.embed_differentiably(x)
    }

    /// [`Self::embed`] through the differentiable layers.
    fn embed_differentiably(&self, x: &Tensor) -> Result<Tensor> {
        per_image(x, |x| self.forward_tail(&self.stem_and_blocks(x, 0)?, 0))
    }

    /// The ImageNet classifier applied to embeddings: `(batch, classes)`
    /// logits.
    pub fn logits_from_embedding(&self, embedding: &Tensor) -> Result<Tensor> {
        Ok(embedding
            .matmul(&self.fc_weight.t()?)?
            .broadcast_add(&self.fc_bias)?)
    }

    /// `(batch, classes)` logits of `(batch, 3, H, W)` images.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.logits_from_embedding(&self.embed(x)?)
    }

    /// The `top` most probable classes of each image, most probable first.
    pub fn classify(&self, x: &Tensor, top: usize) -> Result<Vec<Vec<Prediction>>> {
        top_k(&self.forward(x)?, top)
    }

    /// Makes blocks `from_block..` and the head convolution trainable: their
    /// (BatchNorm-folded) weights and biases become [`Var`]s, which are
    /// returned by name (`_blocks.15._depthwise_conv.weight`,
    /// `_blocks.15._depthwise_conv.bias`, ..., `_conv_head.weight`,
    /// `_conv_head.bias`). BatchNorm statistics stay frozen, as is usual
    /// when fine-tuning on little data. The ImageNet classifier is left
    /// alone: a fine-tuned model brings its own head on [`Self::embed`].
    pub fn make_trainable(&mut self, from_block: usize) -> Result<Vec<(String, Var)>> {
        self.check_block(from_block)?;
        let mut vars = Vec::new();
        for (i, block) in self.blocks.iter_mut().enumerate().skip(from_block) {
            if let Some(expand) = &mut block.expand {
                vars.extend(expand.make_trainable(&format!("_blocks.{i}._expand_conv"))?);
            }
            vars.extend(
                block
                    .depthwise
                    .make_trainable(&format!("_blocks.{i}._depthwise_conv"))?,
            );
            vars.extend(
                block
                    .project
                    .make_trainable(&format!("_blocks.{i}._project_conv"))?,
            );
        }
        vars.extend(self.head.make_trainable("_conv_head")?);
        Ok(vars)
    }

    /// Turns trainable weights back into plain tensors (keeping their
    /// values), so inference records no gradient graph.
    pub fn freeze(&mut self) {
        for block in &mut self.blocks {
            if let Some(expand) = &mut block.expand {
                expand.freeze();
            }
            block.depthwise.freeze();
            block.project.freeze();
        }
        self.head.freeze();
    }

    /// Loads a tail fine-tuned from block `from_block` (the tensors that
    /// [`Self::make_trainable`] names), checking every name and shape.
    pub fn apply_tail(
        &mut self,
        from_block: usize,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let vars = self.make_trainable(from_block)?;
        if tensors.len() != vars.len() {
            self.freeze();
            return Err(MlError::InvalidRequest(format!(
                "a tail from block {from_block} has {} tensors, got {}",
                vars.len(),
                tensors.len()
            )));
        }
        for (name, var) in &vars {
            let result = match tensors.get(name) {
                Some(tensor) if tensor.dims() == var.dims() => var
                    .set(&tensor.to_dtype(var.dtype())?.to_device(var.device())?)
                    .map_err(MlError::from),
                Some(tensor) => Err(MlError::InvalidRequest(format!(
                    "{name} has shape {:?}, expected {:?}",
                    tensor.dims(),
                    var.dims()
                ))),
                None => Err(MlError::InvalidRequest(format!("{name} is missing"))),
            };
            if let Err(error) = result {
                self.freeze();
                return Err(error);
            }
        }
        self.freeze();
        Ok(())
    }
}

/// `f` applied to each image of a CPU batch on its own, the images in
/// parallel on rayon's threads, and the results concatenated; other devices
/// get the batch whole. One image's activations fit in the caches where a
/// batch's do not, the allocator reuses the same few buffers instead of
/// mapping and zeroing fresh pages for every layer (a batch of 16 has
/// 77 MB activations), and each core works through images of its own
/// rather than both meeting at every layer.
fn per_image(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor> + Sync) -> Result<Tensor> {
    let batch = x.dim(0)?;
    if !x.device().is_cpu() || batch <= 1 {
        return f(x);
    }
    let parts = (0..batch)
        .into_par_iter()
        .map(|i| f(&x.narrow(0, i, 1)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// The `top` most probable classes of each row of `(batch, classes)`
/// logits, most probable first.
pub fn top_k(logits: &Tensor, top: usize) -> Result<Vec<Vec<Prediction>>> {
    let probabilities = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
    let rows: Vec<Vec<f32>> = probabilities.to_vec2()?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut ranked: Vec<Prediction> = row
                .into_iter()
                .enumerate()
                .map(|(class, probability)| Prediction { class, probability })
                .collect();
            ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
            ranked.truncate(top);
            ranked
        })
        .collect())
}

/// Random weights with the checkpoint's names and shapes (f32), for tests
/// and gradient checks: convolutions scaled to keep activations near unit
/// size, BatchNorm statistics near the identity.
pub fn random_weights(cfg: &Config, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut rng = SplitMix64::new(seed);
    let mut out = HashMap::new();
    let mut uniform = |shape: &[usize], low: f32, high: f32| -> Result<Tensor> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| low + (high - low) * rng.next_f32())
            .collect();
        Ok(Tensor::from_vec(values, shape, device)?)
    };
    let mut conv = |out: &mut HashMap<String, Tensor>,
                    conv: String,
                    bn: String,
                    shape: [usize; 4]|
     -> Result<()> {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
        let a = (6.0 / fan_in).sqrt();
        out.insert(format!("{conv}.weight"), uniform(&shape, -a, a)?);
        let c = shape[0];
        out.insert(format!("{bn}.weight"), uniform(&[c], 0.5, 1.5)?);
        out.insert(format!("{bn}.bias"), uniform(&[c], -0.1, 0.1)?);
        out.insert(format!("{bn}.running_mean"), uniform(&[c], -0.1, 0.1)?);
        out.insert(format!("{bn}.running_var"), uniform(&[c], 0.5, 1.5)?);
        Ok(())
    };
    conv(
        &mut out,
        "_conv_stem".into(),
        "_bn0".into(),
        [cfg.stem_channels, cfg.in_channels, 3, 3],
    )?;
    for (i, b) in cfg.blocks().iter().enumerate() {
        let p = format!("_blocks.{i}");
        let mid = b.expanded_channels();
        if b.expand_ratio != 1 {
            conv(
                &mut out,
                format!("{p}._expand_conv"),
                format!("{p}._bn0"),
                [mid, b.in_channels, 1, 1],
            )?;
        }
        conv(
            &mut out,
            format!("{p}._depthwise_conv"),
            format!("{p}._bn1"),
            [mid, 1, b.kernel_size, b.kernel_size],
        )?;
        conv(
            &mut out,
            format!("{p}._project_conv"),
            format!("{p}._bn2"),
            [b.out_channels, mid, 1, 1],
        )?;
    }
    conv(
        &mut out,
        "_conv_head".into(),
        "_bn1".into(),
        [cfg.head_channels, cfg.last_block_channels(), 1, 1],
    )?;
    let a = (6.0 / cfg.head_channels as f32).sqrt();
    out.insert(
        "_fc.weight".into(),
        uniform(&[cfg.num_classes, cfg.head_channels], -a, a)?,
    );
    out.insert("_fc.bias".into(), uniform(&[cfg.num_classes], -0.1, 0.1)?);
    Ok(out)
}

#[cfg(test)]
mod tests;
