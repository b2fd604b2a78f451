//! Text generation with a key/value cache: greedy or sampled (temperature,
//! nucleus/top-p, seeded), streaming text as it is produced.

use candle_core::{D, DType, Tensor};

use crate::error::{MlError, Result};
use crate::loaders::LoadedModel;
use crate::lora::LoraAdapter;
use crate::models::llama::KvCache;
use crate::rng::SplitMix64;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy (always the most likely token).
    pub temperature: f64,
    /// Keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f64,
    /// Seed for sampling.
    pub seed: u64,
    /// Most new tokens.
    pub max_new_tokens: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.9,
            seed: 299_792_458,
            max_new_tokens: 128,
        }
    }
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new text.
    pub text: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// New tokens.
    pub new_tokens: usize,
    /// Seconds spent on new tokens after the prompt was processed.
    pub decode_seconds: f64,
}

/// Generates a continuation of `prompt` token ids. `on_text` receives each
/// new piece of text as soon as it is complete (multi-byte characters split
/// across tokens are held back until whole).
pub fn generate(
    loaded: &LoadedModel,
    adapter: Option<&LoraAdapter>,
    prompt: &[u32],
    sampling: &Sampling,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(MlError::InvalidRequest("the prompt is empty".into()));
    }
    let model = &loaded.model;
    let context = model.max_sequence();
    if prompt.len() >= context {
        return Err(MlError::InvalidRequest(format!(
            "the prompt is {} tokens, longer than this model's context of {context} tokens",
            prompt.len()
        )));
    }
    let budget = sampling.max_new_tokens.min(context - prompt.len());
    let mut rng = SplitMix64::new(sampling.seed);
    let mut cache = KvCache::default();
    let mut generated: Vec<u32> = Vec::new();
    let mut shown = 0;
    let mut input = Tensor::new(prompt, model.device())?.unsqueeze(0)?;
    let mut decode_start = None;
    // Decoding the new tokens after the prompt (rather than alone) keeps
    // tokenizer context rules right, such as sentencepiece dropping the
    // space that follows the beginning-of-sequence token.
    let prompt_text = loaded.tokenizer.decode(prompt)?;
    let continuation = |generated: &[u32]| -> Result<String> {
        let mut all = prompt.to_vec();
        all.extend_from_slice(generated);
        let text = loaded.tokenizer.decode(&all)?;
        Ok(match text.strip_prefix(prompt_text.as_str()) {
            Some(rest) => rest.to_owned(),
            None => loaded.tokenizer.decode(generated)?,
        })
    };
    for _ in 0..budget {
        let logits = model
            .forward_cached(&input, &mut cache, adapter)?
            .squeeze(0)?;
        if decode_start.is_none() {
            decode_start = Some(std::time::Instant::now());
        }
        let next = pick(&logits, sampling, &mut rng)?;
        if loaded.tokenizer.stop_tokens().contains(&next) {
            break;
        }
        generated.push(next);
        let text = continuation(&generated)?;
        if text.len() > shown && !text.ends_with('\u{FFFD}') {
            on_text(&text[shown..]);
            shown = text.len();
        }
        input = Tensor::new(&[next], model.device())?.unsqueeze(0)?;
    }
    let text = continuation(&generated)?;
    if text.len() > shown {
        on_text(&text[shown..]);
    }
    Ok(Generation {
        text,
        prompt_tokens: prompt.len(),
        new_tokens: generated.len(),
        decode_seconds: decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64()),
    })
}

/// The next token from `logits` `(vocab,)`.
fn pick(logits: &Tensor, sampling: &Sampling, rng: &mut SplitMix64) -> Result<u32> {
    if sampling.temperature <= 0.0 {
        return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
    }
    let probabilities =
        candle_nn::ops::softmax_last_dim(&(logits.to_dtype(DType::F32)? / sampling.temperature)?)?;
    let probabilities: Vec<f32> = probabilities.to_vec1()?;
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_unstable_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    let mut kept = 0.0f32;
    let mut cut = order.len();
    for (rank, &id) in order.iter().enumerate() {
        kept += probabilities[id];
        if f64::from(kept) >= sampling.top_p {
            cut = rank + 1;
            break;
        }
    }
    let mut target = rng.next_f32() * kept;
    for &id in &order[..cut] {
        target -= probabilities[id];
        if target <= 0.0 {
            return Ok(id as u32);
        }
    }
    Ok(order[0] as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn greedy_takes_the_argmax_and_sampling_respects_top_p() {
        let logits = Tensor::new(&[0.0f32, 5.0, 1.0, 4.9], &Device::Cpu).expect("logits");
        let mut rng = SplitMix64::new(1);
        assert_eq!(
            pick(&logits, &Sampling::default(), &mut rng).expect("pick"),
            1
        );
        let nucleus = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            ..Sampling::default()
        };
        // Token 1 alone holds about half the mass: top_p 0.5 keeps 1 (and at
        // most 3).
        for _ in 0..50 {
            let id = pick(&logits, &nucleus, &mut rng).expect("pick");
            assert!(id == 1 || id == 3, "{id}");
        }
    }
}
