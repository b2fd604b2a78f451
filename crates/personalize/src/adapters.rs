//! Adapters in the library: stored as PEFT folders under
//! `adapters/<sha256 prefix>/`, recorded in the database, exported and
//! imported unchanged.

use std::path::Path;

use hearth_ml::candle::Device;
use hearth_ml::peft::{self, AdapterFiles};
use hearth_ml::{Config, LoadedModel, LoraAdapter, ModelInfo};
use hearth_store::{AdapterId, Library, NewAdapter, RunId};

use crate::error::{PersonalizeError, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersonalizeError + '_ {
    move |source| PersonalizeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `adapter` into the library and records it.
pub(crate) fn store_trained(
    library: &mut Library,
    adapter: &LoraAdapter,
    base: &ModelInfo,
    base_name: &str,
    run_id: RunId,
    lineage: &str,
) -> Result<AdapterId> {
    let temp = library.adapters_dir().join(format!(".run-{run_id}.tmp"));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(io(&temp))?;
    }
    let files = peft::save(adapter, &temp, base, Some(lineage))?;
    record(
        library,
        &temp,
        files,
        format!("run {run_id}"),
        Some(run_id),
        Some(base_name.to_owned()),
        false,
    )
}

/// Moves a complete PEFT folder into its content-addressed place and
/// records it (or returns the existing record for identical weights).
fn record(
    library: &mut Library,
    folder: &Path,
    files: AdapterFiles,
    name: String,
    run_id: Option<RunId>,
    base_model: Option<String>,
    imported: bool,
) -> Result<AdapterId> {
    if let Some(existing) = library.adapter_by_sha256(&files.weights_sha256)? {
        std::fs::remove_dir_all(folder).map_err(io(folder))?;
        return Ok(existing.id);
    }
    let relative = format!("adapters/{}", &files.weights_sha256[..16]);
    let target = library.root().join(&relative);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(folder, &target).map_err(io(&target))?;
    let id = library.add_adapter(&NewAdapter {
        name,
        run_id,
        imported,
        base_model: base_model.or(files.base_model_name),
        base_model_sha256: files.base_model_sha256,
        sha256: files.weights_sha256,
        rank: files.config.rank as u32,
        alpha: files.config.alpha,
        targets: files
            .config
            .targets
            .iter()
            .map(|t| t.name().to_owned())
            .collect(),
        path: relative,
    })?;
    Ok(id)
}

/// Loads a library adapter for `model`, refusing one made for another base.
pub fn load_adapter(library: &Library, id: AdapterId, model: &LoadedModel) -> Result<LoraAdapter> {
    load_adapter_for(
        library,
        id,
        &model.info,
        model.model.config(),
        model.model.device(),
    )
}

/// [`load_adapter`] for a base model known by its identity and
/// configuration (generation on quantized weights, which never builds the
/// f32 model).
pub(crate) fn load_adapter_for(
    library: &Library,
    id: AdapterId,
    info: &ModelInfo,
    config: &Config,
    device: &Device,
) -> Result<LoraAdapter> {
    let record = library.adapter(id)?;
    let (adapter, _) = peft::load_for(&library.adapter_path(&record), info, config, device)?;
    Ok(adapter)
}

/// Copies a library adapter's PEFT folder to `destination`.
pub fn export_adapter(library: &Library, id: AdapterId, destination: &Path) -> Result<()> {
    let record = library.adapter(id)?;
    let source = library.adapter_path(&record);
    std::fs::create_dir_all(destination).map_err(io(destination))?;
    for file in [peft::WEIGHTS_FILE, peft::CONFIG_FILE] {
        let to = destination.join(file);
        std::fs::copy(source.join(file), &to).map_err(io(&to))?;
    }
    Ok(())
}

/// Imports a PEFT LoRA folder. When `model` is given the adapter must fit
/// it (shapes, and the base model hash when the adapter records one).
pub fn import_adapter(
    library: &mut Library,
    source: &Path,
    name: Option<String>,
    model: Option<&LoadedModel>,
) -> Result<AdapterId> {
    let files = peft::read_files(source)?;
    if let Some(model) = model {
        peft::load(source, model)?;
    }
    let temp = library.adapters_dir().join(".import.tmp");
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(io(&temp))?;
    }
    std::fs::create_dir_all(&temp).map_err(io(&temp))?;
    for file in [peft::WEIGHTS_FILE, peft::CONFIG_FILE] {
        let to = temp.join(file);
        std::fs::copy(source.join(file), &to).map_err(io(&to))?;
    }
    let name = name.unwrap_or_else(|| {
        source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into())
    });
    let base = model.map(|m| m.info.name.clone());
    record(library, &temp, files, name, None, base, true)
}
