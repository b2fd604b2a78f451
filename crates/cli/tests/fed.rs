//! `hearth fed` end to end: a real hearth-server on 127.0.0.1 (in this test
//! process, HTTPS with its self-signed certificate), a second real device
//! (a thread, through the same library calls), and this binary joining,
//! taking part in a round, listing its upload, auditing the server's log
//! and leaving. stories260K and tinyshakespeare from `../shared/data`.

mod common;

// The federation the app's tests and its e2e run use: the same server
// configuration and second device, shared rather than copied.
#[path = "../../../src-tauri/examples/federation_peer/peer.rs"]
#[allow(dead_code)]
mod peer;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{hearth, json, run_ok};
use hearth_progress::CancelToken;

/// Longest the round may take before the test gives up (and stops both
/// devices).
const ROUND_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn a_device_joins_takes_part_in_a_round_audits_and_leaves() {
    let (Some(model), Some(shakespeare)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let server = peer::start_server(&work.path().join("server"), &model).expect("server");
    let invite = server.server.invite(peer::FEDERATION).expect("invite");
    let peer_invite = server.server.invite(peer::FEDERATION).expect("invite");

    // This device's notes: speeches from the start of the play.
    let library = work.path().join("library");
    let notes = work.path().join("notes");
    std::fs::create_dir_all(&notes).expect("notes");
    let text = std::fs::read_to_string(&shakespeare).expect("text");
    for (index, speech) in text.split("\n\n").take(60).enumerate() {
        std::fs::write(notes.join(format!("{index:03}.txt")), speech).expect("note");
    }
    run_ok(hearth(&library).arg("import").arg(&notes));

    let joined = run_ok(
        hearth(&library)
            .args(["fed", "join", server.server.url(), "--invite", &invite])
            .arg("--cert")
            .arg(&server.certificate)
            .args(["--any-power", "--any-load"]),
    );
    let said = String::from_utf8_lossy(&joined.stdout);
    assert!(said.contains(peer::FEDERATION), "{said}");
    let status = json(hearth(&library).args(["fed", "status", "--json"]));
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status:#}");
    assert_eq!(status[0]["epsilon_spent"], 0.0);

    // This device (the binary) and the peer (a thread) make the round's
    // two devices. Either failing stops the other; nothing waits forever.
    let cancel = CancelToken::new();
    let (url, certificate) = (server.server.url(), server.server.cert_pem());
    let (run, peer_outcome) = std::thread::scope(|scope| {
        let peer = scope.spawn(|| {
            peer::run_peer(
                &work.path().join("peer"),
                url,
                certificate,
                &peer_invite,
                &model,
                &shakespeare,
                &cancel,
            )
        });
        let mut child = hearth(&library)
            .args(["fed", "run", "--rounds", "1", "--model"])
            .arg(&model)
            .args(["--steps", "3", "--seq", "32", "--batch", "2"])
            .args(["--learning-rate", "5e-3", "--device", "cpu"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hearth fed run starts");
        // Once the peer is done (its round published, or failed), this
        // device has a minute to finish its own side (audit, records).
        let mut deadline = Instant::now() + ROUND_LIMIT;
        let mut peer_done = false;
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if !peer_done && peer.is_finished() {
                peer_done = true;
                deadline = deadline.min(Instant::now() + Duration::from_secs(60));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let run = child.wait_with_output().expect("output");
        if !run.status.success() {
            cancel.cancel();
        }
        (run, peer.join().expect("peer thread"))
    });
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "hearth fed run failed\nstdout: {stdout}\nstderr: {}\npeer: {peer_outcome:?}",
        String::from_utf8_lossy(&run.stderr)
    );
    let peer_summary = peer_outcome.expect("the peer's round");
    assert_eq!(peer_summary.rounds.len(), 1);
    assert!(stdout.contains("published"), "{stdout}");

    // What was shared is listed: one upload, its size, its privacy cost
    // and the hash of exactly what was sent.
    let history = json(hearth(&library).args(["fed", "history", "--json"]));
    let uploads = history.as_array().expect("uploads");
    assert_eq!(uploads.len(), 1, "{history:#}");
    let upload = &uploads[0];
    assert!(upload["bytes_sent"].as_u64().expect("bytes") > 0);
    let epsilon = upload["epsilon"].as_f64().expect("epsilon");
    assert!(epsilon.is_finite() && epsilon > 0.0, "{upload:#}");
    assert_eq!(
        upload["upload_sha256"].as_str().map(str::len),
        Some(64),
        "{upload:#}"
    );
    let status = json(hearth(&library).args(["fed", "status", "--json"]));
    assert_eq!(status[0]["rounds"].as_array().map(Vec::len), Some(1));
    assert!((status[0]["epsilon_spent"].as_f64().expect("spent") - epsilon).abs() < 1e-9);
    assert!(status[0]["log_size"].as_u64().expect("log size") > 0);

    // The server's log is re-verified from what this device stored.
    let audit = run_ok(hearth(&library).arg("audit"));
    let audited = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audited.contains("verified") && !audited.contains("FAILED"),
        "{audited}"
    );

    // Leaving switches federation off; the history stays visible.
    run_ok(hearth(&library).args(["fed", "leave"]));
    assert_eq!(
        json(hearth(&library).args(["fed", "status", "--json"])),
        serde_json::json!([])
    );
    let history = json(hearth(&library).args(["fed", "history", "--json"]));
    assert_eq!(history.as_array().map(Vec::len), Some(1));
    server.server.shutdown().expect("shutdown");
}
