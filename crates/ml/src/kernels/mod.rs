//! CPU kernels of our own, as candle custom ops with their backward passes,
//! for the places where candle's tensor operations cost too much.
//!
//! They started inside EfficientNet and are split out by kernel family so
//! that the model file reads as a model (config, `new(cfg, vb)`, `forward`)
//! and each kernel can be read, and tested against candle, on its own:
//!
//! - [`gemm`]: the one safe door to the `gemm` crate (strided, accumulating
//!   matrix products); the only `unsafe` the kernels need, with its safety
//!   argument. Every direct product in the crate goes through it.
//! - [`common`]: what the kernels share (element types, SIMD dispatch,
//!   splitting work over rayon's threads, ReLU6's backward).
//! - [`bias_act`]: bias plus ReLU6 in one pass.
//! - [`pointwise`]: 1x1 convolutions with bias and ReLU6, on [`gemm`].
//! - [`geometry`]: TensorFlow SAME padding and the phase layout that
//!   [`depthwise`] and [`patches`] share.
//! - [`depthwise`]: depthwise convolutions with bias and ReLU6.
//! - [`patches`]: im2col, so a dense convolution runs as a 1x1 one.
//! - [`channels_last`]: the same convolutions without backward passes,
//!   channels last, for inference (embeddings, fine-tuning's frozen
//!   prefix): depthwise and the stem with explicit SIMD across channels.
//!
//! Each runs natively on the CPU in f32 and f64 and falls back to candle's
//! operations elsewhere.

pub(crate) mod bias_act;
pub(crate) mod channels_last;
pub(crate) mod common;
pub(crate) mod depthwise;
pub(crate) mod gemm;
pub(crate) mod geometry;
pub(crate) mod patches;
pub(crate) mod pointwise;

#[cfg(test)]
mod tests;
