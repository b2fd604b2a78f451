//! Request and response shapes of the Try commands.

use hearth_ml::tagger::Suggestion;
use hearth_store::{AdapterId, Item};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A generation request. Defaults are `hearth generate`'s.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: String,
    /// The personalized pass uses this adapter.
    pub adapter_id: Option<AdapterId>,
    /// Also run the base model (side by side).
    pub compare: bool,
    /// Base model (default: the adapter's run's model, else the default
    /// text model).
    pub model: Option<String>,
    /// Most new tokens.
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus sampling.
    pub top_p: f64,
    /// Sampling seed.
    pub seed: u64,
    /// Send the prompt as it is, without the model's chat template.
    pub raw: bool,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        let sampling = hearth_ml::generate::Sampling::default();
        GenerateRequest {
            prompt: String::new(),
            adapter_id: None,
            compare: true,
            model: None,
            max_tokens: sampling.max_new_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            seed: sampling.seed,
            raw: false,
        }
    }
}

/// Which side a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// The base model alone.
    Base,
    /// The base model with the adapter.
    Personalized,
}

/// A generation's events, tagged by `event`.
#[derive(Debug, Serialize)]
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
        error: AppError,
    },
}

/// Tag suggestions for one photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoTags {
    /// The photo (for its thumbnail and labels).
    pub item: Item,
    /// Labels with calibrated confidence, most confident first.
    pub suggestions: Vec<Suggestion>,
}

/// A photo like another.
#[derive(Debug, Clone, Serialize)]
pub struct SimilarPhoto {
    /// The photo.
    pub item: Item,
    /// Cosine similarity of the embeddings.
    pub similarity: f32,
}
