//! Hearth's on-device machine learning, on candle (CPU, CUDA or Metal).
//!
//! - [`models::llama`]: a Llama-family decoder whose frozen weights are
//!   shared by the base model and any [`LoraAdapter`].
//! - [`ops`]: the decoder's ops in a differentiable flavour for training and
//!   a fused flavour for inference.
#![deny(missing_docs)]

mod busy_pool;
pub mod constrain;
pub mod device;
pub mod embed;
mod error;
mod fastmath;
pub mod generate;
mod kernels;
pub mod loaders;
pub mod lora;
pub mod loss;
pub mod models;
pub mod ops;
pub mod peft;
mod qmatmul;
pub mod registry;
pub mod rng;
pub mod tagger;
pub mod tokenizer;
pub mod train;
pub mod vision;

pub use candle_core as candle;
pub use candle_nn;
pub use device::DeviceChoice;
pub use error::{MlError, Result};
pub use hearth_progress::{CancelToken, NoProgress, Progress};
pub use image;
pub use loaders::{LoadedModel, ModelInfo, load};
pub use lora::{LoraAdapter, LoraConfig, Target};
pub use models::llama::{Config, Forward, KvCache, Llama};
pub use tokenizer::TextTokenizer;
