//! Try commands on the mock runtime: streamed side-by-side generation on
//! the tiny model, and the photo tagger on the shared photos.

use std::time::Duration;

use serde_json::{Value, json};

use crate::test_support::{TestApp, shared_photos};

const TIMEOUT: Duration = Duration::from_secs(300);

fn import(app: &TestApp, path: &std::path::Path) {
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [path]}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    assert_eq!(events.last().expect("events")["event"], "done");
}

fn texts_of(events: &[Value], pass: &str) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "text" && e["pass"] == pass)
        .filter_map(|e| e["text"].as_str())
        .collect()
}

#[test]
fn base_and_personalized_completions_stream_side_by_side() {
    let app = TestApp::new();
    let (Some(model), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shakespeare_notes(app.dir.path(), 60),
    ) else {
        return;
    };
    import(&app, &notes);
    let (channel, id) = app.channel();
    app.ok(
        "start_text_training",
        json!({"request": {"model": model, "steps": 30, "seq_len": 64, "learning_rate": 5e-3,
               "device": "cpu"}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    let adapter = events.last().expect("events")["result"]["adapter_id"].clone();
    assert!(adapter.as_i64().is_some(), "{events:?}");

    let (channel, id) = app.channel();
    app.ok(
        "generate_text",
        json!({"request": {"prompt": "Once upon a time", "adapter_id": adapter, "compare": true,
               "max_tokens": 24, "raw": true}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    assert_eq!(
        events.last().expect("events")["event"],
        "done",
        "{events:?}"
    );
    let passes: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "begin")
        .filter_map(|e| e["pass"].as_str())
        .collect();
    assert_eq!(passes, ["base", "personalized"]);
    let base = texts_of(&events, "base");
    let personalized = texts_of(&events, "personalized");
    assert!(!base.is_empty() && !personalized.is_empty());
    assert!(
        events.iter().filter(|e| e["event"] == "text").count() > 2,
        "text streams in pieces"
    );
    let ends: Vec<&Value> = events.iter().filter(|e| e["event"] == "end").collect();
    assert!(ends.iter().all(|e| e["new_tokens"].as_u64() > Some(0)));

    let (channel, id) = app.channel();
    app.ok(
        "generate_text",
        json!({"request": {"prompt": "  "}, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    assert_eq!(
        events.last().expect("events")["error"]["kind"],
        "invalid_input"
    );
}

#[test]
fn photo_tags_are_suggested_accepted_rejected_and_similar_photos_found() {
    let app = TestApp::new();
    let (Some(_), Some(photos)) = (
        hearth_testdata::fetched_model("efficientnet-lite0/efficientnet-lite0-57934424.pth"),
        shared_photos(app.dir.path()),
    ) else {
        return;
    };
    import(&app, &photos);
    let items = app.ok("list_items", json!({}));
    let id_of = |name: &str| -> i64 {
        items
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i["path"].as_str().is_some_and(|p| p.contains(name)))
            })
            .and_then(|i| i["id"].as_i64())
            .unwrap_or_else(|| panic!("{name} imported"))
    };
    // No tagger yet: a clear "no data" answer.
    let error = app
        .invoke("suggest_tags", json!({}))
        .expect_err("no tagger");
    assert_eq!(error["kind"], "no_data", "{error}");

    for (name, label) in [
        ("astronaut", "space"),
        ("rocket", "space"),
        ("hubble", "space"),
        ("chelsea", "animal"),
        ("horse", "animal"),
        ("coffee", "things"),
        ("camera", "things"),
    ] {
        app.ok("add_label", json!({"id": id_of(name), "name": label}));
    }
    let (channel, id) = app.channel();
    app.ok("train_photo_tagger", json!({"onEvent": channel}));
    let events = app.finish(id, TIMEOUT);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done", "{last}");
    assert_eq!(
        last["result"]["labels"],
        json!(["animal", "space", "things"])
    );
    // Resuming is for paused photo runs only.
    for (run, kind) in [
        (last["result"]["run_id"].clone(), "not_resumable"),
        (json!(999), "not_found"),
    ] {
        let (channel, id) = app.channel();
        app.ok(
            "resume_photo_tagger",
            json!({"run": run, "onEvent": channel}),
        );
        let events = app.finish(id, TIMEOUT);
        let resumed = events.last().expect("events");
        assert_eq!(resumed["event"], "failed", "{resumed}");
        assert_eq!(resumed["error"]["kind"], kind, "{resumed}");
    }
    // The tagger is in the library, and the Audit screen traces it.
    let taggers = app.ok("list_photo_taggers", json!({}));
    assert_eq!(taggers[0]["id"], last["result"]["tagger_id"], "{taggers}");
    assert_eq!(taggers[0]["run_id"], last["result"]["run_id"]);
    let lineage = app.ok("photo_tagger_lineage", json!({"tagger": taggers[0]["id"]}));
    assert_eq!(lineage["file_matches"], true, "{lineage}");
    assert_eq!(lineage["items_root"]["count"], last["result"]["examples"]);
    let missing = app
        .invoke("photo_tagger_lineage", json!({"tagger": 999}))
        .expect_err("no such tagger");
    assert_eq!(missing["kind"], "not_found");

    let tags = app.ok("suggest_tags", json!({}));
    let tags = tags.as_array().expect("array");
    assert_eq!(tags.len(), 1, "only the unlabelled photo: {tags:?}");
    let motorcycle = &tags[0];
    assert!(
        motorcycle["item"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("motorcycle"))
    );
    let suggestions = motorcycle["suggestions"].as_array().expect("suggestions");
    assert_eq!(suggestions.len(), 3);
    assert!(
        suggestions
            .iter()
            .all(|s| (0.0..=1.0).contains(&s["confidence"].as_f64().unwrap_or(-1.0)))
    );

    let id = id_of("motorcycle");
    let item = app.ok("accept_tag", json!({"id": id, "label": "things"}));
    assert_eq!(item["labels"], json!(["things"]));
    let item = app.ok("reject_tag", json!({"id": id, "label": "animal"}));
    assert_eq!(item["labels"], json!(["things"]));

    let similar = app.ok("similar_photos", json!({"id": id_of("rocket"), "k": 3}));
    let similar = similar.as_array().expect("array");
    assert_eq!(similar.len(), 3);
    assert!(
        similar
            .windows(2)
            .all(|w| w[0]["similarity"].as_f64() >= w[1]["similarity"].as_f64())
    );
}
