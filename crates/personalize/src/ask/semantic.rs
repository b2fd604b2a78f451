//! The semantic index behind Ask's `similar ... to "TEXT"` queries: what
//! the query runner ([`hearth_ask::SemanticIndex`]) calls to rank items
//! by meaning.
//!
//! - **Notes** are embedded with the sentence-embedding model
//!   (all-MiniLM-L6-v2, [`hearth_ml::embed`]) the first time a search
//!   needs them, in batches, and the vectors are kept in the library
//!   (`note_embeddings`, keyed by note, model and the text's sha256, so an
//!   edited note is embedded again). A note's score is the cosine of its
//!   vector and the query text's.
//! - **Photos** have no text side: the photo model (EfficientNet-Lite0)
//!   embeds images only, so there is no direct bridge from words to
//!   pixels. The bridge is the person's own labels: the query text is
//!   compared (by sentence embedding) with each label that has photos, and
//!   when one is close in meaning (cosine >= [`LABEL_MATCH`]), photos are
//!   ranked by how close their photo-model embedding is to the centroid of
//!   that label's photos, times the label's closeness to the text. With no
//!   such label, photos cannot be ranked: a search over photos only is
//!   refused with the reason, and a search over all items ranks the notes.
//!   Photos need their photo-model embeddings (`hearth photos embed`).
//!
//! The index opens its own connection to the library (the query itself
//! runs on a read-only one), and loads the model on first use, so a
//! caller can always pass it: only a semantic query needs the model, and
//! without it that query fails with how to fetch it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use hearth_ask::{Scored, SemanticError, SemanticIndex};
use hearth_ml::candle::Device;
use hearth_ml::embed::{EMBEDDING_KIND, SentenceEmbedder};
use hearth_ml::registry;
use hearth_store::{ItemFilter, ItemKind, Library, NewNoteEmbedding, NoteEmbeddingState};

use crate::photos::VISION_MODEL;

/// Notes embedded per batch written to the library.
pub const WRITE_BATCH: usize = 64;

/// How close in meaning (cosine of sentence embeddings) a label must be to
/// the query text for its photos to stand for it.
pub const LABEL_MATCH: f32 = 0.5;

/// What the index did so far (for the CLI's timing line and the docs'
/// figures).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SemanticStats {
    /// Notes embedded now (missing or stale), over all searches.
    pub notes_embedded: usize,
    /// Seconds spent embedding them.
    pub embed_seconds: f64,
    /// Notes whose stored vector was used.
    pub notes_cached: usize,
    /// Seconds spent loading (and verifying) the model.
    pub load_seconds: f64,
    /// Why photos were left out of the last search, if they were.
    pub photos_skipped: Option<String>,
}

/// The library's semantic index: sentence embeddings for notes (cached in
/// the library), label centroids of photo-model embeddings for photos.
pub struct LibrarySemanticIndex {
    root: PathBuf,
    model: Option<String>,
    device: Device,
    /// The model, or why it did not load (and whether that is because it
    /// is not on this machine).
    embedder: OnceLock<Result<SentenceEmbedder, (String, bool)>>,
    library: Mutex<Option<Library>>,
    stats: Mutex<SemanticStats>,
}

impl std::fmt::Debug for LibrarySemanticIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibrarySemanticIndex")
            .field("root", &self.root)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

fn semantic_error(message: impl Into<String>) -> SemanticError {
    SemanticError {
        message: message.into(),
        model_missing: false,
        source: None,
    }
}

fn caused(
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> SemanticError {
    SemanticError {
        message: format!("{}: {source}", message.into()),
        model_missing: false,
        source: Some(Box::new(source)),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = dot(&v, &v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

impl LibrarySemanticIndex {
    /// An index over the library in `root`, with the default embedding
    /// model (or `model`: a registry name or a model folder) on `device`.
    /// Nothing is loaded until a search needs it.
    pub fn new(root: &Path, model: Option<&str>, device: Device) -> Self {
        LibrarySemanticIndex {
            root: root.to_path_buf(),
            model: model.map(str::to_owned),
            device,
            embedder: OnceLock::new(),
            library: Mutex::new(None),
            stats: Mutex::new(SemanticStats::default()),
        }
    }

    /// An index whose model is loaded now: fails at once, with how to
    /// fetch it, when the model is not on this machine.
    pub fn load(root: &Path, model: Option<&str>, device: Device) -> Result<Self, SemanticError> {
        let index = Self::new(root, model, device);
        index.embedder()?;
        Ok(index)
    }

    /// Whether the embedding model's files are on this machine (checked
    /// without loading them): what a translator needs to know before it
    /// offers `similar` queries.
    pub fn model_present(&self) -> bool {
        let name = match &self.model {
            Some(model) => model.clone(),
            None => match registry::default_model(EMBEDDING_KIND) {
                Ok(entry) => entry.name,
                Err(_) => return false,
            },
        };
        registry::resolve(&name).is_ok_and(|dir| {
            dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
        })
    }

    /// What the index did so far.
    pub fn stats(&self) -> SemanticStats {
        self.stats
            .lock()
            .map(|stats| stats.clone())
            .unwrap_or_default()
    }

    /// The sentence embedder, loaded on first use.
    pub fn embedder(&self) -> Result<&SentenceEmbedder, SemanticError> {
        let loaded = self.embedder.get_or_init(|| {
            let start = Instant::now();
            let result = SentenceEmbedder::from_registry(self.model.as_deref(), &self.device)
                .map_err(|e| {
                    let name = self.model.clone().unwrap_or_else(|| {
                        registry::default_model(EMBEDDING_KIND)
                            .map(|entry| entry.name)
                            .unwrap_or_else(|_| "the sentence-embedding model".into())
                    });
                    // The registry's "not on this machine" already says
                    // how to fetch it.
                    let missing = matches!(e, hearth_ml::MlError::Registry(_));
                    let fetch = if missing {
                        String::new()
                    } else {
                        format!(" (fetch it again with scripts/fetch-models.sh {name})")
                    };
                    (
                        format!(
                            "semantic search needs the sentence-embedding model {name}: {e}{fetch}"
                        ),
                        missing,
                    )
                });
            if let Ok(mut stats) = self.stats.lock() {
                stats.load_seconds = start.elapsed().as_secs_f64();
            }
            result
        });
        loaded.as_ref().map_err(|(message, missing)| SemanticError {
            model_missing: *missing,
            ..semantic_error(message.clone())
        })
    }

    fn library(&self) -> Result<MutexGuard<'_, Option<Library>>, SemanticError> {
        let mut guard = self
            .library
            .lock()
            .map_err(|_| semantic_error("the semantic index's library connection was poisoned"))?;
        if guard.is_none() {
            *guard = Some(
                Library::open(&self.root)
                    .map_err(|e| caused("opening the library for semantic search", e))?,
            );
        }
        Ok(guard)
    }

    fn with_stats(&self, change: impl FnOnce(&mut SemanticStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            change(&mut stats);
        }
    }

    /// Embeds every note among `candidates` that has no vector for its
    /// current text, stores the vectors, and returns every candidate
    /// note's vector.
    fn note_vectors(
        &self,
        library: &mut Library,
        embedder: &SentenceEmbedder,
        candidates: &[i64],
    ) -> Result<Vec<(i64, Vec<f32>)>, SemanticError> {
        let states = library
            .note_embedding_states(embedder.sha256(), candidates)
            .map_err(|e| caused("reading note embeddings", e))?;
        let mut vectors = Vec::with_capacity(states.len());
        let mut needed = Vec::new();
        for state in states {
            match state {
                NoteEmbeddingState::Fresh { item_id, vector } => vectors.push((item_id, vector)),
                NoteEmbeddingState::Needed(note) => needed.push(note),
            }
        }
        let cached = vectors.len();
        let start = Instant::now();
        for chunk in needed.chunks(WRITE_BATCH) {
            let texts: Vec<&str> = chunk.iter().map(|note| note.text.as_str()).collect();
            let embedded = embedder
                .embed(&texts)
                .map_err(|e| caused("embedding notes", e))?;
            let rows: Vec<NewNoteEmbedding> = chunk
                .iter()
                .zip(embedded)
                .map(|(note, vector)| NewNoteEmbedding {
                    item_id: note.item_id,
                    text_sha256: note.text_sha256.clone(),
                    vector,
                })
                .collect();
            library
                .put_note_embeddings(embedder.sha256(), embedder.name(), &rows)
                .map_err(|e| caused("storing note embeddings", e))?;
            vectors.extend(rows.into_iter().map(|row| (row.item_id, row.vector)));
        }
        let seconds = start.elapsed().as_secs_f64();
        self.with_stats(|stats| {
            stats.notes_embedded += needed.len();
            stats.embed_seconds += seconds;
            stats.notes_cached += cached;
        });
        Ok(vectors)
    }

    /// Scores `photos` by the label closest in meaning to the query (see
    /// the module's docs), or says why they cannot be scored.
    fn photo_scores(
        &self,
        library: &Library,
        embedder: &SentenceEmbedder,
        query: &[f32],
        photos: &[i64],
    ) -> Result<Result<Vec<Scored>, String>, SemanticError> {
        let photo_model = registry::entry(VISION_MODEL)
            .ok()
            .and_then(|entry| entry.package.and_then(|package| package.sha256));
        let Some(photo_model) = photo_model else {
            return Ok(Err(format!(
                "the registry has no pinned photo model {VISION_MODEL}"
            )));
        };
        let embeddings: HashMap<i64, Vec<f32>> = library
            .photo_embeddings(&photo_model)
            .map_err(|e| caused("reading photo embeddings", e))?
            .into_iter()
            .map(|e| (e.item_id, e.vector))
            .collect();
        if embeddings.is_empty() {
            return Ok(Err(
                "no photo has a photo-model embedding yet (compute them with `hearth photos embed`)"
                    .into(),
            ));
        }
        let labels: Vec<String> = library
            .labels()
            .map_err(|e| caused("reading labels", e))?
            .into_iter()
            .filter(|label| label.items > 0)
            .map(|label| label.name)
            .collect();
        let mut centroids = Vec::new();
        for label in &labels {
            let members = library
                .items(&ItemFilter {
                    kind: Some(ItemKind::Photo),
                    label: Some(label.clone()),
                })
                .map_err(|e| caused("reading labelled photos", e))?;
            let vectors: Vec<&Vec<f32>> = members
                .iter()
                .filter_map(|item| embeddings.get(&item.id))
                .collect();
            let Some(first) = vectors.first() else {
                continue;
            };
            let mut sum = vec![0.0f32; first.len()];
            for vector in &vectors {
                for (s, v) in sum.iter_mut().zip(vector.iter()) {
                    *s += v;
                }
            }
            centroids.push((label.clone(), normalised(sum)));
        }
        if centroids.is_empty() {
            return Ok(Err(
                "photos are searched by meaning through their labels, and no labelled photo has a photo-model embedding yet".into(),
            ));
        }
        let names: Vec<&str> = centroids.iter().map(|(name, _)| name.as_str()).collect();
        let name_vectors = embedder
            .embed(&names)
            .map_err(|e| caused("embedding label names", e))?;
        let (best, closeness) = name_vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, dot(query, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f32::MIN));
        if closeness < LABEL_MATCH {
            return Ok(Err(format!(
                "photos are searched by meaning through their labels, and none is close to the text (closest: {:?}, {closeness:.2}; needs {LABEL_MATCH}); label a few such photos",
                centroids[best].0
            )));
        }
        let centroid = &centroids[best].1;
        Ok(Ok(photos
            .iter()
            .filter_map(|id| {
                let vector = embeddings.get(id)?;
                let norm = dot(vector, vector).sqrt();
                (norm > 0.0).then(|| Scored {
                    item: *id,
                    score: closeness * dot(vector, centroid) / norm,
                })
            })
            .collect()))
    }
}

impl SemanticIndex for LibrarySemanticIndex {
    fn rank(
        &self,
        text: &str,
        candidates: &[i64],
        limit: usize,
    ) -> Result<Vec<Scored>, SemanticError> {
        let embedder = self.embedder()?;
        let mut guard = self.library()?;
        let library = guard
            .as_mut()
            .ok_or_else(|| semantic_error("the library is not open"))?;
        let notes = self.note_vectors(library, embedder, candidates)?;
        let query = embedder
            .embed_one(text)
            .map_err(|e| caused("embedding the query text", e))?;
        let mut scored: Vec<Scored> = notes
            .iter()
            .map(|(item, vector)| Scored {
                item: *item,
                score: dot(&query, vector),
            })
            .collect();

        let is_note: HashSet<i64> = notes.iter().map(|(item, _)| *item).collect();
        let photos: Vec<i64> = candidates
            .iter()
            .copied()
            .filter(|id| !is_note.contains(id))
            .collect();
        let mut skipped = None;
        if !photos.is_empty() {
            match self.photo_scores(library, embedder, &query, &photos)? {
                Ok(photo_scores) => scored.extend(photo_scores),
                Err(reason) if notes.is_empty() => {
                    return Err(semantic_error(format!(
                        "cannot rank photos by meaning: {reason}"
                    )));
                }
                Err(reason) => skipped = Some(reason),
            }
        }
        self.with_stats(|stats| stats.photos_skipped = skipped);
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        scored.truncate(limit);
        Ok(scored)
    }
}
