//! `hearth ask` as a person uses it: import, label, ask with a query, see
//! the answer and its items, ask in words and see the query, correct
//! an ask, see the history.

mod common;

use common::{hearth, json, run_ok};

#[test]
fn ask_a_query_correct_it_and_see_the_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("notes");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(
        input.join("lisbon.md"),
        "Walked Rex along the river in Lisbon.",
    )
    .expect("write");
    std::fs::write(input.join("taxes.txt"), "Receipts for the tax return.").expect("write");
    let library = dir.path().join("library");
    run_ok(hearth(&library).arg("import").arg(&input));
    let notes = json(hearth(&library).args(["library", "list", "--json"]));
    let lisbon = notes
        .as_array()
        .expect("items")
        .iter()
        .find(|item| {
            item["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("lisbon.md"))
        })
        .expect("lisbon")["id"]
        .to_string();
    run_ok(hearth(&library).args(["label", "add", &lisbon, "Rex"]));

    let answer = json(hearth(&library).args([
        "ask",
        "--query",
        r#"count notes label "rex" in this_year"#,
        "--today",
        "2099-06-01",
        "--json",
    ]));
    // Imported today, not in 2099.
    assert_eq!(
        answer["value"],
        serde_json::json!({"type": "number", "value": 0})
    );
    assert_eq!(
        answer["canonical"],
        r#"count notes label "Rex" in this_year"#
    );
    assert_eq!(answer["ranges"][0]["span"]["from"], "2099-01-01");

    let answer =
        json(hearth(&library).args(["ask", "--query", r#"list notes text "lisbon""#, "--json"]));
    assert_eq!(answer["value"]["total"], 1);
    assert!(
        answer["sources"][0]["path"]
            .as_str()
            .expect("path")
            .ends_with("lisbon.md")
    );

    // Printed for people: the query, the answer, the items.
    let printed = run_ok(hearth(&library).args(["ask", "--query", "count notes"]));
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.contains("query: count notes\nanswer: 2\n"),
        "{printed}"
    );
    assert!(
        printed.contains("lisbon.md") && printed.contains("taxes.txt"),
        "{printed}"
    );
    let refusal = run_ok(hearth(&library).args(["ask", "--query", "cannot_answer"]));
    assert!(
        String::from_utf8_lossy(&refusal.stdout).contains("I can't answer that from your library.")
    );

    // A question alone is translated by the default model (when fetched)
    // and the query it wrote is shown with the answer.
    if hearth_testdata::fetched_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        .is_some()
    {
        let output = run_ok(hearth(&library).args([
            "ask",
            "how many notes mention Rex?",
            "--show-query",
            "--device",
            "cpu",
        ]));
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(printed.contains("translated: "), "{printed}");
        assert!(printed.contains("query: "), "{printed}");
        assert!(printed.contains("hearth ask correct "), "{printed}");
    }
    // A malformed query says where and what.
    let output = hearth(&library)
        .args(["ask", "--query", "count photo"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("write `photos`"));

    // A question with a query, then its correction.
    let asked = json(hearth(&library).args([
        "ask",
        "how many notes are about Rex?",
        "--query",
        "count notes",
        "--json",
    ]));
    let id = asked["ask_id"].to_string();
    let corrected = json(hearth(&library).args([
        "ask",
        "correct",
        &id,
        r#"count notes label "rex""#,
        "--json",
    ]));
    assert_eq!(corrected["value"]["value"], 1);
    let history = json(hearth(&library).args(["ask", "history", "--json"]));
    assert_eq!(
        history["corrections"][0]["question"],
        "how many notes are about Rex?"
    );
    assert_eq!(
        history["corrections"][0]["query"],
        r#"count notes label "Rex""#
    );
}
