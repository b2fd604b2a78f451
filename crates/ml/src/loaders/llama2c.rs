//! llama2.c checkpoints (<https://github.com/karpathy/llama2.c>): a header of
//! seven `i32` (dim, hidden_dim, layers, heads, kv_heads, vocab_size
//! (negative when the classifier is separate), seq_len) and then every
//! weight as little-endian `f32`, in a fixed order. Q and K rows are in the
//! interleaved rotary layout and are converted to Hugging Face's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::{LoadedModel, ModelInfo, sha256_file, unpermute_rotary_rows};
use crate::error::{MlError, Result};
use crate::models::llama::{Config, Llama};
use crate::tokenizer::TextTokenizer;

/// Loads `path` with the tokenizer at `tokenizer` (default: `tok*.bin` or
/// `tokenizer.bin` beside the model).
pub fn load(path: &Path, tokenizer: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
    let (cfg, weights) =
        parse(&bytes, device).map_err(|reason| MlError::bad_model(path, reason))?;
    let tokenizer_path = match tokenizer {
        Some(path) => path.to_path_buf(),
        None => find_tokenizer(path)?,
    };
    let tokenizer = TextTokenizer::from_llama2c_file(&tokenizer_path, cfg.vocab_size)?;
    let model = Llama::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, device))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(LoadedModel {
        model,
        tokenizer,
        info: ModelInfo {
            name,
            format: "llama2c",
            sha256: sha256_file(path)?,
            files: vec![path.to_path_buf(), tokenizer_path],
        },
    })
}

fn find_tokenizer(model: &Path) -> Result<PathBuf> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MlError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            p != model
                && name.ends_with(".bin")
                && (name.starts_with("tok") || name == "tokenizer.bin")
        })
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .next()
        .ok_or_else(|| MlError::bad_model(model, "no llama2.c tokenizer (tok*.bin) beside it"))
}

fn parse(bytes: &[u8], device: &Device) -> Result<(Config, HashMap<String, Tensor>), String> {
    let header: Vec<i32> = bytes
        .get(..28)
        .ok_or("shorter than the llama2.c header")?
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let positive = |v: i32, what: &str| {
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or(format!("bad {what} {v}"))
    };
    let dim = positive(header[0], "dim")?;
    let hidden = positive(header[1], "hidden_dim")?;
    let layers = positive(header[2], "n_layers")?;
    let heads = positive(header[3], "n_heads")?;
    let kv_heads = positive(header[4], "n_kv_heads")?;
    let shared = header[5] > 0;
    let vocab = positive(
        header[5].checked_abs().ok_or("bad vocab_size")?,
        "vocab_size",
    )?;
    let seq_len = positive(header[6], "seq_len")?;
    let cfg = Config {
        vocab_size: vocab,
        hidden_size: dim,
        intermediate_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: seq_len,
        tie_word_embeddings: shared,
        attention_bias: false,
    };
    cfg.validate()?;
    let head_dim = dim / heads;
    let kv_dim = kv_heads * head_dim;

    let floats = (bytes.len() - 28) / 4;
    let sizes = [
        vocab * dim,
        layers * dim,
        layers * dim * dim,
        layers * dim * kv_dim,
        layers * dim * kv_dim,
        layers * dim * dim,
        layers * dim,
        layers * dim * hidden,
        layers * hidden * dim,
        layers * dim * hidden,
        dim,
        seq_len * head_dim / 2,
        seq_len * head_dim / 2,
        if shared { 0 } else { vocab * dim },
    ];
    let needed: usize = sizes.iter().sum();
    if floats < needed {
        return Err(format!(
            "truncated: holds {floats} weights, the header needs {needed}"
        ));
    }
    let mut at = 28;
    let mut next = |n: usize, shape: &[usize]| -> Result<Tensor, String> {
        let data: Vec<f32> = bytes[at..at + 4 * n]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        at += 4 * n;
        Tensor::from_vec(data, shape, device).map_err(|e| e.to_string())
    };
    let err = |e: MlError| e.to_string();
    let embed = next(vocab * dim, &[vocab, dim])?;
    let att_norm = next(layers * dim, &[layers, dim])?;
    let wq = next(layers * dim * dim, &[layers, dim, dim])?;
    let wk = next(layers * dim * kv_dim, &[layers, kv_dim, dim])?;
    let wv = next(layers * dim * kv_dim, &[layers, kv_dim, dim])?;
    let wo = next(layers * dim * dim, &[layers, dim, dim])?;
    let ffn_norm = next(layers * dim, &[layers, dim])?;
    let w1 = next(layers * dim * hidden, &[layers, hidden, dim])?;
    let w2 = next(layers * hidden * dim, &[layers, dim, hidden])?;
    let w3 = next(layers * dim * hidden, &[layers, hidden, dim])?;
    let final_norm = next(dim, &[dim])?;
    next(seq_len * head_dim / 2, &[seq_len * head_dim / 2])?;
    next(seq_len * head_dim / 2, &[seq_len * head_dim / 2])?;
    let classifier = if shared {
        None
    } else {
        Some(next(vocab * dim, &[vocab, dim])?)
    };

    let mut weights = HashMap::new();
    let layer = |t: &Tensor, i: usize| t.get(i).map_err(|e| e.to_string());
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        weights.insert(format!("{p}.input_layernorm.weight"), layer(&att_norm, i)?);
        weights.insert(
            format!("{p}.self_attn.q_proj.weight"),
            unpermute_rotary_rows(&layer(&wq, i)?, heads).map_err(err)?,
        );
        weights.insert(
            format!("{p}.self_attn.k_proj.weight"),
            unpermute_rotary_rows(&layer(&wk, i)?, kv_heads).map_err(err)?,
        );
        weights.insert(format!("{p}.self_attn.v_proj.weight"), layer(&wv, i)?);
        weights.insert(format!("{p}.self_attn.o_proj.weight"), layer(&wo, i)?);
        weights.insert(
            format!("{p}.post_attention_layernorm.weight"),
            layer(&ffn_norm, i)?,
        );
        weights.insert(format!("{p}.mlp.gate_proj.weight"), layer(&w1, i)?);
        weights.insert(format!("{p}.mlp.down_proj.weight"), layer(&w2, i)?);
        weights.insert(format!("{p}.mlp.up_proj.weight"), layer(&w3, i)?);
    }
    weights.insert("model.embed_tokens.weight".into(), embed);
    weights.insert("model.norm.weight".into(), final_norm);
    if let Some(classifier) = classifier {
        weights.insert("lm_head.weight".into(), classifier);
    }
    Ok((cfg, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_garbage_files_are_refused() {
        let device = Device::Cpu;
        assert!(parse(b"short", &device).is_err());
        let mut header: Vec<u8> = [8i32, 16, 1, 2, 2, 32, 16]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        header.extend_from_slice(&[0u8; 64]);
        let err = parse(&header, &device).expect_err("truncated");
        assert!(err.starts_with("truncated"), "{err}");
        let negative: Vec<u8> = [-8i32, 16, 1, 2, 2, 32, 16]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(parse(&negative, &device).is_err());
    }
}
