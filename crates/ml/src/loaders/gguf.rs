//! GGUF files (llama.cpp's format): metadata, a tokenizer vocabulary and
//! quantized tensors. Tensors are dequantized to f32; for the `llama`
//! architecture llama.cpp stores Q and K rows permuted for interleaved
//! rotary embeddings, which is undone so the weights match Hugging Face's
//! layout (and adapters trained here fit the safetensors model too).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::{LoadedModel, ModelInfo, sha256_file, unpermute_rotary_rows};
use crate::error::{MlError, Result};
use crate::models::llama::{Config, Llama};
use crate::tokenizer::{GgufVocabulary, TextTokenizer};

/// What a GGUF file's header says about its model.
pub(crate) struct Header {
    /// `llama` or `qwen2`.
    pub architecture: String,
    /// The tokenizer's vocabulary.
    pub vocabulary: GgufVocabulary,
    /// The model's configuration.
    pub config: Config,
}

/// Reads and checks the header of a GGUF file `file_len` bytes long: a
/// Llama-family model whose tensors lie inside the file. The vocabulary's
/// token and merge strings are moved out of `content`'s metadata, not
/// copied (some 100k small strings).
pub(crate) fn header(content: &mut Content, file_len: u64) -> Result<Header, String> {
    check_extent(content, file_len)?;
    let metadata = &mut content.metadata;
    let architecture = string(metadata, "general.architecture")?;
    if !matches!(architecture.as_str(), "llama" | "qwen2") {
        return Err(format!(
            "architecture {architecture:?} is not a Llama-family model"
        ));
    }
    let vocabulary = vocabulary(metadata)?;
    let config = config(
        &content.metadata,
        &architecture,
        content,
        vocabulary.tokens.len(),
    )?;
    Ok(Header {
        architecture,
        vocabulary,
        config,
    })
}

/// Loads a GGUF model file.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    let file = File::open(path).map_err(|e| MlError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MlError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let mut content = Content::read(&mut reader)
        .map_err(|e| MlError::bad_model(path, format!("GGUF header: {e}")))?;
    let Header {
        architecture,
        vocabulary,
        config: cfg,
    } = header(&mut content, file_len).map_err(|reason| MlError::bad_model(path, reason))?;

    let mut weights = HashMap::new();
    for (name, _) in content.tensor_infos.iter() {
        let Some(hf_name) = hf_name(name) else {
            continue;
        };
        let tensor = content
            .tensor(&mut reader, name, device)
            .and_then(|q| q.dequantize(device))
            .map_err(|e| MlError::bad_model(path, format!("tensor {name}: {e}")))?;
        let tensor = match (architecture.as_str(), hf_name.rsplit('.').nth(1)) {
            ("llama", Some("q_proj")) if hf_name.ends_with("weight") => {
                unpermute_rotary_rows(&tensor, cfg.num_attention_heads)?
            }
            ("llama", Some("k_proj")) if hf_name.ends_with("weight") => {
                unpermute_rotary_rows(&tensor, cfg.num_key_value_heads)?
            }
            _ => tensor,
        };
        weights.insert(hf_name, tensor.to_dtype(DType::F32)?);
    }
    let model = Llama::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, device))
        .map_err(|e| MlError::bad_model(path, e.to_string()))?;
    let tokenizer = TextTokenizer::from_gguf_vocabulary(vocabulary)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        info: ModelInfo::of_gguf(path)?,
    })
}

impl ModelInfo {
    /// The identity of the GGUF file at `path` (its name, and the sha256
    /// adapters record), without loading it.
    pub fn of_gguf(path: &Path) -> Result<Self> {
        Ok(ModelInfo {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: "gguf",
            sha256: sha256_file(path)?,
            files: vec![path.to_path_buf()],
        })
    }
}

/// Refuses a file whose tensors extend past its end (a truncated download)
/// before anything is dequantized.
fn check_extent(content: &Content, file_len: u64) -> Result<(), String> {
    for (name, info) in &content.tensor_infos {
        let elements = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let bytes = (elements / block) * info.ggml_dtype.type_size();
        let end = content.tensor_data_offset + info.offset + bytes as u64;
        if end > file_len {
            return Err(format!(
                "truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes"
            ));
        }
    }
    Ok(())
}

/// GGUF tensor name to Hugging Face name.
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some(fixed.to_owned());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let module = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{kind}"))
}

fn get<'a>(metadata: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, String> {
    metadata
        .get(key)
        .ok_or_else(|| format!("metadata {key} is missing"))
}

fn string(metadata: &HashMap<String, Value>, key: &str) -> Result<String, String> {
    get(metadata, key)?
        .to_string()
        .cloned()
        .map_err(|e| format!("{key}: {e}"))
}

fn number(metadata: &HashMap<String, Value>, key: &str) -> Result<usize, String> {
    let value = get(metadata, key)?;
    value
        .to_u32()
        .map(|v| v as usize)
        .or_else(|_| value.to_u64().map(|v| v as usize))
        .or_else(|_| value.to_i32().map(|v| v.max(0) as usize))
        .map_err(|e| format!("{key}: {e}"))
}

fn float(metadata: &HashMap<String, Value>, key: &str) -> Result<f64, String> {
    get(metadata, key)?
        .to_f32()
        .map(f64::from)
        .map_err(|e| format!("{key}: {e}"))
}

fn config(
    metadata: &HashMap<String, Value>,
    arch: &str,
    content: &Content,
    vocab: usize,
) -> Result<Config, String> {
    let heads = number(metadata, &format!("{arch}.attention.head_count"))?;
    let cfg = Config {
        vocab_size: vocab,
        hidden_size: number(metadata, &format!("{arch}.embedding_length"))?,
        intermediate_size: number(metadata, &format!("{arch}.feed_forward_length"))?,
        num_hidden_layers: number(metadata, &format!("{arch}.block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: number(metadata, &format!("{arch}.attention.head_count_kv"))
            .unwrap_or(heads),
        rms_norm_eps: float(
            metadata,
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
        )?,
        rope_theta: float(metadata, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
        max_position_embeddings: number(metadata, &format!("{arch}.context_length"))?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The array of strings at `key`, moved out of `metadata`.
fn take_strings(metadata: &mut HashMap<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match metadata.remove(key) {
        None => Err(format!("metadata {key} is missing")),
        Some(Value::Array(values)) => values
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("{key}: {:?} is not a string", other.value_type())),
            })
            .collect(),
        Some(other) => Err(format!("{key}: {:?} is not an array", other.value_type())),
    }
}

fn vocabulary(metadata: &mut HashMap<String, Value>) -> Result<GgufVocabulary, String> {
    let tokens = take_strings(metadata, "tokenizer.ggml.tokens")?;
    let merges = take_strings(metadata, "tokenizer.ggml.merges").unwrap_or_default();
    let token_types = match metadata.get("tokenizer.ggml.token_type") {
        Some(value) => value
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_i32().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![1; tokens.len()],
    };
    let id = |key: &str| metadata.get(key).and_then(|v| v.to_u32().ok());
    Ok(GgufVocabulary {
        model: string(metadata, "tokenizer.ggml.model")?,
        pre: string(metadata, "tokenizer.ggml.pre").unwrap_or_default(),
        merges,
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        chat_template: string(metadata, "tokenizer.chat_template").ok(),
        tokens,
        token_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(
            hf_name("blk.12.attn_k.weight").as_deref(),
            Some("model.layers.12.self_attn.k_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_q.bias").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn garbage_is_not_a_gguf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"GGUFnot really").expect("write");
        assert!(matches!(
            load(&path, &Device::Cpu),
            Err(MlError::BadModel { .. })
        ));
    }
}
