//! Teaching the translator the person's words: a small LoRA adapter
//! trained on the question and query pairs they corrected (`hearth ask
//! train`), used only for translating questions.
//!
//! The documents are the pairs exactly as the prompt writes them
//! ([`super::translate::pair_text`]), the fixed examples written with the
//! person's labels among them so the format is never forgotten. The
//! adapter learns the questions as well as the queries (the trainer has
//! no loss mask); that costs nothing at inference, where the question is
//! given. Pairs are few and short, so the run uses short sequences, a
//! larger batch and a higher learning rate than note training.

use hearth_ask::AskDb;
use hearth_ml::train::TrainConfig;
use hearth_ml::train::data::TextDataset;
use hearth_ml::{DeviceChoice, LoraAdapter};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{AdapterId, Library, NewRun, RunKind, RunStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::translate::{Translator, examples, pair_text};
use crate::error::{PersonalizeError, Result};
use crate::text::{Prepared, RunSummary, hold_weights_in, load_model, non_blank, parse_device};

/// Fewest corrected pairs worth training on.
pub const MIN_PAIRS: usize = 4;

/// What to train.
#[derive(Debug, Clone)]
pub struct AskTraining {
    /// Base model: registry name or path (default: the default text
    /// model, the one that translates).
    pub model: Option<String>,
    /// The training configuration ([`AskTraining::default_config`]).
    pub config: TrainConfig,
    /// Where to run.
    pub device: DeviceChoice,
}

impl Default for AskTraining {
    fn default() -> Self {
        AskTraining {
            model: None,
            config: Self::default_config(),
            device: DeviceChoice::Auto,
        }
    }
}

impl AskTraining {
    /// Short sequences (a pair is about 30 tokens), a batch of 8 and a
    /// learning rate of 1e-3: about 15 passes over 100 pairs.
    pub fn default_config() -> TrainConfig {
        TrainConfig {
            steps: 80,
            batch_size: 8,
            seq_len: 64,
            learning_rate: 1e-3,
            warmup_steps: 5,
            eval_every: 20,
            checkpoint_every: 20,
            ..TrainConfig::default()
        }
    }
}

/// A translator training as a person asks for it (the app's button,
/// `hearth ask train`'s flags); absent fields are [`AskTraining`]'s
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct AskTrainingRequest {
    /// Base model: registry name or path (default: the default text model).
    pub model: Option<String>,
    /// Optimizer steps (default: [`AskTraining::default_config`]'s).
    pub steps: Option<u64>,
    /// `auto`, `cpu`, `cuda` or `metal` (default `auto`).
    pub device: Option<String>,
}

impl AskTrainingRequest {
    /// The training this asks for; zero steps or an unknown device are
    /// [`PersonalizeError::Invalid`].
    pub fn training(&self) -> Result<AskTraining> {
        let mut training = AskTraining {
            model: non_blank(&self.model),
            ..AskTraining::default()
        };
        if let Some(device) = &self.device {
            training.device = parse_device(device)?;
        }
        if let Some(steps) = self.steps {
            if steps == 0 {
                return Err(PersonalizeError::Invalid(
                    "train for at least one step".into(),
                ));
            }
            training.config.steps = steps;
            training.config.warmup_steps = training.config.warmup_steps.min(steps);
        }
        Ok(training)
    }
}

/// The person's corrected pairs, one per question (the latest correction
/// wins), oldest first.
pub fn training_pairs(library: &Library) -> Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for correction in library.ask_corrections()? {
        let Some(question) = correction.question else {
            continue;
        };
        pairs.retain(|(asked, _)| *asked != question);
        pairs.push((question, correction.query));
    }
    Ok(pairs)
}

/// Trains a new ask adapter on the library's corrected pairs.
pub fn train_ask(
    library: &mut Library,
    request: &AskTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    request.config.validate()?;
    let pairs = training_pairs(library)?;
    if pairs.len() < MIN_PAIRS {
        return Err(PersonalizeError::NoData(format!(
            "{} corrected question(s); correct at least {MIN_PAIRS} translations first (`hearth ask correct ID \"QUERY\"`)",
            pairs.len()
        )));
    }
    let device = request.device.open()?;
    let (name, mut loaded) = load_model(request.model.as_deref(), &device)?;
    hold_weights_in(&mut loaded, &request.config)?;
    let facts = AskDb::open(library.root())?.facts()?;
    // The examples as the prompt shows them without a semantic index:
    // training on `similar` would teach what the grammar may then forbid.
    let texts: Vec<String> = examples(&facts, false)
        .into_iter()
        .chain(pairs)
        .map(|(question, query)| pair_text(&question, &query))
        .collect();
    let documents = texts
        .iter()
        .map(|text| loaded.tokenizer.encode(text, false))
        .collect::<hearth_ml::Result<Vec<_>>>()?;
    let dataset = TextDataset::pack(
        &documents,
        loaded.tokenizer.separator(),
        request.config.seq_len,
        request.config.validation_fraction,
        request.config.seed,
    )?;
    // Lineage by content: the pairs are not library items, so each is
    // named by the sha256 of its text.
    let mut item_hashes: Vec<String> = texts
        .iter()
        .map(|text| hex::encode(Sha256::digest(text.as_bytes())))
        .collect();
    item_hashes.sort();
    item_hashes.dedup();
    let config = serde_json::to_string(&request.config)
        .map_err(|e| PersonalizeError::Inconsistent(format!("configuration: {e}")))?;
    let run_id = library.create_run(&NewRun {
        kind: RunKind::Ask,
        base_model: name.clone(),
        base_model_sha256: loaded.info.sha256.clone(),
        config,
        label: None,
        item_sha256s: item_hashes.clone(),
        token_count: dataset.tokens() as u64,
        device: hearth_ml::device::device_name(&device).to_owned(),
        parent_sha256: None,
    })?;
    let prepared = Prepared {
        dataset,
        item_hashes,
    };
    crate::text::run(
        library,
        run_id,
        &name,
        &loaded,
        &prepared,
        &request.config,
        false,
        progress,
        cancel,
    )
}

/// The newest finished ask adapter trained on the translator's base
/// model, if any.
pub fn ask_adapter(library: &Library, translator: &Translator) -> Result<Option<AdapterId>> {
    let base = &translator.loaded().info.sha256;
    for adapter in library.adapters()? {
        let Some(run_id) = adapter.run_id else {
            continue;
        };
        let run = library.run(run_id)?;
        if run.kind == RunKind::Ask.as_str()
            && matches!(run.status, RunStatus::Completed | RunStatus::EarlyStopped)
            && adapter.base_model_sha256.as_deref() == Some(base.as_str())
        {
            return Ok(Some(adapter.id));
        }
    }
    Ok(None)
}

/// A translator for `library`: `model` (the default text model when
/// `None`) with the library's newest ask adapter for it, if one was
/// trained.
pub fn library_translator(
    library: &Library,
    model: Option<&str>,
    device: &hearth_ml::candle::Device,
) -> Result<(Translator, Option<AdapterId>)> {
    let mut translator = Translator::load(model, device)?;
    let adapter = ask_adapter(library, &translator)?;
    if let Some(id) = adapter {
        let weights: LoraAdapter = crate::load_adapter(library, id, translator.loaded())?;
        translator.set_adapter(Some(weights));
    }
    Ok((translator, adapter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_is_the_default_ask_training() {
        let training = AskTrainingRequest::default()
            .training()
            .expect("valid request");
        assert_eq!(training.config, AskTraining::default_config());
        assert_eq!(training.device, DeviceChoice::Auto);
    }

    #[test]
    fn fewer_steps_cap_the_warm_up_and_zero_steps_are_invalid() {
        let few = AskTrainingRequest {
            steps: Some(2),
            ..AskTrainingRequest::default()
        };
        let config = few.training().expect("valid request").config;
        assert_eq!((config.steps, config.warmup_steps), (2, 2));
        for bad in [r#"{"steps": 0}"#, r#"{"device": "gpu9"}"#] {
            let request: AskTrainingRequest = serde_json::from_str(bad).expect("well-formed JSON");
            assert!(matches!(
                request.training(),
                Err(PersonalizeError::Invalid(_))
            ));
        }
    }
}
