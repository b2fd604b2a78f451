//! Text generation with a key/value cache: greedy or sampled (temperature,
//! nucleus/top-p, repetition penalty, seeded) through candle-transformers'
//! `LogitsProcessor`, streaming text as it is produced, optionally held to
//! a grammar ([`crate::constrain`]).
//!
//! Any [`Decoder`] generates: the f32 model ([`Reference`], also the one
//! training uses) or the quantized one ([`Quantized`], GGUF weights as
//! stored, several times faster on a CPU).

use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling as Pick};

use crate::constrain::GrammarConstraint;
use crate::error::{MlError, Result};
use crate::loaders::LoadedModel;
use crate::lora::LoraAdapter;
use crate::models::llama::{KvCache, Llama};
use crate::models::quantized::{QAdapter, QCache, QuantizedLlama};
use crate::tokenizer::TextTokenizer;

/// A model that produces next-token logits with a key/value cache.
pub trait Decoder {
    /// Its cache.
    type Cache: Default;
    /// Logits `(vocab,)` after the last of `tokens`, appending them to
    /// `cache`.
    fn next_logits(&self, tokens: &[u32], cache: &mut Self::Cache) -> Result<Vec<f32>>;
    /// An empty cache with room for `positions` positions, for a
    /// generation whose length is known up front (an empty one by
    /// default).
    fn cache_for(&self, positions: usize) -> Self::Cache {
        let _ = positions;
        Self::Cache::default()
    }
    /// Longest sequence it accepts.
    fn max_sequence(&self) -> usize;
}

/// The f32 model, with an adapter or without.
#[derive(Debug, Clone, Copy)]
pub struct Reference<'a> {
    /// The model.
    pub model: &'a Llama,
    /// The adapter, if any.
    pub adapter: Option<&'a LoraAdapter>,
}

impl Decoder for Reference<'_> {
    type Cache = KvCache;

    fn next_logits(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let input = Tensor::new(tokens, self.model.device())?.unsqueeze(0)?;
        let logits = self
            .model
            .forward_cached(&input, cache, self.adapter)?
            .squeeze(0)?;
        Ok(logits.to_dtype(DType::F32)?.to_vec1()?)
    }

    fn max_sequence(&self) -> usize {
        self.model.max_sequence()
    }
}

/// The quantized model, with an adapter or without.
#[derive(Debug, Clone, Copy)]
pub struct Quantized<'a> {
    /// The model.
    pub model: &'a QuantizedLlama,
    /// The adapter, if any.
    pub adapter: Option<&'a QAdapter>,
}

impl Decoder for Quantized<'_> {
    type Cache = QCache;

    fn next_logits(&self, tokens: &[u32], cache: &mut QCache) -> Result<Vec<f32>> {
        self.model.forward(tokens, cache, self.adapter)
    }

    fn cache_for(&self, positions: usize) -> QCache {
        self.model.cache_for(positions)
    }

    fn max_sequence(&self) -> usize {
        self.model.max_sequence()
    }
}

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
    /// Divides the (positive) logits of tokens among the last
    /// `repeat_last_n` (multiplies the negative ones); 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.9,
            seed: 299_792_458,
            max_new_tokens: 128,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
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
    /// Seconds spent processing the prompt (its first token's logits).
    pub prompt_seconds: f64,
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
    let decoder = Reference {
        model: &loaded.model,
        adapter,
    };
    run(&decoder, &loaded.tokenizer, prompt, sampling, None, on_text)
}

/// [`generate`] with any [`Decoder`], such as the quantized model.
pub fn generate_with<D: Decoder>(
    decoder: &D,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    sampling: &Sampling,
    on_text: impl FnMut(&str),
) -> Result<Generation> {
    run(decoder, tokenizer, prompt, sampling, None, on_text)
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
    let decoder = Reference {
        model: &loaded.model,
        adapter,
    };
    run(
        &decoder,
        &loaded.tokenizer,
        prompt,
        sampling,
        Some(constraint),
        on_text,
    )
}

/// candle-transformers' processor for `sampling`.
fn processor(sampling: &Sampling) -> LogitsProcessor {
    let pick = if sampling.temperature <= 0.0 {
        Pick::ArgMax
    } else if sampling.top_p >= 1.0 {
        Pick::All {
            temperature: sampling.temperature,
        }
    } else {
        Pick::TopP {
            p: sampling.top_p,
            temperature: sampling.temperature,
        }
    };
    LogitsProcessor::from_sampling(sampling.seed, pick)
}

/// The next token from `logits`, penalising repeats of `context`'s last
/// tokens; a logit of minus infinity is never picked unless every one is.
fn pick(
    logits: Vec<f32>,
    context: &[u32],
    sampling: &Sampling,
    processor: &mut LogitsProcessor,
) -> Result<u32> {
    let vocab = logits.len();
    let mut logits = Tensor::from_vec(logits, vocab, &Device::Cpu)?;
    if sampling.repeat_penalty != 1.0 {
        let start = context.len().saturating_sub(sampling.repeat_last_n);
        logits = candle_transformers::utils::apply_repeat_penalty(
            &logits,
            sampling.repeat_penalty,
            &context[start..],
        )?;
    }
    Ok(processor.sample(&logits)?)
}

fn run<D: Decoder>(
    decoder: &D,
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    sampling: &Sampling,
    mut constraint: Option<&mut GrammarConstraint>,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(MlError::InvalidRequest("the prompt is empty".into()));
    }
    let context = decoder.max_sequence();
    if prompt.len() >= context {
        return Err(MlError::InvalidRequest(format!(
            "the prompt is {} tokens, longer than this model's context of {context} tokens",
            prompt.len()
        )));
    }
    let budget = sampling.max_new_tokens.min(context - prompt.len());
    if !(sampling.repeat_penalty.is_finite() && sampling.repeat_penalty > 0.0) {
        return Err(MlError::InvalidRequest(format!(
            "the repetition penalty is above 0, not {}",
            sampling.repeat_penalty
        )));
    }
    let mut processor = processor(sampling);
    let mut cache = decoder.cache_for(prompt.len() + budget);
    let mut generated: Vec<u32> = Vec::new();
    let mut shown = 0;
    let mut input = prompt.to_vec();
    let prompt_start = std::time::Instant::now();
    let mut prompt_seconds = 0.0;
    let mut decode_start = None;
    // Decoding the new tokens after the prompt (rather than alone) keeps
    // tokenizer context rules right, such as sentencepiece dropping the
    // space that follows the beginning-of-sequence token.
    let prompt_text = tokenizer.decode(prompt)?;
    let continuation = |generated: &[u32]| -> Result<String> {
        let mut all = prompt.to_vec();
        all.extend_from_slice(generated);
        let text = tokenizer.decode(&all)?;
        Ok(match text.strip_prefix(prompt_text.as_str()) {
            Some(rest) => rest.to_owned(),
            None => tokenizer.decode(generated)?,
        })
    };
    let mut complete = constraint.is_none();
    for _ in 0..budget {
        let mut logits = decoder.next_logits(&input, &mut cache)?;
        if decode_start.is_none() {
            prompt_seconds = prompt_start.elapsed().as_secs_f64();
            decode_start = Some(std::time::Instant::now());
        }
        if let Some(constraint) = constraint.as_deref_mut() {
            constraint.mask_logits(&mut logits)?;
        }
        let seen = [prompt, &generated].concat();
        let next = pick(logits, &seen, sampling, &mut processor)?;
        if let Some(constraint) = constraint.as_deref_mut() {
            constraint.consume(next)?;
        }
        if tokenizer.stop_tokens().contains(&next) {
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
        input = vec![next];
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
        prompt_seconds,
        decode_seconds: decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        mask_seconds: constraint.map_or(0.0, |constraint| constraint.mask_time().0),
        complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick_from(logits: &[f32], sampling: &Sampling, processor: &mut LogitsProcessor) -> u32 {
        pick(logits.to_vec(), &[], sampling, processor).expect("pick")
    }

    #[test]
    fn greedy_takes_the_argmax_and_sampling_respects_top_p() {
        let logits = [0.0f32, 5.0, 1.0, 4.9];
        let greedy = Sampling::default();
        assert_eq!(pick_from(&logits, &greedy, &mut processor(&greedy)), 1);
        let nucleus = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            ..Sampling::default()
        };
        let mut p = processor(&nucleus);
        // Token 1 alone holds about half the mass: top_p 0.5 keeps 1 (and at
        // most 3).
        for _ in 0..50 {
            let id = pick_from(&logits, &nucleus, &mut p);
            assert!(id == 1 || id == 3, "{id}");
        }
    }

    #[test]
    fn masked_logits_are_never_picked() {
        let logits = [f32::NEG_INFINITY, 0.1, f32::NEG_INFINITY, 0.0];
        let sampled = Sampling {
            temperature: 1.5,
            top_p: 1.0,
            ..Sampling::default()
        };
        let mut p = processor(&sampled);
        for _ in 0..200 {
            let id = pick_from(&logits, &sampled, &mut p);
            assert!(id == 1 || id == 3, "{id}");
        }
        let greedy = Sampling::default();
        assert_eq!(pick_from(&logits, &greedy, &mut processor(&greedy)), 1);
    }

    #[test]
    fn the_repetition_penalty_steers_greedy_away_from_repeats() {
        let logits = vec![0.0f32, 2.0, 1.9, 0.5];
        let penalised = Sampling {
            repeat_penalty: 1.3,
            ..Sampling::default()
        };
        let mut p = processor(&penalised);
        assert_eq!(
            pick(logits.clone(), &[1], &penalised, &mut p).expect("pick"),
            2
        );
        assert_eq!(pick(logits, &[3], &penalised, &mut p).expect("pick"), 1);
    }

    #[test]
    fn seeded_sampling_repeats_itself() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.7).sin()).collect();
        let sampled = Sampling {
            temperature: 0.8,
            top_p: 0.9,
            ..Sampling::default()
        };
        let draw = || {
            let mut p = processor(&sampled);
            (0..20)
                .map(|_| pick_from(&logits, &sampled, &mut p))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }
}
