//! Checkpoints: everything needed to continue a run exactly where it
//! stopped. For text runs: the adapter, optimizer moments, data cursor,
//! dropout generator, early-stopping state and loss history
//! ([`TrainState`]); photo fine-tuning keeps its own state in the same
//! format (`vision::finetune`), so both share one writer.
//!
//! Each checkpoint is a folder `step-NNNNNN` written under a temporary name,
//! synced, and renamed into place; then the `LATEST` file is replaced
//! atomically to point at it, and older checkpoints are removed. A kill at
//! any moment leaves `LATEST` naming a complete checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::data::DataCursor;
use crate::error::{MlError, Result};
use crate::rng::SplitMix64;

const LATEST: &str = "LATEST";
const WEIGHTS_FILE: &str = "adapter.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Where the data order stands.
    pub cursor: DataCursor,
    /// The dropout generator.
    pub dropout_rng: SplitMix64,
    /// Best validation loss so far.
    pub best_validation_loss: Option<f32>,
    /// Evaluations since the best one (early stopping).
    pub evaluations_without_improvement: u64,
    /// The run's configuration (a resumed run must use the same).
    pub config: TrainConfig,
    /// sha256 of the base model the run trains on.
    pub base_model_sha256: String,
    /// Training loss per step.
    pub losses: Vec<f32>,
    /// `(step, validation loss)` per evaluation.
    pub validation_losses: Vec<(u64, f32)>,
}

/// The non-tensor part of a checkpoint, whatever trains.
pub trait CheckpointState: Serialize + DeserializeOwned {
    /// Optimizer steps completed (names the checkpoint folder).
    fn step(&self) -> u64;
}

impl CheckpointState for TrainState {
    fn step(&self) -> u64 {
        self.step
    }
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Checkpoint<S = TrainState> {
    /// Non-tensor state.
    pub state: S,
    /// The trained tensors (for text runs the adapter, PEFT names).
    pub weights: HashMap<String, Tensor>,
    /// Optimizer moments.
    pub optimizer: HashMap<String, Tensor>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MlError + '_ {
    move |e| MlError::io(path, e)
}

fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io(path))
}

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path)?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Writes a checkpoint into `dir` and makes it the latest.
pub fn save<S: CheckpointState>(
    dir: &Path,
    state: &S,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("step-{:06}", state.step());
    let final_dir = dir.join(&name);
    let temp_dir = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp_dir.exists() {
        std::fs::remove_dir_all(&temp_dir).map_err(io(&temp_dir))?;
    }
    std::fs::create_dir(&temp_dir).map_err(io(&temp_dir))?;
    save_tensors(weights, &temp_dir.join(WEIGHTS_FILE))?;
    save_tensors(optimizer, &temp_dir.join(OPTIMIZER_FILE))?;
    let state_path = temp_dir.join(STATE_FILE);
    let json =
        serde_json::to_vec_pretty(state).map_err(|e| MlError::InvalidRequest(e.to_string()))?;
    let mut file = std::fs::File::create(&state_path).map_err(io(&state_path))?;
    file.write_all(&json)
        .and_then(|_| file.sync_all())
        .map_err(io(&state_path))?;
    sync_dir(&temp_dir)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&temp_dir, &final_dir).map_err(io(&final_dir))?;

    let latest = dir.join(LATEST);
    let latest_temp = dir.join(format!(".{LATEST}.tmp-{}", std::process::id()));
    std::fs::write(&latest_temp, &name).map_err(io(&latest_temp))?;
    std::fs::File::open(&latest_temp)
        .and_then(|f| f.sync_all())
        .map_err(io(&latest_temp))?;
    std::fs::rename(&latest_temp, &latest).map_err(io(&latest))?;
    sync_dir(dir)?;

    // Only now may older checkpoints and leftovers of killed writes go.
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let stale_step = entry_name.starts_with("step-") && entry_name != name;
        let leftover = entry_name.starts_with('.') && entry_name.contains(".tmp-");
        if stale_step || leftover {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(&path))?;
        }
    }
    Ok(final_dir)
}

/// Whether `dir` holds a checkpoint.
pub fn exists(dir: &Path) -> bool {
    dir.join(LATEST).is_file()
}

/// Reads the latest checkpoint in `dir`.
pub fn load<S: CheckpointState>(dir: &Path) -> Result<Checkpoint<S>> {
    let bad = |reason: String| MlError::BadCheckpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let latest = std::fs::read_to_string(dir.join(LATEST))
        .map_err(|e| bad(format!("no LATEST pointer ({e})")))?;
    let name = latest.trim();
    if !name.starts_with("step-") || name.contains('/') {
        return Err(bad(format!("LATEST names {name:?}")));
    }
    let checkpoint = dir.join(name);
    let state: S = serde_json::from_slice(
        &std::fs::read(checkpoint.join(STATE_FILE))
            .map_err(|e| bad(format!("{STATE_FILE}: {e}")))?,
    )
    .map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
    let read = |file: &str| {
        candle_core::safetensors::load(checkpoint.join(file), &Device::Cpu)
            .map_err(|e| bad(format!("{file}: {e}")))
    };
    Ok(Checkpoint {
        state,
        weights: read(WEIGHTS_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
    })
}
