//! Model architectures, one file each (config, blocks, `new(cfg, vb)`,
//! `forward`), in the manner of candle-transformers.
//!
//! - [`llama`]: the Llama family (SmolLM2, Llama 2/3, TinyLlama, Mistral
//!   without sliding windows, Qwen2 with its q/k/v biases), with LoRA and a
//!   differentiable training forward.
//! - [`efficientnet`]: EfficientNet-Lite, the photo classifier and embedder
//!   of [`crate::vision`] (which re-exports it as `vision::efficientnet`).

pub mod efficientnet;
pub mod llama;
pub mod quantized;
