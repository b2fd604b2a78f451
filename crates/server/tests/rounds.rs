//! Federated rounds end to end: a real server over HTTPS on loopback and
//! real `FedClient`s in threads, SecAgg+ all the way.

mod common;
mod support;
use hearth_server::storage::prelude::*;

use std::sync::Arc;
use std::time::Duration;

use hearth_fed::audit::{Absence, AuditError, LogAudit};
use hearth_fed::client::{FedClientError, Membership, ParticipationReport};
use hearth_fed::dp::centred_lift;
use hearth_fed::global::apply_mean;
use hearth_fed::{DistributedDp, DpConfig, FederationId, MaskedUpload, RoundId};
use hearth_server::storage::{RoundOutcome, event_kinds};
use support::{B_START, Gate, PARAMS, Raw, Server, TestTrainer, kind, participate, wait_until};

/// Σ of the devices' quantized updates, mod 2^32.
fn modular_sum(trainers: &[Arc<TestTrainer>]) -> Vec<u32> {
    let mut sum = vec![0u32; PARAMS];
    for t in trainers {
        let q = t.encoded().expect("this device encoded an update");
        for (s, x) in sum.iter_mut().zip(q) {
            *s = s.wrapping_add(x);
        }
    }
    sum
}

/// Checks the published version is exactly version 0 + lr · (decoded sum /
/// n), and recovers the integer sum itself from the zero-initialised half.
fn assert_exact_aggregate(v0: &[f32], published: &[f32], sum: &[u32], n: usize, cohort: u32) {
    let dp = DistributedDp::new(
        DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 0.0,
        },
        6,
        cohort,
    )
    .expect("dp");
    let expected = apply_mean(v0, &dp.decode_mean(sum, n), 0.5).expect("apply");
    assert_eq!(
        published,
        expected.as_slice(),
        "published != v0 + lr · mean"
    );
    let scale = dp.quantizer().scale();
    for i in B_START..PARAMS {
        let recovered = (f64::from(published[i]) / 0.5 * n as f64 * scale).round() as i64;
        assert_eq!(
            recovered,
            i64::from(centred_lift(sum[i])),
            "coordinate {i}: the unmasked sum differs from Σ quantized updates"
        );
    }
}

fn count(server: &Server, kind: &str) -> usize {
    server.events().iter().filter(|e| e.kind == kind).count()
}

#[test]
fn ten_clients_publish_exactly_the_sum_of_their_quantized_updates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(6, 10, 0.0, 30));
    let devices: Vec<_> = (0..10).map(|_| server.enrol("notes")).collect();

    let observer = support::client(&devices[0].0, &devices[0].1);
    let v0 = observer.fetch_global().expect("version 0");
    assert_eq!(
        (v0.version(), v0.round(), v0.statement().contributors),
        (0, 0, 0)
    );
    let v0_params = v0.parameters().expect("v0 params");
    // PEFT's initialisation: A uniform in ±1/√64, B zero.
    assert!(v0_params[..B_START].iter().all(|x| x.abs() <= 0.125));
    assert!(v0_params[..B_START].iter().any(|&x| x != 0.0));
    assert!(v0_params[B_START..].iter().all(|&x| x == 0.0));

    let trainers: Vec<_> = (0..10).map(|i| Arc::new(TestTrainer::new(i))).collect();
    let handles = support::participate_all(&devices, &trainers);
    let mut reports = Vec::new();
    for handle in handles {
        let report = handle.join().expect("thread").expect("participation");
        assert_eq!((report.round, report.global_version_after), (1, 1));
        assert!(report.epsilon.is_infinite(), "no noise, no finite ε");
        assert!(report.bytes_sent as usize > 4 * PARAMS);
        assert!(report.bytes_received > 0);
        reports.push(report);
    }

    // Every device audits the round in the transparency log: the head
    // (under the key pinned at enrolment), its own commitment to the bytes
    // it uploaded, and the adapter it now uses.
    let mut commitments = std::collections::HashSet::new();
    for ((membership, secret), report) in devices.iter().zip(&reports) {
        let client = support::client(membership, secret);
        let mut audit = client.log_audit().expect("pinned log key");
        let verified = client.audit_round(&mut audit, report).expect("audit");
        // 2 configurations, 10 enrolments, the round's parameters, 10
        // commitments, the outcome, the publication.
        assert_eq!(verified.head.size, 25);
        assert_eq!(verified.parameters_index, Some(12));
        assert!(commitments.insert(verified.commitment_index.expect("committed")));
        let adapter = verified.adapter.expect("adapter verified");
        assert_eq!((adapter.round, adapter.contributors), (1, 10));
        // No noise: logged as no bound at all, at the federation's δ.
        assert_eq!(adapter.epsilon, hearth_ledger::NO_DP_BOUND);
        assert_eq!(adapter.delta, report.delta);

        // The stored audit re-verifies from scratch, and a later check
        // with nothing new still passes.
        let stored: LogAudit =
            serde_json::from_str(&serde_json::to_string(&audit).expect("save")).expect("load");
        let replayed = hearth_fed::audit::audit_all(&stored).expect("re-verifies");
        assert_eq!((replayed.commitments, replayed.adapters), (1, 1));
        let mut again = stored.clone();
        let _ = client.audit_round(&mut again, report).expect("again");

        // Had the server swapped this device's upload, the log would not
        // hold its commitment: the audit says so and accepts nothing.
        let mut swapped = report.clone();
        swapped.upload_sha256[0] ^= 1;
        let mut before = stored.clone();
        let err = client
            .audit_round(&mut before, &swapped)
            .expect_err("swapped upload");
        assert!(
            matches!(
                &err,
                FedClientError::Audit(AuditError::MissingCommitment {
                    why: Absence::NoEntry,
                    ..
                })
            ),
            "{err}"
        );
        assert_eq!(before, stored);
    }
    assert_eq!(commitments, (13..23).collect());

    let v1 = observer.fetch_global().expect("version 1");
    assert_eq!((v1.version(), v1.round()), (1, 1));
    assert_eq!(v1.statement().contributors, 10);
    assert_eq!(v1.statement().epsilon, None);
    let sum = modular_sum(&trainers);
    assert_exact_aggregate(&v0_params, &v1.parameters().expect("v1"), &sum, 10, 10);

    assert_eq!(count(&server, event_kinds::UPLOAD_ACCEPTED), 10);
    assert_eq!(count(&server, event_kinds::GLOBAL_PUBLISHED), 1);
    let outcome = server
        .events()
        .into_iter()
        .find(|e| e.kind == event_kinds::ROUND_OUTCOME)
        .expect("round outcome event");
    assert_eq!(outcome.detail["contributors"], 10);
    assert_eq!(outcome.detail["aborted"], false);
    server.stop();
}

#[test]
fn thirty_percent_dropping_after_sharing_still_aggregates_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(6, 10, 0.0, 3));
    let devices: Vec<_> = (0..10).map(|_| server.enrol("notes")).collect();
    let observer = support::client(&devices[0].0, &devices[0].1);
    let v0 = observer
        .fetch_global()
        .expect("v0")
        .parameters()
        .expect("v0");

    let trainers: Vec<_> = (0..10)
        .map(|i| {
            let mut t = TestTrainer::new(100 + i);
            // Three devices get their shares, then vanish before uploading.
            t.fail = i >= 7;
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);
    for (i, handle) in handles.into_iter().enumerate() {
        let result = handle.join().expect("thread");
        if i >= 7 {
            assert!(
                matches!(result, Err(FedClientError::Trainer(_))),
                "{result:?}"
            );
        } else {
            assert_eq!(result.expect("survivor").global_version_after, 1);
        }
    }
    let v1 = observer.fetch_global().expect("v1");
    assert_eq!(v1.statement().contributors, 7);
    let survivors = &trainers[..7];
    assert!(trainers[7..].iter().all(|t| t.encoded().is_none()));
    assert_exact_aggregate(
        &v0,
        &v1.parameters().expect("v1"),
        &modular_sum(survivors),
        7,
        10,
    );
    server.stop();
}

#[test]
fn a_device_over_its_privacy_budget_withdraws_before_announcing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The withdrawn device never advertises keys; a short key deadline
    // closes that stage without it.
    let config = support::config(3, 5, 1.0, 30)
        .replace("advertise_keys_secs = 30", "advertise_keys_secs = 2");
    let server = Server::start(dir.path(), &config);
    let devices: Vec<_> = (0..5).map(|_| server.enrol("notes")).collect();
    let trainers: Vec<_> = (0..5)
        .map(|i| {
            let mut t = TestTrainer::new(300 + i);
            if i == 4 {
                t.rho_budget = Some(1e-9);
            }
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);
    let mut charged = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        let result = handle.join().expect("thread");
        if i == 4 {
            assert!(
                matches!(result, Err(FedClientError::Trainer(_))),
                "{result:?}"
            );
        } else {
            let report = result.expect("within budget");
            assert_eq!(report.global_version_after, 1);
            charged.push(report.rho);
        }
    }
    // Every device was asked with the exact cost it would be charged.
    let asked: Vec<f64> = trainers
        .iter()
        .map(|t| {
            t.admitted_rho
                .lock()
                .expect("lock")
                .expect("admit was asked")
        })
        .collect();
    assert!(asked.iter().all(|&rho| rho.is_finite() && rho > 1e-9));
    assert_eq!(&asked[..4], &charged[..]);
    // The refusing device trained nothing and contributed nothing.
    assert!(trainers[4].encoded().is_none());
    assert!(trainers[4].update.lock().expect("lock").is_none());
    let observer = support::client(&devices[0].0, &devices[0].1);
    assert_eq!(
        observer
            .fetch_global()
            .expect("v1")
            .statement()
            .contributors,
        4
    );
    server.stop();
}

#[test]
fn dropping_past_the_threshold_aborts_and_publishes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(6, 10, 0.0, 3));
    let devices: Vec<_> = (0..10).map(|_| server.enrol("notes")).collect();
    let trainers: Vec<_> = (0..10)
        .map(|i| {
            let mut t = TestTrainer::new(200 + i);
            t.fail = i >= 5; // five of ten left; six needed
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);
    for (i, handle) in handles.into_iter().enumerate() {
        let result = handle.join().expect("thread");
        if i < 5 {
            assert!(
                matches!(
                    result,
                    Err(FedClientError::RoundAborted { round: 1, uploaded: true, ref reason })
                        if reason.contains("5 clients left")
                ),
                "{result:?}"
            );
        }
    }
    let observer = support::client(&devices[0].0, &devices[0].1);
    assert_eq!(observer.fetch_global().expect("global").version(), 0);
    let storage = server.storage();
    assert!(
        server
            .block_on(storage.latest_global("notes".into()))
            .expect("latest")
            .is_none()
    );
    let round = server.round("notes", 1).expect("round 1");
    assert!(matches!(
        round.summary.outcome,
        Some(RoundOutcome::Aborted { .. })
    ));
    assert_eq!(count(&server, event_kinds::GLOBAL_PUBLISHED), 0);
    let outcome = server
        .events()
        .into_iter()
        .find(|e| e.kind == event_kinds::ROUND_OUTCOME)
        .expect("outcome");
    assert_eq!(outcome.detail["aborted"], true);
    assert_eq!(outcome.detail["contributors"], 0);
    server.stop();
}

#[test]
fn a_server_killed_mid_round_resumes_and_publishes_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 4, 1.0, 60));
    let devices: Vec<_> = (0..4).map(|_| server.enrol("notes")).collect();
    let gate = Gate::default();
    let trainers: Vec<_> = (0..4)
        .map(|i| {
            let mut t = TestTrainer::new(300 + i);
            if i > 0 {
                t.gate = Some(gate.clone());
            }
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);

    // One upload is in the running sum when the server dies.
    wait_until("the first upload", Duration::from_secs(60), || {
        count(&server, event_kinds::UPLOAD_ACCEPTED) == 1
    });
    server.kill();
    let round = server.round("notes", 1).expect("round");
    assert_eq!(round.summary.outcome, None);
    assert_eq!(round.summary.stage, hearth_server::Stage::CollectingUploads);
    assert!(
        server
            .block_on(server.storage().latest_global("notes".into()))
            .expect("latest")
            .is_none()
    );

    server.restart();
    assert_eq!(
        server.running().recovery().resumed,
        [("notes".to_owned(), 1)]
    );
    gate.open();
    let mut epsilons = Vec::new();
    for handle in handles {
        let report = handle.join().expect("thread").expect("participation");
        assert_eq!(report.global_version_after, 1);
        epsilons.push(report.epsilon);
    }
    let observer = support::client(&devices[0].0, &devices[0].1);
    let v1 = observer.fetch_global().expect("v1");
    assert_eq!((v1.version(), v1.statement().contributors), (1, 4));
    // What each device accounted is what the server published.
    let published = v1.statement().epsilon.expect("noise gives a finite ε");
    assert!(
        epsilons.iter().all(|&e| e == published),
        "{epsilons:?} vs {published}"
    );
    assert_eq!(count(&server, event_kinds::GLOBAL_PUBLISHED), 1);
    assert_eq!(count(&server, event_kinds::UPLOAD_ACCEPTED), 4);
    assert_eq!(count(&server, "round_resumed"), 1);
    server.stop();
}

#[test]
fn bad_requests_are_refused_clearly_while_the_round_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(3, 4, 0.0, 60));
    let devices: Vec<_> = (0..4).map(|_| server.enrol("notes")).collect();
    let (outsider, outsider_secret) = server.enrol("notes");
    let (revoked, revoked_secret) = server.enrol("notes");
    server
        .block_on(hearth_server::ops::revoke(
            &server.config,
            &revoked.device_id,
        ))
        .expect("revoke")
        .expect("device");
    let (photos, photos_secret) = server.enrol("photos");

    let raw = Arc::new(Raw::new(&server));
    let (me, my_secret) = (devices[0].0.clone(), devices[0].1);
    let other_key = hearth_fed::DeviceIdentity::from_secret_bytes(&devices[1].1).device_id();
    let attacks = {
        let raw = Arc::clone(&raw);
        move || {
            let path = |what: &str| format!("/v1/federations/notes/rounds/1/{what}");
            let upload = |device, words: usize| {
                MaskedUpload {
                    federation: FederationId::from_name("notes"),
                    round: RoundId(1),
                    device,
                    masked: vec![7; words],
                }
                .encode()
            };
            let my_key = hearth_fed::DeviceIdentity::from_secret_bytes(&my_secret).device_id();
            let post = |what: &str, body: &[u8]| {
                raw.signed("POST", &path(what), body, &me.device_id, &my_secret)
            };

            let (status, body) = post("upload", &upload(my_key, PARAMS - 1));
            assert_eq!((status, kind(&body)), (400, "bad_request"), "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("255 words"))
            );

            let (status, body) = post("upload", &upload(my_key, PARAMS + 1000));
            assert_eq!((status, kind(&body)), (413, "payload_too_large"), "{body}");

            let mut garbled = upload(my_key, PARAMS);
            garbled[0] = b'X';
            let (status, body) = post("upload", &garbled);
            assert_eq!((status, kind(&body)), (400, "bad_request"), "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("magic"))
            );

            let (status, body) = post("upload", &upload(other_key, PARAMS));
            assert_eq!((status, kind(&body)), (403, "forbidden"), "{body}");

            let mut elsewhere =
                MaskedUpload::decode(&upload(my_key, PARAMS), PARAMS as u32).expect("decode");
            elsewhere.federation = FederationId::from_name("photos");
            let (status, body) = post("upload", &elsewhere.encode());
            assert_eq!((status, kind(&body)), (400, "bad_request"), "{body}");

            let (status, body) = post("shares", b"{not json");
            assert_eq!((status, kind(&body)), (400, "bad_request"), "{body}");

            // A stage's messages are taken in that stage only.
            let early = hearth_fed::UnmaskResponse {
                federation: FederationId::from_name("notes"),
                round: RoundId(1),
                sender: my_key,
                self_mask_shares: vec![],
                mask_key_shares: vec![],
            };
            let (status, body) = post("unmask", &serde_json::to_vec(&early).expect("json"));
            assert_eq!((status, kind(&body)), (409, "conflict"), "{body}");

            // Signed by another key under this device's name.
            let (status, body) = raw.signed("GET", &path("poll"), b"", &me.device_id, &[0x42; 32]);
            assert_eq!((status, kind(&body)), (401, "bad_signature"), "{body}");

            // The same signed request twice.
            let now = hearth_server::now_ms();
            let first = raw.request("GET", &path("poll"), b"", &me.device_id, &my_secret, now);
            let again = raw.request("GET", &path("poll"), b"", &me.device_id, &my_secret, now);
            assert_eq!(raw.send(first).0, 200);
            let (status, body) = raw.send(again);
            assert_eq!((status, kind(&body)), (401, "replayed_request"), "{body}");

            // Devices with no business in this round.
            let (status, body) = raw.signed(
                "GET",
                &path("poll"),
                b"",
                &outsider.device_id,
                &outsider_secret,
            );
            assert_eq!((status, kind(&body)), (403, "forbidden"), "{body}");
            let (status, body) = raw.signed(
                "GET",
                &path("poll"),
                b"",
                &revoked.device_id,
                &revoked_secret,
            );
            assert_eq!((status, kind(&body)), (403, "revoked_device"), "{body}");
            let (status, body) =
                raw.signed("GET", &path("poll"), b"", "dev_nobody", &outsider_secret);
            assert_eq!((status, kind(&body)), (401, "unknown_device"), "{body}");
            let (status, body) =
                raw.signed("GET", &path("poll"), b"", &photos.device_id, &photos_secret);
            assert_eq!((status, kind(&body)), (403, "forbidden"), "{body}");
        }
    };
    let trainers: Vec<_> = (0..4)
        .map(|i| {
            let mut t = TestTrainer::new(400 + i);
            if i == 0 {
                t.during = Some(Box::new(attacks.clone()));
            }
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);
    for (i, handle) in handles.into_iter().enumerate() {
        let report = handle.join().expect("thread (attack assertions)");
        match report {
            Ok(report) => assert_eq!(report.global_version_after, 1),
            Err(e) => panic!("device {i}: {e:?}"),
        }
    }
    let observer = support::client(&devices[0].0, &devices[0].1);
    assert_eq!(
        observer
            .fetch_global()
            .expect("v1")
            .statement()
            .contributors,
        4
    );
    // Nothing refused reached the sum: exactly one upload per device.
    assert_eq!(count(&server, event_kinds::UPLOAD_ACCEPTED), 4);
    server.stop();
}

#[test]
fn the_client_trusts_only_what_it_pinned_and_stops_when_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(3, 4, 0.0, 30));
    let (membership, secret) = server.enrol("notes");
    assert_eq!(membership.federation_id, "notes");
    // The log key pinned at enrolment is the one the server prints.
    assert_eq!(
        membership.log_key.as_deref(),
        Some(server.running().log_public_key())
    );

    // Another certificate: no connection at all.
    let other = tempfile::tempdir().expect("tempdir");
    let paths = hearth_server::tls::TlsPaths {
        cert: other.path().join("cert.pem"),
        key: other.path().join("key.pem"),
        self_signed: true,
    };
    hearth_server::tls::ensure_self_signed(&paths, &[]).expect("cert");
    let mut options = support::options();
    options.retry_for = Duration::from_millis(300);
    let stranger = hearth_fed::client::Membership {
        certificate_pem: std::fs::read_to_string(&paths.cert).expect("pem"),
        ..membership.clone()
    };
    let client = hearth_fed::client::FedClient::with_options(
        stranger,
        hearth_fed::DeviceIdentity::from_secret_bytes(&secret),
        options,
    )
    .expect("client");
    assert!(matches!(
        client.checkin(true),
        Err(FedClientError::Transport(_))
    ));

    // Another publication key: every adapter is refused.
    let other_key = hearth_server::ServerIdentity::generate().public_key_base64();
    let impostor = hearth_fed::client::Membership {
        server_key: other_key,
        ..membership.clone()
    };
    let client = support::client(&impostor, &secret);
    assert!(matches!(
        client.fetch_global(),
        Err(FedClientError::GlobalIntegrity(_))
    ));

    // Another log key: no head of this server's log is accepted, and the
    // error names the key it presents instead.
    let other_log_key = hearth_ledger::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let misled = hearth_fed::client::Membership {
        log_key: Some(hex::encode(other_log_key.as_bytes())),
        ..membership.clone()
    };
    let client = support::client(&misled, &secret);
    let mut audit = client.log_audit().expect("audit");
    let before = audit.clone();
    let nothing_uploaded = ParticipationReport {
        round: 1,
        bytes_sent: 0,
        bytes_received: 0,
        rho: 0.0,
        epsilon: f64::INFINITY,
        delta: 1e-5,
        global_version_after: 0,
        upload_sha256: [0; 32],
        round_info: hearth_fed::RoundInfo {
            federation: hearth_fed::FederationId::from_name("notes"),
            round: hearth_fed::RoundId(1),
            vector_len: 1,
            min_clients: 2,
            max_clients: 2,
            min_survivors: 2,
            degree: None,
            threshold: None,
            graph_seed: hearth_fed::GraphSeed([0; 32]),
            dp: hearth_fed::DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 0.0,
            },
            threat_model: None,
        },
        cohort_head: None,
    };
    let err = client
        .audit_round(&mut audit, &nothing_uploaded)
        .expect_err("another key");
    assert!(
        matches!(&err, FedClientError::Audit(AuditError::KeyChanged { served, .. })
            if Some(served.as_str()) == membership.log_key.as_deref()),
        "{err}"
    );
    assert_eq!(audit, before);
    // An audit kept for another key is refused before asking anything.
    let client = support::client(&membership, &secret);
    assert!(matches!(
        client.audit_round(&mut audit, &nothing_uploaded),
        Err(FedClientError::LogKey(_))
    ));

    // A cancelled round stops before its first request to the round.
    let client = support::client(&membership, &secret);
    let cancel = hearth_progress::CancelToken::new();
    cancel.cancel();
    let result = client.participate(
        1,
        &TestTrainer::new(1),
        &hearth_progress::NoProgress,
        &cancel,
    );
    assert!(
        matches!(result, Err(FedClientError::Cancelled)),
        "{result:?}"
    );
    server.stop();
}

/// Runs one round of `notes` with every device in it; returns the reports
/// in device order.
fn run_round(devices: &[(Membership, [u8; 32])], seed: u64) -> Vec<ParticipationReport> {
    let handles: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, (m, s))| participate(m.clone(), *s, Arc::new(TestTrainer::new(seed + i as u64))))
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("participation"))
        .collect()
}

#[test]
fn a_device_catches_a_forked_server_by_the_head_it_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..3).map(|_| server.enrol("notes")).collect();

    // Someone copies the data folder (keys, certificate, database) and
    // runs a second server from it: the same identity, the same past.
    server.kill();
    let copy = tempfile::tempdir().expect("tempdir");
    common::copy_dir(dir.path(), copy.path());
    server.restart();
    let fork = Server::start(copy.path(), "unused: the copy has its configuration");
    assert_eq!(
        fork.running().log_public_key(),
        server.running().log_public_key()
    );

    // The real round, audited by every device; each stores its audit.
    let reports = run_round(&devices, 0);
    let mut audits = Vec::new();
    for ((membership, secret), report) in devices.iter().zip(&reports) {
        let client = support::client(membership, secret);
        let mut audit = client.log_audit().expect("pinned log key");
        let _ = client
            .audit_round(&mut audit, report)
            .expect("honest round");
        audits.push(audit);
    }

    // The same devices are then shown the fork (a redirected address, a
    // restored backup): another round 1, another history of equal size.
    let at_fork: Vec<_> = devices
        .iter()
        .map(|(m, s)| {
            (
                Membership {
                    server_url: fork.url.clone(),
                    ..m.clone()
                },
                *s,
            )
        })
        .collect();
    let forked_reports = run_round(&at_fork, 100);
    let (membership, secret) = &at_fork[0];
    let client = support::client(membership, secret);
    let stored = audits[0].clone();
    let err = client
        .audit_round(&mut audits[0], &forked_reports[0])
        .expect_err("the fork is caught");
    // Caught at the first head of the fork the device meets: the one its
    // cohort was checked under mid-round, which is no prefix of its tree.
    assert!(
        matches!(
            &err,
            FedClientError::Audit(
                AuditError::Fork { size: 11, .. }
                    | AuditError::HistoryRewritten {
                        from: 6,
                        to: 11,
                        ..
                    }
            )
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fork"), "{err}");
    assert_eq!(audits[0], stored, "nothing of the fork accepted");

    // Only the stored head tells: a device with no history accepts the
    // fork's log, which is consistent in itself.
    let mut fresh = client.log_audit().expect("pinned log key");
    let _ = client
        .audit_round(&mut fresh, &forked_reports[0])
        .expect("a fresh audit sees a consistent log");
    fork.stop();
    server.stop();
}

/// Attack 2 of the threat model, from the device's side: the server changes
/// a privacy parameter after devices joined (here, a tenth of the noise).
/// Each device checks the round against the policy it pinned at join and
/// refuses before announcing anything: no budget check, no charge, no keys.
#[test]
fn a_round_outside_the_policy_pinned_at_join_is_refused_before_anything_is_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(2, 2, 1.0, 30));
    let devices: Vec<(Membership, [u8; 32])> = (0..2).map(|_| server.enrol("notes")).collect();
    for (membership, _) in &devices {
        let policy = membership.policy.as_ref().expect("pinned at join");
        assert_eq!(policy.dp.noise_multiplier, 1.0);
        assert_eq!((policy.max_noise_split, policy.max_cohort), (2, 2));
        assert_eq!(policy.parameters, PARAMS as u64);
    }
    server.kill();
    let path = dir.path().join("hearth-server.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains("noise_multiplier = 1 }"), "{text}");
    std::fs::write(
        &path,
        text.replacen("noise_multiplier = 1 }", "noise_multiplier = 0.1 }", 1),
    )
    .expect("config");
    server.restart();

    let trainers: Vec<Arc<TestTrainer>> = (0..2).map(|i| Arc::new(TestTrainer::new(i))).collect();
    for handle in support::participate_all(&devices, &trainers) {
        let result = handle.join().expect("device thread");
        assert!(
            matches!(
                result,
                Err(FedClientError::Policy(
                    hearth_fed::client::PolicyViolation::Dp { .. }
                ))
            ),
            "{result:?}"
        );
    }
    for trainer in &trainers {
        assert_eq!(*trainer.admitted_rho.lock().expect("lock"), None);
        assert!(trainer.charged().is_empty());
    }
    let round = server.round("notes", 1).expect("the round opened");
    let state: serde_json::Value = serde_json::from_slice(&round.state).expect("state");
    assert_eq!(
        state["state"]["advertisements"],
        serde_json::json!({}),
        "no device announced keys: {state}"
    );
    server.stop();
}
