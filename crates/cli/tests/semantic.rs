//! `hearth ask` with a semantic query, as a person uses it: the notes are
//! embedded on the first search (and said so), the note that means the
//! text comes first with its score, and the next search reuses the
//! vectors. Needs the fetched sentence-embedding model
//! (`scripts/fetch-models.sh`): skipped with a message without it, a
//! failure under CI.

mod common;

use common::{hearth, json};

#[test]
fn similar_notes_come_first_and_vectors_are_kept() {
    if hearth_testdata::fetched_model("all-minilm-l6-v2/model.safetensors").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("notes");
    std::fs::create_dir(&input).expect("mkdir");
    for (name, text) in [
        (
            "taxes.txt",
            "Receipts for the tax return are in the blue folder.",
        ),
        (
            "beach.txt",
            "Swimming in the waves at the beach while Rex chased gulls.",
        ),
        (
            "cooking.md",
            "Risotto: toast the rice, add hot stock a ladle at a time.",
        ),
    ] {
        std::fs::write(input.join(name), text).expect("write");
    }
    let library = dir.path().join("library");
    common::run_ok(hearth(&library).arg("import").arg(&input));

    let output = hearth(&library)
        .args([
            "ask",
            "--query",
            r#"similar notes to "income tax""#,
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("embedded 3 notes"), "{stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["value"]["total"], 3);
    let first = &answer["sources"][0];
    assert!(
        first["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("taxes.txt")),
        "{answer}"
    );
    assert!(first["score"].as_f64().is_some_and(|s| s > 0.2), "{answer}");

    // The vectors are in the library now: nothing to embed.
    let output = hearth(&library)
        .args([
            "ask",
            "--query",
            r#"similar notes to "the seaside" limit 1"#,
        ])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("embedded"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("beach.txt"), "{stdout}");

    let answer = json(hearth(&library).args([
        "ask",
        "--query",
        r#"similar items to "what to cook tonight" limit 1"#,
        "--json",
    ]));
    assert!(
        answer["sources"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("cooking.md")),
        "{answer}"
    );
}
