//! Reading a GGUF file into [`QuantizedLlama`]: the header and tokenizer
//! through [`crate::loaders::gguf`], the projections straight into
//! [`QWeight`]'s blocks, in an order that leaves no freed load-time memory
//! stranded beneath the weights.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device};

use super::{QAdapter, QBlock, QuantizedLlama};
use crate::error::{MlError, Result};
use crate::loaders::gguf as loader;
use crate::lora::{LoraAdapter, Target};
use crate::models::llama::Config;
use crate::qmatmul::QWeight;
use crate::tokenizer::TextTokenizer;

/// The model of a GGUF file on its quantized weights, and its tokenizer.
pub fn load(path: &Path) -> Result<(QuantizedLlama, TextTokenizer)> {
    let (model, tokenizer, _) = load_with(path, |_| Ok::<_, MlError>(None))?;
    Ok((model, tokenizer))
}

/// The model of a GGUF file on its quantized weights, its tokenizer, and
/// the adapter `adapter` returns for the model's configuration, if any.
///
/// The adapter is built (and its f32 form, with whatever its loading
/// left over, freed) after the header is read and before any weight is:
/// the weights' buffers then reuse that memory. Built after the weights,
/// its ~10 MB of freed f32 matrices stayed stranded beneath them for the
/// life of the process (the passes' own buffers live in the pool
/// threads' arenas and never reuse it).
pub fn load_with<E: From<MlError>>(
    path: &Path,
    adapter: impl FnOnce(&Config) -> std::result::Result<Option<LoraAdapter>, E>,
) -> std::result::Result<(QuantizedLlama, TextTokenizer, Option<QAdapter>), E> {
    let file = File::open(path).map_err(|e| MlError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MlError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let mut content = Content::read(&mut reader)
        .map_err(|e| MlError::bad_model(path, format!("GGUF header: {e}")))?;
    let loader::Header {
        architecture,
        vocabulary,
        config: cfg,
    } = loader::header(&mut content, file_len).map_err(|r| MlError::bad_model(path, r))?;
    // The vocabulary becomes the tokenizer, and the rest of the metadata
    // is freed, before any weight is read, for the same reason.
    let tokenizer = TextTokenizer::from_gguf_vocabulary(vocabulary)?;
    content.metadata.clear();
    content.metadata.shrink_to_fit();
    let adapter = match adapter(&cfg)? {
        Some(lora) => Some(QAdapter::for_config(&lora, &cfg)?),
        None => None,
    };
    let model = read_weights(path, &mut reader, &content, &architecture, cfg)?;
    Ok((model, tokenizer, adapter))
}

/// The weights of the GGUF file at `path` whose header is `content`.
fn read_weights(
    path: &Path,
    reader: &mut BufReader<File>,
    content: &Content,
    architecture: &str,
    cfg: Config,
) -> Result<QuantizedLlama> {
    let tensor =
        |reader: &mut BufReader<File>, name: &str| -> Result<candle_core::quantized::QTensor> {
            content
                .tensor(reader, name, &Device::Cpu)
                .map_err(|e| MlError::bad_model(path, format!("tensor {name}: {e}")))
        };
    let vector = |t: candle_core::quantized::QTensor| -> Result<Vec<f32>> {
        Ok(t.dequantize(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?)
    };
    let weight =
        |reader: &mut BufReader<File>, name: &str, order: Option<&[usize]>| -> Result<QWeight> {
            let info = content
                .tensor_infos
                .get(name)
                .ok_or_else(|| MlError::bad_model(path, format!("no tensor {name}")))?;
            QWeight::read_gguf(path, reader, name, info, content.tensor_data_offset, order)
        };
    let embed = weight(reader, "token_embd.weight", None)?;
    let head = if content.tensor_infos.contains_key("output.weight") && !cfg.tie_word_embeddings {
        Some(weight(reader, "output.weight", None)?)
    } else {
        None
    };
    let norm = vector(tensor(reader, "output_norm.weight")?)?;
    let llama_order = architecture == "llama";
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for layer in 0..cfg.num_hidden_layers {
        let name = |n: &str| format!("blk.{layer}.{n}");
        let mut proj = Vec::with_capacity(Target::ALL.len());
        for target in Target::ALL {
            let (fan_in, fan_out) = target.shape(&cfg);
            // llama.cpp stores the query and key rows of `llama` models
            // permuted for interleaved rotary embeddings; they are read
            // back into Hugging Face's order.
            let order = match (llama_order, target) {
                (true, Target::QProj) => Some(hf_rows(fan_out, cfg.num_attention_heads)),
                (true, Target::KProj) => Some(hf_rows(fan_out, cfg.num_key_value_heads)),
                _ => None,
            };
            let w = weight(reader, &name(gguf_name(target)), order.as_deref())?;
            if (w.cols(), w.rows()) != (fan_in, fan_out) {
                return Err(MlError::bad_model(
                    path,
                    format!("{} of layer {layer} has the wrong shape", target.name()),
                ));
            }
            proj.push(w);
        }
        let mut bias: [Option<Vec<f32>>; 3] = [None, None, None];
        if cfg.attention_bias {
            for (slot, n) in bias
                .iter_mut()
                .zip(["attn_q.bias", "attn_k.bias", "attn_v.bias"])
            {
                *slot = Some(vector(tensor(reader, &name(n))?)?);
            }
        }
        blocks.push(QBlock {
            input_norm: vector(tensor(reader, &name("attn_norm.weight"))?)?,
            post_norm: vector(tensor(reader, &name("ffn_norm.weight"))?)?,
            proj,
            bias,
        });
    }
    Ok(QuantizedLlama::new(cfg, embed, head, norm, blocks))
}

/// The GGUF tensor name of a projection (without `blk.N.`).
fn gguf_name(target: Target) -> &'static str {
    match target {
        Target::QProj => "attn_q.weight",
        Target::KProj => "attn_k.weight",
        Target::VProj => "attn_v.weight",
        Target::OProj => "attn_output.weight",
        Target::GateProj => "ffn_gate.weight",
        Target::UpProj => "ffn_up.weight",
        Target::DownProj => "ffn_down.weight",
    }
}

/// For Q/K weights stored permuted by llama.cpp: the stored row holding each
/// Hugging Face row (see [`crate::loaders::unpermute_rotary_rows`]).
fn hf_rows(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    (0..rows)
        .map(|r| {
            let (h, within) = (r / head_dim, r % head_dim);
            let (j, i) = (within / half, within % half);
            h * head_dim + i * 2 + j
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_rows_invert_the_llama_cpp_permutation() {
        // Two heads of width 4: stored rows interleave the halves.
        assert_eq!(hf_rows(8, 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);
    }
}
