//! Ask commands on the mock runtime, over a real library: hand-written
//! queries, a question translated by the real default model (loaded once
//! and kept), its correction, the history, and training the translator
//! on the corrections, which the next question then uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::models::AskTranslator;
use crate::test_support::TestApp;

const TIMEOUT: Duration = Duration::from_secs(600);

/// Two notes imported, the Lisbon one labelled "Rex".
fn library_with_notes(app: &TestApp) {
    let notes: PathBuf = app.dir.path().join("notes");
    std::fs::create_dir(&notes).expect("mkdir");
    std::fs::write(
        notes.join("lisbon.md"),
        "Walked Rex along the river in Lisbon.",
    )
    .expect("write");
    std::fs::write(notes.join("taxes.txt"), "Receipts for the tax return.").expect("write");
    import(app, &notes);
    let items = app.ok("list_items", json!({}));
    let lisbon = items
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| i["path"].as_str().is_some_and(|p| p.ends_with("lisbon.md")))
        })
        .and_then(|i| i["id"].as_i64())
        .expect("the Lisbon note");
    app.ok("add_label", json!({"id": lisbon, "name": "Rex"}));
}

fn import(app: &TestApp, path: &Path) {
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [path]}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    assert_eq!(events.last().expect("events")["event"], "done");
}

#[test]
fn hand_written_queries_run_and_bad_ones_say_why() {
    let app = TestApp::new();
    library_with_notes(&app);

    let answer = app.ok("ask_query", json!({"query": r#"list notes text "lisbon""#}));
    assert_eq!(answer["value"], json!({"type": "items", "total": 1}));
    assert!(
        answer["sources"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("lisbon.md")),
        "{answer}"
    );
    assert_eq!(answer["sources"][0]["labels"], json!(["Rex"]));
    assert_eq!(answer["question"], Value::Null);
    assert!(answer.get("translation").is_none(), "{answer}");
    // The item behind a source, as the Library screen shows it.
    let item = app.ok("get_item", json!({"id": answer["sources"][0]["id"]}));
    assert_eq!(item["labels"], json!(["Rex"]));

    let answer = app.ok("ask_query", json!({"query": r#"count notes label "rex""#}));
    assert_eq!(answer["value"], json!({"type": "number", "value": 1}));
    assert_eq!(answer["canonical"], r#"count notes label "Rex""#);
    let answer = app.ok("ask_query", json!({"query": "count photos in last_year"}));
    assert_eq!(answer["ranges"][0]["range"], "last_year", "{answer}");
    assert!(answer["ranges"][0]["span"]["from"].is_string(), "{answer}");
    let refusal = app.ok("ask_query", json!({"query": "cannot_answer"}));
    assert_eq!(refusal["value"], json!({"type": "refusal"}));

    for (query, kind, says) in [
        ("count notess", "invalid_input", "does not parse"),
        (
            r#"count notes label "Rexx""#,
            "invalid_input",
            "did you mean 'Rex'?",
        ),
    ] {
        let error = app
            .invoke("ask_query", json!({"query": query}))
            .expect_err(query);
        assert_eq!(error["kind"], kind, "{query}: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(says)),
            "{query}: {error}"
        );
    }

    // `similar` runs with the sentence-embedding model, or says it is
    // missing (and how to fetch it) when this machine lacks it.
    let similar = json!({"query": r#"similar notes to "a trip to Portugal""#});
    let present = hearth_personalize::ask::LibrarySemanticIndex::new(
        &app.library(),
        None,
        hearth_ml::candle::Device::Cpu,
    )
    .model_present();
    if present {
        let answer = app.ok("ask_query", similar);
        assert_eq!(answer["value"]["type"], "items", "{answer}");
        assert!(
            answer["sources"][0]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("lisbon.md")),
            "the Lisbon note ranks first: {answer}"
        );
    } else {
        let error = app.invoke("ask_query", similar).expect_err("no model");
        assert_eq!(error["kind"], "model_missing", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("semantic search")),
            "{error}"
        );
    }

    // A hand-written query has no question to learn from.
    let error = app
        .invoke(
            "correct_ask",
            json!({"id": answer["ask_id"], "query": "count notes"}),
        )
        .expect_err("no question");
    assert_eq!(error["kind"], "invalid_input", "{error}");
    let error = app
        .invoke("correct_ask", json!({"id": 999, "query": "count notes"}))
        .expect_err("no such ask");
    assert_eq!(error["kind"], "not_found", "{error}");

    let history = app.ok("ask_history", json!({}));
    let asked = if present { 5 } else { 4 };
    assert_eq!(history["asks"].as_array().map(Vec::len), Some(asked));
    assert_eq!(history["corrections"], json!([]));

    // Too few corrections to train on: a clear "no data".
    let (channel, id) = app.channel();
    app.ok("train_ask", json!({"onEvent": channel}));
    let events = app.finish(id, TIMEOUT);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "failed", "{last}");
    assert_eq!(last["error"]["kind"], "no_data", "{last}");
    let (channel, _) = app.channel();
    let error = app
        .invoke(
            "train_ask",
            json!({"request": {"steps": 0}, "onEvent": channel}),
        )
        .expect_err("no steps");
    assert_eq!(error["kind"], "invalid_input", "{error}");
}

#[test]
fn questions_are_translated_corrected_and_teach_the_translator() {
    if hearth_testdata::fetched_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        .is_none()
    {
        return;
    }
    let app = TestApp::new();
    library_with_notes(&app);
    let translator: AskTranslator = app.state();
    assert_eq!(translator.loaded(), None, "loaded on the first question");

    let answer = app.ok(
        "ask_question",
        json!({"question": "how many notes do I have?"}),
    );
    assert_eq!(answer["question"], "how many notes do I have?");
    let translation = &answer["translation"];
    assert!(translation["query"].as_str().is_some_and(|q| !q.is_empty()));
    assert!(translation["seconds"].as_f64() > Some(0.0), "{answer}");
    assert!(answer["canonical"].as_str().is_some_and(|q| !q.is_empty()));
    assert_eq!(translator.loaded(), Some(None), "kept, with no ask adapter");

    let error = app
        .invoke("ask_question", json!({"question": "   "}))
        .expect_err("empty question");
    assert_eq!(error["kind"], "invalid_input", "{error}");

    // The person corrects the query; a correction that does not run is
    // refused and not kept.
    let ask = answer["ask_id"].clone();
    let error = app
        .invoke(
            "correct_ask",
            json!({"id": ask, "query": "count notes label"}),
        )
        .expect_err("does not parse");
    assert_eq!(error["kind"], "invalid_input", "{error}");
    let corrected = app.ok(
        "correct_ask",
        json!({"id": ask, "query": r#"count notes label "rex""#}),
    );
    assert_eq!(corrected["canonical"], r#"count notes label "Rex""#);
    assert_eq!(corrected["value"], json!({"type": "number", "value": 1}));
    assert_eq!(corrected["question"], "how many notes do I have?");
    assert_eq!(corrected["ask_id"], ask);

    // Three more corrected questions: enough to train on.
    for (question, query) in [
        ("which notes are about Rex?", r#"list notes label "Rex""#),
        ("notes on Lisbon", r#"list notes text "lisbon""#),
        ("when was my first note?", "first notes"),
    ] {
        let answer = app.ok("ask_question", json!({"question": question}));
        app.ok(
            "correct_ask",
            json!({"id": answer["ask_id"], "query": query}),
        );
    }
    let history = app.ok("ask_history", json!({}));
    assert_eq!(history["asks"].as_array().map(Vec::len), Some(4));
    let corrections = history["corrections"].as_array().expect("corrections");
    assert_eq!(corrections.len(), 4);
    assert_eq!(corrections[0]["ask_id"], ask);
    assert_eq!(corrections[0]["query"], r#"count notes label "Rex""#);

    // A short training of the translator's own model on the corrections;
    // the next question loads the adapter it made.
    let (channel, id) = app.channel();
    app.ok(
        "train_ask",
        json!({"request": {"steps": 2, "device": "cpu"}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done", "{last}");
    let adapter = last["result"]["adapter_id"].as_i64().expect("an adapter");
    assert!(events.iter().any(|e| e["event"] == "begin"), "{events:?}");
    let runs = app.ok("list_runs", json!({}));
    assert_eq!(runs[0]["kind"], "ask", "{runs}");

    app.ok(
        "ask_question",
        json!({"question": "how many notes do I have?"}),
    );
    assert_eq!(translator.loaded(), Some(Some(adapter)));
}
