//! Sentence embeddings for notes: all-MiniLM-L6-v2 (a 6-layer BERT) run
//! with candle-transformers' BERT, pooled and normalised exactly as the
//! sentence-transformers reference does it.
//!
//! This exists for Ask's semantic search ("notes about taxes"): a note and
//! a question become 384-d unit vectors, and their dot product (cosine)
//! says how close they are in meaning. The steps match the model's
//! sentence-transformers configuration (`modules.json`): WordPiece tokens
//! truncated to `max_seq_length` (256, from `sentence_bert_config.json`;
//! the 128-token truncation and fixed padding in `tokenizer.json` are
//! replaced, as the reference replaces them), the transformer, the mean of
//! the token vectors under the attention mask (`1_Pooling`), and L2
//! normalisation (`2_Normalize`). Texts are embedded in batches of similar
//! length, padded to the longest in each batch.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde_json::Value;
use tokenizers::utils::padding::pad_encodings;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{MlError, Result};
use crate::loaders::hub_dir::check_safetensors_extent;
use crate::loaders::sha256_file;
use crate::registry;

/// The registry's kind for sentence-embedding models.
pub const EMBEDDING_KIND: &str = "embedding";

/// The longest input in tokens when the model folder does not say
/// (`sentence_bert_config.json`'s `max_seq_length`; 256 for
/// all-MiniLM-L6-v2). Longer texts are truncated, as by the reference.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Texts per forward pass.
pub const BATCH: usize = 16;

/// The weights file in a model folder.
const WEIGHTS: &str = "model.safetensors";

/// A sentence-embedding model ready to embed text.
pub struct SentenceEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    padding: PaddingParams,
    device: Device,
    dim: usize,
    max_tokens: usize,
    name: String,
    sha256: String,
    dir: PathBuf,
}

impl std::fmt::Debug for SentenceEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEmbedder")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MlError::bad_model(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MlError::io(path, e)),
    }
}

impl SentenceEmbedder {
    /// Loads the default embedding model from the registry (its package
    /// folder, fetched by `scripts/fetch-models.sh`, verified against the
    /// pinned sha256s; or its hub snapshot), or `model` (a registry name
    /// or a model folder) when given. A model that is not on this machine
    /// is a [`MlError::Registry`] error saying how to fetch it.
    pub fn from_registry(model: Option<&str>, device: &Device) -> Result<Self> {
        let name = match model {
            Some(name) => name.to_owned(),
            None => registry::default_model(EMBEDDING_KIND)?.name,
        };
        let dir = registry::resolve(&name)?;
        let mut weights_sha256 = None;
        if let Ok(entry) = registry::entry(&name)
            && entry.package_file().as_deref() == Some(dir.as_path())
        {
            entry.verify_package_file(&dir)?;
            weights_sha256 = entry.package.as_ref().and_then(|package| {
                package
                    .pinned_files()
                    .into_iter()
                    .find(|(file, _)| *file == WEIGHTS)
                    .map(|(_, sha)| sha.to_owned())
            });
        }
        let display_name = if registry::entry(&name).is_ok() {
            name
        } else {
            folder_name(&dir)
        };
        Self::load_named(&dir, device, display_name, weights_sha256)
    }

    /// Loads the sentence-transformers model folder `dir` (`config.json`,
    /// `tokenizer.json`, `model.safetensors`, optionally
    /// `sentence_bert_config.json` and `1_Pooling/config.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_named(dir, device, folder_name(dir), None)
    }

    fn load_named(
        dir: &Path,
        device: &Device,
        name: String,
        weights_sha256: Option<String>,
    ) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config: Config = match read_json(&config_path)? {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| MlError::bad_model(&config_path, format!("not a BERT config: {e}")))?,
            None => return Err(MlError::bad_model(dir, "no config.json")),
        };
        check_pooling(dir)?;
        let max_tokens = read_json(&dir.join("sentence_bert_config.json"))?
            .and_then(|value| value.get("max_seq_length")?.as_u64())
            .map_or(DEFAULT_MAX_TOKENS, |n| n as usize)
            .min(config.max_position_embeddings);
        if max_tokens < 2 {
            return Err(MlError::bad_model(
                dir,
                format!("max_seq_length {max_tokens} leaves no room for text"),
            ));
        }

        let weights = dir.join(WEIGHTS);
        if !weights.is_file() {
            return Err(MlError::bad_model(dir, format!("no {WEIGHTS}")));
        }
        check_safetensors_extent(&weights)?;
        let sha256 = match weights_sha256 {
            Some(sha) => sha,
            None => sha256_file(&weights)?,
        };
        // SAFETY: the weights are mapped read-only; like every
        // memory-mapped loader, this relies on the file not being
        // truncated or rewritten while the model is in use (it lives in
        // the model cache, which scripts/fetch-models.sh and `hearth model
        // pull` write atomically).
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device)? };
        let model = BertModel::load(vb, &config)
            .map_err(|e| MlError::bad_model(&weights, format!("BERT weights: {e}")))?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| MlError::bad_model(&tokenizer_path, format!("tokenizer: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| MlError::Tokenizer(e.to_string()))?;
        let pad_token = tokenizer
            .get_padding()
            .map(|p| p.pad_token.clone())
            .unwrap_or_else(|| "[PAD]".to_owned());
        // Padding is done per batch (in `embed`), to the batch's longest.
        tokenizer.with_padding(None);
        let pad_id = tokenizer
            .token_to_id(&pad_token)
            .unwrap_or(config.pad_token_id as u32);
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        };
        Ok(SentenceEmbedder {
            model,
            tokenizer,
            padding,
            device: device.clone(),
            dim: config.hidden_size,
            max_tokens,
            name,
            sha256,
            dir: dir.to_path_buf(),
        })
    }

    /// The model's name (its registry name, or its folder's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// sha256 of the model's weights: what cached vectors are keyed by.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Length of each vector (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The longest input in tokens; longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many tokens `text` has before truncation (with `[CLS]` and
    /// `[SEP]`), to tell whether it was cut.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        let mut untruncated = self.tokenizer.clone();
        untruncated.with_truncation(None).map_err(tokenizer_error)?;
        Ok(untruncated
            .encode(text, true)
            .map_err(tokenizer_error)?
            .get_ids()
            .len())
    }

    /// Embeds `texts`: one unit vector of [`Self::dim`] values per text, in
    /// order. Any text works: an empty one embeds its `[CLS] [SEP]`, a long
    /// one is truncated to [`Self::max_tokens`] tokens.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(tokenizer_error)?;
        // Similar lengths together, so little of each batch is padding.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| (encodings[i].get_ids().len(), i));
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let mut batch: Vec<tokenizers::Encoding> =
                chunk.iter().map(|&i| encodings[i].clone()).collect();
            pad_encodings(&mut batch, &self.padding).map_err(tokenizer_error)?;
            for (&index, vector) in chunk.iter().zip(self.forward(&batch)?) {
                vectors[index] = vector;
            }
        }
        Ok(vectors)
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        self.embed(&[text])?
            .pop()
            .ok_or_else(|| MlError::InvalidRequest("embedding produced no vector".into()))
    }

    /// One padded batch through the model, mean-pooled and normalised.
    fn forward(&self, batch: &[tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let rows = batch.len();
        let len = batch.first().map_or(0, |e| e.get_ids().len());
        let flat = |get: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            batch.iter().flat_map(|e| get(e).iter().copied()).collect()
        };
        let ids = Tensor::from_vec(flat(|e| e.get_ids()), (rows, len), &self.device)?;
        let type_ids = Tensor::from_vec(flat(|e| e.get_type_ids()), (rows, len), &self.device)?;
        let mask = Tensor::from_vec(flat(|e| e.get_attention_mask()), (rows, len), &self.device)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        // Mean over the real tokens: sum(h * m) / max(sum(m), 1e-9).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        // Unit length: x / max(|x|, 1e-12).
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

fn tokenizer_error(e: impl std::fmt::Display) -> MlError {
    MlError::Tokenizer(e.to_string())
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Refuses a folder whose sentence-transformers pooling is not the mean
/// (the only pooling implemented here); a folder without
/// `1_Pooling/config.json` is taken to use the mean.
fn check_pooling(dir: &Path) -> Result<()> {
    let path = dir.join("1_Pooling").join("config.json");
    let Some(config) = read_json(&path)? else {
        return Ok(());
    };
    let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
    let others = [
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
    ];
    if !flag("pooling_mode_mean_tokens") || others.iter().any(|key| flag(key)) {
        return Err(MlError::bad_model(
            &path,
            "only mean pooling (pooling_mode_mean_tokens alone) is supported",
        ));
    }
    Ok(())
}

/// Cosine similarity of two vectors (0 when either is all zeros or their
/// lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (dot / (aa.sqrt() * bb.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn a_missing_folder_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            SentenceEmbedder::load(dir.path(), &Device::Cpu),
            Err(MlError::BadModel { .. })
        ));
    }

    #[test]
    fn pooling_other_than_the_mean_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pooling = dir.path().join("1_Pooling");
        std::fs::create_dir_all(&pooling).expect("mkdir");
        std::fs::write(
            pooling.join("config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .expect("write");
        assert!(matches!(
            check_pooling(dir.path()),
            Err(MlError::BadModel { .. })
        ));
        std::fs::write(
            pooling.join("config.json"),
            r#"{"pooling_mode_mean_tokens": true}"#,
        )
        .expect("write");
        check_pooling(dir.path()).expect("mean pooling is fine");
    }
}
