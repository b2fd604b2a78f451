//! A federated round's local training on the tiny real model: it starts
//! from the global adapter, returns exactly the change in the federation's
//! order, and records a `federated` run whose parent is that global.

use std::collections::HashMap;

use hearth_ml::DeviceChoice;
use hearth_ml::candle::{Device, Tensor};
use hearth_ml::lora::{LoraConfig, Target};
use hearth_ml::train::TrainConfig;
use hearth_personalize::PersonalizeError;
use hearth_personalize::federated::{RoundTraining, adapter_shape, train_round};
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::{ImportOptions, Library};

#[test]
fn a_round_trains_from_the_global_adapter_and_returns_its_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(model), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shakespeare_notes(dir.path(), 60),
    ) else {
        return;
    };
    let mut library = Library::open(dir.path().join("library")).expect("open");
    library
        .import(
            &[notes],
            &ImportOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    let request = RoundTraining {
        model: Some(model.display().to_string()),
        label: None,
        config: TrainConfig {
            lora: LoraConfig {
                rank: 2,
                alpha: 4.0,
                dropout: 0.0,
                targets: vec![Target::QProj, Target::VProj],
            },
            steps: 3,
            batch_size: 2,
            seq_len: 32,
            learning_rate: 1e-2,
            warmup_steps: 0,
            ..TrainConfig::default()
        },
        device: DeviceChoice::Cpu,
    };
    let loaded = hearth_ml::load(&model, &Device::Cpu).expect("load");
    let order = adapter_shape(loaded.model.config(), &request.config.lora).expect("shape");
    // A global adapter with nonzero B, as after a few rounds.
    let global: HashMap<String, Tensor> = order
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|j| ((i * 31 + j) % 7) as f32 * 0.01 - 0.03)
                .collect();
            (
                name.clone(),
                Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).expect("tensor"),
            )
        })
        .collect();
    let update = train_round(
        &mut library,
        &request,
        &global,
        &"c".repeat(64),
        &order,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("round");
    let total: usize = order.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(update.delta.len(), total);
    assert!(update.delta.iter().all(|d| d.is_finite()));
    assert!(
        update.delta.iter().any(|d| *d != 0.0),
        "training changed something"
    );
    let run = library.run(update.run_id).expect("run");
    assert_eq!(run.kind, "federated");
    assert_eq!(run.parent_sha256.as_deref(), Some("c".repeat(64).as_str()));
    assert_eq!(run.item_count as usize, update.items);

    // A global adapter of another shape is refused before any training.
    let mut wrong = global.clone();
    let first = &order[0].0;
    wrong.insert(
        first.clone(),
        Tensor::zeros((1, 1), hearth_ml::candle::DType::F32, &Device::Cpu).expect("zeros"),
    );
    assert!(matches!(
        train_round(
            &mut library,
            &request,
            &wrong,
            &"c".repeat(64),
            &order,
            &NoProgress,
            &CancelToken::new()
        ),
        Err(PersonalizeError::Inconsistent(_))
    ));
}
