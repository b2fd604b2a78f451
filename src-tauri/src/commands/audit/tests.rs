//! Audit commands on the mock runtime: the lineage of an adapter trained
//! on real notes with the real tiny model. (`audit_federations` is tested
//! with the federation commands: off by default, and after a real round.)

use std::time::Duration;

use serde_json::json;

use crate::test_support::TestApp;

const TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn an_adapters_lineage_names_its_run_items_and_matching_hash() {
    let app = TestApp::new();
    let (Some(model), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shakespeare_notes(app.dir.path(), 30),
    ) else {
        return;
    };
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [notes]}, "onEvent": channel}),
    );
    app.finish(id, TIMEOUT);
    let (channel, id) = app.channel();
    app.ok(
        "start_text_training",
        json!({"request": {
            "model": model, "steps": 3, "seq_len": 32, "batch_size": 2,
            "learning_rate": 5e-3, "checkpoint_every": 3, "eval_every": 1000, "device": "cpu"
        }, "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    let summary = &events.last().expect("events")["result"];
    let adapter = summary["adapter_id"].as_i64().expect("an adapter");

    let lineage = app.ok("adapter_lineage", json!({"adapter": adapter}));
    assert_eq!(lineage["adapter"]["id"], adapter);
    assert_eq!(lineage["run"]["id"], summary["run_id"]);
    assert_eq!(lineage["lineage_matches"], true, "{lineage}");
    let items = lineage["items"].as_array().expect("items");
    assert_eq!(
        items.len() as u64,
        summary["items"].as_u64().expect("count")
    );
    assert_eq!(lineage["items_root"]["count"], summary["items"]);
    // Every item is still in the library: [id, path].
    assert!(items.iter().all(|item| {
        item["item"][1]
            .as_str()
            .is_some_and(|path| path.ends_with(".txt"))
    }));

    let missing = app
        .invoke("adapter_lineage", json!({"adapter": adapter + 100}))
        .expect_err("no such adapter");
    assert_eq!(missing["kind"], "not_found");
}
