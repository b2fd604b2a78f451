//! Request and response shapes of the Try commands.

use hearth_ml::tagger::Suggestion;
use hearth_personalize::generate::GenerationEvent;
use hearth_store::Item;
use serde::Serialize;

use crate::error::AppError;

pub use hearth_personalize::generate::{GenerateRequest, Pass};

/// A generation's events, each tagged by `event`: the library's
/// [`GenerationEvent`]s as they are (`loading`, `begin`, `text`, `end`),
/// then how the job ended.
#[derive(Debug, Serialize, ts_rs::TS)]
#[serde(untagged)]
pub enum GenerateEvent {
    /// What the library reports as it goes.
    Progress(GenerationEvent),
    /// How the job ended; the last event.
    Finished(GenerateEnd),
}

/// How a generation job ended.
#[derive(Debug, Serialize, ts_rs::TS)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GenerateEnd {
    /// Everything is done.
    Done,
    /// It failed.
    Failed {
        /// Why.
        #[ts(as = "crate::error::ErrorBody")]
        error: AppError,
    },
}

impl From<GenerationEvent> for GenerateEvent {
    fn from(event: GenerationEvent) -> Self {
        GenerateEvent::Progress(event)
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
