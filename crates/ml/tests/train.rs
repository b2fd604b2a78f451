//! Training is correct (gradients match finite differences), useful (loss
//! on held-out text goes down), resumable bit for bit, and its adapters
//! round-trip through PEFT's format.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use hearth_ml::models::llama::{Config, Forward, Llama, causal_lm_loss, random_weights};
use hearth_ml::ops::Mode;
use hearth_ml::rng::SplitMix64;
use hearth_ml::train::data::TextDataset;
use hearth_ml::train::{Outcome, TrainConfig, train};
use hearth_ml::{CancelToken, LoraAdapter, LoraConfig, MlError, Target};
use hearth_progress::{NoProgress, Progress};

fn tiny_model(cfg: &Config, dtype: DType) -> Llama {
    let device = Device::Cpu;
    let weights = random_weights(cfg, 11, &device).expect("weights");
    Llama::new(cfg, VarBuilder::from_tensors(weights, dtype, &device)).expect("model")
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .expect("scalar")
}

/// Every LoRA parameter's gradient, in every layer and projection, matches
/// central finite differences of the loss (in f64), and none is zero.
#[test]
fn lora_gradients_match_finite_differences() {
    for attention_bias in [false, true] {
        let cfg = Config {
            attention_bias,
            ..Config::tiny()
        };
        let model = tiny_model(&cfg, DType::F64);
        let lora = LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        };
        let adapter = LoraAdapter::new(&lora, &cfg, 5, &Device::Cpu)
            .and_then(|a| a.to_dtype(DType::F64))
            .expect("adapter");
        // B starts at zero, which would hide A's gradient: randomise it.
        let mut rng = SplitMix64::new(17);
        for (_, var) in adapter.named_vars() {
            let values: Vec<f64> = (0..var.elem_count())
                .map(|_| f64::from(rng.next_f32()) - 0.5)
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).expect("tensor"))
                .expect("set");
        }
        let ids: Vec<u32> = (0..14).map(|_| rng.below(cfg.vocab_size) as u32).collect();
        let tokens = Tensor::from_vec(ids, (2, 7), &Device::Cpu).expect("tokens");
        let (inputs, targets) = (
            tokens.narrow(1, 0, 6).expect("x"),
            tokens.narrow(1, 1, 6).expect("y"),
        );
        let how = Forward {
            adapter: Some(&adapter),
            dropout: None,
            mode: Mode::Train,
        };
        let loss = || {
            causal_lm_loss(&model.forward(&inputs, how).expect("forward"), &targets).expect("loss")
        };
        let grads = loss().backward().expect("backward");

        let eps = 1e-6;
        let mut checked = 0;
        for (name, var) in adapter.named_vars() {
            let grad: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} got no gradient"))
                .flatten_all()
                .and_then(|g| g.to_vec1())
                .expect("grad");
            assert!(
                grad.iter().any(|g| *g != 0.0),
                "{name} has an all-zero gradient"
            );
            let original: Vec<f64> = var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("values");
            for (index, &analytic) in grad.iter().enumerate() {
                let mut shifted = original.clone();
                let mut at = |delta: f64| {
                    shifted[index] = original[index] + delta;
                    var.set(
                        &Tensor::from_vec(shifted.clone(), var.shape(), &Device::Cpu)
                            .expect("tensor"),
                    )
                    .expect("set");
                    scalar(&loss())
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                let tolerance = 1e-7 + 1e-4 * analytic.abs().max(numeric.abs());
                assert!(
                    (analytic - numeric).abs() <= tolerance,
                    "{name}[{index}]: backward {analytic:e}, finite differences {numeric:e}"
                );
                checked += 1;
            }
            var.set(&Tensor::from_vec(original, var.shape(), &Device::Cpu).expect("tensor"))
                .expect("restore");
        }
        assert_eq!(checked, adapter.parameter_count());
    }
}

fn synthetic_dataset(seq_len: usize) -> TextDataset {
    // A learnable pattern: each document counts upwards modulo the vocabulary.
    let documents: Vec<Vec<u32>> = (0..40)
        .map(|d| (0..30).map(|t| ((d + t) % 60) as u32 + 2).collect())
        .collect();
    TextDataset::pack(&documents, Some(1), seq_len, 0.1, 3).expect("dataset")
}

fn small_config() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.1,
            targets: Target::ALL.to_vec(),
        },
        steps: 20,
        batch_size: 4,
        seq_len: 16,
        learning_rate: 1e-2,
        warmup_steps: 3,
        eval_every: 5,
        checkpoint_every: 4,
        seed: 9,
        ..TrainConfig::default()
    }
}

/// Cancels once a given step is reported, like a person pressing Pause.
struct PauseAt(u64, CancelToken);

impl Progress for PauseAt {
    fn advance(&self, done: u64) {
        if done == self.0 {
            self.1.cancel();
        }
    }
}

fn adapter_values(adapter: &LoraAdapter) -> HashMap<String, Vec<f32>> {
    adapter
        .tensors()
        .expect("tensors")
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                t.flatten_all().and_then(|t| t.to_vec1()).expect("vec"),
            )
        })
        .collect()
}

#[test]
fn paused_and_resumed_training_matches_a_straight_run_bit_for_bit() {
    let cfg = Config::tiny();
    let model = tiny_model(&cfg, DType::F32);
    let data = synthetic_dataset(16);
    let config = small_config();
    let dir = tempfile::tempdir().expect("tempdir");

    let straight = train(
        &model,
        "base",
        &data,
        &config,
        &dir.path().join("a"),
        false,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("straight run");
    assert_eq!(straight.outcome, Outcome::Completed);
    assert!(
        straight.validation_loss < straight.base_validation_loss,
        "{straight:?}"
    );

    let run = dir.path().join("b");
    let cancel = CancelToken::new();
    let first = train(
        &model,
        "base",
        &data,
        &config,
        &run,
        false,
        &PauseAt(10, cancel.clone()),
        &cancel,
    )
    .expect("first half");
    assert_eq!((first.outcome, first.steps), (Outcome::Paused, 10));
    let again = train(
        &model,
        "base",
        &data,
        &config,
        &run,
        false,
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(
        matches!(again, Err(MlError::InvalidRequest(_))),
        "a second fresh start is refused"
    );
    let other_base = train(
        &model,
        "other",
        &data,
        &config,
        &run,
        true,
        &NoProgress,
        &CancelToken::new(),
    );
    assert!(matches!(other_base, Err(MlError::BadCheckpoint { .. })));

    let resumed = train(
        &model,
        "base",
        &data,
        &config,
        &run,
        true,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("resume");
    assert_eq!((resumed.outcome, resumed.steps), (Outcome::Completed, 20));
    assert_eq!(resumed.state.losses, straight.state.losses);
    assert_eq!(
        adapter_values(&resumed.adapter),
        adapter_values(&straight.adapter)
    );
}

/// A loss that turns NaN stops the run with a clear error and leaves the
/// last good checkpoint in place.
#[test]
fn divergence_stops_and_keeps_the_last_good_checkpoint() {
    let cfg = Config::tiny();
    let model = tiny_model(&cfg, DType::F32);
    let data = synthetic_dataset(16);
    let config = small_config();
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancelToken::new();
    let first = train(
        &model,
        "base",
        &data,
        &config,
        dir.path(),
        false,
        &PauseAt(8, cancel.clone()),
        &cancel,
    )
    .expect("healthy steps");
    assert_eq!(first.steps, 8);

    // The same run continued on weights poisoned with a NaN.
    let mut weights = random_weights(&cfg, 11, &Device::Cpu).expect("weights");
    let poisoned = Tensor::new(&[f32::NAN], &Device::Cpu)
        .and_then(|nan| nan.broadcast_as(cfg.hidden_size))
        .and_then(|t| t.contiguous())
        .expect("nan");
    weights.insert("model.norm.weight".into(), poisoned);
    let broken = Llama::new(
        &cfg,
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
    )
    .expect("model");
    match train(
        &broken,
        "base",
        &data,
        &config,
        dir.path(),
        true,
        &NoProgress,
        &CancelToken::new(),
    ) {
        Err(MlError::Diverged { step: 9, loss }) => assert!(loss.is_nan()),
        other => panic!("expected divergence at step 9, got {other:?}"),
    }
    let kept: hearth_ml::train::checkpoint::Checkpoint =
        hearth_ml::train::checkpoint::load(&hearth_ml::train::checkpoint_dir(dir.path()))
            .expect("checkpoint");
    assert_eq!(kept.state.step, 8);
    assert_eq!(kept.state.losses, first.state.losses);
}

/// 50 LoRA steps of the real stories260K model on Shakespeare lower its
/// held-out loss; the adapter survives a PEFT export and import.
#[test]
fn stories260k_learns_shakespeare_and_exports_to_peft() {
    let (Some(model_path), Some(text_path)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
    ) else {
        return;
    };
    let loaded = hearth_ml::load(&model_path, &Device::Cpu).expect("load");
    let text = std::fs::read_to_string(text_path).expect("text");
    let documents: Vec<Vec<u32>> = text
        .split("\n\n")
        .take(1500)
        .map(|speech| loaded.tokenizer.encode(speech, false).expect("encode"))
        .collect();
    let config = TrainConfig {
        lora: LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        },
        steps: 50,
        batch_size: 8,
        seq_len: 64,
        learning_rate: 5e-3,
        warmup_steps: 5,
        eval_every: 50,
        checkpoint_every: 50,
        ..TrainConfig::default()
    };
    let data = TextDataset::pack(
        &documents,
        loaded.tokenizer.separator(),
        config.seq_len,
        0.1,
        config.seed,
    )
    .expect("pack");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = train(
        &loaded.model,
        &loaded.info.sha256,
        &data,
        &config,
        &dir.path().join("run"),
        false,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("train");
    let (base, after) = (
        report.base_validation_loss.expect("base"),
        report.validation_loss.expect("after"),
    );
    assert!(after < base - 0.1, "held-out loss {base} -> {after}");

    let exported = dir.path().join("peft");
    let files = hearth_ml::peft::save(
        &report.adapter,
        &exported,
        &loaded.info,
        Some("lineage-hash"),
    )
    .expect("export");
    assert_eq!(
        files.base_model_sha256.as_deref(),
        Some(loaded.info.sha256.as_str())
    );
    assert_eq!(files.lineage.as_deref(), Some("lineage-hash"));
    let config_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(exported.join("adapter_config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(config_json["peft_type"], "LORA");
    assert_eq!(config_json["r"], 8);
    let (imported, _) = hearth_ml::peft::load(&exported, &loaded).expect("import");
    assert_eq!(adapter_values(&imported), adapter_values(&report.adapter));
    let sequences: Vec<&Vec<u32>> = data.validation().iter().collect();
    let reloaded = hearth_ml::train::mean_loss(&loaded.model, Some(&imported), &sequences[..8], 8)
        .expect("loss");
    let original =
        hearth_ml::train::mean_loss(&loaded.model, Some(&report.adapter), &sequences[..8], 8)
            .expect("loss");
    assert_eq!(reloaded, original);

    // The same adapter refused by another base model.
    let mut other = loaded.clone();
    other.info.sha256 = "0".repeat(64);
    assert!(matches!(
        hearth_ml::peft::load(&exported, &other),
        Err(MlError::AdapterMismatch(_))
    ));
    // A truncated weights file is a clear error.
    let weights = exported.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights).expect("read");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");
    assert!(matches!(
        hearth_ml::peft::load(&exported, &loaded),
        Err(MlError::BadAdapter { .. })
    ));

    // A prompt longer than the context is refused, not truncated silently.
    let long = vec![1u32; loaded.model.max_sequence() + 1];
    let sampling = hearth_ml::generate::Sampling::default();
    assert!(matches!(
        hearth_ml::generate::generate(&loaded, None, &long, &sampling, |_| {}),
        Err(MlError::InvalidRequest(_))
    ));
}
