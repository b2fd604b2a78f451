//! A tagger training as a person asks for it (the app's button, `hearth
//! photos train`'s flags), and the workflow both run: embed the photos
//! imported since the last training, then learn the labels.

use hearth_ml::tagger::TaggerConfig;
use hearth_ml::vision::finetune::FineTuneConfig;
use hearth_progress::{CancelToken, Progress};
use hearth_store::Library;
use serde::{Deserialize, Serialize};

use super::{PhotoModel, PhotoTraining, TaggerSummary, embed_photos, train_tagger};
use crate::error::{PersonalizeError, Result};

/// Photos embedded per batch before a training.
const EMBED_BATCH: usize = 16;

/// A photo tagger training request; absent fields are the library's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct PhotoTrainingRequest {
    /// Fine-tune this many of the network's last blocks first (`None`: the
    /// head alone, on frozen embeddings).
    pub fine_tune_blocks: Option<usize>,
    /// Fine-tuning steps (default: [`FineTuneConfig::default`]'s).
    pub steps: Option<usize>,
}

impl PhotoTrainingRequest {
    /// The training this asks for; zero blocks or steps are
    /// [`PersonalizeError::Invalid`] (a network deeper than the model is
    /// refused when the model is known, by the training).
    pub fn training(&self) -> Result<PhotoTraining> {
        if self.fine_tune_blocks == Some(0) {
            return Err(PersonalizeError::Invalid(
                "fine-tune at least one block, or none at all (the head alone)".into(),
            ));
        }
        if self.steps == Some(0) {
            return Err(PersonalizeError::Invalid(
                "fine-tune for at least one step".into(),
            ));
        }
        Ok(PhotoTraining {
            tagger: TaggerConfig::default(),
            fine_tune: self.fine_tune_blocks.map(|blocks| {
                let defaults = FineTuneConfig::default();
                FineTuneConfig {
                    blocks,
                    steps: self.steps.unwrap_or(defaults.steps),
                    ..defaults
                }
            }),
        })
    }
}

/// Embeds the photos the base network has not seen yet (the examples are
/// chosen on its embeddings), then trains a new tagger
/// ([`train_tagger`]). Cancelling while embedding keeps what was embedded
/// and trains nothing ([`PersonalizeError::Cancelled`]).
pub fn train_new_tagger(
    library: &mut Library,
    base: &PhotoModel,
    request: &PhotoTrainingRequest,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let training = request.training()?;
    let embedded = embed_photos(library, base, EMBED_BATCH, progress, cancel)?;
    if embedded.cancelled {
        return Err(PersonalizeError::Cancelled);
    }
    let mut summary = train_tagger(library, base, &training, progress, cancel)?;
    summary.newly_embedded = embedded.embedded;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_request_trains_the_head_alone() {
        let training = PhotoTrainingRequest::default()
            .training()
            .expect("valid request");
        assert!(training.fine_tune.is_none());
    }

    #[test]
    fn fine_tuning_takes_the_library_defaults_it_is_not_given() {
        let request: PhotoTrainingRequest =
            serde_json::from_str(r#"{"fine_tune_blocks": 3}"#).expect("test setup");
        let fine_tune = request
            .training()
            .expect("valid request")
            .fine_tune
            .expect("test setup");
        assert_eq!(fine_tune.blocks, 3);
        assert_eq!(fine_tune.steps, FineTuneConfig::default().steps);
    }

    #[test]
    fn zero_blocks_or_steps_are_invalid() {
        for bad in [
            r#"{"fine_tune_blocks": 0}"#,
            r#"{"fine_tune_blocks": 1, "steps": 0}"#,
        ] {
            let request: PhotoTrainingRequest =
                serde_json::from_str(bad).expect("well-formed JSON");
            assert!(matches!(
                request.training(),
                Err(PersonalizeError::Invalid(_))
            ));
        }
    }
}
