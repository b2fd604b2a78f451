//! Asks over a real library built by the store's own import: photos with
//! EXIF capture dates and labels, notes searched with FTS5, a training run
//! and its adapter for lineage.

use std::io::Cursor;
use std::path::Path;

use chrono::NaiveDate;
use hearth_ask::{AskDb, AskError, CheckError, Outcome, Value};
use hearth_store::{
    CancelToken, ImportOptions, ItemFilter, Library, NewAdapter, NewRun, NoProgress, RunKind,
};
use image::{ImageFormat, RgbImage};

/// A JPEG whose EXIF says it was taken at `taken` ("2023:06:15 10:00:00").
fn jpeg_taken(seed: u8, taken: &str) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut jpeg = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .expect("encode");
    let mut writer = exif::experimental::Writer::new();
    let field = Field {
        tag: Tag::DateTimeOriginal,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![taken.as_bytes().to_vec()]),
    };
    writer.push_field(&field);
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("exif");
    let payload: Vec<u8> = b"Exif\0\0"
        .iter()
        .copied()
        .chain(tiff.into_inner())
        .collect();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn png(seed: u8) -> Vec<u8> {
    let image = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, seed]));
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encode");
    bytes
}

/// Photos (name, EXIF time, label) and notes, imported for real.
fn library(dir: &Path) -> Library {
    let input = dir.join("input");
    std::fs::create_dir(&input).expect("mkdir");
    let photos = [
        ("rex-june.jpg", "2023:06:15 10:00:00", "Rex"),
        ("rex-august.jpg", "2023:08:31 23:59:59", "Rex"),
        ("rex-leap.jpg", "2024:02:29 12:00:00", "Rex"),
        ("rex-new-year.jpg", "2024:01:01 00:00:01", "Rex"),
        ("max-july.jpg", "2023:07:04 09:00:00", "Max"),
        ("beach.jpg", "2022:12:31 18:00:00", "beach"),
    ];
    for (i, (name, taken, _)) in photos.iter().enumerate() {
        std::fs::write(input.join(name), jpeg_taken(i as u8, taken)).expect("write");
    }
    // A photo of Rex with no capture time: counted, never dated.
    std::fs::write(input.join("rex-undated.png"), png(9)).expect("write");
    std::fs::write(
        input.join("lisbon.md"),
        "Trip to Lisbon: trams, pastéis de nata.",
    )
    .expect("write");
    std::fs::write(input.join("porto.txt"), "From Lisbon by train to Porto.").expect("write");
    std::fs::write(
        input.join("taxes.txt"),
        "Tax return due in April; receipts in the blue box.",
    )
    .expect("write");
    let mut library = Library::open(dir.join("library")).expect("open");
    let report = library
        .import(
            std::slice::from_ref(&input),
            &ImportOptions::default(),
            &NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    assert_eq!((report.imported, report.failed), (10, 0), "{report:#?}");
    let by_name = |library: &Library, name: &str| {
        library
            .items(&ItemFilter::default())
            .expect("items")
            .into_iter()
            .find(|item| item.path.ends_with(name))
            .expect("imported")
    };
    for (name, _, label) in photos {
        let id = by_name(&library, name).id;
        library.add_label(id, label).expect("label");
    }
    let undated = by_name(&library, "rex-undated.png").id;
    library.add_label(undated, "Rex").expect("label");
    // A text run over two notes and one note since removed, and its adapter.
    let lisbon = by_name(&library, "lisbon.md").sha256;
    let taxes = by_name(&library, "taxes.txt").sha256;
    let run = library
        .create_run(&NewRun {
            kind: RunKind::Text,
            base_model: "stories260k".into(),
            base_model_sha256: "b".repeat(64),
            config: "{}".into(),
            label: None,
            item_sha256s: vec![lisbon, taxes, "f".repeat(64)],
            token_count: 100,
            device: "cpu".into(),
            parent_sha256: None,
        })
        .expect("run");
    library
        .add_adapter(&NewAdapter {
            name: "notes".into(),
            run_id: Some(run),
            imported: false,
            base_model: Some("stories260k".into()),
            base_model_sha256: Some("b".repeat(64)),
            sha256: "a".repeat(64),
            rank: 8,
            alpha: 16.0,
            targets: vec!["q_proj".into()],
            path: "adapters/notes".into(),
        })
        .expect("adapter");
    library
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")
}

fn ask(db: &AskDb, query: &str) -> Outcome {
    db.ask(query, today(), None)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn number(db: &AskDb, query: &str) -> i64 {
    match ask(db, query).value {
        Value::Number { value } => value,
        other => panic!("{query}: {other:?}"),
    }
}

fn paths(outcome: &Outcome) -> Vec<String> {
    outcome
        .sources
        .iter()
        .map(|item| {
            Path::new(&item.path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn asks_over_a_real_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _library = library(dir.path());
    let db = AskDb::open(&dir.path().join("library")).expect("read-only");

    // Counting, with the library's spelling of the label and the days of
    // "last summer" (asked on 2024-03-01) shown with the answer.
    let outcome = ask(&db, r#"count photos label "rex" in last_summer"#);
    assert_eq!(outcome.value, Value::Number { value: 2 });
    assert_eq!(
        outcome.canonical,
        r#"count photos label "Rex" in last_summer"#
    );
    assert_eq!(
        outcome.ranges[0].span.to_string(),
        "2023-06-01 to 2023-08-31"
    );
    assert_eq!(paths(&outcome), ["rex-june.jpg", "rex-august.jpg"]);
    assert_eq!(number(&db, r#"count photos label "Rex""#), 5);
    assert_eq!(number(&db, "count items"), 10);
    assert_eq!(number(&db, "count notes"), 3);
    // Last winter ends on the leap day; its photos include New Year's.
    assert_eq!(number(&db, r#"count photos label "Rex" in last_winter"#), 2);
    assert_eq!(number(&db, "count photos in 2023"), 3);
    assert_eq!(number(&db, "count photos in 2022-12"), 1);
    assert_eq!(
        number(&db, "count photos in between 2023-12-31 and 2024-01-01"),
        1
    );
    assert_eq!(number(&db, "count photos in 2024-02-29"), 1);

    // Arithmetic by code: first and last dated photo of Rex (the undated
    // one never counts as either), and differences of counts.
    let outcome = ask(
        &db,
        r#"days_between(first photos label "Rex", last photos label "Rex")"#,
    );
    // 2023-06-15 to 2024-02-29.
    assert_eq!(outcome.value, Value::Number { value: 259 });
    assert_eq!(paths(&outcome), ["rex-june.jpg", "rex-leap.jpg"]);
    assert_eq!(
        number(
            &db,
            r#"minus(count photos label "Max", count photos label "Rex")"#
        ),
        -4
    );
    assert_eq!(number(&db, "plus(count photos, count notes)"), 10);
    assert_eq!(
        number(&db, r#"days_between(first photos label "Rex", today)"#),
        260
    );
    assert_eq!(
        ask(&db, r#"first photos label "Rex""#).value,
        Value::Date {
            date: NaiveDate::from_ymd_opt(2023, 6, 15).expect("date")
        }
    );
    assert!(matches!(
        ask(&db, r#"first photos label "Rex" in this_summer"#).value,
        Value::Unknown { .. }
    ));

    // Full-text search over notes, stemmed and diacritic-folded; FTS5
    // operators in the words are only words.
    let outcome = ask(&db, r#"list notes text "lisbon""#);
    assert_eq!(outcome.value, Value::Items { total: 2 });
    assert_eq!(paths(&outcome), ["lisbon.md", "porto.txt"]);
    assert_eq!(number(&db, r#"count notes text "tram pasteis""#), 1);
    assert_eq!(number(&db, r#"count notes text "receipt""#), 1);
    assert_eq!(number(&db, r#"count notes text "lisbon OR taxes""#), 0);
    assert_eq!(number(&db, r#"count items text "NEAR(\"x\" y) *""#), 0);

    // Listing with a limit says how many there are in all.
    let outcome = ask(&db, r#"list photos label "Rex" limit 2"#);
    assert_eq!(outcome.value, Value::Items { total: 5 });
    assert_eq!(paths(&outcome), ["rex-june.jpg", "rex-august.jpg"]);
    assert!(
        outcome.notes[0].contains("first 2 of 5"),
        "{:?}",
        outcome.notes
    );

    // Lineage: what adapter 1 was trained on, and what is gone since.
    let outcome = ask(&db, "list items trained_on adapter 1");
    assert_eq!(outcome.value, Value::Items { total: 2 });
    assert_eq!(paths(&outcome), ["lisbon.md", "taxes.txt"]);
    assert!(outcome.notes[0].starts_with("1 of the items adapter 1 trained on"));
    assert_eq!(
        number(&db, r#"count notes trained_on run 1 text "lisbon""#),
        1
    );

    // Refusal is an answer, not an error.
    assert_eq!(ask(&db, "cannot_answer").value, Value::Refusal);
}

#[test]
fn mistakes_are_typed_errors_never_guesses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _library = library(dir.path());
    let db = AskDb::open(&dir.path().join("library")).expect("read-only");
    let err = db
        .ask(r#"count photos label "Rexx""#, today(), None)
        .expect_err("unknown label");
    assert!(matches!(
        err,
        AskError::Check(CheckError::UnknownLabel { .. })
    ));
    assert!(
        err.to_string()
            .ends_with("unknown label 'Rexx', did you mean 'Rex'?")
    );
    assert!(matches!(
        db.ask("count items trained_on adapter 7", today(), None),
        Err(AskError::Check(CheckError::UnknownProducer { .. }))
    ));
    assert!(matches!(
        db.ask("how many photos", today(), None),
        Err(AskError::Parse(_))
    ));
    // No embedding index yet: a typed error, not made-up results.
    assert!(matches!(
        db.ask(r#"similar photos to "the beach""#, today(), None),
        Err(AskError::SemanticUnavailable)
    ));
}
