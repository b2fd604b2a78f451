//! Request and response shapes of the personalization commands.

use hearth_ml::train::TrainConfig;
use serde::{Deserialize, Serialize};

/// A text training request. Defaults are `hearth train text`'s.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct TextTrainingRequest {
    /// Base model: registry name or path (default: the default text model).
    pub model: Option<String>,
    /// Train on texts with this label only (default: every text).
    pub label: Option<String>,
    /// Optimizer steps.
    pub steps: u64,
    /// LoRA rank.
    pub rank: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Steps between held-out evaluations.
    pub eval_every: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// `auto`, `cpu`, `cuda` or `metal`.
    pub device: String,
}

impl Default for TextTrainingRequest {
    /// The library's default training ([`TrainConfig::default`]), so the
    /// app, the CLI and the library agree.
    fn default() -> Self {
        let config = TrainConfig::default();
        TextTrainingRequest {
            model: None,
            label: None,
            steps: config.steps,
            rank: config.lora.rank,
            batch_size: config.batch_size,
            seq_len: config.seq_len,
            learning_rate: config.learning_rate,
            eval_every: config.eval_every,
            checkpoint_every: config.checkpoint_every,
            device: "auto".into(),
        }
    }
}

/// A base model the person can choose.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ModelChoice {
    /// Registry name.
    pub name: String,
    /// `text` or `vision`.
    pub kind: String,
    /// One line about it.
    pub description: String,
    /// The default of its kind.
    pub default: bool,
    /// Whether its files are on this machine.
    pub present: bool,
}

/// A photo tagger training request.
#[derive(Debug, Clone, Default, Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct PhotoTrainingRequest {
    /// Fine-tune this many of the network's last blocks first (`None`: the
    /// head alone, on frozen embeddings).
    pub fine_tune_blocks: Option<usize>,
    /// Fine-tuning steps (default: the library's).
    pub steps: Option<usize>,
}

/// What each form starts with: the library's defaults, so the front end
/// declares none of its own.
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
pub struct RequestDefaults {
    /// Training a text adapter (`hearth train text`'s).
    pub text_training: TextTrainingRequest,
    /// Taking part in a federated round (`hearth fed run`'s, one round).
    pub federated_round: crate::commands::federation::models::FederatedRoundRequest,
    /// Generating text (`hearth generate`'s: sampled, seeded).
    pub generate: hearth_personalize::generate::GenerateRequest,
}

/// A run as the Personalize screen lists it: the library's record, and
/// what its JSON configuration says that the screen needs, read in Rust.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct RunView {
    /// The recorded run.
    #[serde(flatten)]
    pub run: hearth_store::Run,
    /// Steps it was asked for (text and Ask translator runs).
    pub total_steps: Option<u64>,
}

impl From<hearth_store::Run> for RunView {
    fn from(run: hearth_store::Run) -> Self {
        RunView {
            total_steps: hearth_personalize::planned_steps(&run),
            run,
        }
    }
}
