//! Trying a model: text generation, base and personalized, as one
//! workflow for both faces.
//!
//! `hearth generate` and the app's Try screen used to each compose model
//! loading, adapter choice, chat templating and sampling, and their checks
//! and defaults had drifted apart. Here is the one version: a
//! [`GenerateRequest`] with the defaults people get, checked as a whole
//! ([`GenerateRequest::check`]), and [`generate_text`], which streams
//! [`GenerationEvent`]s to whatever renders them (stdout, a Tauri
//! channel).

use std::path::Path;

use hearth_ml::candle::Device;
use hearth_ml::generate::{Generation, Quantized, Sampling, generate, generate_with};
use hearth_ml::models::quantized::{self, QAdapter, QuantizedLlama};
use hearth_ml::{LoadedModel, LoraAdapter, ModelInfo, TextTokenizer};
use hearth_progress::CancelToken;
use hearth_store::{AdapterId, Library};
use serde::{Deserialize, Serialize};

use crate::adapters::load_adapter_for;
use crate::text::resolve_model;
use crate::{PersonalizeError, Result, load_adapter};

/// Longest prompt accepted, in characters (the models' contexts are far
/// shorter; this only keeps a pasted book out of the tokenizer).
pub const MAX_PROMPT_CHARS: usize = 20_000;

/// The repetition penalty people get without choosing (llama.cpp's
/// default too).
pub const DEFAULT_REPEAT_PENALTY: f32 = 1.1;

/// Most new tokens one pass may ask for.
pub const MAX_NEW_TOKENS: usize = 2048;

/// A generation request. Its [`Default`] is what a person gets without
/// choosing: sampled (temperature 0.7, nucleus 0.9, repetition penalty
/// 1.1 over the last 64 tokens), at most 200 new tokens, seeded so the
/// same request gives the same text; greedy decoding of a small model
/// tends to loop on a phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct GenerateRequest {
    /// The prompt: a user turn for chat models, raw text with `raw`.
    pub prompt: String,
    /// The personalized pass uses this adapter.
    pub adapter_id: Option<AdapterId>,
    /// With an adapter, run the base model first, for comparison.
    pub compare: bool,
    /// Base model, by registry name or path (default: the adapter's run's
    /// model, else the default text model).
    pub model: Option<String>,
    /// Most new tokens per pass, 1 to [`MAX_NEW_TOKENS`].
    pub max_tokens: usize,
    /// Sampling temperature, 0 (greedy) or more.
    pub temperature: f64,
    /// Nucleus sampling threshold, in (0, 1].
    pub top_p: f64,
    /// Sampling seed.
    pub seed: u64,
    /// Repetition penalty on the last 64 tokens, 1 (off) or more.
    pub repeat_penalty: f32,
    /// Continue the prompt as raw text, without the chat template.
    pub raw: bool,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            prompt: String::new(),
            adapter_id: None,
            compare: false,
            model: None,
            max_tokens: 200,
            temperature: 0.7,
            top_p: 0.9,
            seed: Sampling::default().seed,
            repeat_penalty: DEFAULT_REPEAT_PENALTY,
            raw: false,
        }
    }
}

impl GenerateRequest {
    /// Refuses a request that cannot be carried out as given, saying why.
    pub fn check(&self) -> Result<()> {
        let invalid = |why: String| Err(PersonalizeError::Invalid(why));
        if self.prompt.trim().is_empty() {
            return invalid("write a prompt first".into());
        }
        if self.prompt.chars().count() > MAX_PROMPT_CHARS {
            return invalid(format!(
                "the prompt is longer than {MAX_PROMPT_CHARS} characters"
            ));
        }
        if !(1..=MAX_NEW_TOKENS).contains(&self.max_tokens) {
            return invalid(format!(
                "ask for 1 to {MAX_NEW_TOKENS} new tokens, not {}",
                self.max_tokens
            ));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return invalid(format!(
                "the temperature is 0 (greedy) or more, not {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return invalid(format!(
                "top-p is above 0 and at most 1, not {}",
                self.top_p
            ));
        }
        if !(self.repeat_penalty.is_finite() && (1.0..=5.0).contains(&self.repeat_penalty)) {
            return invalid(format!(
                "the repetition penalty is 1 (off) to 5, not {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            max_new_tokens: self.max_tokens,
            repeat_penalty: self.repeat_penalty,
            ..Sampling::default()
        }
    }
}

/// Which side a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The base model alone.
    Base,
    /// The base model with the adapter.
    Personalized,
}

/// What a generation reports as it goes, tagged by `event` in serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GenerationEvent {
    /// The model is loading.
    Loading {
        /// Its name or path.
        model: String,
    },
    /// A pass begins.
    Begin {
        /// Which.
        pass: Pass,
    },
    /// New text of a pass.
    Text {
        /// Which.
        pass: Pass,
        /// The new piece.
        text: String,
    },
    /// A pass ended.
    End {
        /// Which.
        pass: Pass,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// New tokens.
        new_tokens: usize,
        /// Decoding speed.
        tokens_per_second: f64,
    },
}

/// Runs the passes `request` asks for on `device`, reporting each step to
/// `on_event`: the base model (alone, or first when comparing), then the
/// personalized one if an adapter is named. Cancelling stops before the
/// next pass (a pass is short: `max_tokens` at most).
pub fn generate_text(
    library: &Library,
    request: &GenerateRequest,
    device: &Device,
    on_event: &mut dyn FnMut(GenerationEvent),
    cancel: &CancelToken,
) -> Result<()> {
    request.check()?;
    let adapter_record = request
        .adapter_id
        .map(|id| library.adapter(id))
        .transpose()?;
    // The adapter's own base model unless one is named.
    let model = request
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            adapter_record
                .as_ref()
                .and_then(|a| a.run_id)
                .and_then(|id| library.run(id).ok())
                .map(|r| r.base_model)
        });
    on_event(GenerationEvent::Loading {
        model: model.clone().unwrap_or_else(|| "default text model".into()),
    });
    let (_, path) = resolve_model(model.as_deref())?;
    let engine = Engine::load(library, &path, request.adapter_id, device)?;
    let tokenizer = engine.tokenizer();
    let text = match (request.raw, tokenizer.chat_prompt(&request.prompt)?) {
        (false, Some(chat)) => chat,
        _ => request.prompt.clone(),
    };
    let prompt = tokenizer.encode(&text, true)?;
    let sampling = request.sampling();
    let mut passes = Vec::new();
    if request.compare || request.adapter_id.is_none() {
        passes.push(Pass::Base);
    }
    if request.adapter_id.is_some() {
        passes.push(Pass::Personalized);
    }
    for pass in passes {
        if cancel.is_cancelled() {
            return Err(PersonalizeError::Cancelled);
        }
        on_event(GenerationEvent::Begin { pass });
        let mut on_text = |piece: &str| {
            on_event(GenerationEvent::Text {
                pass,
                text: piece.to_owned(),
            });
        };
        let personalized = pass == Pass::Personalized;
        let result = engine.generate(personalized, &prompt, &sampling, &mut on_text)?;
        on_event(GenerationEvent::End {
            pass,
            prompt_tokens: result.prompt_tokens,
            new_tokens: result.new_tokens,
            tokens_per_second: result.new_tokens as f64 / result.decode_seconds.max(1e-9),
        });
    }
    Ok(())
}

/// The model a request generates with, and its adapter if one is named.
enum Engine {
    /// On a CPU, a GGUF generates from its quantized weights: several
    /// times faster than the f32 copy training uses, with logits within
    /// 2e-2 of it (hearth-ml's tests/quantized.rs), and without building
    /// that copy (four times the file in memory, and its load time).
    Quantized {
        model: QuantizedLlama,
        tokenizer: TextTokenizer,
        adapter: Option<QAdapter>,
    },
    /// Any other model or device: the f32 model.
    Reference {
        loaded: LoadedModel,
        adapter: Option<LoraAdapter>,
    },
}

impl Engine {
    fn load(
        library: &Library,
        path: &Path,
        adapter_id: Option<AdapterId>,
        device: &Device,
    ) -> Result<Self> {
        let gguf = path.is_file()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if gguf && matches!(device, Device::Cpu) {
            let (model, tokenizer, adapter) = quantized::load_with(path, |config| {
                adapter_id
                    .map(|id| {
                        let info = ModelInfo::of_gguf(path)?;
                        load_adapter_for(library, id, &info, config, device)
                    })
                    .transpose()
            })?;
            return Ok(Engine::Quantized {
                model,
                tokenizer,
                adapter,
            });
        }
        let loaded = hearth_ml::load(path, device)?;
        let adapter = adapter_id
            .map(|id| load_adapter(library, id, &loaded))
            .transpose()?;
        Ok(Engine::Reference { loaded, adapter })
    }

    fn tokenizer(&self) -> &TextTokenizer {
        match self {
            Engine::Quantized { tokenizer, .. } => tokenizer,
            Engine::Reference { loaded, .. } => &loaded.tokenizer,
        }
    }

    /// One pass, with the adapter when `personalized`.
    fn generate(
        &self,
        personalized: bool,
        prompt: &[u32],
        sampling: &Sampling,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        Ok(match self {
            Engine::Quantized {
                model,
                tokenizer,
                adapter,
            } => {
                let decoder = Quantized {
                    model,
                    adapter: adapter.as_ref().filter(|_| personalized),
                };
                generate_with(&decoder, tokenizer, prompt, sampling, on_text)?
            }
            Engine::Reference { loaded, adapter } => generate(
                loaded,
                adapter.as_ref().filter(|_| personalized),
                prompt,
                sampling,
                on_text,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(prompt: &str) -> GenerateRequest {
        GenerateRequest {
            prompt: prompt.into(),
            ..GenerateRequest::default()
        }
    }

    #[test]
    fn the_default_request_passes_once_it_has_a_prompt() {
        assert!(matches!(
            GenerateRequest::default().check(),
            Err(PersonalizeError::Invalid(m)) if m.contains("prompt")
        ));
        assert!(with("Tell me about Rex").check().is_ok());
    }

    #[test]
    fn out_of_range_settings_are_refused_with_the_reason() {
        let cases: [(GenerateRequest, &str); 7] = [
            (with("   "), "write a prompt"),
            (with(&"x".repeat(MAX_PROMPT_CHARS + 1)), "longer than"),
            (
                GenerateRequest {
                    max_tokens: 0,
                    ..with("a")
                },
                "new tokens",
            ),
            (
                GenerateRequest {
                    max_tokens: MAX_NEW_TOKENS + 1,
                    ..with("a")
                },
                "new tokens",
            ),
            (
                GenerateRequest {
                    temperature: f64::NAN,
                    ..with("a")
                },
                "temperature",
            ),
            (
                GenerateRequest {
                    top_p: 0.0,
                    ..with("a")
                },
                "top-p",
            ),
            (
                GenerateRequest {
                    top_p: 1.5,
                    ..with("a")
                },
                "top-p",
            ),
        ];
        for (request, says) in cases {
            let err = request.check().expect_err(says);
            assert!(err.to_string().contains(says), "{err} lacks {says}");
        }
    }

    #[test]
    fn requests_and_events_keep_their_wire_shape() {
        let request: GenerateRequest =
            serde_json::from_str(r#"{"prompt": "hi", "adapter_id": 3}"#).expect("partial");
        assert_eq!(request.max_tokens, 200);
        assert_eq!(request.adapter_id, Some(3));
        let event = GenerationEvent::Text {
            pass: Pass::Personalized,
            text: "Rex".into(),
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            serde_json::json!({"event": "text", "pass": "personalized", "text": "Rex"})
        );
    }
}
