//! Adapters on disk in PEFT's layout: a folder with
//! `adapter_model.safetensors` (PEFT tensor names) and `adapter_config.json`,
//! loadable by `peft.PeftModel.from_pretrained` and by Hearth alike.
//!
//! Hearth adds two entries to the safetensors metadata (which PEFT ignores):
//! the base model's sha256, so an adapter is never applied to the wrong
//! base, and an optional lineage hash.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::loaders::{LoadedModel, ModelInfo, sha256_file};
use crate::lora::{LoraAdapter, LoraConfig, Target};
use crate::models::llama::Config;

/// The weights file.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The configuration file.
pub const CONFIG_FILE: &str = "adapter_config.json";
const BASE_SHA_KEY: &str = "hearth.base_model_sha256";
const LINEAGE_KEY: &str = "hearth.lineage";

/// The fields of PEFT's `adapter_config.json` Hearth reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f32,
    target_modules: TargetModules,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    inference_mode: bool,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// What an exported adapter says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterFiles {
    /// Its LoRA shape.
    pub config: LoraConfig,
    /// The base model it was trained on, when recorded.
    pub base_model_sha256: Option<String>,
    /// The base model's name, when recorded.
    pub base_model_name: Option<String>,
    /// A lineage hash, when recorded.
    pub lineage: Option<String>,
    /// sha256 of the weights file.
    pub weights_sha256: String,
}

/// Writes `adapter` into `dir` in PEFT's layout.
pub fn save(
    adapter: &LoraAdapter,
    dir: &Path,
    base: &ModelInfo,
    lineage: Option<&str>,
) -> Result<AdapterFiles> {
    std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir, e))?;
    let tensors = adapter.tensors()?;
    let mut metadata = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (BASE_SHA_KEY.to_owned(), base.sha256.clone()),
    ]);
    if let Some(lineage) = lineage {
        metadata.insert(LINEAGE_KEY.to_owned(), lineage.to_owned());
    }
    let weights = dir.join(WEIGHTS_FILE);
    let mut ordered: Vec<(&String, &Tensor)> = tensors.iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(ordered, Some(metadata))
        .map_err(|e| MlError::io(&weights, std::io::Error::other(e)))?;
    let bytes =
        canonical_header(&bytes).map_err(|e| MlError::io(&weights, std::io::Error::other(e)))?;
    std::fs::write(&weights, bytes).map_err(|e| MlError::io(&weights, e))?;
    let lora = adapter.config();
    let config = PeftConfig {
        peft_type: "LORA".into(),
        task_type: Some("CAUSAL_LM".into()),
        r: lora.rank,
        lora_alpha: lora.alpha,
        lora_dropout: lora.dropout,
        target_modules: TargetModules::List(
            lora.targets.iter().map(|t| t.name().to_owned()).collect(),
        ),
        bias: Some("none".into()),
        fan_in_fan_out: false,
        inference_mode: true,
        base_model_name_or_path: Some(base.name.clone()),
        use_rslora: false,
        use_dora: false,
    };
    let config_path = dir.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(&config)
        .map_err(|e| MlError::io(&config_path, std::io::Error::other(e)))?;
    std::fs::write(&config_path, json).map_err(|e| MlError::io(&config_path, e))?;
    read_files(dir)
}

/// Rewrites a safetensors header with its keys sorted. The `safetensors`
/// crate writes metadata from a `HashMap`, whose order differs between
/// processes; sorted, identical adapters are identical files with identical
/// sha256 (which is how the library and the federation name them).
fn canonical_header(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::collections::BTreeMap;
    let length = bytes.get(..8).ok_or("short file")?;
    let length = u64::from_le_bytes(length.try_into().map_err(|_| "short file")?) as usize;
    let header = bytes.get(8..8 + length).ok_or("short header")?;
    let data = &bytes[8 + length..];
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| e.to_string())?;
    if let Some(metadata) = entries.remove("__metadata__") {
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(metadata).map_err(|e| e.to_string())?;
        entries.insert(
            "__metadata__".into(),
            serde_json::to_value(sorted).map_err(|e| e.to_string())?,
        );
    }
    let mut header = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
}

/// Reads an adapter folder's configuration and metadata without loading
/// its weights.
pub fn read_files(dir: &Path) -> Result<AdapterFiles> {
    let bad = |reason: String| MlError::BadAdapter {
        path: dir.to_path_buf(),
        reason,
    };
    let config_path = dir.join(CONFIG_FILE);
    let config: PeftConfig = serde_json::from_slice(
        &std::fs::read(&config_path).map_err(|e| bad(format!("{CONFIG_FILE}: {e}")))?,
    )
    .map_err(|e| bad(format!("{CONFIG_FILE}: {e}")))?;
    if config.peft_type != "LORA" {
        return Err(bad(format!("peft_type {:?} is not LORA", config.peft_type)));
    }
    if config.use_dora || config.use_rslora || config.fan_in_fan_out {
        return Err(bad(
            "DoRA, rsLoRA and fan_in_fan_out adapters are not supported".into(),
        ));
    }
    let targets = match &config.target_modules {
        TargetModules::List(names) => names
            .iter()
            .map(|n| n.rsplit('.').next().unwrap_or(n).parse::<Target>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?,
        TargetModules::Pattern(pattern) => {
            return Err(bad(format!(
                "target_modules pattern {pattern:?} is not supported; list the modules"
            )));
        }
    };
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
    safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok(AdapterFiles {
        config: LoraConfig {
            rank: config.r,
            alpha: config.lora_alpha,
            dropout: config.lora_dropout,
            targets,
        },
        base_model_sha256: metadata.get(BASE_SHA_KEY).cloned(),
        base_model_name: config.base_model_name_or_path,
        lineage: metadata.get(LINEAGE_KEY).cloned(),
        weights_sha256: sha256_file(&weights)?,
    })
}

/// Loads the adapter in `dir` for `model`, refusing one trained on another
/// base model or shaped for another architecture.
pub fn load(dir: &Path, model: &LoadedModel) -> Result<(LoraAdapter, AdapterFiles)> {
    load_for(dir, &model.info, model.model.config(), model.model.device())
}

/// [`load`] for a base model known by its identity and configuration
/// rather than loaded (generation on the quantized weights never builds
/// the f32 model).
pub fn load_for(
    dir: &Path,
    info: &ModelInfo,
    config: &Config,
    device: &Device,
) -> Result<(LoraAdapter, AdapterFiles)> {
    let files = read_files(dir)?;
    if let Some(base) = &files.base_model_sha256
        && base != &info.sha256
    {
        return Err(MlError::AdapterMismatch(format!(
            "it was trained on base model {} (sha256 {base}), not {} (sha256 {})",
            files.base_model_name.as_deref().unwrap_or("?"),
            info.name,
            info.sha256
        )));
    }
    let tensors = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &Device::Cpu)?;
    // PEFT may save with the adapter name inside the key; accept both.
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, tensor)| {
            (
                name.replace(".lora_A.default.", ".lora_A.")
                    .replace(".lora_B.default.", ".lora_B."),
                tensor,
            )
        })
        .collect();
    let adapter = LoraAdapter::from_tensors(&files.config, config, &tensors, device)?;
    Ok((adapter, files))
}
