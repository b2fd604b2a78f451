//! The Try commands' logic: generation as `hearth generate --compare`
//! composes it, and the photo calls of `hearth photos tag|similar` and
//! `hearth label accept|reject`.

use hearth_ml::DeviceChoice;
use hearth_ml::generate::{Sampling, generate};
use hearth_personalize::photos;
use hearth_progress::CancelToken;
use hearth_store::{ItemId, Verdict};

use super::models::{GenerateEvent, GenerateRequest, Pass, PhotoTags, SimilarPhoto};
use crate::error::{AppError, Result};
use crate::jobs::EventSink;
use crate::state::LibraryLocation;

/// Longest prompt accepted, in characters (the models' contexts are far
/// shorter; this only keeps a pasted book out of the tokenizer).
const MAX_PROMPT_CHARS: usize = 20_000;

/// Runs the passes a request asks for, streaming into `sink`. Cancelling
/// stops before the next pass (a pass is short: `max_tokens` at most).
pub fn generate_text(
    location: &LibraryLocation,
    request: &GenerateRequest,
    sink: &dyn EventSink<GenerateEvent>,
    cancel: &CancelToken,
) -> Result<()> {
    if request.prompt.trim().is_empty() {
        return Err(AppError::InvalidInput("write a prompt first".into()));
    }
    if request.prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(AppError::InvalidInput(format!(
            "the prompt is longer than {MAX_PROMPT_CHARS} characters"
        )));
    }
    let library = location.open()?;
    let device = DeviceChoice::Auto.open()?;
    let adapter_record = request
        .adapter_id
        .map(|id| library.adapter(id))
        .transpose()?;
    // As the CLI: the adapter's own base model unless one is named.
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
    sink.send(GenerateEvent::Loading {
        model: model.clone().unwrap_or_else(|| "default text model".into()),
    });
    let (_, loaded) = hearth_personalize::load_model(model.as_deref(), &device)?;
    let adapter = request
        .adapter_id
        .map(|id| hearth_personalize::load_adapter(&library, id, &loaded))
        .transpose()?;
    let text = match (request.raw, loaded.tokenizer.chat_prompt(&request.prompt)?) {
        (false, Some(chat)) => chat,
        _ => request.prompt.clone(),
    };
    let prompt = loaded.tokenizer.encode(&text, true)?;
    let sampling = Sampling {
        temperature: request.temperature.max(0.0),
        top_p: request.top_p.clamp(0.0, 1.0),
        seed: request.seed,
        max_new_tokens: request.max_tokens.clamp(1, 2048),
    };
    let mut passes = Vec::new();
    if request.compare || adapter.is_none() {
        passes.push((Pass::Base, None));
    }
    if let Some(adapter) = adapter.as_ref() {
        passes.push((Pass::Personalized, Some(adapter)));
    }
    for (pass, adapter) in passes {
        if cancel.is_cancelled() {
            break;
        }
        sink.send(GenerateEvent::Begin { pass });
        let result = generate(&loaded, adapter, &prompt, &sampling, |piece| {
            sink.send(GenerateEvent::Text {
                pass,
                text: piece.to_owned(),
            });
        })?;
        sink.send(GenerateEvent::End {
            pass,
            prompt_tokens: result.prompt_tokens,
            new_tokens: result.new_tokens,
            tokens_per_second: result.new_tokens as f64 / result.decode_seconds.max(1e-9),
        });
    }
    Ok(())
}

/// Tag suggestions from the active tagger: for unlabelled photos, or for
/// every photo when `all`.
pub fn suggest_tags(location: &LibraryLocation, all: bool) -> Result<Vec<PhotoTags>> {
    let library = location.open()?;
    let model = photos::active_photo_model(&library, &hearth_ml::candle::Device::Cpu)?;
    photos::suggest_tags(&library, &model.sha256, all)?
        .into_iter()
        .map(|row| {
            Ok(PhotoTags {
                item: library.item(row.item_id)?,
                suggestions: row.suggestions,
            })
        })
        .collect()
}

/// The `k` photos most like `item`.
pub fn similar(location: &LibraryLocation, item: ItemId, k: usize) -> Result<Vec<SimilarPhoto>> {
    let library = location.open()?;
    let model = photos::active_photo_model(&library, &hearth_ml::candle::Device::Cpu)?;
    photos::similar(&library, &model.sha256, item, k.clamp(1, 100))?
        .into_iter()
        .map(|(id, _, similarity)| {
            Ok(SimilarPhoto {
                item: library.item(id)?,
                similarity,
            })
        })
        .collect()
}

/// Records the person's verdict on a suggested label.
pub fn verdict(
    location: &LibraryLocation,
    item: ItemId,
    label: &str,
    verdict: Verdict,
) -> Result<hearth_store::Item> {
    let mut library = location.open()?;
    library.record_verdict(item, label, verdict)?;
    Ok(library.item(item)?)
}
