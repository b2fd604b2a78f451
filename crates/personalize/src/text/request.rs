//! A text training as a person asks for it (the app's form, `hearth train
//! text`'s flags), with the defaults both start from, and its checked
//! mapping onto the workflow's [`TextTraining`].

use hearth_ml::DeviceChoice;
use hearth_ml::lora::{LoraConfig, Target};
use hearth_ml::train::TrainConfig;
use serde::{Deserialize, Serialize};

use super::TextTraining;
use crate::error::{PersonalizeError, Result};

/// A text training request. Every field has the library's default
/// ([`TrainConfig::default`]), so a face sends only what the person chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// LoRA alpha (the update is scaled by alpha / rank).
    pub alpha: f64,
    /// LoRA dropout.
    pub dropout: f32,
    /// Projections to adapt.
    pub targets: Vec<Target>,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Micro-batches per step.
    pub grad_accumulation: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Warm-up steps (at most `steps`).
    pub warmup_steps: u64,
    /// Steps between held-out evaluations.
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement (never when
    /// absent).
    pub patience: Option<u64>,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Seed for initialisation, data order and dropout.
    pub seed: u64,
    /// How the frozen base weights are held: `f32`, `bf16` or `f16`.
    pub base_dtype: String,
    /// `auto`, `cpu`, `cuda` or `metal`.
    pub device: String,
}

impl Default for TextTrainingRequest {
    fn default() -> Self {
        let config = TrainConfig::default();
        TextTrainingRequest {
            model: None,
            label: None,
            steps: config.steps,
            rank: config.lora.rank,
            alpha: config.lora.alpha,
            dropout: config.lora.dropout,
            targets: config.lora.targets,
            batch_size: config.batch_size,
            seq_len: config.seq_len,
            grad_accumulation: config.grad_accumulation,
            learning_rate: config.learning_rate,
            warmup_steps: config.warmup_steps,
            eval_every: config.eval_every,
            patience: config.early_stopping_patience,
            checkpoint_every: config.checkpoint_every,
            seed: config.seed,
            base_dtype: config.base_dtype,
            device: DeviceChoice::default().to_string(),
        }
    }
}

impl TextTrainingRequest {
    /// The training this asks for, checked: an unknown device or a
    /// configuration [`TrainConfig::validate`] refuses is
    /// [`PersonalizeError::Invalid`]; a blank model or label means the
    /// default.
    pub fn training(&self) -> Result<TextTraining> {
        let config = TrainConfig {
            lora: LoraConfig {
                rank: self.rank,
                alpha: self.alpha,
                dropout: self.dropout,
                targets: self.targets.clone(),
            },
            steps: self.steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            grad_accumulation: self.grad_accumulation,
            learning_rate: self.learning_rate,
            warmup_steps: self.warmup_steps.min(self.steps),
            eval_every: self.eval_every,
            early_stopping_patience: self.patience,
            checkpoint_every: self.checkpoint_every,
            seed: self.seed,
            base_dtype: self.base_dtype.clone(),
            ..TrainConfig::default()
        };
        config
            .validate()
            .map_err(|e| PersonalizeError::Invalid(e.to_string()))?;
        Ok(TextTraining {
            model: non_blank(&self.model),
            label: non_blank(&self.label),
            config,
            device: parse_device(&self.device)?,
        })
    }
}

/// `None` for an absent or blank field, else the trimmed text.
pub(crate) fn non_blank(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A device by the name a person gives it.
pub(crate) fn parse_device(name: &str) -> Result<DeviceChoice> {
    name.trim().parse().map_err(PersonalizeError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_request_is_the_library_default_training() {
        let training = TextTrainingRequest::default()
            .training()
            .expect("valid request");
        assert_eq!(training.config, TrainConfig::default());
        assert_eq!(training.device, DeviceChoice::Auto);
        assert_eq!((training.model, training.label), (None, None));
    }

    #[test]
    fn a_partial_request_keeps_the_defaults_it_does_not_name() {
        let request: TextTrainingRequest =
            serde_json::from_str(r#"{"steps": 3, "model": "  ", "label": " family "}"#)
                .expect("test setup");
        let training = request.training().expect("valid request");
        assert_eq!(training.config.steps, 3);
        assert_eq!(
            training.config.warmup_steps, 3,
            "warm-up is capped by steps"
        );
        assert_eq!(training.config.seq_len, TrainConfig::default().seq_len);
        assert_eq!(training.model, None, "a blank model is the default");
        assert_eq!(training.label.as_deref(), Some("family"));
    }

    #[test]
    fn bad_requests_are_invalid_not_panics() {
        for bad in [
            r#"{"steps": 0}"#,
            r#"{"seq_len": 1}"#,
            r#"{"learning_rate": 2.0}"#,
            r#"{"device": "tpu"}"#,
            r#"{"base_dtype": "int3"}"#,
            r#"{"targets": []}"#,
            r#"{"rank": 0}"#,
        ] {
            let request: TextTrainingRequest = serde_json::from_str(bad).expect("well-formed JSON");
            assert!(
                matches!(request.training(), Err(PersonalizeError::Invalid(_))),
                "{bad} was accepted"
            );
        }
    }
}
