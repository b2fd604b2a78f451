//! A federated round from the device's side: train the text adapter
//! locally, starting from the federation's current global adapter, and
//! hand back only the change (a flat f32 vector in the federation's tensor
//! order). What happens to that vector next (clipping, noise, quantizing,
//! masking) is the federation protocol's business (hearth-fed); nothing
//! here touches the network.
//!
//! Every round is recorded as a `federated` run with the items it trained
//! on and the global adapter it started from, so lineage reaches across
//! rounds.

use std::collections::HashMap;

use hearth_fed::client::GlobalAdapter;
use hearth_ml::candle::{Device, Tensor};
use hearth_ml::lora::{LoraAdapter, LoraConfig, Target};
use hearth_ml::models::llama::Config;
use hearth_ml::train::{self, Outcome, TrainConfig};
use hearth_ml::{DeviceChoice, MlError};
use hearth_progress::{CancelToken, Progress};
use hearth_store::{Library, NewRun, RunId, RunKind, RunStatus, RunUpdate};
use serde::Serialize;

use crate::error::{PersonalizeError, Result};
use crate::text::{hold_weights_in, load_model, prepare};

/// The adapter's tensors, in the order a federation flattens them: PEFT
/// names and shapes, for a model of shape `model` with `lora`.
pub fn adapter_shape(model: &Config, lora: &LoraConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let adapter = LoraAdapter::new(lora, model, 0, &Device::Cpu)?;
    Ok(adapter
        .named_vars()
        .into_iter()
        .map(|(name, var)| (name, var.dims().to_vec()))
        .collect())
}

/// The LoRA settings that give a federation's adapter layout (PEFT names
/// and shapes): the targets its tensor names mention and the rank of its
/// `lora_A` matrices. The layout does not carry alpha; federations use
/// alpha = 2 x rank, so every device scales its update the same way.
pub fn lora_config_for<'a>(
    layout: impl IntoIterator<Item = (&'a str, &'a [usize])>,
) -> Result<LoraConfig> {
    let mut targets = Vec::new();
    let mut rank = None;
    for (name, shape) in layout {
        let target = Target::ALL
            .into_iter()
            .find(|t| name.contains(&format!(".{}.", t.module())))
            .ok_or_else(|| {
                PersonalizeError::Inconsistent(format!(
                    "{name} is not a LoRA tensor of a known projection"
                ))
            })?;
        if !targets.contains(&target) {
            targets.push(target);
        }
        if name.ends_with("lora_A.weight") {
            let r = *shape
                .first()
                .ok_or_else(|| PersonalizeError::Inconsistent(format!("{name} has no shape")))?;
            if *rank.get_or_insert(r) != r {
                return Err(PersonalizeError::Inconsistent(
                    "the federation's adapter mixes LoRA ranks".into(),
                ));
            }
        }
    }
    let rank = rank.ok_or_else(|| {
        PersonalizeError::Inconsistent("the federation's adapter has no LoRA tensors".into())
    })?;
    targets.sort_by_key(|t| Target::ALL.iter().position(|a| a == t));
    Ok(LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        targets,
    })
}

/// What to train in a round.
#[derive(Debug, Clone)]
pub struct RoundTraining {
    /// Base model: registry name or path (must be the federation's).
    pub model: Option<String>,
    /// Texts with this label only (default: every text).
    pub label: Option<String>,
    /// Local training (its LoRA settings must give the federation's shape).
    pub config: TrainConfig,
    /// Where to run.
    pub device: DeviceChoice,
}

/// What a round's local training produced.
#[derive(Debug, Clone, Serialize)]
pub struct RoundUpdate {
    /// The run recorded for it.
    pub run_id: RunId,
    /// Trained minus global, flattened in the federation's order.
    #[serde(skip)]
    pub delta: Vec<f32>,
    /// Texts trained on.
    pub items: usize,
    /// The last training loss.
    pub last_loss: Option<f32>,
}

/// Trains locally from a published global adapter, as every device's
/// `RoundTrainer::delta` does (`hearth fed run`, the app, `hearth sim`):
/// its tensors in the federation's order, then [`train_round`].
pub fn train_from_global(
    library: &mut Library,
    request: &RoundTraining,
    global: &GlobalAdapter,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RoundUpdate> {
    let tensors: HashMap<String, Tensor> =
        hearth_ml::candle::safetensors::load_buffer(global.bytes(), &Device::Cpu)
            .map_err(MlError::from)?;
    let order: Vec<(String, Vec<usize>)> = global
        .layout()
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    train_round(
        library,
        request,
        &tensors,
        &hex::encode(global.sha256()),
        &order,
        progress,
        cancel,
    )
}

/// Trains locally from the global adapter (`global`: PEFT-named tensors,
/// sha256 `global_sha256`) and returns the change in `order`.
pub fn train_round(
    library: &mut Library,
    request: &RoundTraining,
    global: &HashMap<String, Tensor>,
    global_sha256: &str,
    order: &[(String, Vec<usize>)],
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RoundUpdate> {
    for (name, shape) in order {
        match global.get(name) {
            Some(tensor) if tensor.dims() == shape.as_slice() => {}
            Some(tensor) => {
                return Err(PersonalizeError::Inconsistent(format!(
                    "the global adapter's {name} is {:?}, the federation says {shape:?}",
                    tensor.dims()
                )));
            }
            None => {
                return Err(PersonalizeError::Inconsistent(format!(
                    "the global adapter lacks {name}"
                )));
            }
        }
    }
    if global.len() != order.len() {
        return Err(PersonalizeError::Inconsistent(format!(
            "the global adapter has {} tensors, the federation {}",
            global.len(),
            order.len()
        )));
    }
    request.config.validate()?;
    let device = request.device.open()?;
    let (name, mut loaded) = load_model(request.model.as_deref(), &device)?;
    hold_weights_in(&mut loaded, &request.config)?;
    let expected = adapter_shape(loaded.model.config(), &request.config.lora)?;
    if expected.as_slice() != order {
        return Err(PersonalizeError::Inconsistent(
            "this device's adapter settings do not give the federation's adapter shape".into(),
        ));
    }
    let prepared = prepare(
        library,
        &loaded,
        request.label.as_deref(),
        None,
        &request.config,
    )?;
    let config = serde_json::to_string(&request.config)
        .map_err(|e| PersonalizeError::Inconsistent(format!("configuration: {e}")))?;
    let run_id = library.create_run(&NewRun {
        kind: RunKind::Federated,
        base_model: name,
        base_model_sha256: loaded.info.sha256.clone(),
        config,
        label: request.label.clone(),
        item_sha256s: prepared.item_hashes.clone(),
        token_count: prepared.dataset.tokens() as u64,
        device: hearth_ml::device::device_name(&device).to_owned(),
        parent_sha256: Some(global_sha256.to_owned()),
    })?;
    let result = train::train_from(
        &loaded.model,
        &loaded.info.sha256,
        &prepared.dataset,
        &request.config,
        &library.run_dir(run_id),
        global,
        progress,
        cancel,
    )
    .map_err(PersonalizeError::from)
    .and_then(|report| {
        if report.outcome == Outcome::Paused {
            return Err(PersonalizeError::Cancelled);
        }
        let trained = report.adapter.tensors()?;
        let mut delta =
            Vec::with_capacity(order.iter().map(|(_, s)| s.iter().product::<usize>()).sum());
        for (name, _) in order {
            let (Some(after), Some(before)) = (trained.get(name), global.get(name)) else {
                return Err(PersonalizeError::Inconsistent(format!(
                    "{name} went missing"
                )));
            };
            let change = before
                .to_device(after.device())
                .and_then(|before| (after - before)?.flatten_all()?.to_vec1::<f32>())
                .map_err(MlError::from)?;
            delta.extend(change);
        }
        Ok((report.steps, report.last_loss, delta))
    });
    let update = match &result {
        Ok((steps, loss, _)) => RunUpdate {
            status: Some(RunStatus::Completed),
            steps_done: Some(*steps),
            train_loss: loss.map(f64::from),
            ..RunUpdate::default()
        },
        Err(error) => RunUpdate {
            status: Some(RunStatus::Failed),
            error: Some(error.to_string()),
            ..RunUpdate::default()
        },
    };
    library.update_run(run_id, &update)?;
    let (_, last_loss, delta) = result?;
    Ok(RoundUpdate {
        run_id,
        delta,
        items: prepared.item_hashes.len(),
        last_loss,
    })
}
