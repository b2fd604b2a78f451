//! Text generation with a key/value cache: greedy or sampled (temperature,
//! nucleus/top-p, seeded), streaming text as it is produced, optionally
//! held to a grammar ([`crate::constrain`]).

use candle_core::{DType, Tensor};

use crate::constrain::GrammarConstraint;
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
    /// Seconds of `decode_seconds` spent computing grammar masks (zero
    /// without a grammar).
    pub mask_seconds: f64,
    /// Whether the text is a complete sentence of the grammar (always true
    /// without one); false when the token budget ran out first.
    pub complete: bool,
}

/// Generates a continuation of `prompt` token ids. `on_text` receives each
/// new piece of text as soon as it is complete (multi-byte characters split
/// across tokens are held back until whole).
pub fn generate(
    loaded: &LoadedModel,
    adapter: Option<&LoraAdapter>,
    prompt: &[u32],
    sampling: &Sampling,
    on_text: impl FnMut(&str),
) -> Result<Generation> {
    run(loaded, adapter, prompt, sampling, None, on_text)
}

/// [`generate`], with every token held to `constraint`'s grammar: the text
/// is always a prefix of a sentence of the grammar, and a whole sentence
/// unless the token budget runs out ([`Generation::complete`]). Generation
/// ends as soon as the grammar allows nothing more.
pub fn generate_constrained(
    loaded: &LoadedModel,
    adapter: Option<&LoraAdapter>,
    prompt: &[u32],
    sampling: &Sampling,
    constraint: &mut GrammarConstraint,
    on_text: impl FnMut(&str),
) -> Result<Generation> {
    run(loaded, adapter, prompt, sampling, Some(constraint), on_text)
}

fn run(
    loaded: &LoadedModel,
    adapter: Option<&LoraAdapter>,
    prompt: &[u32],
    sampling: &Sampling,
    mut constraint: Option<&mut GrammarConstraint>,
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
    let mut complete = constraint.is_none();
    for _ in 0..budget {
        let logits = model
            .forward_cached(&input, &mut cache, adapter)?
            .squeeze(0)?;
        if decode_start.is_none() {
            decode_start = Some(std::time::Instant::now());
        }
        let mut logits: Vec<f32> = logits.to_dtype(DType::F32)?.to_vec1()?;
        if let Some(constraint) = constraint.as_deref_mut() {
            constraint.mask_logits(&mut logits)?;
        }
        let next = pick(&logits, sampling, &mut rng);
        if let Some(constraint) = constraint.as_deref_mut() {
            constraint.consume(next)?;
        }
        if loaded.tokenizer.stop_tokens().contains(&next) {
            break;
        }
        generated.push(next);
        let text = continuation(&generated)?;
        if text.len() > shown && !text.ends_with('\u{FFFD}') {
            on_text(&text[shown..]);
            shown = text.len();
        }
        if let Some(constraint) = constraint.as_deref_mut() {
            complete = constraint.is_complete();
            // Nothing but the end can follow: skip the forward pass that
            // would only pick it.
            if constraint.is_finished() {
                break;
            }
        }
        input = Tensor::new(&[next], model.device())?.unsqueeze(0)?;
    }
    if let Some(constraint) = constraint.as_deref_mut() {
        complete = constraint.is_complete();
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
        mask_seconds: constraint.map_or(0.0, |constraint| constraint.mask_time().0),
        complete,
    })
}

/// The next token from `logits` `(vocab,)`; a logit of minus infinity is
/// never picked unless every one is.
fn pick(logits: &[f32], sampling: &Sampling, rng: &mut SplitMix64) -> u32 {
    let best = logits
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (id, &logit)| {
            if logit > best.1 { (id, logit) } else { best }
        });
    if sampling.temperature <= 0.0 || !best.1.is_finite() {
        return best.0 as u32;
    }
    // Softmax at `temperature`, shifted by the largest logit.
    let scale = (1.0 / sampling.temperature) as f32;
    let weights: Vec<f32> = logits
        .iter()
        .map(|&logit| ((logit - best.1) * scale).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&id| weights[id] > 0.0).collect();
    order.sort_unstable_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    let mut kept = 0.0f32;
    let mut cut = order.len();
    for (rank, &id) in order.iter().enumerate() {
        kept += weights[id];
        if f64::from(kept / total) >= sampling.top_p {
            cut = rank + 1;
            break;
        }
    }
    let mut target = rng.next_f32() * kept;
    for &id in &order[..cut] {
        target -= weights[id];
        if target <= 0.0 {
            return id as u32;
        }
    }
    best.0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_sampling_respects_top_p() {
        let logits = [0.0f32, 5.0, 1.0, 4.9];
        let mut rng = SplitMix64::new(1);
        assert_eq!(pick(&logits, &Sampling::default(), &mut rng), 1);
        let nucleus = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            ..Sampling::default()
        };
        // Token 1 alone holds about half the mass: top_p 0.5 keeps 1 (and at
        // most 3).
        for _ in 0..50 {
            let id = pick(&logits, &nucleus, &mut rng);
            assert!(id == 1 || id == 3, "{id}");
        }
    }

    #[test]
    fn masked_logits_are_never_picked() {
        let logits = [f32::NEG_INFINITY, 0.1, f32::NEG_INFINITY, 0.0];
        let mut rng = SplitMix64::new(7);
        let sampled = Sampling {
            temperature: 1.5,
            top_p: 1.0,
            ..Sampling::default()
        };
        for _ in 0..200 {
            let id = pick(&logits, &sampled, &mut rng);
            assert!(id == 1 || id == 3, "{id}");
        }
        assert_eq!(pick(&logits, &Sampling::default(), &mut rng), 1);
    }
}
