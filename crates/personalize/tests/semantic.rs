//! Ask's semantic search on a real library with the real sentence-embedding
//! model: `similar notes to "..."` ranks the note that means it first, the
//! notes' vectors are kept in the library and reused, and without the
//! model a semantic query fails saying how to fetch it. Needs the fetched
//! model (`scripts/fetch-models.sh`): skipped with a message without it,
//! a failure under CI.

use hearth_personalize::ask::{AskRequest, LibrarySemanticIndex, NaiveDate, Value, ask};
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::{ImportOptions, Library};

const NOTES: &[(&str, &str)] = &[
    (
        "taxes.txt",
        "Receipts and the P60 for this year's tax return are in the blue folder; the deadline is the end of January.",
    ),
    (
        "beach.txt",
        "Spent the afternoon on the sand at Porthcurno, swimming in the waves while Rex chased gulls.",
    ),
    (
        "cooking.md",
        "Risotto: soften the onion in butter, toast the rice, add hot stock a ladle at a time and stir.",
    ),
    (
        "car.txt",
        "The garage says the brake pads need replacing before the MOT in March.",
    ),
];

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")
}

fn library(dir: &std::path::Path) -> Library {
    let input = dir.join("notes");
    std::fs::create_dir(&input).expect("mkdir");
    for (name, text) in NOTES {
        std::fs::write(input.join(name), text).expect("write");
    }
    let mut library = Library::open(dir.join("library")).expect("open");
    library
        .import(
            &[input],
            &ImportOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    library
}

fn model_present() -> bool {
    hearth_testdata::fetched_model("all-minilm-l6-v2/model.safetensors").is_some()
}

fn similar(library: &mut Library, index: &LibrarySemanticIndex, query: &str) -> Vec<(String, f32)> {
    let answer = ask(
        library,
        &AskRequest {
            question: None,
            query: query.to_owned(),
            today: today(),
        },
        Some(index),
    )
    .unwrap_or_else(|e| panic!("{query}: {e}"));
    assert!(matches!(answer.value, Value::Items { .. }));
    answer
        .sources
        .iter()
        .map(|s| {
            let name = std::path::Path::new(&s.path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, s.score.expect("semantic results carry a score"))
        })
        .collect()
}

#[test]
fn semantic_queries_rank_the_note_that_means_it_first() {
    if !model_present() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut library = library(dir.path());
    let index = LibrarySemanticIndex::load(library.root(), None, hearth_ml::candle::Device::Cpu)
        .expect("model loads");
    assert!(index.model_present());

    for (query, expected) in [
        (r#"similar notes to "taxes""#, "taxes.txt"),
        (r#"similar notes to "a day at the seaside""#, "beach.txt"),
        (
            r#"similar notes to "what to cook for dinner""#,
            "cooking.md",
        ),
        (r#"similar items to "car repairs" limit 2"#, "car.txt"),
    ] {
        let ranked = similar(&mut library, &index, query);
        eprintln!("{query}: {ranked:?}");
        assert_eq!(ranked[0].0, expected, "{query}: {ranked:?}");
        assert!(
            ranked.windows(2).all(|w| w[0].1 >= w[1].1),
            "best first: {ranked:?}"
        );
    }
    let stats = index.stats();
    // Embedded once, on the first search; every later one read them back.
    assert_eq!(stats.notes_embedded, NOTES.len());
    assert_eq!(stats.notes_cached, 3 * NOTES.len());
    eprintln!(
        "embedded {} notes in {:.1} ms ({:.1} ms per note), model loaded in {:.2} s",
        stats.notes_embedded,
        stats.embed_seconds * 1e3,
        stats.embed_seconds * 1e3 / stats.notes_embedded as f64,
        stats.load_seconds
    );

    // A new index (a later `hearth ask`) finds the vectors in the library.
    let later = LibrarySemanticIndex::new(library.root(), None, hearth_ml::candle::Device::Cpu);
    let ranked = similar(
        &mut library,
        &later,
        r#"similar notes to "income tax" limit 1"#,
    );
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].0, "taxes.txt");
    assert_eq!(later.stats().notes_embedded, 0);
    assert_eq!(later.stats().notes_cached, NOTES.len());
}

#[test]
fn without_the_model_a_semantic_query_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut library = library(dir.path());
    let empty = dir.path().join("no-model");
    std::fs::create_dir(&empty).expect("mkdir");
    let index = LibrarySemanticIndex::new(
        library.root(),
        empty.to_str(),
        hearth_ml::candle::Device::Cpu,
    );
    assert!(!index.model_present());
    let err = ask(
        &mut library,
        &AskRequest {
            question: None,
            query: r#"similar notes to "taxes""#.into(),
            today: today(),
        },
        Some(&index),
    )
    .expect_err("no model");
    let message = err.to_string();
    assert!(
        message.contains("semantic search needs the sentence-embedding model")
            && message.contains("scripts/fetch-models.sh"),
        "{message}"
    );
    // Queries that are not semantic never touch the model.
    let answer = ask(
        &mut library,
        &AskRequest {
            question: None,
            query: "count notes".into(),
            today: today(),
        },
        Some(&index),
    )
    .expect("count");
    assert_eq!(
        answer.value,
        Value::Number {
            value: NOTES.len() as i64
        }
    );
}

#[test]
fn photos_are_ranked_through_a_label_close_in_meaning() {
    if !model_present() {
        return;
    }
    let Some(photos) = hearth_testdata::shared("photos") else {
        return;
    };
    let photo_model =
        match hearth_personalize::photos::load_photo_model(None, &hearth_ml::candle::Device::Cpu) {
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
    let mut library = Library::open(dir.path().join("library")).expect("open");
    library
        .import(
            &[photos],
            &ImportOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    let items = library
        .items(&hearth_store::ItemFilter::default())
        .expect("items");
    let id = |name: &str| {
        items
            .iter()
            .find(|i| i.path.ends_with(name))
            .expect(name)
            .id
    };
    let index = LibrarySemanticIndex::load(library.root(), None, hearth_ml::candle::Device::Cpu)
        .expect("model loads");
    let ask_photos = |library: &mut Library, query: &str| {
        ask(
            library,
            &AskRequest {
                question: None,
                query: query.to_owned(),
                today: today(),
            },
            Some(&index),
        )
    };

    // Before the photos have photo-model embeddings, they cannot be ranked.
    let err = ask_photos(&mut library, r#"similar photos to "outer space""#)
        .expect_err("no photo embeddings yet");
    assert!(err.to_string().contains("hearth photos embed"), "{err}");

    hearth_personalize::photos::embed_photos(
        &mut library,
        &photo_model,
        4,
        &NoProgress,
        &CancelToken::new(),
    )
    .expect("embed photos");
    library
        .add_label(id("hubble_deep_field.jpg"), "space")
        .expect("label");
    library.add_label(id("chelsea.png"), "cat").expect("label");

    // "outer space" is close to the label "space": the labelled photo
    // comes first, every photo is ranked.
    let answer = ask_photos(&mut library, r#"similar photos to "outer space""#).expect("ranks");
    let ranked: Vec<&str> = answer.sources.iter().map(|s| s.path.as_str()).collect();
    eprintln!("outer space: {ranked:?}");
    assert!(ranked[0].ends_with("hubble_deep_field.jpg"), "{ranked:?}");
    assert_eq!(ranked.len(), items.len());

    // Nothing the person labelled is close to taxes: refused, with why.
    let err = ask_photos(&mut library, r#"similar photos to "tax forms""#)
        .expect_err("no label is close");
    assert!(
        err.to_string().contains("none is close to the text"),
        "{err}"
    );
}
