//! The photo workflow on real photos and the real EfficientNet-Lite0:
//! embed (a photo that stopped decoding is noted, not fatal), learn labels,
//! feedback changes the next training set, look-alikes.

use hearth_ml::candle::Device;
use hearth_ml::vision::finetune::FineTuneConfig;
use hearth_personalize::PersonalizeError;
use hearth_personalize::photos::{
    PhotoTraining, active_photo_model, ask, embed_photos, load_photo_model, similar, suggest_tags,
    train_tagger,
};
use hearth_progress::{CancelToken, NoProgress};
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
    // A run killed mid-way (kill -9) is left saying "running"; the next
    // photo run closes it as interrupted instead of leaving it resumable.
    library
        .update_run(
            first.run_id,
            &RunUpdate {
                status: Some(RunStatus::Running),
                ..RunUpdate::default()
            },
        )
        .expect("simulate a killed run");

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

    let neighbours = similar(&library, &model.sha256, id("chelsea.png"), 3).expect("similar");
    assert_eq!(neighbours.len(), 3);
    assert!(
        neighbours.windows(2).all(|w| w[0].2 >= w[1].2),
        "most similar first"
    );
    assert!(neighbours.iter().all(|n| n.0 != id("chelsea.png")));

    // Fine-tuning the last block: a run with the photos it learned from,
    // every photo embedded again with the tuned network, which becomes the
    // active one (and loads back from the library).
    let tuned = train_tagger(
        &mut library,
        &model,
        &PhotoTraining {
            fine_tune: Some(FineTuneConfig {
                blocks: 1,
                views: 2,
                steps: 4,
                batch: 8,
                ..FineTuneConfig::default()
            }),
            ..PhotoTraining::default()
        },
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("fine-tune");
    let killed = library.run(first.run_id).expect("run");
    assert_eq!(killed.status, RunStatus::Failed);
    assert!(
        killed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("interrupted"))
    );
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
