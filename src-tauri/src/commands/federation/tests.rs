//! Federation commands on the mock runtime against a real hearth-server on
//! 127.0.0.1 (the `peer` helpers): off by default, refusals of bad input,
//! joining, the participation policy, a refused wrong base model,
//! cancelling a wait, and a whole round with a second real device, then
//! its upload, privacy spent, log audit, and leaving.

use std::time::Duration;

use hearth_progress::CancelToken;
use serde_json::{Value, json};

use crate::test_support::{TestApp, peer};

const TIMEOUT: Duration = Duration::from_secs(300);

fn last(events: &[Value]) -> &Value {
    events.last().expect("events")
}

#[test]
fn federation_is_off_until_joined_and_bad_requests_are_refused() {
    let app = TestApp::new();
    let overview = app.ok("federation_status", json!({}));
    assert_eq!(overview["memberships"], json!([]), "off by default");
    assert!(
        overview["conditions"]["local_hour"]
            .as_u64()
            .is_some_and(|h| h < 24)
    );
    assert_eq!(app.ok("federation_history", json!({})), json!([]));
    assert_eq!(app.ok("audit_federations", json!({})), json!([]));

    let join = |certificate: &str| {
        app.invoke(
            "join_federation",
            json!({"request": {"server_url": "https://127.0.0.1:9", "invite": "x", "certificate_path": certificate}}),
        )
        .expect_err("refused")
    };
    assert_eq!(join("cert.pem")["kind"], "invalid_input", "relative path");
    let not_pem = app.dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let refused = join(&not_pem.display().to_string());
    assert_eq!(refused["kind"], "invalid_input");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a PEM"))
    );

    assert_eq!(
        app.invoke("leave_federation", json!({}))
            .expect_err("nothing to leave")["kind"],
        "not_found"
    );
    assert_eq!(
        app.invoke(
            "set_participation_policy",
            json!({"policy": {"require_power": false, "require_idle": false, "hours": null}})
        )
        .expect_err("no membership")["kind"],
        "not_found"
    );
    let (channel, _) = app.channel();
    assert_eq!(
        app.invoke(
            "start_federated_round",
            json!({"request": {"rounds": 0}, "onEvent": channel})
        )
        .expect_err("zero rounds")["kind"],
        "invalid_input"
    );
    let (channel, id) = app.channel();
    app.ok("start_federated_round", json!({"onEvent": channel}));
    let events = app.finish(id, TIMEOUT);
    assert_eq!(last(&events)["event"], "failed");
    assert_eq!(last(&events)["error"]["kind"], "not_found", "{events:?}");
}

#[test]
fn joins_takes_part_in_a_round_with_a_peer_audits_it_and_leaves() {
    let app = TestApp::new();
    let (Some(model), Some(shakespeare), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
        hearth_testdata::shakespeare_notes(app.dir.path(), 60),
    ) else {
        return;
    };
    let (channel, id) = app.channel();
    app.ok(
        "import_folders",
        json!({"request": {"paths": [notes]}, "onEvent": channel}),
    );
    app.finish(id, TIMEOUT);
    let federation =
        peer::start_server(&app.dir.path().join("server"), &model).expect("server starts");
    let server = &federation.server;
    let certificate = federation.certificate.display().to_string();
    let join = |invite: &str| {
        app.invoke(
            "join_federation",
            json!({"request": {
                "server_url": server.url(), "invite": invite, "certificate_path": certificate,
                "epsilon_budget": 8.0,
                "policy": {"require_power": false, "require_idle": false, "hours": null}
            }}),
        )
    };
    let refused = join("not-an-invite").expect_err("a made-up invite");
    assert_eq!(refused["kind"], "federation", "{refused}");
    let membership = join(&server.invite(peer::FEDERATION).expect("invite")).expect("joins");
    assert_eq!(membership["federation_id"], peer::FEDERATION);

    let overview = app.ok("federation_status", json!({}));
    let status = &overview["memberships"][0];
    assert_eq!(status["server_url"], server.url());
    assert_eq!(status["epsilon_spent"], 0.0);
    assert_eq!(status["eligible_now"]["eligible"], true, "{status}");

    // Hours that exclude the present one make the device ineligible; the
    // policy is stored with the membership, where `hearth fed run` reads it.
    let hour = overview["conditions"]["local_hour"].as_u64().expect("hour");
    let later = json!([(hour + 1) % 24, (hour + 2) % 24]);
    app.ok(
        "set_participation_policy",
        json!({"policy": {"require_power": false, "require_idle": false, "hours": later.clone()}}),
    );
    let status = &app.ok("federation_status", json!({}))["memberships"][0];
    assert_eq!(status["eligible_now"]["eligible"], false);
    assert_eq!(status["policy"]["hours"], later);
    assert!(
        status["eligible_now"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("outside the hours")),
        "{status}"
    );
    app.ok(
        "set_participation_policy",
        json!({"policy": {"require_power": false, "require_idle": false, "hours": null}}),
    );

    let round = |model: &str| {
        let (channel, id) = app.channel();
        let job = app.ok(
            "start_federated_round",
            json!({"request": {
                "model": model, "steps": 3, "seq_len": 32, "batch_size": 2,
                "learning_rate": 5e-3, "device": "cpu", "rounds": 1
            }, "onEvent": channel}),
        );
        (job, id)
    };

    // Another model file than the federation's is refused before any round.
    let other = app.dir.path().join("other.bin");
    let mut bytes = std::fs::read(&model).expect("model");
    bytes.push(0);
    std::fs::write(&other, bytes).expect("copy");
    let (_, id) = round(&other.display().to_string());
    let events = app.finish(id, TIMEOUT);
    assert_eq!(
        last(&events)["error"]["kind"],
        "model_missing",
        "{events:?}"
    );
    assert!(
        last(&events)["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sha256")),
    );

    // Alone, the device waits for a round that needs two; cancelling ends
    // the wait with nothing shared.
    let model = model.display().to_string();
    let (job, id) = round(&model);
    std::thread::sleep(Duration::from_secs(2));
    app.ok("cancel_job", json!({"id": job}));
    let events = app.finish(id, TIMEOUT);
    assert_eq!(last(&events)["event"], "done", "{events:?}");
    assert_eq!(last(&events)["result"]["cancelled"], true);
    assert_eq!(last(&events)["result"]["rounds"], json!([]));

    // With a second real device, a round completes.
    let cancel = CancelToken::new();
    let peer_dir = app.dir.path().join("peer");
    let peer_invite = server.invite(peer::FEDERATION).expect("invite");
    let (url, pem) = (server.url().to_owned(), server.cert_pem().to_owned());
    let (events, peer_outcome) = std::thread::scope(|scope| {
        let device = scope.spawn(|| {
            peer::run_peer(
                &peer_dir,
                &url,
                &pem,
                &peer_invite,
                std::path::Path::new(&model),
                &shakespeare,
                &cancel,
            )
            .map_err(|e| e.to_string())
        });
        let (_, id) = round(&model);
        let events = app.finish(id, TIMEOUT);
        if last(&events)["event"] != "done" {
            cancel.cancel();
        }
        (events, device.join().expect("peer thread"))
    });
    let result = &last(&events)["result"];
    assert_eq!(last(&events)["event"], "done", "{events:?}");
    let peer_summary = peer_outcome.expect("the peer took part");
    assert_eq!(peer_summary.rounds.len(), 1);
    assert_eq!(result["rounds"].as_array().map(Vec::len), Some(1));
    let contributed = &result["rounds"][0];
    assert_eq!(
        contributed["round"].as_u64(),
        Some(peer_summary.rounds[0].round)
    );
    assert!(contributed["bytes_sent"].as_u64().is_some_and(|b| b > 0));
    assert!(contributed["log_size"].as_u64().is_some_and(|s| s > 0));
    let begun: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "begin")
        .filter_map(|e| e["task"].as_str())
        .collect();
    assert!(
        begun.iter().any(|t| t.starts_with("federated round")),
        "{begun:?}"
    );
    assert!(begun.contains(&"Training"), "{begun:?}");
    assert!(events.iter().any(|e| {
        e["event"] == "note"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("verified in the server's transparency log"))
    }));

    let status = &app.ok("federation_status", json!({}))["memberships"][0];
    assert_eq!(status["rounds"], json!([contributed["round"]]));
    let spent = status["epsilon_spent"].as_f64().expect("spent");
    assert!(spent > 0.0 && spent <= 8.0, "{status}");
    assert_eq!(status["log_size"], contributed["log_size"]);
    let history = app.ok("federation_history", json!({}));
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    assert_eq!(history[0]["federation_id"], peer::FEDERATION);
    assert_eq!(history[0]["bytes_sent"], contributed["bytes_sent"]);
    assert_eq!(
        history[0]["upload_sha256"], contributed["upload_sha256"],
        "the recorded hash is the one the log was checked for"
    );
    let audits = app.ok("audit_federations", json!({}));
    assert_eq!(audits[0]["verified"], true, "{audits}");
    assert_eq!(audits[0]["rounds"], 1);
    assert_eq!(audits[0]["commitments"], 1);
    let runs = app.ok("list_runs", json!({}));
    assert_eq!(runs[0]["kind"], "federated");
    assert_eq!(runs[0]["id"], contributed["run_id"]);

    let left = app.ok("leave_federation", json!({}));
    assert_eq!(left["federation_id"], peer::FEDERATION);
    assert_eq!(
        app.ok("federation_status", json!({}))["memberships"],
        json!([])
    );
    assert_eq!(
        app.ok("federation_history", json!({}))
            .as_array()
            .map(Vec::len),
        Some(1),
        "what was shared stays visible"
    );
    federation.server.shutdown().expect("the server stops");
}
