//! The photo commands as a person runs them, on the shared photos and the
//! real EfficientNet-Lite0: classify, embed (a photo that stopped decoding
//! is reported), learn labels, suggestions, accept/reject, questions,
//! look-alikes, and fine-tuning killed with SIGKILL, resumed, and ending
//! with exactly the network an uninterrupted run makes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{hearth, json, kill_at_checkpoint, run_ok};
use serde_json::Value;

/// The shared photos copied into `dir` (the test corrupts one), or `None`
/// (skip) when the photos or the photo model are not on this machine.
fn photos_and_model(dir: &Path) -> Option<PathBuf> {
    let photos = hearth_testdata::shared("photos")?;
    if let Err(error) = hearth_ml::registry::resolve("efficientnet-lite0") {
        assert!(
            !hearth_testdata::ci(),
            "CI=true but the photo model is missing: {error}"
        );
        eprintln!("skipping: {error}");
        return None;
    }
    let input = dir.join("photos");
    std::fs::create_dir(&input).expect("mkdir");
    for entry in std::fs::read_dir(&photos).expect("read_dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, input.join(path.file_name().expect("name"))).expect("copy");
    }
    Some(input)
}

fn failure(command: &mut Command) -> String {
    let output = command.output().expect("hearth runs");
    assert!(!output.status.success(), "{command:?} should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|row| row["item_id"].as_i64().or(row["id"].as_i64()).expect("id"))
        .collect()
}

#[test]
fn classify_embed_label_suggest_feedback_similar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = photos_and_model(dir.path()) else {
        return;
    };
    let library = dir.path().join("library");

    // ImageNet sanity, as a person would check it.
    let classified = String::from_utf8(
        run_ok(
            hearth(&library)
                .args(["model", "classify"])
                .arg(input.join("chelsea.png"))
                .arg(input.join("coffee.png")),
        )
        .stdout,
    )
    .expect("utf-8");
    let top1 = |name: &str| -> u32 {
        let line = classified
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}: {classified}"));
        let after = line.rsplit_once(": ").expect("classes").1;
        after
            .split(' ')
            .next()
            .expect("class")
            .parse()
            .expect("index")
    };
    assert!((281..=285).contains(&top1("chelsea.png")), "{classified}");
    assert_eq!(top1("coffee.png"), 967, "{classified}");
    let not_an_image = failure(hearth(&library).args(["model", "classify"]).arg(dir.path()));
    assert_eq!(
        not_an_image.matches("Is a directory").count(),
        1,
        "said once: {not_an_image}"
    );

    json(hearth(&library).arg("import").arg("--json").arg(&input));
    let items = json(hearth(&library).args(["library", "list", "--json"]));
    let id = |name: &str| -> String {
        items
            .as_array()
            .expect("array")
            .iter()
            .find(|i| i["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} imported"))["id"]
            .to_string()
    };

    // A photo that no longer decodes is reported, the others embedded.
    std::fs::write(input.join("camera.png"), b"\x89PNG\r\n\x1a\n broken").expect("corrupt");
    let embedded = String::from_utf8(run_ok(hearth(&library).args(["photos", "embed"])).stdout)
        .expect("utf-8");
    assert!(
        embedded.contains("7 photos embedded") && embedded.contains("1 no longer decode"),
        "{embedded}"
    );

    assert!(
        failure(hearth(&library).args(["photos", "train"])).contains("no labelled photos"),
        "training without labels says what to do"
    );
    assert!(failure(hearth(&library).args(["photos", "tag"])).contains("no tagger trained yet"));
    for (photo, label) in [
        ("chelsea.png", "animal"),
        ("horse.png", "animal"),
        ("coffee.png", "things"),
        ("rocket.jpg", "things"),
    ] {
        run_ok(hearth(&library).args(["label", "add", &id(photo), label]));
    }
    let first = json(hearth(&library).args(["photos", "train", "--json"]));
    assert_eq!(first["labels"], serde_json::json!(["animal", "things"]));
    assert_eq!(first["examples"], 4);

    let suggestions = json(hearth(&library).args(["photos", "tag", "--json"]));
    let unlabelled = ids(&suggestions);
    assert_eq!(unlabelled.len(), 3, "the unlabelled photos that decode");
    assert!(!unlabelled.contains(&id("chelsea.png").parse().expect("id")));
    for row in suggestions.as_array().expect("array") {
        for suggestion in row["suggestions"].as_array().expect("suggestions") {
            let confidence = suggestion["confidence"].as_f64().expect("confidence");
            // A cat and a horse, a coffee and a rocket: two photos per
            // label that are unlike each other teach little, and the
            // tagger says so rather than being sure of anything.
            assert!((0.2..=0.8).contains(&confidence), "{row}");
        }
    }

    // Verdicts are the next training set's examples.
    run_ok(hearth(&library).args(["label", "reject", &id("motorcycle_left.png"), "things"]));
    run_ok(hearth(&library).args(["label", "accept", &id("astronaut.png"), "things"]));
    let shown = json(hearth(&library).args(["library", "show", &id("astronaut.png"), "--json"]));
    assert_eq!(shown["labels"][0], "things", "an accepted label is a label");
    let second = json(hearth(&library).args(["photos", "train", "--json"]));
    assert_eq!(second["examples"], 6);

    // Both taggers are in the library, each traceable to its photos.
    let taggers = json(hearth(&library).args(["photos", "taggers", "--json"]));
    assert_eq!(
        ids(&taggers),
        [
            second["tagger_id"].as_i64().expect("id"),
            first["tagger_id"].as_i64().expect("id")
        ]
    );
    let lineage = json(hearth(&library).args([
        "photos",
        "lineage",
        &second["tagger_id"].to_string(),
        "--json",
    ]));
    assert_eq!(lineage["file_matches"], true);
    assert_eq!(lineage["items_root"]["count"], 6);
    assert_eq!(lineage["run"]["id"], second["run_id"]);
    assert!(
        failure(hearth(&library).args(["photos", "lineage", "99"]))
            .contains("no photo tagger with id 99")
    );

    // Asked about: the photos without a label (not the corrupt camera.png,
    // never embedded), the most uncertain first.
    let asked = ids(&json(
        hearth(&library).args(["photos", "ask", "-n", "5", "--json"]),
    ));
    let mut unlabelled: Vec<i64> = ["hubble_deep_field.jpg", "motorcycle_left.png"]
        .iter()
        .map(|photo| id(photo).parse().expect("id"))
        .collect();
    let mut sorted = asked.clone();
    sorted.sort();
    unlabelled.sort();
    assert_eq!(sorted, unlabelled);
    let first = ids(&json(
        hearth(&library).args(["photos", "ask", "-n", "1", "--json"]),
    ));
    assert_eq!(first, asked[..1]);
    let similar =
        json(hearth(&library).args(["photos", "similar", &id("chelsea.png"), "-k", "3", "--json"]));
    let scores: Vec<f64> = similar
        .as_array()
        .expect("array")
        .iter()
        .map(|row| row["similarity"].as_f64().expect("similarity"))
        .collect();
    assert_eq!(scores.len(), 3);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(failure(hearth(&library).args(["photos", "similar", "9999"])).contains("no embedding"));
    assert!(
        failure(hearth(&library).args(["photos", "train", "--resume", "1"])).contains("completed"),
        "a finished run is not resumed"
    );
}

#[test]
fn kill_9_mid_fine_tuning_then_resume_gives_the_uninterrupted_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(input) = photos_and_model(dir.path()) else {
        return;
    };
    let library = dir.path().join("library");
    json(hearth(&library).arg("import").arg("--json").arg(&input));
    let items = json(hearth(&library).args(["library", "list", "--json"]));
    for item in items.as_array().expect("array") {
        let path = item["path"].as_str().expect("path");
        let label = if ["chelsea", "horse", "astronaut"]
            .iter()
            .any(|n| path.contains(n))
        {
            "alive"
        } else {
            "made"
        };
        run_ok(hearth(&library).args(["label", "add", &item["id"].to_string(), label]));
    }

    const STEPS: u64 = 30;
    let train = |extra: &[&str]| {
        let mut command = hearth(&library);
        command
            .args(["photos", "train", "--json", "--device", "cpu"])
            .args(extra);
        command
    };
    let fine_tune = ["--fine-tune-blocks", "1", "--steps", "30"];
    // Checkpoints come every 20 steps.
    let killed_at = kill_at_checkpoint(&mut train(&fine_tune), &library.join("runs/1"), 1);
    assert!(
        killed_at < STEPS,
        "the run finished before it could be killed"
    );
    let run = json(hearth(&library).args(["runs", "show", "1", "--json"]));
    assert_eq!(
        run["status"], "running",
        "a killed run never got to say otherwise"
    );

    // Settings come from the run; giving them again is refused.
    let conflicting = train(&["--resume", "1", "--steps", "5"])
        .output()
        .expect("runs");
    assert!(!conflicting.status.success());
    let resumed = json(&mut train(&["--resume", "1"]));
    assert_eq!(resumed["run_id"], 1);
    let run = json(hearth(&library).args(["runs", "show", "1", "--json"]));
    assert_eq!(
        (run["status"].as_str(), run["steps_done"].as_u64()),
        (Some("completed"), Some(STEPS))
    );

    let straight = json(&mut train(&fine_tune));
    assert_eq!(straight["run_id"], 2);
    assert_eq!(
        straight["model_sha256"], resumed["model_sha256"],
        "the resumed run fine-tuned exactly the network an uninterrupted one does"
    );
    assert_eq!(straight["fine_tune_loss"], resumed["fine_tune_loss"]);
}

#[test]
fn fashion_mnist_few_shot_evaluation() {
    let dataset = Path::new(hearth_personalize::photo_eval::FASHION_MNIST_DIR);
    if !dataset.is_dir() {
        assert!(
            !hearth_testdata::ci(),
            "CI=true but Fashion-MNIST is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipping: {} is absent", dataset.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    if photos_and_model(dir.path()).is_none() {
        return;
    }
    let report = json(hearth(&dir.path().join("library")).args([
        "eval",
        "photos",
        "--fashion-mnist",
        "--shots",
        "3",
        "--test-images",
        "100",
        "--draws",
        "1",
        "--no-fine-tune",
        "--device",
        "cpu",
        "--json",
    ]));
    eprintln!("{report:#}");
    let row = &report["rows"][0];
    assert_eq!(row["shots"], 3);
    assert_eq!(
        row["fine_tuned"],
        serde_json::json!([]),
        "left out when asked"
    );
    for key in ["head", "centroid"] {
        let accuracy = row[key][0]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {row}"));
        // Ten classes: chance is 10%.
        assert!(accuracy > 0.3 && accuracy <= 1.0, "{key} {accuracy}");
    }
}
