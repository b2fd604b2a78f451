//! Request and response shapes of the Try commands.

use hearth_ml::tagger::Suggestion;
use hearth_personalize::generate::GenerationEvent;
use hearth_store::Item;
use serde::Serialize;

use crate::error::AppError;

pub use hearth_personalize::generate::{GenerateRequest, Pass};

/// A generation's events, tagged by `event`: the library's
/// [`GenerationEvent`]s, then how the job ended.
#[derive(Debug, Serialize, ts_rs::TS)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GenerateEvent {
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
    /// Everything is done; the last event.
    Done,
    /// It failed; the last event.
    Failed {
        /// Why.
        #[ts(as = "crate::error::ErrorBody")]
        error: AppError,
    },
}

impl From<GenerationEvent> for GenerateEvent {
    fn from(event: GenerationEvent) -> Self {
        match event {
            GenerationEvent::Loading { model } => GenerateEvent::Loading { model },
            GenerationEvent::Begin { pass } => GenerateEvent::Begin { pass },
            GenerationEvent::Text { pass, text } => GenerateEvent::Text { pass, text },
            GenerationEvent::End {
                pass,
                prompt_tokens,
                new_tokens,
                tokens_per_second,
            } => GenerateEvent::End {
                pass,
                prompt_tokens,
                new_tokens,
                tokens_per_second,
            },
        }
    }
}

/// Tag suggestions for one photo.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PhotoTags {
    /// The photo (for its thumbnail and labels).
    pub item: Item,
    /// Labels with calibrated confidence, most confident first.
    pub suggestions: Vec<Suggestion>,
}

/// A photo like another.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct SimilarPhoto {
    /// The photo.
    pub item: Item,
    /// Cosine similarity of the embeddings.
    pub similarity: f32,
}
