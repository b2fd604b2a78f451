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
//! vectorise for the CPU's widest SIMD, detected at run time. Inference
//! runs each image of a batch on its own, the images in parallel, so that
//! activations stay in cache. Other devices use candle's operations.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::rng::SplitMix64;

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

/// TensorFlow `"SAME"` padding of one spatial dimension:
/// `(before, after, output length)`. The output is `ceil(input / stride)`,
/// the total padding what that needs, split with the extra element after
/// (so a 3x3 stride-2 convolution of an even size pads `(0, 1)`, a 5x5
/// `(1, 2)`; stride 1 pads `k/2` on both sides).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    if input == 0 || stride == 0 {
        return (0, 0, 0);
    }
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2, out)
}

/// ReLU6, `min(max(x, 0), 6)`; differentiable (candle's maximum and minimum
/// have backward passes).
fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(x.clamp(0f64, 6f64)?)
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
                if let Some(patches) = depthwise::patches(x, k, self.stride)? {
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
                fused::bias_act(&y, &self.bias, relu6)
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

/// What the CPU kernels share: the element types they run in, runtime SIMD
/// dispatch, splitting work over rayon's threads, and ReLU6's backward.
mod kernels {
    use candle_core::{CpuStorage, Layout, Tensor, WithDType};
    use rayon::prelude::*;

    /// Output elements times taps below which threads are not worth it.
    pub(super) const PARALLEL_WORK: usize = 1 << 16;

    /// Element types the kernels run in.
    pub(super) trait Float:
        WithDType + Copy + Default + PartialOrd + std::ops::Mul<Output = Self> + std::ops::AddAssign
    {
        /// `min(max(x, 0), 6)`.
        fn relu6(self) -> Self;
    }
    impl Float for f32 {
        #[inline(always)]
        fn relu6(self) -> Self {
            self.clamp(0.0, 6.0)
        }
    }
    impl Float for f64 {
        #[inline(always)]
        fn relu6(self) -> Self {
            self.clamp(0.0, 6.0)
        }
    }

    pub(super) use crate::fastmath::vectorized;

    /// `y += a * x`.
    #[inline(always)]
    pub(super) fn axpy<T: Float>(y: &mut [T], a: T, x: &[T]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    /// `y[i] += a[0] x[i] + a[1] x[i + 1] + ...`: a run of taps in one pass
    /// over `y`, which stays in registers instead of going back to memory
    /// after every tap.
    #[inline(always)]
    pub(super) fn axpy_run<T: Float, const N: usize>(y: &mut [T], a: [T; N], x: &[T]) {
        let n = y.len();
        let xs: [&[T]; N] = std::array::from_fn(|j| &x[j..j + n]);
        for (i, y) in y.iter_mut().enumerate() {
            let mut sum = *y;
            for j in 0..N {
                sum += a[j] * xs[j][i];
            }
            *y = sum;
        }
    }

    /// `x · y`, in eight independent sums so that it vectorises.
    #[inline(always)]
    pub(super) fn dot<T: Float>(x: &[T], y: &[T]) -> T {
        let mut sums = [T::default(); 8];
        let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (xs, ys) in xc.zip(yc) {
            for i in 0..8 {
                sums[i] += xs[i] * ys[i];
            }
        }
        let mut total = T::default();
        for s in sums {
            total += s;
        }
        for (&a, &b) in xr.iter().zip(yr) {
            total += a * b;
        }
        total
    }

    /// ReLU6 in place.
    #[inline(always)]
    pub(super) fn relu6_in_place<T: Float>(y: &mut [T]) {
        for v in y {
            *v = v.relu6();
        }
    }

    pub(super) fn contiguous<'a, T: Float>(
        storage: &'a CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<&'a [T]> {
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
            None => candle_core::bail!("convolution kernel: non-contiguous input"),
        }
    }

    /// Whether this thread is one of rayon's: then the caller already
    /// splits the work (`EfficientNet::embed` runs images in parallel), and
    /// a kernel splitting its own would only add overhead.
    pub(super) fn inside_pool() -> bool {
        rayon::current_thread_index().is_some()
    }

    /// Runs `work(scratch, plane_index, output_plane)` over `out` in chunks
    /// of `plane_len` elements, on rayon's threads when it is worth it;
    /// `scratch` comes from `init`, once per thread's run of planes, so
    /// kernels reuse their buffers instead of allocating per plane.
    pub(super) fn planes<T: Float, S>(
        out: &mut [T],
        plane_len: usize,
        work_per_plane: usize,
        init: impl Fn() -> S + Sync + Send,
        work: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
    ) {
        if plane_len == 0 {
            return;
        }
        let count = out.len() / plane_len;
        if count <= 1 || count * work_per_plane < PARALLEL_WORK {
            let mut scratch = init();
            for (i, plane) in out.chunks_mut(plane_len).enumerate() {
                work(&mut scratch, i, plane);
            }
            return;
        }
        let min_planes = PARALLEL_WORK.div_ceil(work_per_plane.max(1)).max(1);
        out.par_chunks_mut(plane_len)
            .with_min_len(min_planes)
            .enumerate()
            .for_each_init(init, |scratch, (i, plane)| work(scratch, i, plane));
    }

    /// The gradient through the activation of an output `res`: it passes
    /// where ReLU6 is not clamping (`0 < y < 6`, as PyTorch's `hardtanh`
    /// backward), everywhere without the activation.
    pub(super) fn act_grad(
        res: &Tensor,
        grad: &Tensor,
        relu6: bool,
    ) -> candle_core::Result<Tensor> {
        if !relu6 {
            return Ok(grad.clone());
        }
        let open = res.gt(0f64)?.mul(&res.lt(6f64)?)?;
        grad.mul(&open.to_dtype(grad.dtype())?)
    }
}

/// Bias and activation in one pass (after the stem's convolution, and on
/// devices without our kernels): a CPU kernel with its backward (one pass
/// instead of candle's three, each allocating a tensor), or candle's ops
/// elsewhere.
mod fused {
    use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

    use super::kernels::{Float, act_grad, contiguous, planes, vectorized};
    use crate::error::Result;

    /// `x + bias` per channel of `(b, c, h, w)`, then ReLU6 if `relu6`.
    pub(super) fn bias_act(x: &Tensor, bias: &Tensor, relu6: bool) -> Result<Tensor> {
        let (_, c, _, _) = x.dims4()?;
        let native = x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && bias.dtype() == x.dtype();
        if !native {
            let y = x.broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
            return if relu6 { super::relu6(&y) } else { Ok(y) };
        }
        Ok(x.contiguous()?
            .apply_op2(&bias.contiguous()?, BiasAct { relu6 })?)
    }

    #[derive(Debug, Clone, Copy)]
    struct BiasAct {
        relu6: bool,
    }

    fn bias_act_cpu<T: Float>(x: &[T], bias: &[T], plane: usize, relu6: bool) -> Vec<T> {
        let channels = bias.len().max(1);
        let mut y = vec![T::default(); x.len()];
        planes(
            &mut y,
            plane,
            plane,
            || (),
            |_, p, y| {
                let b = bias[p % channels];
                let x = &x[p * plane..(p + 1) * plane];
                vectorized(
                    #[inline(always)]
                    || {
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = if relu6 { (x + b).relu6() } else { x + b };
                        }
                    },
                );
            },
        );
        y
    }

    impl CustomOp2 for BiasAct {
        fn name(&self) -> &'static str {
            "bias-relu6"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let (_, c, h, w) = l1.shape().dims4()?;
            if l2.shape().elem_count() != c {
                candle_core::bail!("bias of {} for {c} channels", l2.shape().elem_count());
            }
            let plane = h * w;
            let y = match s1 {
                CpuStorage::F32(_) => CpuStorage::F32(bias_act_cpu(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    plane,
                    self.relu6,
                )),
                CpuStorage::F64(_) => CpuStorage::F64(bias_act_cpu(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    plane,
                    self.relu6,
                )),
                _ => candle_core::bail!("bias-relu6: f32 or f64 only"),
            };
            Ok((y, l1.shape().clone()))
        }

        /// The bias's gradient is the activation's summed per channel.
        fn bwd(
            &self,
            _x: &Tensor,
            _bias: &Tensor,
            res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
            let grad_x = act_grad(res, grad, self.relu6)?;
            let grad_bias = grad_x.sum((0, 2, 3))?;
            Ok((Some(grad_x), Some(grad_bias)))
        }
    }
}

/// 1x1 convolutions with their bias and activation as one operation: on the
/// CPU, a matrix product per image written into an output that already
/// holds the bias (so there is no separate bias pass and no zeroing), and
/// ReLU6 applied block by block while the block is still in cache; one
/// allocation instead of three. Elsewhere, candle's matmul and
/// [`super::fused::bias_act`].
mod pointwise {
    use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
    use rayon::prelude::*;

    use super::kernels::{
        Float, PARALLEL_WORK, act_grad, contiguous, inside_pool, relu6_in_place, vectorized,
    };
    use crate::error::{MlError, Result};

    /// Bytes of output a column block spans: it is clamped right after the
    /// product writes it, while it is in the core's L2 cache.
    const BLOCK_BYTES: usize = 256 << 10;

    /// `x` `(b, c, h, w)` through the 1x1 convolution `weight`
    /// `(out, c, 1, 1)`, plus `bias` `(out,)`, then ReLU6 if `relu6`.
    pub(super) fn conv(x: &Tensor, weight: &Tensor, bias: &Tensor, relu6: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (out_channels, per_filter, kh, kw) = weight.dims4()?;
        if (per_filter, kh, kw) != (c, 1, 1) || bias.elem_count() != out_channels {
            return Err(MlError::InvalidRequest(format!(
                "1x1 convolution of {c} channels with weights {:?} and bias {:?}",
                weight.dims(),
                bias.dims()
            )));
        }
        let native = x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && weight.dtype() == x.dtype()
            && bias.dtype() == x.dtype();
        if native {
            return Ok(x.contiguous()?.apply_op3(
                &weight.contiguous()?,
                &bias.contiguous()?,
                Pointwise { relu6 },
            )?);
        }
        let weight = weight.reshape((out_channels, c))?;
        let x = x.reshape((b, c, h * w))?;
        let y = if b == 1 {
            weight.matmul(&x.squeeze(0)?)?.unsqueeze(0)?
        } else {
            weight.broadcast_left(b)?.matmul(&x)?
        };
        super::fused::bias_act(&y.reshape((b, out_channels, h, w))?, bias, relu6)
    }

    #[derive(Debug, Clone, Copy)]
    struct Pointwise {
        relu6: bool,
    }

    /// `dst (m x n, rows dst_rs apart) += lhs (m x k, row-major) · rhs
    /// (k x n, rows rhs_rs apart)`, on this thread.
    // The `gemm` crate (candle's own matrix product, so nothing new is
    // built) only has a raw-pointer interface; candle's safe matmul cannot
    // accumulate into an output we prepared (it allocates and zeroes a
    // fresh one), which is the point of this operation.
    #[allow(unsafe_code)]
    #[allow(clippy::too_many_arguments)]
    fn gemm_accumulate<T: Float>(
        (m, n, k): (usize, usize, usize),
        dst: &mut [T],
        dst_rs: usize,
        lhs: &[T],
        rhs: &[T],
        rhs_rs: usize,
    ) -> candle_core::Result<()> {
        if m == 0 || n == 0 || k == 0 {
            return Ok(());
        }
        // The last element each matrix spans; everything gemm touches
        // lies at or before it.
        let end = |rows: usize, row_stride: usize| (rows - 1) * row_stride + n;
        if n > dst_rs
            || n > rhs_rs
            || end(m, dst_rs) > dst.len()
            || m * k > lhs.len()
            || end(k, rhs_rs) > rhs.len()
        {
            candle_core::bail!("1x1 convolution: a {m}x{k}x{n} product out of its buffers");
        }
        // SAFETY: gemm reads lhs[i * k + l], rhs[l * rhs_rs + j] and reads
        // and writes dst[i * dst_rs + j] for i < m, l < k, j < n; the checks
        // above put all of those inside the slices. `dst` is borrowed
        // mutably and the inputs immutably for the whole call, so nothing
        // else reads or writes them meanwhile, and `Parallelism::None`
        // keeps gemm on this thread.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                dst_rs as isize,
                true,
                lhs.as_ptr(),
                1,
                k as isize,
                rhs.as_ptr(),
                1,
                rhs_rs as isize,
                T::from_f64(1.0),
                T::from_f64(1.0),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        Ok(())
    }

    /// The output, image by image: bias rows, then the product added in
    /// column blocks, each clamped as soon as it is written. Images (or,
    /// for a single image outside rayon's pool, groups of output rows) go
    /// to rayon's threads.
    fn forward<T: Float>(
        x: &[T],
        w: &[T],
        bias: &[T],
        (b, c, hw): (usize, usize, usize),
        relu6: bool,
    ) -> candle_core::Result<Vec<T>> {
        let out_channels = bias.len();
        let mut y = Vec::with_capacity(b * out_channels * hw);
        for _ in 0..b {
            for &v in bias {
                y.extend(std::iter::repeat_n(v, hw));
            }
        }
        let threads = rayon::current_num_threads();
        let wanted = if inside_pool() || b >= threads || out_channels * c * hw < PARALLEL_WORK {
            1
        } else {
            threads.div_ceil(b)
        };
        let splits = (1..=wanted.min(out_channels))
            .rev()
            .find(|s| out_channels.is_multiple_of(*s))
            .unwrap_or(1);
        let rows = out_channels / splits;
        let block = (BLOCK_BYTES / size_of::<T>() / rows.max(c).max(1)).max(16);
        if rows == 0 || hw == 0 {
            return Ok(y);
        }
        y.par_chunks_mut(rows * hw)
            .enumerate()
            .try_for_each(|(task, y)| {
                let image = task / splits;
                let first_row = (task % splits) * rows;
                let x = &x[image * c * hw..(image + 1) * c * hw];
                let w = &w[first_row * c..(first_row + rows) * c];
                vectorized(
                    #[inline(always)]
                    || {
                        for start in (0..hw).step_by(block) {
                            let n = block.min(hw - start);
                            gemm_accumulate((rows, n, c), &mut y[start..], hw, w, &x[start..], hw)?;
                            if relu6 {
                                for row in y.chunks_exact_mut(hw) {
                                    relu6_in_place(&mut row[start..start + n]);
                                }
                            }
                        }
                        Ok::<(), candle_core::Error>(())
                    },
                )
            })?;
        Ok(y)
    }

    impl CustomOp3 for Pointwise {
        fn name(&self) -> &'static str {
            "conv1x1-bias-relu6"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let (b, c, h, w) = l1.shape().dims4()?;
            let out_channels = l3.shape().elem_count();
            if l2.shape().elem_count() != out_channels * c {
                candle_core::bail!("1x1 convolution: weights {:?} for {c} channels", l2.shape());
            }
            let sizes = (b, c, h * w);
            let y = match s1 {
                CpuStorage::F32(_) => CpuStorage::F32(forward(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    sizes,
                    self.relu6,
                )?),
                CpuStorage::F64(_) => CpuStorage::F64(forward(
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    sizes,
                    self.relu6,
                )?),
                _ => candle_core::bail!("1x1 convolution: f32 or f64 only"),
            };
            Ok((y, Shape::from((b, out_channels, h, w))))
        }

        /// Through the activation, then a matrix product's backward:
        /// `dx = wᵀ g`, `dw = Σ_images g xᵀ`, `db = Σ g`.
        fn bwd(
            &self,
            x: &Tensor,
            weight: &Tensor,
            _bias: &Tensor,
            res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let grad = act_grad(res, grad, self.relu6)?;
            let (b, c, h, w) = x.dims4()?;
            let out_channels = weight.dim(0)?;
            let g = grad.reshape((b, out_channels, h * w))?;
            let weight = weight.reshape((out_channels, c))?;
            let grad_x = weight
                .t()?
                .broadcast_left(b)?
                .matmul(&g)?
                .reshape((b, c, h, w))?;
            let grad_w = g
                .matmul(&x.reshape((b, c, h * w))?.t()?)?
                .sum(0)?
                .reshape((out_channels, c, 1, 1))?;
            let grad_bias = grad.sum((0, 2, 3))?;
            Ok((Some(grad_x), Some(grad_w), Some(grad_bias)))
        }
    }
}

/// Depthwise convolution with TensorFlow SAME padding, its bias and ReLU6
/// as one operation: a CPU kernel of its own with a backward pass, or
/// candle's grouped convolution and [`super::fused::bias_act`] elsewhere.
mod depthwise {
    use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

    use super::kernels::{
        Float, act_grad, axpy, axpy_run, contiguous, dot, planes, relu6_in_place, vectorized,
    };
    use super::same_padding;
    use crate::error::Result;

    /// Elements of output a kernel accumulates at a time: a few rows, which
    /// stay in the L1 cache while every tap adds to them.
    const BLOCK_ELEMENTS: usize = 2048;

    /// `x` `(b, c, h, w)` convolved with `weight` `(c, 1, k, k)`, channel by
    /// channel, SAME padding, plus `bias` `(c,)`, then ReLU6 if `relu6`.
    pub(super) fn conv(
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        relu6: bool,
    ) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        let (filters, per_filter, k, k2) = weight.dims4()?;
        if (filters, per_filter, k2) != (c, 1, k) || bias.elem_count() != c || stride == 0 {
            return Err(crate::error::MlError::InvalidRequest(format!(
                "depthwise convolution of {c} channels with weights {:?}, bias {:?}, stride {stride}",
                weight.dims(),
                bias.dims()
            )));
        }
        let geometry = Geometry::new(h, w, k, stride);
        let native = x.device().is_cpu()
            && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
            && weight.dtype() == x.dtype()
            && bias.dtype() == x.dtype();
        if native {
            let x = x.contiguous()?;
            return Ok(x.apply_op3(
                &weight.contiguous()?,
                &bias.contiguous()?,
                Forward { geometry, relu6 },
            )?);
        }
        let (top, bottom, _) = same_padding(h, k, stride);
        let (left, right, _) = same_padding(w, k, stride);
        let y = x
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?
            .conv2d(weight, 0, stride, 1, c)?;
        super::fused::bias_act(&y, bias, relu6)
    }

    /// Sizes of one depthwise convolution, and the layout its kernels work
    /// in.
    ///
    /// The zero-padded input plane is split into `stride²` phases
    /// (`phase[a][b][r][c] = padded[r * stride + a][c * stride + b]`), each
    /// `phase_rows x phase_cols`. Output element `(oy, ox)` then reads, for
    /// tap `(ky, kx)`, phase `(ky % stride, kx % stride)` at
    /// `(oy + ky / stride, ox + kx / stride)`. Outputs are accumulated with
    /// the phases' row length (`phase_cols`; the extra columns are
    /// scratch), so each tap is one long contiguous multiply-add over a
    /// block of rows, which vectorises, instead of a short loop per row.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Geometry {
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        pad_top: usize,
        pad_left: usize,
        out_h: usize,
        out_w: usize,
        phase_rows: usize,
        phase_cols: usize,
        /// Elements per phase, with slack for the scratch columns' reads.
        phase_len: usize,
    }

    impl Geometry {
        pub(super) fn new(h: usize, w: usize, k: usize, stride: usize) -> Self {
            let (pad_top, _, out_h) = same_padding(h, k, stride);
            let (pad_left, _, out_w) = same_padding(w, k, stride);
            let stride = stride.max(1);
            // What the outputs read, and at least the whole input (a 1x1
            // stride-2 convolution skips the last row of an even input).
            let padded_h = ((out_h.max(1) - 1) * stride + k).max(pad_top + h);
            let padded_w = ((out_w.max(1) - 1) * stride + k).max(pad_left + w);
            let phase_rows = padded_h.div_ceil(stride);
            let phase_cols = padded_w.div_ceil(stride);
            Geometry {
                h,
                w,
                k,
                stride,
                pad_top,
                pad_left,
                out_h,
                out_w,
                phase_rows,
                phase_cols,
                phase_len: phase_rows * phase_cols + k,
            }
        }

        /// Length of an output plane in the phases' row layout.
        fn wide_len(&self) -> usize {
            self.out_h * self.phase_cols
        }

        /// Length of all the phases of a plane.
        fn phases_len(&self) -> usize {
            self.stride * self.stride * self.phase_len
        }

        /// Output rows accumulated at a time.
        fn block_rows(&self) -> usize {
            (BLOCK_ELEMENTS / self.phase_cols.max(1)).clamp(1, self.out_h.max(1))
        }

        /// `(index of the phase, offset in it)` of each tap.
        fn taps(&self) -> Vec<(usize, usize)> {
            let s = self.stride;
            let mut taps = Vec::with_capacity(self.k * self.k);
            for ky in 0..self.k {
                for kx in 0..self.k {
                    let phase = (ky % s) * s + kx % s;
                    taps.push((phase * self.phase_len, (ky / s) * self.phase_cols + kx / s));
                }
            }
            taps
        }

        /// The taps in runs that read one phase row at consecutive offsets
        /// (`kx = b, b + stride, ...` of one `ky`): `(where the first reads,
        /// the taps' indices)`, so that one pass adds them all.
        fn tap_runs(&self) -> Vec<(usize, Vec<usize>)> {
            let (s, offsets) = (self.stride, self.taps());
            let mut runs = Vec::new();
            for ky in 0..self.k {
                for b in 0..s.min(self.k) {
                    let taps: Vec<usize> =
                        (b..self.k).step_by(s).map(|kx| ky * self.k + kx).collect();
                    let (phase, offset) = offsets[taps[0]];
                    runs.push((phase + offset, taps));
                }
            }
            runs
        }

        /// Where input element `(iy, ix)` lives in the phases.
        fn phase_index(&self, iy: usize, ix: usize) -> usize {
            let s = self.stride;
            let (py, px) = (iy + self.pad_top, ix + self.pad_left);
            ((py % s) * s + px % s) * self.phase_len + (py / s) * self.phase_cols + px / s
        }

        /// For input row `iy` and each column phase `b`: the first input
        /// column in that phase and where it goes in the phases (the rest
        /// of the phase's columns follow every `stride` input columns).
        fn row_runs(&self, iy: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
            let s = self.stride;
            (0..s.min(self.w)).map(move |ix| (ix, self.phase_index(iy, ix)))
        }

        /// Splits an input plane into `phases` (`phases_len()` long). Only
        /// the input's own positions are written: the padding keeps what
        /// `phases` had there, zeros when it was allocated zeroed, so a
        /// buffer can be reused for every plane of one geometry.
        #[inline(always)]
        fn split_into<T: Float>(&self, plane: &[T], phases: &mut [T]) {
            let s = self.stride;
            for (iy, row) in plane.chunks_exact(self.w).enumerate() {
                if s == 1 {
                    let start = self.phase_index(iy, 0);
                    phases[start..start + self.w].copy_from_slice(row);
                    continue;
                }
                if s == 2 && self.w >= 2 {
                    // Even and odd columns into two phases, pairwise so
                    // that it vectorises.
                    let (even, odd) = (self.phase_index(iy, 0), self.phase_index(iy, 1));
                    let (lo, hi) = (even.min(odd), even.max(odd));
                    let (head, tail) = phases.split_at_mut(hi);
                    let (first, second) = (&mut head[lo..], tail);
                    let (to_even, to_odd) = if even < odd {
                        (first, second)
                    } else {
                        (second, first)
                    };
                    let pairs = row.chunks_exact(2);
                    if let Some(&last) = pairs.remainder().first() {
                        to_even[self.w / 2] = last;
                    }
                    for ((pair, e), o) in pairs.zip(to_even.iter_mut()).zip(to_odd.iter_mut()) {
                        *e = pair[0];
                        *o = pair[1];
                    }
                    continue;
                }
                for (first, start) in self.row_runs(iy) {
                    let run = row[first..].iter().step_by(s);
                    for (dst, &v) in phases[start..].iter_mut().zip(run) {
                        *dst = v;
                    }
                }
            }
        }

        /// The inverse of [`Self::split_into`] (padding dropped).
        #[inline(always)]
        fn merge<T: Float>(&self, phases: &[T], plane: &mut [T]) {
            for (iy, row) in plane.chunks_exact_mut(self.w).enumerate() {
                if self.stride == 1 {
                    let start = self.phase_index(iy, 0);
                    row.copy_from_slice(&phases[start..start + self.w]);
                    continue;
                }
                for (first, start) in self.row_runs(iy) {
                    let run = row[first..].iter_mut().step_by(self.stride);
                    for (dst, &v) in run.zip(&phases[start..]) {
                        *dst = v;
                    }
                }
            }
        }

        /// An output plane in the wide layout, scratch columns zero.
        #[inline(always)]
        fn widen<T: Float>(&self, plane: &[T], wide: &mut [T]) {
            for (row, out) in wide
                .chunks_exact_mut(self.phase_cols)
                .zip(plane.chunks_exact(self.out_w))
            {
                row[..self.out_w].copy_from_slice(out);
            }
        }
    }

    /// The `k x k` windows of `x` `(b, c, h, w)` with SAME padding, as
    /// channels: `(b, c * k * k, out_h, out_w)`, channel `i * k * k + tap`
    /// holding tap `(ky, kx)` of input channel `i`. A dense convolution is
    /// then a 1x1 convolution of these (im2col), which is how the stem runs
    /// on the CPU. `None` where our kernels do not run (other devices).
    pub(super) fn patches(x: &Tensor, k: usize, stride: usize) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let native = x.device().is_cpu()
            && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
        if !native || k == 0 || stride == 0 {
            return Ok(None);
        }
        let op = Patches(Geometry::new(h, w, k, stride));
        Ok(Some(x.contiguous()?.apply_op1(op)?))
    }

    /// See [`patches`].
    #[derive(Debug, Clone, Copy)]
    struct Patches(Geometry);

    fn patches_cpu<T: Float>(g: &Geometry, x: &[T]) -> Vec<T> {
        let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
        let offsets = g.taps();
        let mut y = vec![T::default(); x.len() / in_plane.max(1) * taps * out_plane];
        let scratch = || vec![T::default(); g.phases_len()];
        planes(
            &mut y,
            taps * out_plane,
            taps * out_plane,
            scratch,
            |phases, p, y| {
                g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
                for (plane, &(phase, offset)) in y.chunks_exact_mut(out_plane).zip(&offsets) {
                    let rows = phases[phase + offset..].chunks(g.phase_cols);
                    for (out, row) in plane.chunks_exact_mut(g.out_w).zip(rows) {
                        out.copy_from_slice(&row[..g.out_w]);
                    }
                }
            },
        );
        y
    }

    /// The gradient of [`patches`]: each window's gradient added back
    /// where the window was read.
    fn patches_grad_cpu<T: Float>(g: &Geometry, gy: &[T]) -> Vec<T> {
        let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
        let offsets = g.taps();
        let mut gx = vec![T::default(); gy.len() / (taps * out_plane).max(1) * in_plane];
        let scratch = || {
            (
                vec![T::default(); g.wide_len()],
                vec![T::default(); g.phases_len()],
            )
        };
        planes(
            &mut gx,
            in_plane,
            taps * out_plane,
            scratch,
            |(wide, phases), p, gx| {
                let gy = &gy[p * taps * out_plane..(p + 1) * taps * out_plane];
                phases.fill(T::default());
                for (plane, &(phase, offset)) in gy.chunks_exact(out_plane).zip(&offsets) {
                    g.widen(plane, wide);
                    let start = phase + offset;
                    axpy(
                        &mut phases[start..start + wide.len()],
                        T::from_f64(1.0),
                        wide,
                    );
                }
                g.merge(phases, gx);
            },
        );
        gx
    }

    impl CustomOp1 for Patches {
        fn name(&self) -> &'static str {
            "patches"
        }

        fn cpu_fwd(
            &self,
            storage: &CpuStorage,
            layout: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = &self.0;
            let (b, c, _, _) = layout.shape().dims4()?;
            let shape = Shape::from((b, c * g.k * g.k, g.out_h, g.out_w));
            let y = match storage {
                CpuStorage::F32(_) => CpuStorage::F32(patches_cpu(g, contiguous(storage, layout)?)),
                CpuStorage::F64(_) => CpuStorage::F64(patches_cpu(g, contiguous(storage, layout)?)),
                _ => candle_core::bail!("patches: f32 or f64 only"),
            };
            Ok((y, shape))
        }

        fn bwd(
            &self,
            _x: &Tensor,
            _res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<Option<Tensor>> {
            Ok(Some(
                grad.contiguous()?.apply_op1_no_bwd(&PatchesGrad(self.0))?,
            ))
        }
    }

    /// See [`patches_grad_cpu`].
    #[derive(Debug, Clone, Copy)]
    struct PatchesGrad(Geometry);

    impl CustomOp1 for PatchesGrad {
        fn name(&self) -> &'static str {
            "patches-grad"
        }

        fn cpu_fwd(
            &self,
            storage: &CpuStorage,
            layout: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = &self.0;
            let (b, ck, _, _) = layout.shape().dims4()?;
            let shape = Shape::from((b, ck / (g.k * g.k).max(1), g.h, g.w));
            let gx = match storage {
                CpuStorage::F32(_) => {
                    CpuStorage::F32(patches_grad_cpu(g, contiguous(storage, layout)?))
                }
                CpuStorage::F64(_) => {
                    CpuStorage::F64(patches_grad_cpu(g, contiguous(storage, layout)?))
                }
                _ => candle_core::bail!("patches: f32 or f64 only"),
            };
            Ok((gx, shape))
        }
    }

    /// `y[b, c] = act(bias[c] + sum over taps of w[c, tap] * x[b, c]
    /// (shifted, strided))`.
    #[derive(Debug, Clone, Copy)]
    struct Forward {
        geometry: Geometry,
        relu6: bool,
    }

    fn forward<T: Float>(g: &Geometry, x: &[T], w: &[T], bias: &[T], relu6: bool) -> Vec<T> {
        let channels = bias.len().max(1);
        let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
        let runs = g.tap_runs();
        let block_rows = g.block_rows();
        let mut y = vec![T::default(); x.len() / in_plane.max(1) * out_plane];
        let scratch = || {
            (
                vec![T::default(); g.phases_len()],
                vec![T::default(); block_rows * g.phase_cols],
            )
        };
        planes(
            &mut y,
            out_plane,
            out_plane * taps,
            scratch,
            |(phases, acc), p, y| {
                let c = p % channels;
                let w = &w[c * taps..(c + 1) * taps];
                vectorized(
                    #[inline(always)]
                    || {
                        g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
                        for (block, out) in y.chunks_mut(block_rows * g.out_w).enumerate() {
                            let rows = out.len() / g.out_w;
                            let first = block * block_rows * g.phase_cols;
                            let acc = &mut acc[..rows * g.phase_cols];
                            acc.fill(bias[c]);
                            for (start, taps) in &runs {
                                let x = &phases[start + first..];
                                match taps[..] {
                                    [a] => axpy_run(acc, [w[a]], x),
                                    [a, b] => axpy_run(acc, [w[a], w[b]], x),
                                    [a, b, c] => axpy_run(acc, [w[a], w[b], w[c]], x),
                                    [a, b, c, d] => axpy_run(acc, [w[a], w[b], w[c], w[d]], x),
                                    [a, b, c, d, e] => {
                                        axpy_run(acc, [w[a], w[b], w[c], w[d], w[e]], x)
                                    }
                                    _ => {
                                        for (i, &tap) in taps.iter().enumerate() {
                                            axpy_run(acc, [w[tap]], &x[i..]);
                                        }
                                    }
                                }
                            }
                            for (out, row) in out
                                .chunks_exact_mut(g.out_w)
                                .zip(acc.chunks_exact(g.phase_cols))
                            {
                                out.copy_from_slice(&row[..g.out_w]);
                                if relu6 {
                                    relu6_in_place(out);
                                }
                            }
                        }
                    },
                );
            },
        );
        y
    }

    impl CustomOp3 for Forward {
        fn name(&self) -> &'static str {
            "depthwise-conv2d-bias-relu6"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = &self.geometry;
            let (b, c, _, _) = l1.shape().dims4()?;
            if l2.shape().elem_count() != c * g.k * g.k || l3.shape().elem_count() != c {
                candle_core::bail!(
                    "depthwise convolution: weights {:?}, bias {:?} for {c} channels",
                    l2.shape(),
                    l3.shape()
                );
            }
            let shape = Shape::from((b, c, g.out_h, g.out_w));
            let y = match s1 {
                CpuStorage::F32(_) => CpuStorage::F32(forward(
                    g,
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    self.relu6,
                )),
                CpuStorage::F64(_) => CpuStorage::F64(forward(
                    g,
                    contiguous(s1, l1)?,
                    contiguous(s2, l2)?,
                    contiguous(s3, l3)?,
                    self.relu6,
                )),
                _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
            };
            Ok((y, shape))
        }

        fn bwd(
            &self,
            x: &Tensor,
            w: &Tensor,
            _bias: &Tensor,
            res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
            let grad = act_grad(res, grad, self.relu6)?.contiguous()?;
            let grad_x = grad.apply_op2_no_bwd(w, &GradInput(self.geometry))?;
            let grad_w = x.apply_op2_no_bwd(&grad, &GradWeight(self.geometry))?;
            let grad_bias = grad.sum((0, 2, 3))?;
            Ok((Some(grad_x), Some(grad_w), Some(grad_bias)))
        }
    }

    /// `dL/dx[b, c]`: every output's gradient sent back to the inputs it read.
    #[derive(Debug, Clone, Copy)]
    struct GradInput(Geometry);

    fn grad_input<T: Float>(g: &Geometry, gy: &[T], w: &[T], channels: usize) -> Vec<T> {
        let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
        let offsets = g.taps();
        let mut gx = vec![T::default(); gy.len() / out_plane.max(1) * in_plane];
        let scratch = || {
            (
                vec![T::default(); g.wide_len()],
                vec![T::default(); g.phases_len()],
            )
        };
        planes(
            &mut gx,
            in_plane,
            out_plane * taps,
            scratch,
            |(wide, phases), p, gx| {
                let w = &w[(p % channels) * taps..(p % channels + 1) * taps];
                vectorized(
                    #[inline(always)]
                    || {
                        g.widen(&gy[p * out_plane..(p + 1) * out_plane], wide);
                        phases.fill(T::default());
                        for (&wt, &(phase, offset)) in w.iter().zip(&offsets) {
                            let start = phase + offset;
                            axpy(&mut phases[start..start + wide.len()], wt, wide);
                        }
                        g.merge(phases, gx);
                    },
                );
            },
        );
        gx
    }

    impl CustomOp2 for GradInput {
        fn name(&self) -> &'static str {
            "depthwise-conv2d-grad-input"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = &self.0;
            let (b, c, _, _) = l1.shape().dims4()?;
            let shape = Shape::from((b, c, g.h, g.w));
            let gx = match s1 {
                CpuStorage::F32(_) => {
                    CpuStorage::F32(grad_input(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
                }
                CpuStorage::F64(_) => {
                    CpuStorage::F64(grad_input(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
                }
                _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
            };
            Ok((gx, shape))
        }
    }

    /// `dL/dw[c, tap]`: per plane, then summed over the batch.
    #[derive(Debug, Clone, Copy)]
    struct GradWeight(Geometry);

    fn grad_weight<T: Float>(g: &Geometry, x: &[T], gy: &[T], channels: usize) -> Vec<T> {
        let (in_plane, out_plane, taps) = (g.h * g.w, g.out_h * g.out_w, g.k * g.k);
        let offsets = g.taps();
        let count = x.len() / in_plane.max(1);
        let mut partial = vec![T::default(); count * taps];
        let scratch = || {
            (
                vec![T::default(); g.phases_len()],
                vec![T::default(); g.wide_len()],
            )
        };
        planes(
            &mut partial,
            taps,
            out_plane * taps,
            scratch,
            |(phases, wide), p, gw| {
                vectorized(
                    #[inline(always)]
                    || {
                        g.split_into(&x[p * in_plane..(p + 1) * in_plane], phases);
                        g.widen(&gy[p * out_plane..(p + 1) * out_plane], wide);
                        for (gw, &(phase, offset)) in gw.iter_mut().zip(&offsets) {
                            let start = phase + offset;
                            *gw = dot(wide, &phases[start..start + wide.len()]);
                        }
                    },
                );
            },
        );
        let mut gw = vec![T::default(); channels * taps];
        for (p, plane) in partial.chunks(taps).enumerate() {
            let c = p % channels;
            for (acc, &v) in gw[c * taps..(c + 1) * taps].iter_mut().zip(plane) {
                *acc += v;
            }
        }
        gw
    }

    impl CustomOp2 for GradWeight {
        fn name(&self) -> &'static str {
            "depthwise-conv2d-grad-weight"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let g = &self.0;
            let (_, c, _, _) = l1.shape().dims4()?;
            let shape = Shape::from((c, 1, g.k, g.k));
            let gw = match s1 {
                CpuStorage::F32(_) => {
                    CpuStorage::F32(grad_weight(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
                }
                CpuStorage::F64(_) => {
                    CpuStorage::F64(grad_weight(g, contiguous(s1, l1)?, contiguous(s2, l2)?, c))
                }
                _ => candle_core::bail!("depthwise convolution: f32 or f64 only"),
            };
            Ok((gw, shape))
        }
    }
    #[cfg(test)]
    mod tests {
        use candle_core::{Device, Tensor, Var};

        use super::*;
        use crate::rng::SplitMix64;

        fn random(shape: &[usize], rng: &mut SplitMix64) -> Tensor {
            let n = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| f64::from(rng.next_f32()) - 0.5).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
        }

        fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
            (a - b)
                .and_then(|d| d.abs())
                .and_then(|d| d.flatten_all())
                .and_then(|d| d.max(0))
                .and_then(|d| d.to_scalar::<f64>())
                .expect("diff")
        }

        /// A dense convolution as a 1x1 convolution of [`patches`] agrees
        /// with candle's, forward and backward, for every kernel size,
        /// stride and parity.
        #[test]
        fn patches_make_a_dense_convolution() {
            let mut rng = SplitMix64::new(4);
            for (c, h, w) in [(3, 7, 7), (2, 8, 8), (3, 9, 6), (1, 1, 1), (3, 2, 3)] {
                for k in [1, 3, 5] {
                    for stride in [1, 2] {
                        let x = Var::from_tensor(&random(&[2, c, h, w], &mut rng)).expect("x");
                        let wt = random(&[4, c, k, k], &mut rng);
                        let probe =
                            random(&[2, 4, h.div_ceil(stride), w.div_ceil(stride)], &mut rng);
                        let ours = patches(&x, k, stride)
                            .and_then(|p| {
                                p.ok_or(crate::error::MlError::InvalidRequest("cpu".into()))
                            })
                            .and_then(|p| {
                                let (b, ck, oh, ow) = p.dims4()?;
                                let weight = wt.reshape((4, ck))?.broadcast_left(b)?;
                                Ok(weight
                                    .matmul(&p.reshape((b, ck, oh * ow))?)?
                                    .reshape((b, 4, oh, ow))?)
                            })
                            .expect("ours");
                        let (top, bottom, _) = same_padding(h, k, stride);
                        let (left, right, _) = same_padding(w, k, stride);
                        let theirs = x
                            .pad_with_zeros(2, top, bottom)
                            .and_then(|t| t.pad_with_zeros(3, left, right))
                            .and_then(|t| t.conv2d(&wt, 0, stride, 1, 1))
                            .expect("candle");
                        assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride}");
                        assert!(max_diff(&ours, &theirs) < 1e-12, "{h}x{w} k{k} s{stride}");
                        let grad = |y: &Tensor| {
                            (y * &probe)
                                .and_then(|t| t.sum_all())
                                .and_then(|t| t.backward())
                                .expect("bwd")
                                .get(&x)
                                .expect("grad")
                                .clone()
                        };
                        if h == w {
                            let diff = max_diff(&grad(&ours), &grad(&theirs));
                            assert!(diff < 1e-12, "{h}x{w} k{k} s{stride}");
                        }
                    }
                }
            }
        }

        /// The kernel and its backward agree with candle's grouped
        /// convolution (on explicitly padded input) for every kernel size,
        /// stride and parity, square or not.
        #[test]
        fn matches_candle_grouped_convolution() {
            let mut rng = SplitMix64::new(3);
            // The last is big enough to run on several threads.
            for (c, h, w) in [
                (3, 7, 7),
                (3, 8, 8),
                (3, 9, 6),
                (3, 1, 1),
                (3, 2, 3),
                (8, 40, 40),
            ] {
                for k in [1, 3, 5] {
                    for stride in [1, 2] {
                        let x = Var::from_tensor(&random(&[2, c, h, w], &mut rng)).expect("x");
                        let wt = Var::from_tensor(&random(&[c, 1, k, k], &mut rng)).expect("w");
                        let probe =
                            random(&[2, c, h.div_ceil(stride), w.div_ceil(stride)], &mut rng);
                        let zero = Tensor::zeros(c, x.dtype(), &Device::Cpu).expect("bias");
                        let ours = conv(&x, &wt, &zero, stride, false).expect("ours");
                        let (top, bottom, _) = same_padding(h, k, stride);
                        let (left, right, _) = same_padding(w, k, stride);
                        let theirs = x
                            .pad_with_zeros(2, top, bottom)
                            .and_then(|t| t.pad_with_zeros(3, left, right))
                            .and_then(|t| t.conv2d(&wt, 0, stride, 1, c))
                            .expect("candle");
                        assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride}");
                        assert!(max_diff(&ours, &theirs) < 1e-12, "{h}x{w} k{k} s{stride}");
                        let g_ours = (&ours * &probe)
                            .and_then(|t| t.sum_all())
                            .and_then(|t| t.backward())
                            .expect("bwd");
                        // candle's conv2d backward assumes square inputs;
                        // compare gradients where it applies.
                        if h == w {
                            let g_theirs = (&theirs * &probe)
                                .and_then(|t| t.sum_all())
                                .and_then(|t| t.backward())
                                .expect("bwd");
                            for v in [&x, &wt] {
                                let a = g_ours.get(v).expect("ours");
                                let b = g_theirs.get(v).expect("theirs");
                                assert!(max_diff(a, b) < 1e-12, "{h}x{w} k{k} s{stride}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
        assert_eq!(same_padding(112, 3, 1), (1, 1, 112));
        assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
        assert_eq!(same_padding(7, 5, 1), (2, 2, 7));
        assert_eq!(same_padding(7, 3, 2), (1, 1, 4));
        assert_eq!(same_padding(1, 5, 2), (2, 2, 1));
    }

    #[test]
    fn lite0_has_sixteen_blocks_and_the_right_widths() {
        let cfg = Config::lite0();
        let blocks = cfg.blocks();
        assert_eq!(blocks.len(), 16);
        assert_eq!(blocks[0].in_channels, 32);
        assert_eq!(blocks[0].expand_ratio, 1);
        assert_eq!(blocks[15].out_channels, 320);
        assert_eq!(blocks.iter().filter(|b| b.residual()).count(), 9);
        assert_eq!(blocks.iter().filter(|b| b.stride == 2).count(), 4);
    }

    fn tiny_model(dtype: DType) -> EfficientNet {
        let cfg = Config::tiny();
        let weights = random_weights(&cfg, 7, &Device::Cpu).expect("weights");
        EfficientNet::new(&cfg, VarBuilder::from_tensors(weights, dtype, &Device::Cpu))
            .expect("model")
    }

    fn random_input(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| 2.0 * rng.next_f32() - 1.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("input")
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("values")
    }

    #[test]
    fn shapes_and_split_forward_agree() {
        let model = tiny_model(DType::F32);
        let x = random_input(&[2, 3, 17, 12], 1, DType::F32);
        let logits = model.forward(&x).expect("forward");
        assert_eq!(logits.dims(), &[2, 5]);
        let embedding = model.embed(&x).expect("embed");
        assert_eq!(embedding.dims(), &[2, 24]);
        for k in 0..=model.num_blocks() {
            let h = model.features_until(&x, k).expect("features");
            let tail = model.forward_tail(&h, k).expect("tail");
            assert_eq!(values(&tail), values(&embedding), "split at {k}");
        }
        assert!(model.features_until(&x, 5).is_err());
        assert!(
            model
                .forward(&random_input(&[1, 4, 8, 8], 1, DType::F32))
                .is_err()
        );
        let top = model.classify(&x, 3).expect("classify");
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].len(), 3);
        assert!(top[0][0].probability >= top[0][1].probability);
    }

    /// Folding BatchNorm into the convolution computes what an unfolded
    /// convolution and BatchNorm compute (checked on the stem).
    #[test]
    fn folded_batch_norm_matches_the_unfolded_layer() {
        let cfg = Config::tiny();
        let weights = random_weights(&cfg, 7, &Device::Cpu).expect("weights");
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F64, &Device::Cpu);
        let stem = ConvBn::load(&vb, "_conv_stem", "_bn0", 3, 8, 3, 2, ConvKind::Dense, 1e-3)
            .expect("stem");
        let x = random_input(&[1, 3, 10, 10], 2, DType::F64);
        let ours = stem.forward(&x, false).expect("folded");
        let get = |n: &str| {
            weights[n]
                .to_dtype(DType::F64)
                .and_then(|t| t.reshape((1, (), 1, 1)))
                .expect(n)
        };
        let conv = x
            .pad_with_zeros(2, 0, 1)
            .and_then(|t| t.pad_with_zeros(3, 0, 1))
            .and_then(|t| {
                t.conv2d(
                    &weights["_conv_stem.weight"].to_dtype(DType::F64)?,
                    0,
                    2,
                    1,
                    1,
                )
            })
            .expect("conv");
        let reference = conv
            .broadcast_sub(&get("_bn0.running_mean"))
            .and_then(|t| t.broadcast_div(&(get("_bn0.running_var") + 1e-3)?.sqrt()?))
            .and_then(|t| t.broadcast_mul(&get("_bn0.weight")))
            .and_then(|t| t.broadcast_add(&get("_bn0.bias")))
            .expect("bn");
        for (a, b) in values(&ours).iter().zip(values(&reference)) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    /// Backward through every layer kind (depthwise stride 1 and 2, kernel 3
    /// and 5, residuals, ReLU6, pooling) matches central finite differences
    /// in f64, for the input and for trainable weights of every kind.
    #[test]
    fn gradients_match_finite_differences() {
        let mut model = tiny_model(DType::F64);
        let vars = model.make_trainable(0).expect("trainable");
        let x = Var::from_tensor(&random_input(&[2, 3, 10, 9], 3, DType::F64)).expect("x");
        let probe = random_input(&[2, 5], 4, DType::F64);
        let loss = |model: &EfficientNet| {
            model
                .forward(&x)
                .and_then(|l| Ok((l * &probe)?.sum_all()?))
                .expect("loss")
        };
        let grads = loss(&model).backward().expect("backward");
        let scalar = |t: &Tensor| t.to_scalar::<f64>().expect("scalar");

        let mut checks: Vec<(String, &Var)> = vec![("input".into(), &x)];
        for (name, var) in &vars {
            if name.starts_with("_blocks.0.")
                || name.starts_with("_blocks.1._depthwise")
                || name.starts_with("_blocks.3.")
                || name.starts_with("_conv_head")
            {
                checks.push((name.clone(), var));
            }
        }
        assert!(checks.len() >= 12, "{}", checks.len());
        let eps = 1e-6;
        let mut rng = SplitMix64::new(5);
        for (name, var) in checks {
            let grad = values(grads.get(var.as_tensor()).expect("gradient"));
            assert!(grad.iter().any(|g| *g != 0.0), "{name}: all-zero gradient");
            let original = values(var.as_tensor());
            for _ in 0..4 {
                let index = rng.below(original.len());
                let at = |delta: f64| {
                    let mut shifted = original.clone();
                    shifted[index] += delta;
                    var.set(&Tensor::from_vec(shifted, var.shape(), &Device::Cpu).expect("t"))
                        .expect("set");
                    scalar(&loss(&model))
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                let analytic = grad[index];
                let tolerance = 1e-7 + 1e-5 * analytic.abs().max(numeric.abs());
                assert!(
                    (analytic - numeric).abs() <= tolerance,
                    "{name}[{index}]: backward {analytic:e}, finite differences {numeric:e}"
                );
            }
            var.set(&Tensor::from_vec(original, var.shape(), &Device::Cpu).expect("t"))
                .expect("restore");
        }
    }
}
