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
    // The log's participations were held to the devices' gossiped
    // signed commitments (this device posted its own after each round).
    assert!(
        audited.contains("backed by their device's signed commitment"),
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

/// Cancels its token the moment a federated round reports its upload sent
/// (step 4 of the round's task): "right after the upload".
struct CancelAfterUpload {
    cancel: CancelToken,
    in_round: std::sync::atomic::AtomicBool,
}

impl hearth_progress::Progress for CancelAfterUpload {
    fn begin(&self, task: &str, _total: Option<u64>) {
        self.in_round.store(
            task.starts_with("federated round"),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    fn advance(&self, done: u64) {
        if done >= 4 && self.in_round.load(std::sync::atomic::Ordering::SeqCst) {
            self.cancel.cancel();
        }
    }
}

/// Runs the peer device (joining with `invite`, one round) in a thread of
/// `scope`, stopped by `cancel`.
fn spawn_peer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    dir: std::path::PathBuf,
    server: &'scope peer::PeerServer,
    invite: String,
    model: &'scope std::path::Path,
    shakespeare: &'scope std::path::Path,
    cancel: &'scope CancelToken,
) -> std::thread::ScopedJoinHandle<
    'scope,
    peer::PeerResult<hearth_personalize::federation::ParticipationSummary>,
> {
    scope.spawn(move || {
        peer::run_peer(
            &dir,
            server.server.url(),
            server.server.cert_pem(),
            &invite,
            model,
            shakespeare,
            cancel,
        )
    })
}

/// Attack 3 of the threat model: a cancel right after the upload (or a
/// crash, a time-out, an abort) must not leave the upload uncharged, and a
/// round number this device was already charged for is refused before any
/// training.
#[test]
fn a_cancel_after_the_upload_is_charged_and_a_replayed_round_is_refused() {
    use hearth_personalize::eligibility::ParticipationPolicy;
    use hearth_personalize::federation::{self, JoinRequest, Participation};
    use hearth_store::{ImportOptions, Library, NewUpload};

    let (Some(model), Some(shakespeare)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let server = peer::start_server(&work.path().join("server"), &model).expect("server");
    let notes = hearth_testdata::shakespeare_notes(work.path(), 60).expect("shakespeare");
    let mut library = Library::open(work.path().join("library")).expect("library");
    library
        .import(
            &[notes],
            &ImportOptions::default(),
            &hearth_progress::NoProgress,
            &CancelToken::new(),
        )
        .expect("import");
    let membership = federation::join(
        &mut library,
        &JoinRequest {
            server_url: server.server.url().to_owned(),
            certificate_pem: server.server.cert_pem().to_owned(),
            invite: server.server.invite(peer::FEDERATION).expect("invite"),
            // Room for several rounds: the test is about when charges are
            // booked, not about the budget.
            epsilon_budget: 1000.0,
            policy: ParticipationPolicy {
                require_power: false,
                require_idle: false,
                hours: None,
            },
        },
    )
    .expect("join");
    let participation = Participation {
        model: Some(model.display().to_string()),
        steps: 2,
        seq_len: 32,
        batch_size: 2,
        learning_rate: 5e-3,
        device: hearth_ml::DeviceChoice::Cpu,
        rounds: Some(1),
        ..Participation::default()
    };
    let federated_runs = |library: &Library| {
        library
            .runs()
            .expect("runs")
            .iter()
            .filter(|r| r.kind == "federated")
            .count()
    };

    // 1. Cancelled right after the upload left: the charge is on the books.
    let peer_cancel = CancelToken::new();
    let outcome = std::thread::scope(|scope| {
        let peer = spawn_peer(
            scope,
            work.path().join("peer-1"),
            &server,
            server.server.invite(peer::FEDERATION).expect("invite"),
            &model,
            &shakespeare,
            &peer_cancel,
        );
        let cancel = CancelToken::new();
        watchdog(scope, &cancel);
        let progress = CancelAfterUpload {
            cancel: cancel.clone(),
            in_round: false.into(),
        };
        let outcome = federation::participate(
            &mut library,
            &participation,
            &peer::Always,
            &progress,
            &cancel,
        );
        cancel.cancel();
        peer_cancel.cancel();
        let _ = peer.join();
        outcome
    });
    assert!(
        matches!(
            outcome,
            Err(hearth_personalize::PersonalizeError::Cancelled)
        ),
        "{outcome:?}"
    );
    let uploads = library.uploads(membership.id).expect("uploads");
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let charged = &uploads[0];
    assert!(charged.rho > 0.0 && charged.rho.is_finite(), "{charged:?}");
    assert_eq!(
        charged.global_version, None,
        "the round never finished here"
    );
    let status = federation::status(&library, &peer::Always).expect("status");
    assert!(status[0].epsilon_spent > 0.0, "{status:?}");
    let trained = federated_runs(&library);
    assert_eq!(trained, 1);

    // 2. The server comes back with a round number at or below one this
    // device was charged for (here: its books say round 1000): refused
    // before any training, and nothing more is charged.
    library
        .charge_upload(&NewUpload {
            membership_id: membership.id,
            round: 1000,
            bytes_sent: 0,
            bytes_received: 0,
            // Only the round number matters here.
            rho: 0.0,
            epsilon: 0.0,
            upload_sha256: "a".repeat(64),
            global_version: None,
            run_id: None,
        })
        .expect("books");
    let spent = library.rho_spent(membership.id).expect("spent");
    let peer_cancel = CancelToken::new();
    let outcome = std::thread::scope(|scope| {
        let peer = spawn_peer(
            scope,
            work.path().join("peer-2"),
            &server,
            server.server.invite(peer::FEDERATION).expect("invite"),
            &model,
            &shakespeare,
            &peer_cancel,
        );
        let cancel = CancelToken::new();
        watchdog(scope, &cancel);
        let outcome = federation::participate(
            &mut library,
            &participation,
            &peer::Always,
            &hearth_progress::NoProgress,
            &cancel,
        );
        cancel.cancel();
        peer_cancel.cancel();
        let _ = peer.join();
        outcome
    });
    assert!(
        matches!(
            outcome,
            Err(hearth_personalize::PersonalizeError::RoundReplayed { last: 1000, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(federated_runs(&library), trained, "no training started");
    assert_eq!(library.rho_spent(membership.id).expect("spent"), spent);
    server.server.shutdown().expect("shutdown");
}

/// Cancels `cancel` after [`ROUND_LIMIT`] unless it was cancelled before
/// (the caller cancels it when done): no participation waits forever.
fn watchdog<'scope>(scope: &'scope std::thread::Scope<'scope, '_>, cancel: &CancelToken) {
    let cancel = cancel.clone();
    scope.spawn(move || {
        let until = Instant::now() + ROUND_LIMIT;
        while Instant::now() < until && !cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(100));
        }
        cancel.cancel();
    });
}
