//! Text personalization: the library's notes in, a LoRA adapter out.

use std::collections::HashSet;

use hearth_ml::candle::Device;
use hearth_ml::train::data::TextDataset;
use hearth_ml::train::{self, Outcome, TrainConfig};
use hearth_ml::{DeviceChoice, LoadedModel, registry};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{AdapterId, Library, NewRun, RunId, RunKind, RunStatus, RunUpdate};
use serde::Serialize;

use crate::adapters::{load_adapter, store_trained};
use crate::error::{PersonalizeError, Result};

mod request;

pub use request::TextTrainingRequest;
pub(crate) use request::{non_blank, parse_device};

/// What to train.
#[derive(Debug, Clone)]
pub struct TextTraining {
    /// Base model: registry name or path (default: the registry's default
    /// text model).
    pub model: Option<String>,
    /// Train on texts with this label only (default: every text).
    pub label: Option<String>,
    /// The training configuration.
    pub config: TrainConfig,
    /// Where to run.
    pub device: DeviceChoice,
}

/// How a run went.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// How this call ended.
    pub outcome: Outcome,
    /// Steps done in total.
    pub steps: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// Held-out loss of the base model.
    pub base_validation_loss: Option<f32>,
    /// Held-out loss with the adapter.
    pub validation_loss: Option<f32>,
    /// Throughput of this call.
    pub tokens_per_second: f64,
    /// The adapter, once training finished.
    pub adapter_id: Option<AdapterId>,
    /// Items trained on.
    pub items: usize,
    /// Tokens of text.
    pub tokens: usize,
}

/// The steps a text (or Ask translator) run was asked for, read from its
/// recorded configuration; `None` for other runs or a configuration this
/// version cannot read. What "step 40 of 100" needs for a paused run.
pub fn planned_steps(run: &hearth_store::Run) -> Option<u64> {
    let trains_text = run.kind == RunKind::Text.as_str() || run.kind == RunKind::Ask.as_str();
    trains_text
        .then(|| serde_json::from_str::<TrainConfig>(&run.config).ok())
        .flatten()
        .map(|config| config.steps)
}

/// Loads a base model by registry name or path (the default text model
/// when `None`); returns the name it was asked by and the model.
pub fn load_model(model: Option<&str>, device: &Device) -> Result<(String, LoadedModel)> {
    let (name, path) = resolve_model(model)?;
    Ok((name, hearth_ml::load(&path, device)?))
}

/// Where a base model named by registry name or path is (the default text
/// model when `None`), with the name it was asked by; a model that came
/// in a package is checked against its recorded sha256 first.
pub(crate) fn resolve_model(model: Option<&str>) -> Result<(String, std::path::PathBuf)> {
    let name = match model {
        Some(model) => model.to_owned(),
        None => registry::default_model("text")?.name,
    };
    let path = registry::resolve(&name)?;
    if let Ok(entry) = registry::entry(&name)
        && entry.package_file().as_deref() == Some(path.as_path())
    {
        entry.verify_package_file(&path)?;
    }
    Ok((name, path))
}

/// Narrows the frozen weights as the configuration asks (bf16/f16).
pub(crate) fn hold_weights_in(loaded: &mut LoadedModel, config: &TrainConfig) -> Result<()> {
    let dtype = train::parse_base_dtype(&config.base_dtype)?;
    if dtype != loaded.model.weight_dtype() {
        loaded.model = loaded.model.clone().with_weight_dtype(dtype)?;
    }
    Ok(())
}

pub(crate) struct Prepared {
    pub(crate) dataset: TextDataset,
    pub(crate) item_hashes: Vec<String>,
}

/// Tokenises the texts selected by `label` (and, when resuming, exactly the
/// items the run used) and packs them.
pub(crate) fn prepare(
    library: &Library,
    loaded: &LoadedModel,
    label: Option<&str>,
    only: Option<&HashSet<String>>,
    config: &TrainConfig,
) -> Result<Prepared> {
    let mut texts = library.texts_for_training(label)?;
    // A run is defined by its set of items: order them by content, not by
    // when they happened to be imported.
    texts.sort_by(|a, b| a.0.sha256.cmp(&b.0.sha256));
    if let Some(only) = only {
        texts.retain(|(item, _)| only.contains(&item.sha256));
        if texts.len() != only.len() {
            return Err(PersonalizeError::Inconsistent(format!(
                "{} of the run's {} texts are no longer in the library (or lost the label); start a new run",
                only.len() - texts.len(),
                only.len()
            )));
        }
    }
    if texts.is_empty() {
        return Err(PersonalizeError::NoData(match label {
            Some(label) => format!("no text in the library has the label {label:?}"),
            None => {
                "the library has no text to learn from; import some .txt or .md notes first".into()
            }
        }));
    }
    let documents = texts
        .iter()
        .map(|(_, body)| loaded.tokenizer.encode(body, false))
        .collect::<hearth_ml::Result<Vec<_>>>()?;
    let dataset = TextDataset::pack(
        &documents,
        loaded.tokenizer.separator(),
        config.seq_len,
        config.validation_fraction,
        config.seed,
    )?;
    let mut item_hashes: Vec<String> = texts.into_iter().map(|(item, _)| item.sha256).collect();
    item_hashes.sort();
    Ok(Prepared {
        dataset,
        item_hashes,
    })
}

fn config_json(config: &TrainConfig) -> Result<String> {
    serde_json::to_string(config)
        .map_err(|e| PersonalizeError::Inconsistent(format!("configuration: {e}")))
}

/// Starts a new text run.
pub fn train_text(
    library: &mut Library,
    request: &TextTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    request.config.validate()?;
    let device = request.device.open()?;
    let (name, mut loaded) = load_model(request.model.as_deref(), &device)?;
    hold_weights_in(&mut loaded, &request.config)?;
    let prepared = prepare(
        library,
        &loaded,
        request.label.as_deref(),
        None,
        &request.config,
    )?;
    let run_id = library.create_run(&NewRun {
        kind: RunKind::Text,
        parent_sha256: None,
        base_model: name.clone(),
        base_model_sha256: loaded.info.sha256.clone(),
        config: config_json(&request.config)?,
        label: request.label.clone(),
        item_sha256s: prepared.item_hashes.clone(),
        token_count: prepared.dataset.tokens() as u64,
        device: hearth_ml::device::device_name(&device).to_owned(),
    })?;
    run(
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

/// Continues a paused or interrupted run from its last checkpoint.
pub fn resume_text(
    library: &mut Library,
    run_id: RunId,
    device: DeviceChoice,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    let record = crate::runs::resumable(library, run_id, RunKind::Text)?;
    let config: TrainConfig = serde_json::from_str(&record.config)
        .map_err(|e| PersonalizeError::Inconsistent(format!("run {run_id} configuration: {e}")))?;
    let device = device.open()?;
    let (name, mut loaded) = load_model(Some(&record.base_model), &device)?;
    hold_weights_in(&mut loaded, &config)?;
    if loaded.info.sha256 != record.base_model_sha256 {
        return Err(PersonalizeError::Inconsistent(format!(
            "run {run_id} trained on {} with sha256 {}, but it now resolves to sha256 {}",
            record.base_model, record.base_model_sha256, loaded.info.sha256
        )));
    }
    let items: HashSet<String> = library.run_item_hashes(run_id)?.into_iter().collect();
    let prepared = prepare(
        library,
        &loaded,
        record.label.as_deref(),
        Some(&items),
        &config,
    )?;
    // Killed before its first checkpoint: start the same run afresh.
    let resume = train::checkpoint::exists(&train::checkpoint_dir(&library.run_dir(run_id)));
    library.update_run(
        run_id,
        &RunUpdate {
            status: Some(RunStatus::Running),
            ..RunUpdate::default()
        },
    )?;
    run(
        library, run_id, &name, &loaded, &prepared, &config, resume, progress, cancel,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    library: &mut Library,
    run_id: RunId,
    name: &str,
    loaded: &LoadedModel,
    prepared: &Prepared,
    config: &TrainConfig,
    resume: bool,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RunSummary> {
    let run_dir = library.run_dir(run_id);
    let result = train::train(
        &loaded.model,
        &loaded.info.sha256,
        &prepared.dataset,
        config,
        &run_dir,
        resume,
        progress,
        cancel,
    );
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            library.update_run(
                run_id,
                &RunUpdate {
                    status: Some(RunStatus::Failed),
                    error: Some(error.to_string()),
                    ..RunUpdate::default()
                },
            )?;
            return Err(error.into());
        }
    };
    let status = match report.outcome {
        Outcome::Completed => RunStatus::Completed,
        Outcome::EarlyStopped => RunStatus::EarlyStopped,
        Outcome::Paused => RunStatus::Paused,
    };
    let adapter_id = match report.outcome {
        Outcome::Paused => None,
        Outcome::Completed | Outcome::EarlyStopped => {
            let lineage = crate::lineage::lineage_hash(
                &loaded.info.sha256,
                &config_json(config)?,
                &prepared.item_hashes,
            );
            Some(store_trained(
                library,
                &report.adapter,
                &loaded.info,
                name,
                run_id,
                &lineage,
            )?)
        }
    };
    library.update_run(
        run_id,
        &RunUpdate {
            status: Some(status),
            steps_done: Some(report.steps),
            train_loss: report.last_loss.map(f64::from),
            base_validation_loss: report.base_validation_loss.map(f64::from),
            validation_loss: report.validation_loss.map(f64::from),
            tokens_per_second: Some(report.tokens_per_second),
            error: None,
        },
    )?;
    Ok(RunSummary {
        run_id,
        outcome: report.outcome,
        steps: report.steps,
        total_steps: config.steps,
        base_validation_loss: report.base_validation_loss,
        validation_loss: report.validation_loss,
        tokens_per_second: report.tokens_per_second,
        adapter_id,
        items: prepared.item_hashes.len(),
        tokens: prepared.dataset.tokens(),
    })
}

/// Held-out loss and perplexity, base model versus adapter.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Base model mean loss.
    pub base_loss: f32,
    /// Base model perplexity.
    pub base_perplexity: f32,
    /// Adapter mean loss.
    pub adapter_loss: Option<f32>,
    /// Adapter perplexity.
    pub adapter_perplexity: Option<f32>,
    /// Held-out sequences scored.
    pub sequences: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
}

/// Scores the held-out split of the library's texts. With an adapter from a
/// training run, the split (items, label, sequence length, seed) is that
/// run's, so the text was never trained on.
pub fn evaluate(
    library: &Library,
    model: Option<&str>,
    adapter: Option<AdapterId>,
    label: Option<&str>,
    device: DeviceChoice,
) -> Result<EvalReport> {
    let device = device.open()?;
    let record = adapter.map(|id| library.adapter(id)).transpose()?;
    let run = record
        .as_ref()
        .and_then(|a| a.run_id)
        .map(|id| library.run(id))
        .transpose()?;
    let model = model
        .map(str::to_owned)
        .or_else(|| run.as_ref().map(|r| r.base_model.clone()));
    let (_, loaded) = load_model(model.as_deref(), &device)?;
    let (config, label, items) = match &run {
        Some(run) => (
            serde_json::from_str::<TrainConfig>(&run.config).map_err(|e| {
                PersonalizeError::Inconsistent(format!("run {} configuration: {e}", run.id))
            })?,
            run.label.clone(),
            Some(
                library
                    .run_item_hashes(run.id)?
                    .into_iter()
                    .collect::<HashSet<_>>(),
            ),
        ),
        None => (TrainConfig::default(), label.map(str::to_owned), None),
    };
    let prepared = prepare(library, &loaded, label.as_deref(), items.as_ref(), &config)?;
    let sequences: Vec<&Vec<u32>> = prepared.dataset.validation().iter().collect();
    let base_loss = train::mean_loss(&loaded.model, None, &sequences, config.batch_size)?;
    let adapter_loss = match adapter {
        Some(id) => {
            let adapter = load_adapter(library, id, &loaded)?;
            Some(train::mean_loss(
                &loaded.model,
                Some(&adapter),
                &sequences,
                config.batch_size,
            )?)
        }
        None => None,
    };
    Ok(EvalReport {
        base_loss,
        base_perplexity: base_loss.exp(),
        adapter_loss,
        adapter_perplexity: adapter_loss.map(f32::exp),
        sequences: sequences.len(),
        seq_len: config.seq_len,
    })
}
