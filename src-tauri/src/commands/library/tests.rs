//! Library commands on the mock runtime.

use std::time::Duration;

use serde_json::json;

use crate::test_support::{TestApp, shared_photos};

#[test]
fn imports_the_shared_photos_lists_them_and_serves_their_thumbnails() {
    let app = TestApp::new();
    let Some(photos) = shared_photos(app.dir.path()) else {
        return;
    };
    let (channel, id) = app.channel();
    let job = app.ok(
        "import_folders",
        json!({"request": {"paths": [photos]}, "onEvent": channel}),
    );
    assert!(job.as_u64().is_some(), "a job id: {job}");
    let events = app.finish(id, Duration::from_secs(120));
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done", "{last}");
    assert_eq!(last["result"]["imported"], 8, "{last}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "begin" && e["task"] == "Importing")
    );

    let items = app.ok("list_items", json!({"query": {"kind": "photo"}}));
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 8);
    let thumbnail = items[0]["thumbnail"].as_str().expect("thumbnail");
    let name = thumbnail.strip_prefix("thumbnails/").expect("prefix");
    let response =
        crate::thumbnails::respond(&app.library(), &format!("/{}", name.replace('/', "%2F")));
    assert_eq!(response.status(), 200);
    assert!(!response.body().is_empty());

    let search = app.ok("list_items", json!({"query": {"search": "chelsea"}}));
    assert_eq!(search.as_array().map(Vec::len), Some(1));
    let info = app.ok("library_info", json!({}));
    assert_eq!(info["stats"]["photos"], 8);

    // Importing again finds everything already there.
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [photos]}, "onEvent": channel}),
    );
    let again = app.finish(id, Duration::from_secs(120));
    assert_eq!(
        again.last().expect("events")["result"]["already_present"],
        8
    );
}

#[test]
fn labels_are_added_filtered_and_removed() {
    let app = TestApp::new();
    let notes = app.dir.path().join("notes");
    std::fs::create_dir_all(&notes).expect("mkdir");
    std::fs::write(notes.join("rex.txt"), "Rex chased the ball.").expect("write");
    std::fs::write(notes.join("garden.md"), "# Garden\nTomatoes.").expect("write");
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [notes]}, "onEvent": channel}),
    );
    app.finish(id, Duration::from_secs(60));

    let items = app.ok("list_items", json!({}));
    let first = items[0]["id"].as_i64().expect("id");
    let item = app.ok("add_label", json!({"id": first, "name": "Rex"}));
    assert_eq!(item["labels"], json!(["Rex"]));
    let labelled = app.ok("list_items", json!({"query": {"label": "rex"}}));
    assert_eq!(labelled.as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.ok("list_labels", json!({})),
        json!([{"name": "Rex", "items": 1}])
    );
    let text = app.ok("item_text", json!({"id": first}));
    assert!(text.as_str().is_some_and(|t| !t.is_empty()));

    let item = app.ok("remove_label", json!({"id": first, "name": "rex"}));
    assert_eq!(item["labels"], json!([]));
    assert_eq!(app.ok("list_labels", json!({})), json!([]));
}

#[test]
fn bad_input_comes_back_as_kind_and_message() {
    let app = TestApp::new();
    let error = app
        .invoke("add_label", json!({"id": 42, "name": "Rex"}))
        .expect_err("no such item");
    assert_eq!(error["kind"], "not_found");
    assert_eq!(error["message"], "no item with id 42");

    let (channel, _) = app.channel();
    let error = app
        .invoke(
            "import_folders",
            json!({"request": {"paths": ["relative/dir"]}, "onEvent": channel}),
        )
        .expect_err("relative path");
    assert_eq!(error["kind"], "invalid_input");

    let error = app
        .invoke("list_items", json!({"query": {"kind": "video"}}))
        .expect_err("bad kind");
    assert_eq!(error["kind"], "invalid_input");

    // A malformed argument is refused by the IPC layer, not unwrapped.
    assert!(
        app.invoke("add_label", json!({"id": "seven", "name": 3}))
            .is_err()
    );
    let error = app
        .invoke("cancel_job", json!({"id": 99}))
        .expect_err("no job");
    assert_eq!(error["kind"], "not_found");
    assert_eq!(app.ok("ping", json!({})), "pong");
}
