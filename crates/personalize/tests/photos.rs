//! The photo workflow on real photos and the real EfficientNet-Lite0:
//! embed (a photo that stopped decoding is noted, not fatal), learn labels,
//! feedback changes the next training set, look-alikes.

use hearth_ml::candle::Device;
use hearth_ml::vision::finetune::FineTuneConfig;
use hearth_personalize::PersonalizeError;
use hearth_personalize::lineage::{photo_tagger_lineage, photo_taggers_trained_on};
use hearth_personalize::photos::{
    PhotoTraining, active_photo_model, ask, embed_photos, load_photo_model, resume_tagger, similar,
    suggest_tags, train_tagger,
};
use hearth_progress::{CancelToken, NoProgress, Progress};
use hearth_store::{ImportOptions, ItemFilter, Library, RunStatus, RunUpdate, Verdict};

#[test]
fn embed_label_train_feedback_similar() {
    let Some(photos) = hearth_testdata::shared("photos") else {
        return;
    };
    let model = match load_photo_model(None, &Device::Cpu) {
        Ok(model) => model,
        Err(error) => {
            assert!(
                !hearth_testdata::ci(),
                "CI=true but the photo model is missing: {error}"
            );
            eprintln!("skipping: {error}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("photos");
    std::fs::create_dir(&input).expect("mkdir");
    for entry in std::fs::read_dir(&photos).expect("read_dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, input.join(path.file_name().expect("name"))).expect("copy");
    }
    let mut library = Library::open(dir.path().join("library")).expect("open");
    library
        .import(
            std::slice::from_ref(&input),
            &ImportOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    let items = library.items(&ItemFilter::default()).expect("items");
    let id = |name: &str| {
        items
            .iter()
            .find(|i| i.path.ends_with(name))
            .expect(name)
            .id
    };

    // A photo that no longer decodes after import is noted and skipped.
    std::fs::write(input.join("camera.png"), b"\x89PNG\r\n\x1a\n broken").expect("corrupt");
    let summary =
        embed_photos(&mut library, &model, 3, &NoProgress, &CancelToken::new()).expect("embed");
    assert_eq!(
        (summary.embedded, summary.failed, summary.cached),
        (7, 1, 0)
    );
    let again = embed_photos(&mut library, &model, 3, &NoProgress, &CancelToken::new())
        .expect("embed again");
    assert_eq!(
        (again.embedded, again.cached),
        (0, 8),
        "embeddings are cached"
    );
    assert_eq!(
        library.embedding_failures(&model.sha256).expect("failures")[0].0,
        id("camera.png")
    );

    assert!(matches!(
        train_tagger(&mut library, &model, &PhotoTraining::default(), &NoProgress, &CancelToken::new()),
        Err(PersonalizeError::NoData(message)) if message.contains("no labelled photos")
    ));
    library
        .add_label(id("chelsea.png"), "animal")
        .expect("label");
    assert!(matches!(
        train_tagger(&mut library, &model, &PhotoTraining::default(), &NoProgress, &CancelToken::new()),
        Err(PersonalizeError::NoData(message)) if message.contains("fewer than 2")
    ));
    library.add_label(id("horse.png"), "animal").expect("label");
    library
        .add_label(id("coffee.png"), "things")
        .expect("label");
    library
        .add_label(id("rocket.jpg"), "things")
        .expect("label");
    let first = train_tagger(
        &mut library,
        &model,
        &PhotoTraining::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("train");
    assert_eq!(first.labels, vec!["animal", "things"]);
    assert_eq!(first.examples, 4);

    // A rejection is a new negative example; an acceptance a new positive.
    library
        .record_verdict(id("motorcycle_left.png"), "things", Verdict::Rejected)
        .expect("reject");
    library
        .record_verdict(id("astronaut.png"), "things", Verdict::Accepted)
        .expect("accept");
    let second = train_tagger(
        &mut library,
        &model,
        &PhotoTraining::default(),
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("retrain");
    assert_eq!(second.examples, 6);
    // A run killed mid-way (kill -9) is left saying "running", and
    // resumes from what it saved when it started: the same four photos,
    // not the verdicts given since.
    library
        .update_run(
            first.run_id,
            &RunUpdate {
                status: Some(RunStatus::Running),
                ..RunUpdate::default()
            },
        )
        .expect("simulate a killed run");
    let resumed = resume_tagger(
        &mut library,
        &model,
        first.run_id,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("resume the killed run");
    assert_eq!((resumed.run_id, resumed.examples), (first.run_id, 4));
    assert_eq!(
        library.run(first.run_id).expect("run").status,
        RunStatus::Completed
    );
    assert!(matches!(
        resume_tagger(
            &mut library,
            &model,
            first.run_id,
            &NoProgress,
            &CancelToken::new()
        ),
        Err(PersonalizeError::NotResumable { .. })
    ));

    let suggestions = suggest_tags(&library, &model.sha256, false).expect("tag");
    let unlabelled: Vec<i64> = suggestions.iter().map(|s| s.item_id).collect();
    assert!(unlabelled.contains(&id("hubble_deep_field.jpg")));
    assert!(
        !unlabelled.contains(&id("chelsea.png")),
        "labelled photos are not asked about"
    );
    assert!(suggestions.iter().all(|s| {
        s.suggestions.len() == 2
            && s.suggestions
                .iter()
                .all(|x| (0.0..=1.0).contains(&x.confidence))
    }));
    assert_eq!(ask(&library, &model.sha256, 1).expect("ask").len(), 1);

    // Each run's tagger is recorded with its own head file; the one
    // finished last (the resumed first run) is the one tagging uses.
    let taggers = library.photo_taggers().expect("taggers");
    assert_eq!(
        taggers.iter().map(|t| t.run_id).collect::<Vec<_>>(),
        [first.run_id, second.run_id]
    );
    assert_eq!(
        library
            .latest_photo_tagger(&model.sha256)
            .expect("latest")
            .map(|t| t.id),
        Some(resumed.tagger_id)
    );
    let lineage = photo_tagger_lineage(&library, second.tagger_id).expect("lineage");
    assert!(lineage.file_matches, "{lineage:?}");
    assert_eq!(lineage.run.id, second.run_id);
    assert_eq!(lineage.items_root.count, 6);
    assert!(
        lineage.items.iter().all(|item| item.item.is_some()),
        "every photo it learned from is still in the library"
    );
    assert_eq!(
        photo_taggers_trained_on(
            &library,
            &library.item(id("astronaut.png")).expect("item").sha256
        )
        .expect("trained on")
        .iter()
        .map(|t| t.id)
        .collect::<Vec<_>>(),
        [second.tagger_id],
        "the accepted photo taught the second run only"
    );
    // A head file changed after training no longer matches its record.
    std::fs::write(library.root().join(&lineage.tagger.path), b"{}").expect("tamper");
    let tampered = photo_tagger_lineage(&library, second.tagger_id).expect("lineage");
    assert!(!tampered.file_matches);
    assert_ne!(tampered.file_sha256, None);

    let neighbours = similar(&library, &model.sha256, id("chelsea.png"), 3).expect("similar");
    assert_eq!(neighbours.len(), 3);
    assert!(
        neighbours.windows(2).all(|w| w[0].2 >= w[1].2),
        "most similar first"
    );
    assert!(neighbours.iter().all(|n| n.0 != id("chelsea.png")));

    // Fine-tuning the last block: a run with the photos it learned from,
    // every photo embedded again with the tuned network, which becomes the
    // active one (and loads back from the library). Cancelled mid-way, it
    // pauses at a checkpoint and resumes from there.
    let fine_tuning = PhotoTraining {
        fine_tune: Some(FineTuneConfig {
            blocks: 1,
            views: 2,
            steps: 4,
            batch: 8,
            checkpoint_every: 2,
            ..FineTuneConfig::default()
        }),
        ..PhotoTraining::default()
    };
    let pausing = CancelAtStep::new("Fine-tuning", 3);
    let paused = train_tagger(
        &mut library,
        &model,
        &fine_tuning,
        &pausing,
        &pausing.cancel,
    );
    let Err(PersonalizeError::Paused {
        run_id,
        steps_done: 3,
        total_steps: 4,
    }) = paused
    else {
        panic!("expected a pause at step 3, got {paused:?}");
    };
    let record = library.run(run_id).expect("run");
    assert_eq!((record.status, record.steps_done), (RunStatus::Paused, 3));
    assert_eq!(
        active_photo_model(&library, &Device::Cpu)
            .expect("active")
            .sha256,
        model.sha256,
        "the tagger from before stays active while a run is paused"
    );
    // Stopped again while embedding every photo with the tuned network:
    // the tail is kept, and the next resume only embeds what is left.
    let embedding = CancelAtStep::new("Embedding", 0);
    assert!(matches!(
        resume_tagger(&mut library, &model, run_id, &embedding, &embedding.cancel),
        Err(PersonalizeError::Paused { steps_done: 4, .. })
    ));
    assert!(matches!(
        hearth_personalize::resume_text(
            &mut library,
            run_id,
            hearth_ml::DeviceChoice::Cpu,
            &NoProgress,
            &CancelToken::new()
        ),
        Err(PersonalizeError::Invalid(message)) if message.contains("not a text run")
    ));
    let tuned = resume_tagger(
        &mut library,
        &model,
        run_id,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("fine-tune resumed");
    assert_eq!(tuned.run_id, run_id);
    assert_ne!(tuned.model_sha256, model.sha256);
    assert!(tuned.fine_tune_loss.is_some());
    let run = library.run(tuned.run_id).expect("run");
    assert_eq!((run.kind.as_str(), run.item_count), ("photos", 6));
    assert_eq!(
        library.run_item_hashes(tuned.run_id).expect("items").len(),
        6
    );
    let active = active_photo_model(&library, &Device::Cpu).expect("active");
    assert_eq!(active.sha256, tuned.model_sha256);
    let tagged = suggest_tags(&library, &active.sha256, false).expect("tag with tuned");
    assert_eq!(tagged.len(), suggestions.len());
}

/// Cancels once the task named `task` reaches `step`.
struct CancelAtStep {
    task: &'static str,
    step: u64,
    cancel: CancelToken,
    current: std::sync::Mutex<String>,
}

impl CancelAtStep {
    fn new(task: &'static str, step: u64) -> Self {
        CancelAtStep {
            task,
            step,
            cancel: CancelToken::new(),
            current: std::sync::Mutex::new(String::new()),
        }
    }
}

impl Progress for CancelAtStep {
    fn begin(&self, task: &str, _total: Option<u64>) {
        *self.current.lock().expect("lock") = task.to_owned();
        if task == self.task && self.step == 0 {
            self.cancel.cancel();
        }
    }

    fn advance(&self, done: u64) {
        if *self.current.lock().expect("lock") == self.task && done >= self.step {
            self.cancel.cancel();
        }
    }
}
