//! A Hugging Face model directory, as `hf-hub` downloads it: `config.json`,
//! `tokenizer.json`, optional `tokenizer_config.json` (chat template,
//! special tokens) and `generation_config.json` (stop tokens), and one or
//! more `*.safetensors` files, memory-mapped rather than read.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;

use super::{LoadedModel, ModelInfo, combined_sha256};
use crate::error::{MlError, Result};
use crate::models::llama::{HfConfig, Llama};
use crate::tokenizer::TextTokenizer;

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MlError::bad_model(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MlError::io(path, e)),
    }
}

/// Loads the model in `dir`.
pub fn load(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    let config: HfConfig = match read_json(&config_path)? {
        Some(value) => serde_json::from_value(value)
            .map_err(|e| MlError::bad_model(&config_path, e.to_string()))?,
        None => return Err(MlError::bad_model(dir, "no config.json")),
    };
    let cfg = config
        .into_config()
        .map_err(|reason| MlError::bad_model(&config_path, reason))?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MlError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(MlError::bad_model(dir, "no *.safetensors weights"));
    }
    // Validate every header up front, so a truncated download names its file.
    for file in &files {
        check_safetensors_extent(file)?;
    }
    // SAFETY: the weights are mapped read-only; like every memory-mapped
    // loader, this relies on the files not being truncated or rewritten
    // while the model is in use (they live in the model cache, which only
    // `hearth model pull` writes, atomically).
    #[allow(unsafe_code)]
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };
    let model = Llama::new(&cfg, vb).map_err(|e| MlError::bad_model(dir, e.to_string()))?;

    let tokenizer_path = dir.join("tokenizer.json");
    let hf = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| MlError::bad_model(&tokenizer_path, format!("tokenizer: {e}")))?;
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let generation_config = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let token_id = |value: &Value| -> Option<u32> {
        let text = value
            .as_str()
            .or_else(|| value.get("content").and_then(Value::as_str))?;
        hf.token_to_id(text)
    };
    let bos = tokenizer_config.get("bos_token").and_then(token_id);
    let mut stop: Vec<u32> = match generation_config.get("eos_token_id") {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|v| v.as_u64().map(|v| v as u32))
            .collect(),
        Some(Value::Number(id)) => id.as_u64().map(|v| v as u32).into_iter().collect(),
        _ => Vec::new(),
    };
    if let Some(eos) = tokenizer_config.get("eos_token").and_then(token_id)
        && !stop.contains(&eos)
    {
        stop.push(eos);
    }
    let template = tokenizer_config
        .get("chat_template")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(LoadedModel {
        model,
        tokenizer: TextTokenizer::from_hf(hf, bos, stop, template),
        info: ModelInfo {
            name,
            format: "safetensors",
            sha256: combined_sha256(&files)?,
            files,
        },
    })
}

/// Reads a safetensors header and checks the file holds every tensor it
/// lists, so a truncated download is refused before it is mapped.
pub(crate) fn check_safetensors_extent(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |reason: String| MlError::bad_model(path, format!("safetensors: {reason}"));
    let mut file = std::fs::File::open(path).map_err(|e| MlError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MlError::io(path, e))?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| bad("shorter than its header".into()))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(format!(
            "truncated: the header claims {header_len} bytes"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| MlError::io(path, e))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid header: {e}")))?;
    let end = header
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(_, info)| info.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + header_len + end > file_len {
        return Err(bad(format!(
            "truncated: tensors need {} bytes, the file has {file_len}",
            8 + header_len + end
        )));
    }
    Ok(())
}
