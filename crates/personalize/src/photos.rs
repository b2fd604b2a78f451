//! Photo personalization: embeddings for every photo (cached in the
//! library by photo and model hash), a tagger head learned from the
//! person's labels and verdicts, suggestions, questions, and look-alikes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use hearth_ml::candle::{Device, Tensor};
use hearth_ml::registry;
use hearth_ml::tagger::{Known, Suggestion, Tagger, TaggerConfig, cosine};
use hearth_ml::vision::{EfficientNet, load_efficientnet, load_image};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{EmbeddingResult, Item, ItemFilter, ItemId, ItemKind, Library};
use serde::Serialize;

use crate::error::{PersonalizeError, Result};

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

/// A trained tagger and how it was trained.
#[derive(Debug, Clone, Serialize)]
pub struct TaggerSummary {
    /// Labels learned.
    pub labels: Vec<String>,
    /// Photos with a known status for at least one label.
    pub examples: usize,
    /// Held-out accuracy per label (None when too few examples).
    pub held_out_accuracy: Vec<Option<f32>>,
    /// Per-label thresholds.
    pub thresholds: Vec<f32>,
    /// Where the head was saved.
    pub path: PathBuf,
}

fn tagger_path(library: &Library, model_sha256: &str) -> PathBuf {
    library
        .root()
        .join("taggers")
        .join(format!("{}.json", &model_sha256[..16]))
}

/// Learns the person's photo labels from labelled photos (positives),
/// photos labelled otherwise and rejected suggestions (negatives), over
/// cached embeddings. Labels with fewer than two photos are left out and
/// named in the error when nothing is left.
pub fn train_tagger(
    library: &Library,
    model_sha256: &str,
    config: &TaggerConfig,
) -> Result<TaggerSummary> {
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
    let mut targets = Vec::new();
    for embedding in &embeddings {
        let own: HashSet<&str> = items
            .get(&embedding.item_id)
            .map(|item| item.labels.iter().map(String::as_str).collect())
            .unwrap_or_default();
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
            rows.push(embedding.vector.clone());
            targets.push(known);
        }
    }
    let tagger = Tagger::train(&labels, &rows, &targets, config)?;
    let path = tagger_path(library, model_sha256);
    std::fs::create_dir_all(path.parent().unwrap_or(library.root())).map_err(|source| {
        PersonalizeError::Io {
            path: path.clone(),
            source,
        }
    })?;
    tagger.save(&path)?;
    Ok(TaggerSummary {
        labels,
        examples: rows.len(),
        held_out_accuracy: tagger.held_out_accuracy.clone(),
        thresholds: tagger.thresholds.clone(),
        path,
    })
}

fn load_tagger(library: &Library, model_sha256: &str) -> Result<Tagger> {
    let path = tagger_path(library, model_sha256);
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
