//! Photo personalization: embeddings for every photo (cached in the
//! library by photo and model hash), a tagger head learned from the
//! person's labels and verdicts, suggestions, questions, and look-alikes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use hearth_ml::candle::{Device, Tensor};
use hearth_ml::registry;
use hearth_ml::tagger::{Known, Suggestion, Tagger, TaggerConfig, cosine};
use hearth_ml::vision::finetune::{FineTuneConfig, fine_tune};
use hearth_ml::vision::preprocess::decode;
use hearth_ml::vision::{EfficientNet, load_efficientnet, load_image};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{
    EmbeddingResult, Item, ItemFilter, ItemId, ItemKind, Library, NewPhotoTagger, NewRun, RunId,
    RunKind, RunStatus, RunUpdate, TaggerId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{PersonalizeError, Result};

mod request;

pub use request::{PhotoTrainingRequest, train_new_tagger};

/// The registry name of the default photo model.
pub const VISION_MODEL: &str = "efficientnet-lite0";

/// A loaded photo model and the sha256 its embeddings are keyed by.
#[derive(Debug)]
pub struct PhotoModel {
    /// The network.
    pub model: EfficientNet,
    /// sha256 of its weights file.
    pub sha256: String,
}

/// Loads the default photo model (registry name or a path to weights).
pub fn load_photo_model(model: Option<&str>, device: &Device) -> Result<PhotoModel> {
    let name = model.unwrap_or(VISION_MODEL);
    let path = registry::resolve(name)?;
    if let Ok(entry) = registry::entry(name)
        && entry.package_file().as_deref() == Some(path.as_path())
    {
        entry.verify_package_file(&path)?;
    }
    let (model, sha256) = load_efficientnet(&path, device)?;
    Ok(PhotoModel { model, sha256 })
}

/// What an embedding pass did.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct EmbedSummary {
    /// Photos embedded now.
    pub embedded: usize,
    /// Photos that no longer decode (marked, skipped).
    pub failed: usize,
    /// Photos already embedded before.
    pub cached: usize,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// Embeds every photo that has no embedding under this model yet, `batch`
/// at a time; a photo that no longer decodes is recorded as such and the
/// pass carries on. Each batch is committed as it finishes.
pub fn embed_photos(
    library: &mut Library,
    model: &PhotoModel,
    batch: usize,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<EmbedSummary> {
    let all = library.items(&ItemFilter {
        kind: Some(ItemKind::Photo),
        label: None,
    })?;
    let missing = library.photos_without_embedding(&model.sha256)?;
    let mut summary = EmbedSummary {
        cached: all.len() - missing.len(),
        ..EmbedSummary::default()
    };
    progress.begin("Embedding", Some(missing.len() as u64));
    let device = model.model.device().clone();
    for chunk in missing.chunks(batch.max(1)) {
        if cancel.is_cancelled() {
            summary.cancelled = true;
            break;
        }
        let mut results = Vec::with_capacity(chunk.len());
        let mut decoded = Vec::new();
        let mut decoded_shas = Vec::new();
        for photo in chunk {
            match load_image(&PathBuf::from(&photo.path), &device) {
                Ok(tensor) => {
                    decoded.push(tensor);
                    decoded_shas.push(photo.sha256.clone());
                }
                Err(error) => {
                    progress.note(&format!("{}: {error}", photo.path));
                    results.push((
                        photo.sha256.clone(),
                        EmbeddingResult::Failed(error.to_string()),
                    ));
                    summary.failed += 1;
                }
            }
        }
        if !decoded.is_empty() {
            let input = Tensor::stack(&decoded, 0).map_err(hearth_ml::MlError::from)?;
            let embeddings: Vec<Vec<f32>> = model
                .model
                .embed(&input)?
                .to_vec2()
                .map_err(hearth_ml::MlError::from)?;
            summary.embedded += embeddings.len();
            results.extend(
                decoded_shas
                    .into_iter()
                    .zip(embeddings.into_iter().map(EmbeddingResult::Vector)),
            );
        }
        library.put_embeddings(&model.sha256, &results)?;
        progress.advance((summary.embedded + summary.failed) as u64);
    }
    progress.end();
    Ok(summary)
}

/// How to train the photo tagger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhotoTraining {
    /// The calibrated head.
    pub tagger: TaggerConfig,
    /// Fine-tune the network's last blocks first (`None`: the head alone,
    /// on the frozen embeddings).
    pub fine_tune: Option<FineTuneConfig>,
}

/// A trained tagger and how it was trained.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TaggerSummary {
    /// The run recorded for it.
    pub run_id: RunId,
    /// The tagger recorded for it (`hearth photos lineage`).
    pub tagger_id: TaggerId,
    /// Labels learned.
    pub labels: Vec<String>,
    /// Photos with a known status for at least one label.
    pub examples: usize,
    /// Held-out accuracy per label (None when too few examples).
    pub held_out_accuracy: Vec<Option<f32>>,
    /// Per-label thresholds.
    pub thresholds: Vec<f32>,
    /// The model the tagger reads embeddings of: the base network's sha256,
    /// or the fine-tuned one's.
    pub model_sha256: String,
    /// Fine-tuning's loss over every training view, before and after.
    pub fine_tune_loss: Option<(f32, f32)>,
    /// Where the head was saved.
    pub path: PathBuf,
    /// Photos embedded with the base network just before this training
    /// ([`train_new_tagger`]; 0 otherwise).
    pub newly_embedded: usize,
}

fn taggers_dir(library: &Library) -> PathBuf {
    library.root().join("taggers")
}

/// Each run's head has a file of its own, so a later run never changes
/// the bytes an earlier tagger's record vouches for.
fn tagger_file(run_id: RunId) -> String {
    format!("taggers/run-{run_id}.json")
}

/// Where heads were kept before taggers were recorded in the library: one
/// per network, replaced by each run.
fn legacy_tagger_path(library: &Library, model_sha256: &str) -> PathBuf {
    taggers_dir(library).join(format!("{}.json", &model_sha256[..16]))
}

/// Which photo model the tagger uses now: the base network, or the base
/// network with a fine-tuned tail (`taggers/active.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActiveModel {
    base_sha256: String,
    model_sha256: String,
    /// The fine-tuned tail: a safetensors file in `taggers/` and the first
    /// block it replaces.
    tail: Option<(String, usize)>,
    run_id: RunId,
}

const ACTIVE_FILE: &str = "active.json";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PersonalizeError + '_ {
    move |source| PersonalizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one, never half of either ([`hearth_store::atomic`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    hearth_store::atomic::write_atomically(path, bytes).map_err(io_error(path))
}

/// The photo model tagging uses now: the default network, with the tail
/// the last `hearth photos train --fine-tune-blocks` produced, if any.
pub fn active_photo_model(library: &Library, device: &Device) -> Result<PhotoModel> {
    let mut base = load_photo_model(None, device)?;
    let path = taggers_dir(library).join(ACTIVE_FILE);
    let active: ActiveModel = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            PersonalizeError::Inconsistent(format!(
                "{}: unreadable ({e}); run `hearth photos train` again",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(base),
        Err(e) => return Err(io_error(&path)(e)),
    };
    // A tagger trained on another base network does not apply.
    if active.base_sha256 != base.sha256 {
        return Ok(base);
    }
    if let Some((file, from_block)) = &active.tail {
        let tail_path = taggers_dir(library).join(file);
        let tensors = hearth_ml::candle::safetensors::load(&tail_path, device)
            .map_err(|e| PersonalizeError::NoData(format!("{}: {e}", tail_path.display())))?;
        base.model.apply_tail(*from_block, &tensors)?;
    }
    base.sha256 = active.model_sha256;
    Ok(base)
}

/// The labels worth learning and, for every embedded photo with something
/// known, what is known: `(labels, [(item, sha256, knowns)])`.
type Examples = (Vec<String>, Vec<(ItemId, String, Vec<Known>)>);

fn examples(library: &Library, model_sha256: &str) -> Result<Examples> {
    let embeddings = library.photo_embeddings(model_sha256)?;
    if embeddings.is_empty() {
        return Err(PersonalizeError::NoData(
            "no photo embeddings yet: import photos and run `hearth photos embed`".into(),
        ));
    }
    let items: HashMap<ItemId, Item> = library
        .items(&ItemFilter {
            kind: Some(ItemKind::Photo),
            label: None,
        })?
        .into_iter()
        .map(|item| (item.id, item))
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for embedding in &embeddings {
        for label in items
            .get(&embedding.item_id)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
        {
            *counts.entry(label).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Err(PersonalizeError::NoData(
            "no labelled photos: label a few photos first (`hearth label add ID NAME`)".into(),
        ));
    }
    let mut labels: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n >= 2)
        .map(|(l, _)| l.clone())
        .collect();
    labels.sort();
    if labels.is_empty() {
        let mut few: Vec<String> = counts.keys().cloned().collect();
        few.sort();
        return Err(PersonalizeError::NoData(format!(
            "every label has fewer than 2 photos ({}); label at least 2 photos per label",
            few.join(", ")
        )));
    }
    let rejected: Vec<HashSet<ItemId>> = labels
        .iter()
        .map(|label| {
            library
                .rejected_items(label)
                .map(|ids| ids.into_iter().collect())
        })
        .collect::<hearth_store::Result<_>>()?;
    let mut rows = Vec::new();
    for embedding in &embeddings {
        let Some(item) = items.get(&embedding.item_id) else {
            continue;
        };
        let own: HashSet<&str> = item.labels.iter().map(String::as_str).collect();
        let known: Vec<Known> = labels
            .iter()
            .zip(&rejected)
            .map(|(label, rejected)| {
                if own.contains(label.as_str()) {
                    Known::Positive
                } else if rejected.contains(&embedding.item_id) || !own.is_empty() {
                    Known::Negative
                } else {
                    Known::Unknown
                }
            })
            .collect();
        if known.iter().any(|k| *k != Known::Unknown) {
            rows.push((item.id, item.sha256.clone(), known));
        }
    }
    Ok((labels, rows))
}

/// What a photo run learns from, fixed when it starts (`examples.json` in
/// its folder): a resumed run learns from exactly these photos and
/// verdicts, whatever was labelled in between.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunExamples {
    labels: Vec<String>,
    /// `(photo sha256, what is known of it per label)`.
    photos: Vec<(String, Vec<Known>)>,
}

const EXAMPLES_FILE: &str = "examples.json";

/// The fine-tuned tail of a run whose fine-tuning finished (in its folder,
/// beside [`TAIL_FILE`]): a run stopped while embedding the photos again
/// continues from here instead of fine-tuning again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FinishedTail {
    from_block: usize,
    loss: Option<(f32, f32)>,
}

const TAIL_FILE: &str = "tail.safetensors";
const TAIL_RECORD: &str = "tail.json";

/// Learns the person's photo labels from labelled photos (positives),
/// photos labelled otherwise and rejected suggestions (negatives): the
/// head alone over the cached embeddings, or, with
/// [`PhotoTraining::fine_tune`], the network's last blocks first (then
/// every photo is embedded again with the fine-tuned network). Labels with
/// fewer than two photos are left out and named in the error when nothing
/// is left. The run is recorded with the photos it learned from; the
/// result becomes the active tagger.
///
/// Cancelling fine-tuning pauses the run at a checkpoint
/// ([`PersonalizeError::Paused`]); [`resume_tagger`] continues it, as it
/// does a run that was killed.
pub fn train_tagger(
    library: &mut Library,
    base: &PhotoModel,
    training: &PhotoTraining,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let (labels, rows) = examples(library, &base.sha256)?;
    let config = serde_json::to_string(training).map_err(|e| {
        PersonalizeError::NoData(format!("training settings do not serialise: {e}"))
    })?;
    let run_id = library.create_run(&NewRun {
        kind: RunKind::Photos,
        parent_sha256: None,
        base_model: VISION_MODEL.to_owned(),
        base_model_sha256: base.sha256.clone(),
        config,
        label: None,
        item_sha256s: rows.iter().map(|(_, sha, _)| sha.clone()).collect(),
        token_count: 0,
        device: format!("{:?}", base.model.device()),
    })?;
    let run_dir = library.run_dir(run_id);
    let saved = std::fs::create_dir_all(&run_dir)
        .map_err(io_error(&run_dir))
        .and_then(|()| {
            let examples = RunExamples {
                labels: labels.clone(),
                photos: rows
                    .iter()
                    .map(|(_, sha, known)| (sha.clone(), known.clone()))
                    .collect(),
            };
            let json = serde_json::to_vec(&examples)
                .map_err(|e| PersonalizeError::Inconsistent(format!("examples: {e}")))?;
            write_atomically(&run_dir.join(EXAMPLES_FILE), &json)
        });
    let result = saved.and_then(|()| {
        train_run(
            library, base, training, &labels, &rows, run_id, progress, cancel,
        )
    });
    record_outcome(library, run_id, training, result)
}

/// Continues a paused photo run, or one that was killed, from where it
/// stopped: its last fine-tuning checkpoint, or the photos it had not
/// embedded again yet.
pub fn resume_tagger(
    library: &mut Library,
    base: &PhotoModel,
    run_id: RunId,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let record = crate::runs::resumable(library, run_id, RunKind::Photos)?;
    if record.base_model_sha256 != base.sha256 {
        return Err(PersonalizeError::Inconsistent(format!(
            "run {run_id} trained on a photo model with sha256 {}, but the model now has sha256 {}; start a new run",
            record.base_model_sha256, base.sha256
        )));
    }
    let training: PhotoTraining = serde_json::from_str(&record.config)
        .map_err(|e| PersonalizeError::Inconsistent(format!("run {run_id} configuration: {e}")))?;
    let path = library.run_dir(run_id).join(EXAMPLES_FILE);
    let examples: RunExamples = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            PersonalizeError::Inconsistent(format!("{}: unreadable ({e})", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let error = PersonalizeError::Inconsistent(format!(
                "run {run_id} stopped before it saved what it learns from; start a new run"
            ));
            return record_outcome(library, run_id, &training, Err(error));
        }
        Err(e) => return Err(io_error(&path)(e)),
    };
    let mut rows = Vec::with_capacity(examples.photos.len());
    let mut missing = 0;
    for (sha256, known) in examples.photos {
        match library.item_by_sha256(&sha256)? {
            Some(item) => rows.push((item.id, sha256, known)),
            None => missing += 1,
        }
    }
    if missing > 0 {
        return Err(PersonalizeError::Inconsistent(format!(
            "{missing} of run {run_id}'s photos are no longer in the library; start a new run"
        )));
    }
    library.update_run(
        run_id,
        &RunUpdate {
            status: Some(RunStatus::Running),
            error: None,
            ..RunUpdate::default()
        },
    )?;
    let result = train_run(
        library,
        base,
        &training,
        &examples.labels,
        &rows,
        run_id,
        progress,
        cancel,
    );
    record_outcome(library, run_id, &training, result)
}

/// Records how a photo run call ended, and hands the result on.
fn record_outcome(
    library: &mut Library,
    run_id: RunId,
    training: &PhotoTraining,
    result: Result<TaggerSummary>,
) -> Result<TaggerSummary> {
    let update = match &result {
        Ok(summary) => RunUpdate {
            status: Some(RunStatus::Completed),
            steps_done: training.fine_tune.as_ref().map(|f| f.steps as u64),
            train_loss: summary.fine_tune_loss.map(|(_, last)| f64::from(last)),
            ..RunUpdate::default()
        },
        Err(PersonalizeError::Paused { steps_done, .. }) => RunUpdate {
            status: Some(RunStatus::Paused),
            steps_done: Some(*steps_done),
            ..RunUpdate::default()
        },
        Err(error) => RunUpdate {
            status: Some(RunStatus::Failed),
            error: Some(error.to_string()),
            ..RunUpdate::default()
        },
    };
    library.update_run(run_id, &update)?;
    result
}

/// Fine-tunes (or picks up the finished tail), embeds every photo with the
/// result, and fits the head.
#[allow(clippy::too_many_arguments)]
fn train_run(
    library: &mut Library,
    base: &PhotoModel,
    training: &PhotoTraining,
    labels: &[String],
    rows: &[(ItemId, String, Vec<Known>)],
    run_id: RunId,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TaggerSummary> {
    let dir = taggers_dir(library);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let (model_sha256, tail, fine_tune_loss) = match &training.fine_tune {
        None => (base.sha256.clone(), None, None),
        Some(config) => {
            let run_dir = library.run_dir(run_id);
            let (tuned, finished) =
                fine_tuned_tail(library, base, config, rows, run_id, progress, cancel)?;
            let bytes = std::fs::read(run_dir.join(TAIL_FILE))
                .map_err(io_error(&run_dir.join(TAIL_FILE)))?;
            let tail_sha = hex::encode(Sha256::digest(&bytes));
            // The fine-tuned network is named by what it is made of.
            let model_sha256 = hex::encode(Sha256::digest(
                format!("{}+{tail_sha}", base.sha256).as_bytes(),
            ));
            let file = format!("{}.safetensors", &model_sha256[..16]);
            write_atomically(&dir.join(&file), &bytes)?;
            let summary = embed_photos(
                library,
                &PhotoModel {
                    model: tuned,
                    sha256: model_sha256.clone(),
                },
                16,
                progress,
                cancel,
            )?;
            if summary.cancelled {
                return Err(PersonalizeError::Paused {
                    run_id,
                    steps_done: config.steps as u64,
                    total_steps: config.steps as u64,
                });
            }
            (
                model_sha256,
                Some((file, finished.from_block)),
                finished.loss,
            )
        }
    };
    let vectors: HashMap<ItemId, Vec<f32>> = library
        .photo_embeddings(&model_sha256)?
        .into_iter()
        .map(|e| (e.item_id, e.vector))
        .collect();
    let (embeddings, targets): (Vec<Vec<f32>>, Vec<Vec<Known>>) = rows
        .iter()
        .filter_map(|(id, _, known)| Some((vectors.get(id)?.clone(), known.clone())))
        .unzip();
    let tagger = Tagger::train(labels, &embeddings, &targets, &training.tagger)?;
    let file = tagger_file(run_id);
    let path = library.root().join(&file);
    let bytes = tagger.to_json()?;
    write_atomically(&path, &bytes)?;
    let tagger_id = library.record_photo_tagger(&NewPhotoTagger {
        run_id,
        model_sha256: model_sha256.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        labels: labels.to_vec(),
        path: file,
    })?;
    let active = ActiveModel {
        base_sha256: base.sha256.clone(),
        model_sha256: model_sha256.clone(),
        tail,
        run_id,
    };
    let json = serde_json::to_vec_pretty(&active)
        .map_err(|e| PersonalizeError::NoData(format!("active tagger record: {e}")))?;
    write_atomically(&dir.join(ACTIVE_FILE), &json)?;
    Ok(TaggerSummary {
        run_id,
        tagger_id,
        labels: labels.to_vec(),
        examples: embeddings.len(),
        held_out_accuracy: tagger.held_out_accuracy.clone(),
        thresholds: tagger.thresholds.clone(),
        model_sha256,
        fine_tune_loss,
        path,
        newly_embedded: 0,
    })
}

/// The base network with the run's fine-tuned tail: fine-tuned now
/// (continuing from the run's checkpoint, if any) and saved in the run's
/// folder, or read back from there when an earlier call finished it.
fn fine_tuned_tail(
    library: &Library,
    base: &PhotoModel,
    config: &FineTuneConfig,
    rows: &[(ItemId, String, Vec<Known>)],
    run_id: RunId,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<(EfficientNet, FinishedTail)> {
    let run_dir = library.run_dir(run_id);
    let mut tuned = base.model.clone();
    let record_path = run_dir.join(TAIL_RECORD);
    let tail_path = run_dir.join(TAIL_FILE);
    if let Ok(bytes) = std::fs::read(&record_path) {
        let finished: FinishedTail = serde_json::from_slice(&bytes).map_err(|e| {
            PersonalizeError::Inconsistent(format!("{}: unreadable ({e})", record_path.display()))
        })?;
        let tensors = hearth_ml::candle::safetensors::load(&tail_path, base.model.device())
            .map_err(|e| PersonalizeError::Inconsistent(format!("{}: {e}", tail_path.display())))?;
        tuned.apply_tail(finished.from_block, &tensors)?;
        return Ok((tuned, finished));
    }
    let mut images = Vec::new();
    let mut targets = Vec::new();
    for (id, _, known) in rows {
        let item = library.item(*id)?;
        let path = PathBuf::from(&item.path);
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| decode(&bytes, &path).map_err(|e| e.to_string()))
        {
            Ok(image) => {
                images.push(image);
                targets.push(known.clone());
            }
            Err(error) => progress.note(&format!("{}: skipped ({error})", item.path)),
        }
    }
    let checkpoints = hearth_ml::train::checkpoint_dir(&run_dir);
    let report = fine_tune(
        &mut tuned,
        &images,
        &targets,
        config,
        Some(&checkpoints),
        progress,
        cancel,
    )?;
    if report.cancelled {
        return Err(PersonalizeError::Paused {
            run_id,
            steps_done: report.steps_done as u64,
            total_steps: config.steps as u64,
        });
    }
    let tensors: HashMap<String, Tensor> = report.tensors.iter().cloned().collect();
    let tmp = hearth_store::atomic::temp_path(&tail_path);
    hearth_ml::candle::safetensors::save(&tensors, &tmp)
        .map_err(|e| PersonalizeError::Inconsistent(format!("{}: {e}", tmp.display())))?;
    hearth_store::atomic::persist(&tmp, &tail_path).map_err(io_error(&tail_path))?;
    let finished = FinishedTail {
        from_block: report.from_block,
        loss: report.probe_loss.zip(report.final_loss),
    };
    let json = serde_json::to_vec(&finished)
        .map_err(|e| PersonalizeError::Inconsistent(format!("tail record: {e}")))?;
    // The record last: it says the tail file beside it is complete.
    write_atomically(&record_path, &json)?;
    Ok((tuned, finished))
}

/// The newest tagger over this network.
fn load_tagger(library: &Library, model_sha256: &str) -> Result<Tagger> {
    let path = match library.latest_photo_tagger(model_sha256)? {
        Some(tagger) => library.root().join(tagger.path),
        None => legacy_tagger_path(library, model_sha256),
    };
    if !path.exists() {
        return Err(PersonalizeError::NoData(
            "no tagger trained yet: run `hearth photos train`".into(),
        ));
    }
    Ok(Tagger::load(&path)?)
}

/// Suggestions for one photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoSuggestions {
    /// The photo.
    pub item_id: ItemId,
    /// Its path.
    pub path: String,
    /// Labels with calibrated confidence, most confident first.
    pub suggestions: Vec<Suggestion>,
    /// Distance of the least certain label from its threshold.
    pub margin: f32,
}

/// Suggestions for every photo without labels (or every photo when `all`).
pub fn suggest_tags(
    library: &Library,
    model_sha256: &str,
    all: bool,
) -> Result<Vec<PhotoSuggestions>> {
    let tagger = load_tagger(library, model_sha256)?;
    let mut out = Vec::new();
    for embedding in library.photo_embeddings(model_sha256)? {
        let item = library.item(embedding.item_id)?;
        if !all && !item.labels.is_empty() {
            continue;
        }
        out.push(PhotoSuggestions {
            item_id: item.id,
            path: item.path,
            suggestions: tagger.suggest(&embedding.vector)?,
            margin: tagger.margin(&embedding.vector)?,
        });
    }
    Ok(out)
}

/// The `n` unlabelled photos the tagger is least sure about: the ones worth
/// labelling next.
pub fn ask(library: &Library, model_sha256: &str, n: usize) -> Result<Vec<PhotoSuggestions>> {
    let mut suggestions = suggest_tags(library, model_sha256, false)?;
    suggestions.sort_by(|a, b| a.margin.total_cmp(&b.margin));
    suggestions.truncate(n);
    Ok(suggestions)
}

/// The `k` photos most like `item` (cosine similarity of embeddings).
pub fn similar(
    library: &Library,
    model_sha256: &str,
    item: ItemId,
    k: usize,
) -> Result<Vec<(ItemId, String, f32)>> {
    let embeddings = library.photo_embeddings(model_sha256)?;
    let target = embeddings
        .iter()
        .find(|e| e.item_id == item)
        .ok_or_else(|| {
            PersonalizeError::NoData(format!(
                "item {item} has no embedding (is it a photo? run `hearth photos embed`)"
            ))
        })?;
    let mut scored: Vec<(ItemId, f32)> = embeddings
        .iter()
        .filter(|e| e.item_id != item)
        .map(|e| (e.item_id, cosine(&target.vector, &e.vector)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
        .into_iter()
        .map(|(id, score)| Ok((id, library.item(id)?.path, score)))
        .collect()
}
