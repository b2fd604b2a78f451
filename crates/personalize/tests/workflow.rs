//! The whole text workflow on a real library and the real stories260K
//! model: import notes, train, pause, resume, evaluate, export, import.

use hearth_ledger::Membership;
use hearth_ml::DeviceChoice;
use hearth_ml::lora::{LoraConfig, Target};
use hearth_ml::train::{Outcome, TrainConfig};
use hearth_personalize::{
    PersonalizeError, TextTraining, evaluate, export_adapter, import_adapter,
    lineage::{adapter_lineage, adapters_trained_on, prove_item},
    resume_text, train_text,
};
use hearth_progress::{CancelToken, NoProgress, Progress};
use hearth_store::{ImportOptions, Library, RunStatus};

struct PauseAt(u64, CancelToken);

impl Progress for PauseAt {
    fn advance(&self, done: u64) {
        if done == self.0 {
            self.1.cancel();
        }
    }
}

#[test]
fn train_pause_resume_evaluate_export_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(model), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shakespeare_notes(dir.path(), 400),
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

    let request = TextTraining {
        model: Some(model.display().to_string()),
        label: None,
        config: TrainConfig {
            lora: LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.0,
                targets: vec![Target::QProj, Target::VProj, Target::UpProj],
            },
            steps: 16,
            batch_size: 4,
            seq_len: 64,
            learning_rate: 5e-3,
            warmup_steps: 2,
            eval_every: 8,
            checkpoint_every: 4,
            ..TrainConfig::default()
        },
        device: DeviceChoice::Cpu,
    };
    let cancel = CancelToken::new();
    let paused =
        train_text(&mut library, &request, &PauseAt(6, cancel.clone()), &cancel).expect("train");
    assert_eq!(
        (paused.outcome, paused.steps, paused.adapter_id),
        (Outcome::Paused, 6, None)
    );
    assert_eq!(
        library.run(paused.run_id).expect("run").status,
        RunStatus::Paused
    );
    assert!(paused.items > 300);

    let done = resume_text(
        &mut library,
        paused.run_id,
        DeviceChoice::Cpu,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("resume");
    assert_eq!((done.outcome, done.steps), (Outcome::Completed, 16));
    let adapter = done.adapter_id.expect("adapter recorded");
    let run = library.run(done.run_id).expect("run");
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        library.run_item_hashes(run.id).expect("items").len(),
        done.items
    );
    assert!(matches!(
        resume_text(
            &mut library,
            run.id,
            DeviceChoice::Cpu,
            &NoProgress,
            &CancelToken::new()
        ),
        Err(PersonalizeError::NotResumable { .. })
    ));

    let report =
        evaluate(&library, None, Some(adapter), None, DeviceChoice::Cpu).expect("evaluate");
    let adapter_loss = report.adapter_loss.expect("adapter loss");
    assert!(adapter_loss < report.base_loss, "{report:?}");
    // Training scores a capped sample of the held-out split; evaluation all of it.
    assert!(report.sequences >= 32.min(report.sequences));
    assert!(done.validation_loss < done.base_validation_loss);

    let exported = dir.path().join("exported");
    export_adapter(&library, adapter, &exported).expect("export");
    assert!(exported.join("adapter_model.safetensors").is_file());
    let again = import_adapter(&mut library, &exported, None, None).expect("import");
    assert_eq!(again, adapter, "identical weights are one adapter");
    assert_eq!(library.adapters().expect("adapters").len(), 1);

    // Lineage: the chain from items to the adapter, and proofs about it.
    let lineage = adapter_lineage(&library, adapter).expect("lineage");
    let run = lineage.run.as_ref().expect("run");
    assert_eq!(lineage.lineage_matches, Some(true));
    let root = lineage.items_root.expect("root");
    assert_eq!(root.count, run.item_count);
    assert_eq!(lineage.items.len() as u64, run.item_count);
    let trained = &lineage.items[3].sha256;
    let proof = prove_item(&library, adapter, trained).expect("prove");
    assert_eq!(proof.membership, Membership::Present);
    let absent = prove_item(&library, adapter, &"0".repeat(64)).expect("prove absence");
    assert_ne!(absent.membership, Membership::Present);
    assert_eq!(
        adapters_trained_on(&library, trained)
            .expect("trained on")
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        vec![adapter]
    );

    // The lineage survives export and import into another library: the
    // file still carries it, and an import back here finds the run by it.
    let mut other = Library::open(dir.path().join("other")).expect("other library");
    let imported = import_adapter(&mut other, &exported, None, None).expect("import elsewhere");
    let elsewhere = adapter_lineage(&other, imported).expect("lineage elsewhere");
    assert_eq!(elsewhere.file_lineage, lineage.file_lineage);
    assert!(elsewhere.run.is_none(), "that library has no such run");

    let none = TextTraining {
        label: Some("no such label".into()),
        ..request
    };
    assert!(matches!(
        train_text(&mut library, &none, &NoProgress, &CancelToken::new()),
        Err(PersonalizeError::NoData(_))
    ));
}
