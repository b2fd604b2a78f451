//! LoRA fine-tuning of a language model on a person's texts.
//!
//! One optimizer step: for each of `grad_accumulation` micro-batches, a
//! differentiable forward, the causal-LM loss and a backward pass; then
//! global-norm gradient clipping and an [`AdamW`] update at the
//! warm-up-then-cosine learning rate. Validation loss every `eval_every`
//! steps (with optional early stopping), checkpoints every
//! `checkpoint_every` steps and whenever the run is paused. Everything
//! random comes from seeded generators saved in the checkpoint, so a
//! resumed run continues bit for bit on the CPU.

pub mod checkpoint;
pub mod cpu_step;
pub mod data;
pub mod optim;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use hearth_progress::{CancelToken, Progress};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::lora::{Dropout, LoraAdapter, LoraConfig};
use crate::models::llama::{Forward, Llama, causal_lm_loss};
use crate::ops::Mode;
use crate::rng::SplitMix64;
use checkpoint::TrainState;
use cpu_step::CpuStep;
use data::{DataCursor, TextDataset, batch_tensors};
use optim::{AdamW, AdamWParams, learning_rate};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The adapter's shape.
    pub lora: LoraConfig,
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accumulation: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// AdamW's other parameters.
    pub optimizer: AdamWParams,
    /// Global gradient-norm clip (0 disables).
    pub max_grad_norm: f64,
    /// Share of sequences held out for validation.
    pub validation_fraction: f64,
    /// Steps between validations.
    pub eval_every: u64,
    /// Most validation sequences scored per evaluation.
    pub eval_max_sequences: usize,
    /// Stop after this many evaluations without improvement.
    pub early_stopping_patience: Option<u64>,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Seed for initialisation, data order and dropout.
    pub seed: u64,
    /// The type frozen base weights are held in: `f32`, or `bf16` / `f16`
    /// to halve the model's memory (computation stays f32).
    #[serde(default = "default_base_dtype")]
    pub base_dtype: String,
}

fn default_base_dtype() -> String {
    "f32".into()
}

/// Parses a base weight type name.
pub fn parse_base_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(MlError::InvalidRequest(format!(
            "base weight type {other:?} is not one of f32, bf16, f16"
        ))),
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lora: LoraConfig::default(),
            steps: 100,
            batch_size: 4,
            seq_len: 256,
            grad_accumulation: 1,
            learning_rate: 2e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 10,
            optimizer: AdamWParams::default(),
            max_grad_norm: 1.0,
            validation_fraction: 0.1,
            eval_every: 25,
            eval_max_sequences: 32,
            early_stopping_patience: None,
            checkpoint_every: 10,
            seed: 42,
            base_dtype: default_base_dtype(),
        }
    }
}

impl TrainConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        let bad = |what: &str| {
            Err(MlError::InvalidRequest(format!(
                "training configuration: {what}"
            )))
        };
        if self.steps == 0 {
            return bad("steps must be at least 1");
        }
        if self.batch_size == 0 || self.grad_accumulation == 0 {
            return bad("batch size and gradient accumulation must be at least 1");
        }
        if self.seq_len < 2 {
            return bad("sequence length must be at least 2");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return bad("learning rate must be in (0, 1)");
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad("validation fraction must be in [0, 1)");
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 {
            return bad("eval_every and checkpoint_every must be at least 1");
        }
        parse_base_dtype(&self.base_dtype)?;
        Ok(())
    }
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[cfg_attr(feature = "ts", ts(rename = "TrainingOutcome"))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// All steps done.
    Completed,
    /// Cancelled; a checkpoint holds the state for `--resume`.
    Paused,
    /// Validation stopped improving.
    EarlyStopped,
}

/// The result of a training call.
#[derive(Debug)]
pub struct TrainReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Steps completed (in total, across resumes).
    pub steps: u64,
    /// The trained adapter.
    pub adapter: LoraAdapter,
    /// The last training loss.
    pub last_loss: Option<f32>,
    /// Validation loss of the base model (before any step).
    pub base_validation_loss: Option<f32>,
    /// Validation loss at the end.
    pub validation_loss: Option<f32>,
    /// Training throughput of this call.
    pub tokens_per_second: f64,
    /// Full state (loss history included).
    pub state: TrainState,
}

/// The checkpoint folder of a run folder.
pub fn checkpoint_dir(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("checkpoints")
}

/// Trains (or, with `resume`, continues training) a LoRA adapter on
/// `dataset`, checkpointing into `run_dir`.
// Each argument is a distinct input a caller chooses; bundling them would
// only move the list into a struct literal at every call site.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Llama,
    base_model_sha256: &str,
    dataset: &TextDataset,
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    let start = if resume { Start::Resume } else { Start::Fresh };
    run_training(
        model,
        base_model_sha256,
        dataset,
        config,
        run_dir,
        start,
        progress,
        cancel,
    )
}

/// [`train`] starting from given adapter weights (PEFT names) instead of
/// a fresh initialisation: a federated round starts from the global
/// adapter. Checkpoints and resumption work as for [`train`] (a resumed
/// run continues from its checkpoint, not from `initial`).
#[allow(clippy::too_many_arguments)]
pub fn train_from(
    model: &Llama,
    base_model_sha256: &str,
    dataset: &TextDataset,
    config: &TrainConfig,
    run_dir: &Path,
    initial: &HashMap<String, Tensor>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    run_training(
        model,
        base_model_sha256,
        dataset,
        config,
        run_dir,
        Start::From(initial),
        progress,
        cancel,
    )
}

/// Where a run's adapter starts.
enum Start<'a> {
    Fresh,
    Resume,
    From(&'a HashMap<String, Tensor>),
}

#[allow(clippy::too_many_arguments)]
fn run_training(
    model: &Llama,
    base_model_sha256: &str,
    dataset: &TextDataset,
    config: &TrainConfig,
    run_dir: &Path,
    start: Start<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    let device = model.device();
    if dataset.seq_len() != config.seq_len {
        return Err(MlError::InvalidRequest(
            "the dataset was packed for another sequence length".into(),
        ));
    }
    if config.seq_len > model.max_sequence() {
        return Err(MlError::InvalidRequest(format!(
            "sequence length {} is longer than this model's context of {}",
            config.seq_len,
            model.max_sequence()
        )));
    }
    let checkpoints = checkpoint_dir(run_dir);

    let (adapter, mut optimizer, mut state) = if matches!(start, Start::Resume) {
        let saved: checkpoint::Checkpoint = checkpoint::load(&checkpoints)?;
        if saved.state.base_model_sha256 != base_model_sha256 {
            return Err(MlError::BadCheckpoint {
                path: checkpoints,
                reason: format!(
                    "it was trained on base model {}, not this one ({base_model_sha256})",
                    saved.state.base_model_sha256
                ),
            });
        }
        if &saved.state.config != config {
            return Err(MlError::BadCheckpoint {
                path: checkpoints,
                reason: "its training configuration differs from the one given".into(),
            });
        }
        let adapter =
            LoraAdapter::from_tensors(&config.lora, model.config(), &saved.weights, device)?;
        let optimizer = AdamW::restore(
            config.optimizer,
            &adapter.named_vars_owned(),
            &saved.optimizer,
            saved.state.step,
        )?;
        (adapter, optimizer, saved.state)
    } else {
        if checkpoint::exists(&checkpoints) {
            return Err(MlError::InvalidRequest(format!(
                "{} already holds a checkpoint; resume that run instead",
                checkpoints.display()
            )));
        }
        let adapter = match start {
            Start::From(initial) => {
                LoraAdapter::from_tensors(&config.lora, model.config(), initial, device)?
            }
            _ => LoraAdapter::new(&config.lora, model.config(), config.seed, device)?,
        };
        let optimizer = AdamW::new(config.optimizer, &adapter.named_vars_owned())?;
        let state = TrainState {
            step: 0,
            cursor: DataCursor::default(),
            dropout_rng: SplitMix64::fork(config.seed, 0xd20b),
            best_validation_loss: None,
            evaluations_without_improvement: 0,
            config: config.clone(),
            base_model_sha256: base_model_sha256.to_owned(),
            losses: Vec::new(),
            validation_losses: Vec::new(),
        };
        (adapter, optimizer, state)
    };

    let validation: Vec<&Vec<u32>> = dataset
        .validation()
        .iter()
        .take(config.eval_max_sequences)
        .collect();
    if state.step == 0 && state.validation_losses.is_empty() {
        let base = mean_loss(model, None, &validation, config.batch_size)?;
        state.validation_losses.push((0, base));
        progress.metric("validation_loss", 0, f64::from(base));
    }
    let base_validation_loss = state.validation_losses.first().map(|(_, l)| *l);

    progress.begin("Training", Some(config.steps));
    progress.advance(state.step);
    let vars = adapter.named_vars_owned();
    let mut cpu_step = cpu_step::supports(model, &adapter).then(CpuStep::new);
    let started = Instant::now();
    let mut tokens_this_call = 0usize;
    let tokens_per_step = config.batch_size * config.seq_len * config.grad_accumulation;
    let mut outcome = Outcome::Completed;

    while state.step < config.steps {
        if cancel.is_cancelled() {
            outcome = Outcome::Paused;
            break;
        }
        let dropout = Dropout::new(config.lora.dropout, state.dropout_rng);
        let mut cursor = state.cursor;
        let (loss, lr) = optimizer_step(
            model,
            &adapter,
            &vars,
            &mut optimizer,
            cpu_step.as_mut(),
            dataset,
            &mut cursor,
            &dropout,
            config,
            state.step,
        )?;

        state.step += 1;
        state.cursor = cursor;
        state.dropout_rng = dropout.rng();
        state.losses.push(loss);
        tokens_this_call += tokens_per_step;
        let step = state.step;
        progress.metric("loss", step, f64::from(loss));
        progress.metric("learning_rate", step, lr);
        progress.metric(
            "tokens_per_second",
            step,
            tokens_this_call as f64 / started.elapsed().as_secs_f64().max(1e-9),
        );
        progress.advance(step);

        if step % config.eval_every == 0 || step == config.steps {
            let loss = mean_loss(model, Some(&adapter), &validation, config.batch_size)?;
            state.validation_losses.push((step, loss));
            progress.metric("validation_loss", step, f64::from(loss));
            match state.best_validation_loss {
                Some(best) if loss >= best => state.evaluations_without_improvement += 1,
                _ => {
                    state.best_validation_loss = Some(loss);
                    state.evaluations_without_improvement = 0;
                }
            }
            if config
                .early_stopping_patience
                .is_some_and(|patience| state.evaluations_without_improvement >= patience)
            {
                outcome = Outcome::EarlyStopped;
                break;
            }
        }
        if step % config.checkpoint_every == 0 || step == config.steps {
            checkpoint::save(
                &checkpoints,
                &state,
                &adapter.tensors()?,
                &optimizer.state()?,
            )?;
        }
    }
    if outcome != Outcome::Completed {
        checkpoint::save(
            &checkpoints,
            &state,
            &adapter.tensors()?,
            &optimizer.state()?,
        )?;
    }
    progress.end();
    Ok(TrainReport {
        outcome,
        steps: state.step,
        last_loss: state.losses.last().copied(),
        base_validation_loss,
        validation_loss: state.validation_losses.last().map(|(_, l)| *l),
        tokens_per_second: tokens_this_call as f64 / started.elapsed().as_secs_f64().max(1e-9),
        adapter,
        state,
    })
}

/// One optimizer step at `step` (0-based): forward, loss and backward over
/// `grad_accumulation` micro-batches (through `cpu_step` when the CPU step
/// serves this model, else candle's autograd), clipping, AdamW. Returns the
/// loss and the learning rate used. Nothing is updated if the loss is not
/// finite.
#[allow(clippy::too_many_arguments)]
fn optimizer_step(
    model: &Llama,
    adapter: &LoraAdapter,
    vars: &[(String, candle_core::Var)],
    optimizer: &mut AdamW,
    mut cpu_step: Option<&mut CpuStep>,
    dataset: &TextDataset,
    cursor: &mut DataCursor,
    dropout: &Dropout,
    config: &TrainConfig,
    step: u64,
) -> Result<(f32, f64)> {
    let mut summed: Option<Vec<Tensor>> = None;
    let mut loss_total = 0f32;
    for _ in 0..config.grad_accumulation {
        let (inputs, targets) =
            dataset.next_batch(cursor, config.batch_size, config.seed, model.device())?;
        let share = 1.0 / config.grad_accumulation as f64;
        let (loss, step_grads) = match cpu_step.as_deref_mut() {
            Some(cpu_step) => cpu_step.loss_and_grads(
                model,
                adapter,
                &inputs.flatten_all()?.to_vec1::<u32>()?,
                &targets.flatten_all()?.to_vec1::<u32>()?,
                inputs.dims2()?,
                Some(dropout),
                share as f32,
            )?,
            None => {
                autograd_loss_and_grads(model, adapter, vars, &inputs, &targets, dropout, share)?
            }
        };
        loss_total += loss;
        summed = Some(match summed {
            None => step_grads,
            Some(previous) => previous
                .iter()
                .zip(&step_grads)
                .map(|(a, b)| Ok((a + b)?))
                .collect::<Result<_>>()?,
        });
    }
    if !loss_total.is_finite() {
        return Err(MlError::Diverged {
            step: step + 1,
            loss: loss_total,
        });
    }
    let mut grads = summed.unwrap_or_default();
    if config.max_grad_norm > 0.0 {
        let norm = global_norm(&grads)?;
        if !norm.is_finite() {
            return Err(MlError::Diverged {
                step: step + 1,
                loss: norm as f32,
            });
        }
        if norm > config.max_grad_norm {
            let scale = config.max_grad_norm / (norm + 1e-6);
            grads = grads
                .iter()
                .map(|g| Ok((g * scale)?))
                .collect::<Result<_>>()?;
        }
    }
    let lr = learning_rate(
        step,
        config.steps,
        config.warmup_steps,
        config.learning_rate,
        config.min_lr_ratio,
    );
    optimizer.step(vars, &grads, lr)?;
    Ok((loss_total, lr))
}

/// `share` times the loss on one micro-batch and its gradients for `vars`,
/// by candle's autograd (any device, any dtype).
fn autograd_loss_and_grads(
    model: &Llama,
    adapter: &LoraAdapter,
    vars: &[(String, candle_core::Var)],
    inputs: &Tensor,
    targets: &Tensor,
    dropout: &Dropout,
    share: f64,
) -> Result<(f32, Vec<Tensor>)> {
    let how = Forward {
        adapter: Some(adapter),
        dropout: Some(dropout),
        mode: Mode::Train,
    };
    let loss = causal_lm_loss(&model.forward(inputs, how)?, targets)?;
    let loss = (loss * share)?;
    let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    let grads = loss.backward()?;
    let grads = vars
        .iter()
        .map(|(_, var)| match grads.get(var.as_tensor()) {
            Some(grad) => Ok(grad.clone()),
            None => Ok(var.as_tensor().zeros_like()?),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((value, grads))
}

/// Wall-clock seconds of training steps, for `hearth bench train`.
#[derive(Debug, Clone)]
pub struct StepTimings {
    /// Seconds of each measured step (warm-up excluded).
    pub seconds: Vec<f64>,
    /// Tokens each step trains on.
    pub tokens_per_step: usize,
}

impl StepTimings {
    /// Median step time in seconds.
    pub fn median(&self) -> f64 {
        median(&self.seconds)
    }
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Which implementation computes a training step's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The CPU step where it serves the model, else candle's autograd
    /// (what [`train`] uses).
    Auto,
    /// candle's autograd everywhere (for comparisons).
    Autograd,
}

/// Runs `warmup + steps` real training steps on random token sequences and
/// times the last `steps`, exactly as [`train`] runs them (no validation or
/// checkpoints).
pub fn measure_steps(
    model: &Llama,
    config: &TrainConfig,
    engine: Engine,
    warmup: usize,
    steps: usize,
) -> Result<StepTimings> {
    config.validate()?;
    let total = warmup + steps;
    let mut rng = SplitMix64::new(config.seed);
    let vocab = model.config().vocab_size;
    let documents: Vec<Vec<u32>> = (0..total * config.batch_size * config.grad_accumulation + 2)
        .map(|_| {
            (0..config.seq_len)
                .map(|_| rng.below(vocab) as u32)
                .collect()
        })
        .collect();
    let dataset = TextDataset::pack(&documents, None, config.seq_len, 0.0, config.seed)?;
    let adapter = LoraAdapter::new(&config.lora, model.config(), config.seed, model.device())?;
    let vars = adapter.named_vars_owned();
    let mut optimizer = AdamW::new(config.optimizer, &vars)?;
    let dropout = Dropout::new(config.lora.dropout, SplitMix64::new(config.seed));
    let mut cursor = DataCursor::default();
    let mut seconds = Vec::with_capacity(steps);
    let mut cpu_step =
        (engine == Engine::Auto && cpu_step::supports(model, &adapter)).then(CpuStep::new);
    for step in 0..total {
        let started = Instant::now();
        optimizer_step(
            model,
            &adapter,
            &vars,
            &mut optimizer,
            cpu_step.as_mut(),
            &dataset,
            &mut cursor,
            &dropout,
            config,
            step as u64,
        )?;
        if step >= warmup {
            seconds.push(started.elapsed().as_secs_f64());
        }
    }
    Ok(StepTimings {
        seconds,
        tokens_per_step: config.batch_size * config.seq_len * config.grad_accumulation,
    })
}

fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut total = 0f64;
    for grad in grads {
        total += grad
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(total.sqrt())
}

/// Mean next-token loss over `sequences` (each `seq_len + 1` tokens), with
/// `adapter` or the base model.
pub fn mean_loss(
    model: &Llama,
    adapter: Option<&LoraAdapter>,
    sequences: &[&Vec<u32>],
    batch: usize,
) -> Result<f32> {
    if sequences.is_empty() {
        return Err(MlError::Data("no held-out text to evaluate on".into()));
    }
    let mut total = 0f64;
    for chunk in sequences.chunks(batch.max(1)) {
        let (inputs, targets) = batch_tensors(chunk, model.device())?;
        let loss = causal_lm_loss(&model.forward(&inputs, Forward::infer(adapter))?, &targets)?;
        total += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * chunk.len() as f64;
    }
    Ok((total / sequences.len() as f64) as f32)
}
