//! Personalization commands on the mock runtime, training the real tiny
//! model (stories260K) on Shakespeare notes.

use std::time::{Duration, Instant};

use crate::test_support::TestApp;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(300);

/// Imports `speeches` Shakespeare notes; returns the stories260K path.
fn with_notes(app: &TestApp, speeches: usize) -> Option<String> {
    let model = hearth_testdata::shared("models/stories260K/stories260K.bin")?;
    let notes = hearth_testdata::shakespeare_notes(app.dir.path(), speeches)?;
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [notes]}, "onEvent": channel}),
    );
    app.finish(id, TIMEOUT);
    Some(model.display().to_string())
}

fn training(model: &str, steps: u64) -> Value {
    json!({
        "model": model, "steps": steps, "seq_len": 64, "batch_size": 4,
        "learning_rate": 5e-3, "checkpoint_every": 5, "eval_every": 1000, "device": "cpu"
    })
}

/// Waits until the training on channel `id` reported step `step`.
fn wait_for_step(app: &TestApp, id: u32, step: u64) {
    app.wait_for(id, TIMEOUT, |events| {
        events
            .iter()
            .any(|e| e["event"] == "advance" && e["done"].as_u64() >= Some(step))
            || events.last().is_some_and(|e| e["event"] == "failed")
    });
}

fn result(events: &[Value]) -> &Value {
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done", "{last}");
    &last["result"]
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[test]
fn training_streams_pauses_on_close_resumes_and_stays_responsive() {
    let app = TestApp::new();
    let Some(model) = with_notes(&app, 200) else {
        return;
    };
    let (channel, id) = app.channel();
    let job = app.ok(
        "start_text_training",
        json!({"request": training(&model, 200), "onEvent": channel}),
    );
    wait_for_step(&app, id, 5);

    // A trivial command answers while a run is going.
    let mut slowest: f64 = 0.0;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(app.ok("ping", json!({})), "pong");
        app.ok("list_runs", json!({}));
        slowest = slowest.max(millis(started));
    }
    eprintln!("slowest ping + list_runs during training: {slowest:.1} ms");
    assert!(slowest < 1000.0, "{slowest} ms");
    let running = app.ok("running_jobs", json!({}));
    assert_eq!(running[0]["id"], job);
    assert_eq!(running[0]["kind"], "train_text");

    // Closing the window pauses every job at a checkpoint.
    let jobs = app.jobs();
    assert!(crate::pause_all(&jobs, TIMEOUT));
    let events = app.finish(id, TIMEOUT);
    let summary = result(&events);
    assert_eq!(summary["outcome"], "paused");
    let run = summary["run_id"].as_i64().expect("run id");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "metric" && e["name"] == "loss")
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "begin" && e["task"] == "Training")
    );
    assert!(
        app.library()
            .join(format!("runs/{run}/checkpoints/LATEST"))
            .is_file()
    );
    let runs = app.ok("list_runs", json!({}));
    assert_eq!(runs[0]["status"], "paused");
    // The run as listed carries the steps it was asked for.
    assert_eq!(runs[0]["total_steps"], 200);

    // Only one training at a time; a second start while one runs is busy.
    let (channel, second) = app.channel();
    app.ok(
        "resume_text_training",
        json!({"run": run, "device": "cpu", "onEvent": channel}),
    );
    let (other, _) = app.channel();
    let busy = app
        .invoke(
            "start_text_training",
            json!({"request": training(&model, 5), "onEvent": other}),
        )
        .expect_err("busy");
    assert_eq!(busy["kind"], "busy");
    let summary = result(&app.finish(second, TIMEOUT)).clone();
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["steps"], 200);
    assert!(summary["adapter_id"].as_i64().is_some());
    assert_eq!(
        app.ok("list_adapters", json!({})).as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn cancel_job_pauses_and_discard_gives_the_run_up() {
    let app = TestApp::new();
    let Some(model) = with_notes(&app, 50) else {
        return;
    };
    let (channel, id) = app.channel();
    let job = app.ok(
        "start_text_training",
        json!({"request": training(&model, 5000), "onEvent": channel}),
    );
    wait_for_step(&app, id, 2);
    app.ok("cancel_job", json!({"id": job}));
    let events = app.finish(id, TIMEOUT);
    let run = result(&events)["run_id"].as_i64().expect("run");
    assert_eq!(result(&events)["outcome"], "paused");
    app.ok("discard_run", json!({"run": run}));
    let runs = app.ok("list_runs", json!({}));
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["error"], "cancelled by you");
    let again = app.invoke("discard_run", json!({"run": run})).is_ok();
    assert!(
        again,
        "a failed run is still resumable in the library, so discarding it again is harmless"
    );
}

#[test]
fn training_without_texts_fails_with_no_data() {
    let app = TestApp::new();
    let Some(model) = hearth_testdata::shared("models/stories260K/stories260K.bin") else {
        return;
    };
    let (channel, id) = app.channel();
    app.ok(
        "start_text_training",
        json!({"request": training(&model.display().to_string(), 5), "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    let last = events.last().expect("event");
    assert_eq!(last["event"], "failed");
    assert_eq!(last["error"]["kind"], "no_data");
    let bad = app
        .invoke(
            "start_text_training",
            json!({"request": {"steps": 0}, "onEvent": app.channel().0}),
        )
        .expect_err("zero steps");
    assert_eq!(bad["kind"], "invalid_input");
    let models = app.ok("list_models", json!({}));
    assert!(
        models
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == "stories260k"))
    );
}

#[test]
fn installing_a_model_from_the_wrong_kind_of_copy_fails_with_the_reason() {
    let app = TestApp::new();
    let models = app.ok("list_models", json!({}));
    let minilm = models
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["name"] == "all-minilm-l6-v2")
        .expect("in the registry");
    assert_eq!(minilm["installable"], true);
    assert_eq!(minilm["folder"], true);

    // A relative path is refused before any job starts.
    let (channel, _) = app.channel();
    let refused = app
        .invoke(
            "install_model",
            json!({"name": "all-minilm-l6-v2", "path": "model.zip", "onEvent": channel}),
        )
        .expect_err("a relative path");
    assert_eq!(refused["kind"], "invalid_input");

    // A file where the model is a folder: the job fails, saying so, and
    // nothing is written to the model cache.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let (channel, id) = app.channel();
    app.ok(
        "install_model",
        json!({"name": "all-minilm-l6-v2", "path": file.path(), "onEvent": channel}),
    );
    let events = app.finish(id, TIMEOUT);
    let last = events.last().expect("event");
    assert_eq!(last["event"], "failed");
    assert_eq!(last["error"]["kind"], "model_missing");
    let message = last["error"]["message"].as_str().expect("message");
    assert!(message.contains("choose the folder"), "{message}");
}
