//! Fine-tuning the last blocks of the photo network, together with a
//! multi-label head, on the handful of photos a person has labelled.
//!
//! A frozen ImageNet embedding already separates most personal labels; the
//! last blocks are where the network decides what matters, and a little
//! training there lets "Rex" stand apart from other dogs. The recipe is
//! the few-shot one:
//!
//! - Only blocks `num_blocks - K ..` and the head convolution train; the
//!   folded BatchNorm statistics stay as they were (a handful of photos
//!   cannot estimate them).
//! - Every labelled photo is seen as several views: the inference crop
//!   plus random resized crops, some mirrored ([`preprocess::augment`]).
//!   The frozen prefix of the network runs once per view, with no
//!   gradient, and its feature maps are kept, so each training step only
//!   pays for the tail.
//! - The head starts from a linear probe on the frozen embeddings, and
//!   only then does everything train together (LP-FT, Kumar et al. 2022,
//!   "Fine-Tuning can Distort Pretrained Features"): a zero head would send
//!   meaningless gradients into the pretrained blocks at first.
//! - The loss is the tagger's class-balanced binary cross-entropy over
//!   L2-normalised embeddings, so the tagger's calibrated head
//!   ([`crate::tagger::Tagger`]) can be fitted on the fine-tuned
//!   embeddings afterwards.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Tensor, Var};
use hearth_progress::{CancelToken, Progress};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::preprocess::{self, augment, to_tensor};
use crate::error::{MlError, Result};
use crate::models::efficientnet::EfficientNet;
use crate::rng::SplitMix64;
use crate::tagger::{EMBEDDING_SCALE, Known, balanced_bce, balanced_targets};
use crate::train::checkpoint::{self, Checkpoint, CheckpointState};
use crate::train::optim::{AdamW, AdamWParams};

/// How to fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneConfig {
    /// MBConv blocks trained, counted from the end (the head convolution
    /// always trains).
    pub blocks: usize,
    /// Views per photo: the inference crop plus `views - 1` augmented ones.
    pub views: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Views per step.
    pub batch: usize,
    /// AdamW learning rate of the network's blocks.
    pub learning_rate: f64,
    /// AdamW learning rate of the label head.
    pub head_learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Seed for augmentation and batches.
    pub seed: u64,
    /// Steps between checkpoints (0: only when cancelled).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
}

fn default_checkpoint_every() -> usize {
    20
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        FineTuneConfig {
            blocks: 2,
            views: 4,
            steps: 80,
            batch: 32,
            learning_rate: 2e-4,
            head_learning_rate: 1e-3,
            weight_decay: 1e-4,
            seed: 7,
            checkpoint_every: default_checkpoint_every(),
        }
    }
}

/// What fine-tuning did.
#[derive(Debug, Clone, Serialize)]
pub struct FineTuneReport {
    /// The first trained block: [`EfficientNet::apply_tail`] takes it back.
    pub from_block: usize,
    /// Views trained on (photos x views).
    pub views: usize,
    /// Loss over every view after the linear probe, before the blocks
    /// train.
    pub probe_loss: Option<f32>,
    /// Loss over every view at the end.
    pub final_loss: Option<f32>,
    /// Steps done.
    pub steps_done: usize,
    /// Whether it stopped early because it was asked to.
    pub cancelled: bool,
    /// The trained tail, by checkpoint name (`_blocks.15._depthwise_conv.weight`,
    /// ..., `_conv_head.bias`), BatchNorm folded in.
    #[serde(skip)]
    pub tensors: Vec<(String, Tensor)>,
}

/// Views whose prefix features are computed together.
const PREFIX_BATCH: usize = 16;

/// Fine-tunes `model`'s last `config.blocks` blocks and head convolution
/// in place on `images` with what is known of each for each label, and
/// leaves the model frozen again (plain tensors) with the trained weights.
/// Every label needs a positive and a negative example.
///
/// With `checkpoints`, the run is saved there every
/// `config.checkpoint_every` steps and when it is cancelled, and a run that
/// finds a checkpoint there continues from it (the same photos, labels and
/// settings give the same views, so it ends exactly as an uninterrupted
/// run would).
pub fn fine_tune(
    model: &mut EfficientNet,
    images: &[DynamicImage],
    targets: &[Vec<Known>],
    config: &FineTuneConfig,
    checkpoints: Option<&Path>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<FineTuneReport> {
    let labels = targets.first().map_or(0, Vec::len);
    if images.is_empty() || labels == 0 {
        return Err(MlError::Data("no labelled photos to fine-tune on".into()));
    }
    if images.len() != targets.len() || targets.iter().any(|t| t.len() != labels) {
        return Err(MlError::InvalidRequest(
            "targets do not match the photos and labels".into(),
        ));
    }
    if config.blocks > model.num_blocks() || config.views == 0 || config.batch == 0 {
        return Err(MlError::InvalidRequest(format!(
            "cannot fine-tune {} of {} blocks with {} views and batches of {}",
            config.blocks,
            model.num_blocks(),
            config.views,
            config.batch
        )));
    }
    let from_block = model.num_blocks() - config.blocks;
    let device = model.device().clone();

    // The frozen prefix, once per view.
    progress.begin(
        "Preparing views",
        Some((images.len() * config.views) as u64),
    );
    let mut rng = SplitMix64::new(config.seed);
    let mut features = Vec::new();
    let mut view_targets = Vec::new();
    let mut pending = Vec::new();
    let mut done = 0u64;
    for (image, known) in images.iter().zip(targets) {
        for view in 0..config.views {
            if cancel.is_cancelled() {
                progress.end();
                return Ok(cancelled_report(from_block));
            }
            let input = if view == 0 {
                preprocess::preprocess(image, &device)?
            } else {
                to_tensor(&augment(image, || f64::from(rng.next_f32()))?, &device)?
            };
            pending.push(input);
            view_targets.push(known.clone());
            if pending.len() == PREFIX_BATCH {
                features.push(model.features_until(&Tensor::stack(&pending, 0)?, from_block)?);
                done += pending.len() as u64;
                pending.clear();
                progress.advance(done);
            }
        }
    }
    if !pending.is_empty() {
        features.push(model.features_until(&Tensor::stack(&pending, 0)?, from_block)?);
        progress.advance(done + pending.len() as u64);
    }
    progress.end();
    let features = Tensor::cat(&features, 0)?;
    let views = view_targets.len();
    let (y, weight) = balanced_targets(&view_targets, labels);
    // A handful of photos is separable by the probe alone: with hard
    // targets its logits grow until the loss is zero and the tail gets no
    // gradient. Smoothed targets keep a margin to learn towards.
    let y: Vec<f32> = y
        .into_iter()
        .map(|t| t * (1.0 - LABEL_SMOOTHING) + LABEL_SMOOTHING / 2.0)
        .collect();
    let y = Tensor::from_vec(y, (views, labels), &device)?;
    let weight = Tensor::from_vec(weight, (views, labels), &device)?;

    let dim = model.embedding_dim();
    let head_weight = Var::from_tensor(&Tensor::zeros((labels, dim), DType::F32, &device)?)?;
    let head_bias = Var::from_tensor(&Tensor::zeros(labels, DType::F32, &device)?)?;
    let head = vec![
        ("head.weight".to_owned(), head_weight.clone()),
        ("head.bias".to_owned(), head_bias.clone()),
    ];
    let logits = |embedding: &Tensor| -> Result<Tensor> {
        Ok(embedding
            .matmul(&head_weight.as_tensor().t()?)?
            .broadcast_add(head_bias.as_tensor())?)
    };
    let params = AdamWParams {
        weight_decay: config.weight_decay,
        ..AdamWParams::default()
    };
    let saved = match checkpoints {
        Some(dir) if checkpoint::exists(dir) => Some(saved_state(dir, config, views, labels)?),
        _ => None,
    };

    let (tail, mut tail_optimizer, mut head_optimizer, mut state) = match saved {
        Some(saved) => {
            // Everything the checkpoint holds replaces what was just drawn
            // or would be trained again: the head, the tail, the moments,
            // the shuffle generator and the epoch in progress.
            let tail = model.make_trainable(from_block)?;
            for (name, var) in head.iter().chain(&tail) {
                let tensor = saved.weights.get(name).ok_or_else(|| {
                    MlError::InvalidRequest(format!("the checkpoint has no {name}"))
                })?;
                if tensor.dims() != var.dims() {
                    return Err(MlError::InvalidRequest(format!(
                        "the checkpoint's {name} has the wrong shape"
                    )));
                }
                var.set(&tensor.to_device(&device)?)?;
            }
            let step = saved.state.step;
            let tail_optimizer = AdamW::restore(params, &tail, &saved.optimizer, step)?;
            let head_optimizer = AdamW::restore(params, &head, &saved.optimizer, step)?;
            (tail, tail_optimizer, head_optimizer, saved.state)
        }
        None => {
            // Linear probe on the frozen embeddings of every view.
            let mut frozen = Vec::new();
            for start in (0..views).step_by(PREFIX_BATCH) {
                let len = PREFIX_BATCH.min(views - start);
                frozen.push(scaled_unit(
                    &model.forward_tail(&features.narrow(0, start, len)?, from_block)?,
                )?);
            }
            let frozen = Tensor::cat(&frozen, 0)?;
            let mut probe = AdamW::new(params, &head)?;
            for _ in 0..PROBE_STEPS {
                let loss = balanced_bce(&logits(&frozen)?, &y, &weight)?;
                let grads = gradients_of(&loss.backward()?, &head)?;
                probe.step(&head, &grads, PROBE_LEARNING_RATE)?;
            }
            drop(frozen);
            let probe_loss = full_loss(model, &features, from_block, &y, &weight, &logits)?;
            // Then everything together.
            let tail = model.make_trainable(from_block)?;
            let state = FineTuneState {
                step: 0,
                config: config.clone(),
                views,
                labels,
                rng,
                order: Vec::new(),
                probe_loss,
                losses: Vec::new(),
            };
            let tail_optimizer = AdamW::new(params, &tail)?;
            let head_optimizer = AdamW::new(params, &head)?;
            (tail, tail_optimizer, head_optimizer, state)
        }
    };
    let save =
        |state: &FineTuneState, tail_optimizer: &AdamW, head_optimizer: &AdamW| -> Result<()> {
            let Some(dir) = checkpoints else {
                return Ok(());
            };
            let weights = head
                .iter()
                .chain(&tail)
                .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_device(&Device::Cpu)?)))
                .collect::<Result<HashMap<_, _>>>()?;
            let mut moments = tail_optimizer.state()?;
            moments.extend(head_optimizer.state()?);
            checkpoint::save(dir, state, &weights, &moments)?;
            Ok(())
        };

    let batch = config.batch.min(views);
    let mut report = FineTuneReport {
        from_block,
        views,
        probe_loss: Some(state.probe_loss),
        final_loss: None,
        steps_done: state.step as usize,
        cancelled: false,
        tensors: Vec::new(),
    };
    progress.begin("Fine-tuning", Some(config.steps as u64));
    progress.advance(state.step);
    while (state.step as usize) < config.steps {
        if cancel.is_cancelled() {
            save(&state, &tail_optimizer, &head_optimizer)?;
            report.cancelled = true;
            break;
        }
        // Epochs over a fresh shuffle, so every view is seen equally often.
        if state.order.len() < batch {
            let mut epoch: Vec<u32> = (0..views as u32).collect();
            state.rng.shuffle(&mut epoch);
            state.order.extend(epoch);
        }
        let picked: Vec<u32> = state.order.drain(..batch).collect();
        let index = Tensor::new(picked.as_slice(), &device)?;
        let embedding =
            scaled_unit(&model.forward_tail(&features.index_select(&index, 0)?, from_block)?)?;
        // The balanced weights sum over all views; a batch stands for them.
        let loss = (balanced_bce(
            &logits(&embedding)?,
            &y.index_select(&index, 0)?,
            &weight.index_select(&index, 0)?,
        )? * (views as f64 / batch as f64))?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(MlError::Diverged {
                step: state.step,
                loss: value,
            });
        }
        let grads = loss.backward()?;
        tail_optimizer.step(&tail, &gradients_of(&grads, &tail)?, config.learning_rate)?;
        head_optimizer.step(
            &head,
            &gradients_of(&grads, &head)?,
            config.head_learning_rate,
        )?;
        state.step += 1;
        state.losses.push(value);
        report.steps_done = state.step as usize;
        progress.metric("loss", state.step, f64::from(value));
        progress.advance(state.step);
        if config.checkpoint_every > 0
            && state.step % config.checkpoint_every as u64 == 0
            && (state.step as usize) < config.steps
        {
            save(&state, &tail_optimizer, &head_optimizer)?;
        }
    }
    progress.end();
    model.freeze();
    if report.cancelled {
        return Ok(report);
    }
    report.final_loss = Some(full_loss(
        model, &features, from_block, &y, &weight, &logits,
    )?);
    report.tensors = tail
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().detach()))
        .collect();
    Ok(report)
}

/// The non-tensor part of a fine-tuning checkpoint; the tensors are the
/// head and tail (by name) and both optimizers' moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FineTuneState {
    step: u64,
    /// A checkpoint continues only the run it was made by.
    config: FineTuneConfig,
    views: usize,
    labels: usize,
    /// The shuffle generator, after the views were drawn.
    rng: SplitMix64,
    /// What is left of the epoch in progress.
    order: Vec<u32>,
    probe_loss: f32,
    losses: Vec<f32>,
}

impl CheckpointState for FineTuneState {
    fn step(&self) -> u64 {
        self.step
    }
}

/// Reads the checkpoint in `dir`, refusing one made for other settings or
/// another set of photos and labels.
fn saved_state(
    dir: &Path,
    config: &FineTuneConfig,
    views: usize,
    labels: usize,
) -> Result<Checkpoint<FineTuneState>> {
    let saved: Checkpoint<FineTuneState> = checkpoint::load(dir)?;
    let reason = if &saved.state.config != config {
        Some("its fine-tuning settings differ from the ones given".to_owned())
    } else if (saved.state.views, saved.state.labels) != (views, labels) {
        Some(format!(
            "it was made for {} views and {} labels, not {views} and {labels}",
            saved.state.views, saved.state.labels
        ))
    } else if saved.state.step as usize > config.steps {
        Some(format!(
            "it is at step {} of {}",
            saved.state.step, config.steps
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MlError::BadCheckpoint {
            path: dir.to_path_buf(),
            reason,
        }),
        None => Ok(saved),
    }
}

/// How far the targets are pulled from 0 and 1 (towards 1/2).
const LABEL_SMOOTHING: f32 = 0.1;

/// Steps and rate of the linear probe that starts the head.
const PROBE_STEPS: usize = 200;
const PROBE_LEARNING_RATE: f64 = 0.05;

fn cancelled_report(from_block: usize) -> FineTuneReport {
    FineTuneReport {
        from_block,
        views: 0,
        probe_loss: None,
        final_loss: None,
        steps_done: 0,
        cancelled: true,
        tensors: Vec::new(),
    }
}

/// The loss over every view, without a gradient.
fn full_loss(
    model: &EfficientNet,
    features: &Tensor,
    from_block: usize,
    y: &Tensor,
    weight: &Tensor,
    logits: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<f32> {
    let views = features.dim(0)?;
    let mut total = 0f32;
    for start in (0..views).step_by(PREFIX_BATCH) {
        let len = PREFIX_BATCH.min(views - start);
        let embedding = scaled_unit(
            &model
                .forward_tail(&features.narrow(0, start, len)?, from_block)?
                .detach(),
        )?;
        let loss = balanced_bce(
            &logits(&embedding)?.detach(),
            &y.narrow(0, start, len)?,
            &weight.narrow(0, start, len)?,
        )?;
        total += loss.to_scalar::<f32>()?;
    }
    Ok(total)
}

/// Embeddings on the unit sphere, times [`EMBEDDING_SCALE`]: what the
/// tagger's head sees.
fn scaled_unit(embedding: &Tensor) -> Result<Tensor> {
    let norm = embedding
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok((embedding.broadcast_div(&norm)? * EMBEDDING_SCALE)?)
}

/// Each variable's gradient from `grads` (zeros when it got none).
fn gradients_of(grads: &GradStore, vars: &[(String, Var)]) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|(_, var)| match grads.get(var.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(var.as_tensor().zeros_like()?),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::efficientnet::{Config, random_weights};
    use candle_core::Device;
    use candle_nn::VarBuilder;
    use hearth_progress::NoProgress;
    use image::{Rgb, RgbImage};

    fn tiny() -> EfficientNet {
        let cfg = Config::tiny();
        let weights = random_weights(&cfg, 3, &Device::Cpu).expect("weights");
        EfficientNet::new(
            &cfg,
            VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        )
        .expect("model")
    }

    /// Photos of two kinds: a bright square on the left, or on the right.
    fn photos(n: usize) -> (Vec<DynamicImage>, Vec<Vec<Known>>) {
        let mut images = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let left = i % 2 == 0;
            let image = RgbImage::from_fn(40, 40, |x, y| {
                let on = (10..30).contains(&y) && if left { x < 16 } else { x >= 24 };
                let shade = ((x * 7 + y * 3 + i as u32) % 17) as u8;
                if on {
                    Rgb([230, 200 + shade, 40])
                } else {
                    Rgb([20 + shade, 30, 60])
                }
            });
            images.push(DynamicImage::ImageRgb8(image));
            targets.push(vec![if left {
                Known::Positive
            } else {
                Known::Negative
            }]);
        }
        (images, targets)
    }

    #[test]
    fn lowers_the_loss_and_changes_only_the_tail() {
        let mut model = tiny();
        let (images, targets) = photos(8);
        let probe = preprocess::preprocess(&images[0], &Device::Cpu)
            .and_then(|x| Ok(x.unsqueeze(0)?))
            .expect("input");
        let before_prefix = model
            .features_until(&probe, model.num_blocks() - 1)
            .expect("prefix");
        let before = model.embed(&probe).expect("embed");
        let config = FineTuneConfig {
            blocks: 1,
            views: 2,
            steps: 30,
            batch: 8,
            learning_rate: 1e-3,
            ..FineTuneConfig::default()
        };
        let report = fine_tune(
            &mut model,
            &images,
            &targets,
            &config,
            None,
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("fine-tune");
        assert_eq!(report.steps_done, 30);
        assert_eq!(report.views, 16);
        let (first, last) = (
            report.probe_loss.expect("probe"),
            report.final_loss.expect("last"),
        );
        assert!(last < first, "loss went from {first} to {last}");
        assert!(report.tensors.iter().any(|(n, _)| n == "_conv_head.weight"));

        let after_prefix = model
            .features_until(&probe, model.num_blocks() - 1)
            .expect("prefix");
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff")
        };
        assert_eq!(
            diff(&before_prefix, &after_prefix),
            0.0,
            "the prefix is frozen"
        );
        assert!(diff(&before, &model.embed(&probe).expect("embed")) > 0.0);

        // The saved tail turns a fresh model into the fine-tuned one.
        let mut fresh = tiny();
        let tensors = report.tensors.iter().cloned().collect();
        fresh
            .apply_tail(report.from_block, &tensors)
            .expect("apply");
        assert_eq!(
            diff(
                &model.embed(&probe).expect("embed"),
                &fresh.embed(&probe).expect("embed")
            ),
            0.0
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut model = tiny();
        let (images, targets) = photos(2);
        let run = |model: &mut EfficientNet,
                   images: &[DynamicImage],
                   targets: &[Vec<Known>],
                   config: &FineTuneConfig| {
            fine_tune(
                model,
                images,
                targets,
                config,
                None,
                &NoProgress,
                &CancelToken::new(),
            )
        };
        assert!(run(&mut model, &[], &[], &FineTuneConfig::default()).is_err());
        assert!(
            run(
                &mut model,
                &images,
                &targets[..1],
                &FineTuneConfig::default()
            )
            .is_err()
        );
        let too_deep = FineTuneConfig {
            blocks: model.num_blocks() + 1,
            ..FineTuneConfig::default()
        };
        assert!(run(&mut model, &images, &targets, &too_deep).is_err());
        let cancel = CancelToken::new();
        cancel.cancel();
        let report = fine_tune(
            &mut model,
            &images,
            &targets,
            &FineTuneConfig::default(),
            None,
            &NoProgress,
            &cancel,
        )
        .expect("cancelled");
        assert!(report.cancelled);
    }

    /// Cancels once fine-tuning reaches a given step.
    struct CancelAtStep {
        step: u64,
        cancel: CancelToken,
        fine_tuning: std::sync::atomic::AtomicBool,
    }

    impl Progress for CancelAtStep {
        fn begin(&self, task: &str, _total: Option<u64>) {
            self.fine_tuning
                .store(task == "Fine-tuning", std::sync::atomic::Ordering::SeqCst);
        }

        fn advance(&self, done: u64) {
            if self.fine_tuning.load(std::sync::atomic::Ordering::SeqCst) && done == self.step {
                self.cancel.cancel();
            }
        }
    }

    #[test]
    fn a_paused_run_resumes_to_the_same_weights() {
        let (images, targets) = photos(6);
        let config = FineTuneConfig {
            blocks: 1,
            views: 2,
            steps: 9,
            batch: 5,
            checkpoint_every: 4,
            ..FineTuneConfig::default()
        };
        let mut straight = tiny();
        let whole = fine_tune(
            &mut straight,
            &images,
            &targets,
            &config,
            None,
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("uninterrupted");

        let dir = tempfile::tempdir().expect("tempdir");
        let mut paused = tiny();
        let pausing = CancelAtStep {
            step: 6,
            cancel: CancelToken::new(),
            fine_tuning: false.into(),
        };
        let first = fine_tune(
            &mut paused,
            &images,
            &targets,
            &config,
            Some(dir.path()),
            &pausing,
            &pausing.cancel,
        )
        .expect("paused");
        assert!(first.cancelled);
        assert_eq!(first.steps_done, 6);
        assert!(first.tensors.is_empty(), "a paused run hands back nothing");

        // Other settings do not continue this checkpoint.
        let other = FineTuneConfig {
            steps: 10,
            ..config.clone()
        };
        assert!(matches!(
            fine_tune(
                &mut tiny(),
                &images,
                &targets,
                &other,
                Some(dir.path()),
                &NoProgress,
                &CancelToken::new()
            ),
            Err(MlError::BadCheckpoint { .. })
        ));

        // A fresh process: a new model, the same photos.
        let mut resumed = tiny();
        let rest = fine_tune(
            &mut resumed,
            &images,
            &targets,
            &config,
            Some(dir.path()),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("resumed");
        assert!(!rest.cancelled);
        assert_eq!(rest.steps_done, 9);
        assert_eq!(rest.probe_loss, whole.probe_loss);
        assert_eq!(rest.final_loss, whole.final_loss);
        let resumed_tensors: HashMap<_, _> = rest.tensors.into_iter().collect();
        for (name, tensor) in &whole.tensors {
            let other = &resumed_tensors[name];
            let difference = (tensor - other)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert_eq!(difference, 0.0, "{name} differs after resuming");
        }
    }
}
