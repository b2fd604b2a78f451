//! Vision: an image classifier and embedder for photos, on candle.
//!
//! - [`efficientnet`]: EfficientNet-Lite0 (ImageNet-1k), our own candle
//!   model: a 1280-d embedding per photo, 1000-class logits, and a split
//!   forward for fine-tuning the last blocks. It lives with the other
//!   architectures in [`crate::models::efficientnet`] and is re-exported
//!   here, at the path callers have always used.
//! - [`finetune`]: the last blocks and a multi-label head trained together
//!   on a few labelled photos, with augmentation.
//! - [`pth`]: PyTorch's legacy (pre-1.6) checkpoint format, in which the
//!   published Lite0 weights exist, read without Python.
//! - [`mod@preprocess`]: the one preprocessing both training and inference use
//!   (decode, shorter side 256 bicubic, centre 224², `(x - 127.5) / 128`).
//!
//! [`load_efficientnet`] loads the weights (the legacy `.pth` or a
//! `.safetensors` with the same tensor names) and says which file they were,
//! by sha256, for run records.

pub use crate::models::efficientnet;
pub mod finetune;
pub mod preprocess;
pub mod pth;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

pub use efficientnet::{Config, EfficientNet, Prediction, top_k};
pub use preprocess::{augment, load_batch, load_image, preprocess, preprocess_batch, to_tensor};
pub use pth::load_legacy_pth;

use crate::error::{MlError, Result};

/// The folder of EfficientNet-Lite0 in the model cache
/// ([`crate::registry::models_dir`]`/efficientnet-lite0`).
pub const LITE0_DIR: &str = "efficientnet-lite0";

/// The file name of the published Lite0 checkpoint.
pub const LITE0_FILE: &str = "efficientnet-lite0-57934424.pth";

/// Loads EfficientNet-Lite0 from a legacy PyTorch checkpoint (`.pth`, `.pt`)
/// or a `.safetensors` file with the same tensor names, in f32 on `device`.
/// Returns the model and the sha256 of the file.
pub fn load_efficientnet(path: &Path, device: &Device) -> Result<(EfficientNet, String)> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (weights, sha256): (HashMap<String, Tensor>, String) = match extension.as_str() {
        "pth" | "pt" => {
            let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            (pth::parse_legacy_pth(&bytes, path)?, sha256)
        }
        "safetensors" => {
            crate::loaders::hub_dir::check_safetensors_extent(path)?;
            let weights = candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| MlError::bad_model(path, e.to_string()))?;
            (weights, crate::loaders::sha256_file(path)?)
        }
        _ => {
            return Err(MlError::bad_model(
                path,
                "expected a PyTorch checkpoint (.pth) or a .safetensors file",
            ));
        }
    };
    let vb = VarBuilder::from_tensors(weights, DType::F32, device);
    let model = EfficientNet::new(&Config::lite0(), vb).map_err(|e| match e {
        MlError::Candle(e) => MlError::bad_model(path, format!("not EfficientNet-Lite0: {e}")),
        other => other,
    })?;
    Ok((model, sha256))
}
