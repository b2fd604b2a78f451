//! Loading a base model from disk, whatever its format, into one
//! [`LoadedModel`]: the model, its tokenizer and what identifies it.
//!
//! - a Hugging Face directory (`config.json`, `tokenizer.json`,
//!   `*.safetensors`, memory-mapped): [`hub_dir`];
//! - a GGUF file, dequantized to f32, tokenizer rebuilt from its metadata,
//!   llama.cpp's Q/K row permutation undone: [`gguf`];
//! - a llama2.c checkpoint with its `tokenizer.bin`: [`llama2c`].
//!
//! Every loader produces weights in Hugging Face naming and layout, so
//! adapters trained on any of them are interchangeable (and PEFT-compatible).

pub mod gguf;
pub mod hub_dir;
pub mod llama2c;

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{MlError, Result};
use crate::models::llama::Llama;
use crate::tokenizer::TextTokenizer;

/// A base model ready to use.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// What it is and where it came from.
    pub info: ModelInfo,
}

/// Identity of a loaded base model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// A human name (the folder or file name).
    pub name: String,
    /// `safetensors`, `gguf` or `llama2c`.
    pub format: &'static str,
    /// sha256 of the weights file (for several files: of their sorted
    /// `name sha256` lines). Adapters record it to refuse a wrong base.
    pub sha256: String,
    /// The files it was loaded from.
    pub files: Vec<PathBuf>,
}

/// Loads whatever `path` is: a directory with `config.json`, a `.gguf`
/// file, or a llama2.c `.bin` (its tokenizer beside it).
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    if path.is_dir() {
        return hub_dir::load(path, device);
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match extension.to_ascii_lowercase().as_str() {
        "gguf" => gguf::load(path, device),
        "bin" => llama2c::load(path, None, device),
        _ => Err(MlError::bad_model(
            path,
            "expected a model folder (config.json + *.safetensors), a .gguf file or a llama2.c .bin file",
        )),
    }
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| MlError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| MlError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn combined_sha256(files: &[PathBuf]) -> Result<String> {
    if let [single] = files {
        return sha256_file(single);
    }
    let mut lines = String::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lines.push_str(&format!("{name} {}\n", sha256_file(file)?));
    }
    Ok(hex::encode(Sha256::digest(lines.as_bytes())))
}

/// Undoes the row permutation llama.cpp (and Meta's original checkpoints)
/// use for interleaved rotary embeddings, giving the half-split layout of
/// Hugging Face Llama: within each head, rows `(j, s)` ordered `2j + s`
/// become `s·(d/2) + j`.
pub fn unpermute_rotary_rows(weight: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    let head_dim = rows / heads;
    Ok(weight
        .reshape((heads, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape(heads, 2, d/2, cols).swapaxes(1, 2).
        let heads = 2;
        let hf = Tensor::arange(0f32, 8.0 * 3.0, &Device::Cpu)
            .and_then(|t| t.reshape((8, 3)))
            .expect("tensor");
        let permuted = hf
            .reshape((heads, 2, 2, 3))
            .and_then(|t| t.transpose(1, 2))
            .and_then(|t| t.reshape((8, 3)))
            .expect("permute");
        let back = unpermute_rotary_rows(&permuted, heads).expect("unpermute");
        assert_eq!(
            back.to_vec2::<f32>().expect("vec"),
            hf.to_vec2::<f32>().expect("vec")
        );
    }
}
