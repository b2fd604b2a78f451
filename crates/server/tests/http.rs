//! End to end over HTTPS on loopback: enrolment, signed requests and their
//! refusals, body limits, check-in and cohort forming, restart safety.

mod common;
use hearth_server::storage::prelude::*;

use std::time::Duration;

use common::{TestServer, kind, status_and_json, trusting_client};
use ed25519_dalek::SigningKey;
use hearth_fed::global::{AdapterLayout, GlobalStatement};
use hearth_server::config::Config;
use hearth_server::storage::{Publication, SqliteStorage};
use hearth_server::{CheckinResponse, Stage, now_ms, ops};

/// The `notes` federation's adapter layout in the test configuration.
fn t_config_layout(dir: &std::path::Path) -> AdapterLayout {
    let config = Config::load(&dir.join("hearth-server.toml")).expect("config");
    config
        .federation("notes")
        .expect("notes")
        .adapter_layout()
        .expect("layout")
}

const CHECKIN: &str = "/v1/federations/notes/checkin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_endpoints_and_uniform_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;

    let (status, health) = t.get("/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, info) = t.get("/v1/federations/photos").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["base_model"]["id"], "tiny-vision");
    assert_eq!(info["parameters"], 32);
    assert_eq!(info["cohort_target"], 4);
    assert_eq!(info["dp"]["noise_multiplier"], 1.1);
    // Four devices are too few for the threat model's bounds: the complete
    // graph, the most a round of four can do.
    assert_eq!(info["secagg_full_cohort"]["neighbours"], 3);
    assert_eq!(info["threat_model"]["corrupt_fraction"], 0.01);
    assert!(info["global"].is_null());

    // Before any round, the latest global adapter is version 0, signed.
    let response = t
        .client
        .get(t.url("/v1/federations/notes/global/latest"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-hearth-global-version"], "0");
    assert_eq!(response.headers()["x-hearth-epsilon"], "none");
    assert!(response.headers().contains_key("x-hearth-global-signature"));
    let (status, key) = t.get("/v1/server-key").await;
    assert_eq!(status, 200);
    assert_eq!(key["algorithm"], "ed25519");
    assert_eq!(
        key["public_key"].as_str(),
        hearth_server::ops::server_key(&t.config)
            .expect("key")
            .as_deref()
    );
    let (status, body) = t.get("/v1/federations/nope").await;
    assert_eq!((status, kind(&body)), (404, "not_found"));
    let (status, body) = t.get("/v1/no/such/route").await;
    assert_eq!((status, kind(&body)), (404, "not_found"));
    // Wrong method: the router's bare 405 gets the same JSON shape.
    let response = t.client.put(t.url("/v1/health")).send().await.expect("put");
    assert!(response.headers().contains_key("allow"));
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (405, "method_not_allowed"));

    // A client that trusts some other certificate cannot talk to it at all.
    let other = tempfile::tempdir().expect("tempdir");
    let other_paths = hearth_server::tls::TlsPaths {
        cert: other.path().join("cert.pem"),
        key: other.path().join("key.pem"),
        self_signed: true,
    };
    hearth_server::tls::ensure_self_signed(&other_paths, &[]).expect("other cert");
    let stranger = trusting_client(&other_paths.cert);
    assert!(stranger.get(t.url("/v1/health")).send().await.is_err());

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_uses_an_invite_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;

    let token = t.invite("notes").await;
    let key = SigningKey::from_bytes(&[1; 32]);
    let (status, body) = t.enrol_with(&token, &key).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["device_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("dev_"))
    );

    // Used: refused, whoever presents it.
    let (status, body) = t
        .enrol_with(&token, &SigningKey::from_bytes(&[2; 32]))
        .await;
    assert_eq!((status, kind(&body)), (403, "invite_refused"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used"))
    );

    // Unknown token.
    let bogus = hearth_server::auth::encode(&[9; 32]);
    let (status, body) = t.enrol_with(&bogus, &key).await;
    assert_eq!((status, kind(&body)), (403, "invite_refused"));

    // A proof by a different key than the one presented is refused, and
    // does not use up the invite.
    let fresh = t.invite("notes").await;
    let raw = hearth_server::auth::decode(&fresh, "invite").expect("token");
    let forged = serde_json::json!({
        "invite": fresh,
        "public_key": hearth_server::auth::encode(SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes()),
        "signature": hearth_server::auth::sign_enrolment(&SigningKey::from_bytes(&[4; 32]), &raw),
    });
    let response = t
        .client
        .post(t.url("/v1/enrol"))
        .header("content-type", "application/json")
        .body(forged.to_string())
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (401, "bad_signature"), "{body}");
    let (status, _) = t
        .enrol_with(&fresh, &SigningKey::from_bytes(&[3; 32]))
        .await;
    assert_eq!(status, 201);

    // The same key cannot enrol twice in one federation.
    let again = t.invite("notes").await;
    let (status, body) = t
        .enrol_with(&again, &SigningKey::from_bytes(&[3; 32]))
        .await;
    assert_eq!((status, kind(&body)), (409, "conflict"), "{body}");

    // Malformed JSON answers in the same shape.
    let response = t
        .client
        .post(t.url("/v1/enrol"))
        .header("content-type", "application/json")
        .body("{\"invite\": 3}")
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (400, "bad_request"));

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkins_form_a_round() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let a = t.enrol("notes", 1).await;
    let b = t.enrol("notes", 2).await;

    // One eligible device is not a cohort: come back soon (gathering).
    let (status, body) = t.signed_post(&a, CHECKIN, b"{}").await;
    assert_eq!(status, 200, "{body}");
    let first: CheckinResponse = serde_json::from_value(body).expect("checkin response");
    let CheckinResponse::ComeBackIn { seconds } = first else {
        panic!("expected to wait, got {first:?}");
    };
    assert!((5..=6).contains(&seconds), "gathering delay {seconds}");

    // A device that is not eligible now does not complete it either.
    let (_, body) = t.signed_post(&b, CHECKIN, br#"{"eligible": false}"#).await;
    assert!(body.get("come_back_in").is_some(), "{body}");

    // The second eligible device completes the cohort (target 2 x 1.0).
    let (status, body) = t.signed_post(&b, CHECKIN, br#"{"eligible": true}"#).await;
    assert_eq!(status, 200, "{body}");
    let joined: CheckinResponse = serde_json::from_value(body).expect("response");
    assert_eq!(
        joined,
        CheckinResponse::Join {
            round: 1,
            stage: Stage::CollectingKeys
        }
    );
    // The first device hears about it on its next check-in.
    let (_, body) = t.signed_post(&a, CHECKIN, b"").await;
    let joined: CheckinResponse = serde_json::from_value(body).expect("response");
    assert!(matches!(joined, CheckinResponse::Join { round: 1, .. }));

    // A device of this federation has no business in another.
    let (status, body) = t
        .signed_post(&a, "/v1/federations/photos/checkin", b"{}")
        .await;
    assert_eq!((status, kind(&body)), (403, "forbidden"), "{body}");

    let status = ops::status(&t.config).await.expect("status");
    let notes = status.iter().find(|f| f.id == "notes").expect("notes");
    assert_eq!(notes.devices.active, 2);
    assert_eq!(
        notes.round_in_flight.as_ref().map(|r| r.cohort_size),
        Some(2)
    );

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let device = t.enrol("notes", 1).await;

    // No credentials.
    let response = t
        .client
        .post(t.url(CHECKIN))
        .body("{}")
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (401, "missing_credentials"));

    // Signed by another key.
    let impostor = common::Device {
        id: device.id.clone(),
        key: SigningKey::from_bytes(&[42; 32]),
    };
    let (status, body) = t.signed_post(&impostor, CHECKIN, b"{}").await;
    assert_eq!((status, kind(&body)), (401, "bad_signature"), "{body}");

    // Signed, then the body changed in transit. (Its signature is used up
    // once its head checks out, so it is dated a minute ahead, inside the
    // clock window, where no later request in this test signs the same
    // bytes.)
    let headers = hearth_server::auth::sign_request(
        &device.key,
        &hearth_server::auth::RequestToSign {
            device_id: &device.id,
            method: "POST",
            path: CHECKIN,
            timestamp_ms: now_ms() + 60_000,
            body: b"{}",
        },
    )
    .expect("sign");
    let mut tampered = t.client.post(t.url(CHECKIN)).body(r#"{"eligible":false}"#);
    for (name, value) in headers.pairs() {
        tampered = tampered.header(name, value);
    }
    let (status, body) = status_and_json(tampered.send().await.expect("post")).await;
    assert_eq!((status, kind(&body)), (401, "body_mismatch"), "{body}");

    // Signed, then both the body and its hash header changed: the signature
    // no longer covers the head.
    let other = r#"{"eligible":false}"#;
    let mut tampered = t.client.post(t.url(CHECKIN)).body(other);
    for (name, value) in headers.pairs() {
        let value = if name == hearth_server::auth::CONTENT_SHA256_HEADER {
            hex::encode(hearth_server::auth::body_sha256(other.as_bytes()))
        } else {
            value
        };
        tampered = tampered.header(name, value);
    }
    let (status, body) = status_and_json(tampered.send().await.expect("post")).await;
    assert_eq!((status, kind(&body)), (401, "bad_signature"), "{body}");

    // No body hash header, or a malformed one.
    for hash in [None, Some("not-a-hash")] {
        let mut request = t.client.post(t.url(CHECKIN)).body("{}");
        for (name, value) in headers.pairs() {
            if name != hearth_server::auth::CONTENT_SHA256_HEADER {
                request = request.header(name, value);
            } else if let Some(hash) = hash {
                request = request.header(name, hash);
            }
        }
        let (status, body) = status_and_json(request.send().await.expect("post")).await;
        let expected = if hash.is_none() {
            "missing_credentials"
        } else {
            "malformed_credentials"
        };
        assert_eq!((status, kind(&body)), (401, expected), "{body}");
    }

    // The same signed request twice: the second is a replay.
    let now = now_ms();
    let (status, body) = status_and_json(
        t.signed_request(&device, CHECKIN, b"{}", now)
            .send()
            .await
            .expect("first"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = status_and_json(
        t.signed_request(&device, CHECKIN, b"{}", now)
            .send()
            .await
            .expect("replay"),
    )
    .await;
    assert_eq!((status, kind(&body)), (401, "replayed_request"), "{body}");

    // Timestamps outside the ±5 minute window, either side.
    for skew in [-(6 * 60 * 1000i64), 6 * 60 * 1000] {
        let ts = now_ms().saturating_add_signed(skew);
        let (status, body) = status_and_json(
            t.signed_request(&device, CHECKIN, b"{}", ts)
                .send()
                .await
                .expect("stale"),
        )
        .await;
        assert_eq!((status, kind(&body)), (401, "stale_timestamp"), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("server time"))
        );
    }

    // A device id the server never issued.
    let stranger = common::Device {
        id: "dev_nobody".into(),
        key: SigningKey::from_bytes(&[5; 32]),
    };
    let (status, body) = t.signed_post(&stranger, CHECKIN, b"{}").await;
    assert_eq!((status, kind(&body)), (401, "unknown_device"));

    // Malformed signature header.
    let response = t
        .client
        .post(t.url(CHECKIN))
        .header("x-hearth-device", &device.id)
        .header("x-hearth-timestamp", "yesterday")
        .header("x-hearth-content-sha256", hex::encode([0u8; 32]))
        .header("x-hearth-signature", "AAAA")
        .body("{}")
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (401, "malformed_credentials"));

    // Revoked by the operator: refused from the next request on.
    let revoked = ops::revoke(&t.config, &device.id)
        .await
        .expect("revoke")
        .expect("device exists");
    assert!(revoked.revoked_at_ms.is_some());
    let (status, body) = t.signed_post(&device, CHECKIN, b"{}").await;
    assert_eq!((status, kind(&body)), (403, "revoked_device"), "{body}");

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let device = t.enrol("notes", 1).await;
    let big = vec![b' '; 64 * 1024];

    let (status, body) = t.signed_post(&device, CHECKIN, &big).await;
    assert_eq!((status, kind(&body)), (413, "payload_too_large"), "{body}");

    let response = t
        .client
        .post(t.url("/v1/enrol"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (413, "payload_too_large"));

    // Just over the limit.
    let (status, body) = t
        .signed_post(&device, CHECKIN, &vec![b' '; 4 * 1024 + 1])
        .await;
    assert_eq!((status, kind(&body)), (413, "payload_too_large"), "{body}");

    // Within the limit still works.
    let (status, _) = t.signed_post(&device, CHECKIN, b"{}").await;
    assert_eq!(status, 200);

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_devices_rounds_and_published_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let a = t.enrol("notes", 1).await;
    let b = t.enrol("notes", 2).await;
    let unused = t.invite("notes").await;
    t.signed_post(&a, CHECKIN, b"{}").await;
    let (_, body) = t.signed_post(&b, CHECKIN, b"{}").await;
    assert!(body.get("join").is_some(), "{body}");
    let fingerprint = t.server.fingerprint().to_owned();
    t.stop().await;

    // Same folder: same certificate, the round in flight is resumed, both
    // devices still sign in, and the unused invite still works.
    let t = TestServer::start(dir.path()).await;
    assert_eq!(t.server.fingerprint(), fingerprint);
    assert_eq!(t.server.recovery().resumed, [("notes".to_owned(), 1)]);
    let (status, body) = t.signed_post(&a, CHECKIN, b"{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["join"]["round"], 1);
    let (status, _) = t
        .enrol_with(&unused, &SigningKey::from_bytes(&[3; 32]))
        .await;
    assert_eq!(status, 201);
    t.stop().await;

    // Publish round 1 while the server is down (as the aggregation step
    // does: statement and signature in the metadata), then check the new
    // server serves it.
    let storage = SqliteStorage::open(dir.path()).expect("storage");
    let round = storage
        .round_in_flight("notes".into())
        .await
        .expect("flight")
        .expect("round 1");
    let layout = t_config_layout(dir.path());
    let adapter = layout.to_safetensors(&vec![0.25; 64]).expect("adapter");
    let statement = GlobalStatement {
        federation: "notes".into(),
        version: 1,
        round: round.round,
        adapter_sha256: hearth_fed::global::adapter_sha256(&adapter),
        contributors: 2,
        epsilon: Some(1.5),
    };
    let identity = hearth_server::ServerIdentity::load(dir.path()).expect("key");
    storage
        .publish_global(Publication {
            federation_id: "notes".into(),
            round: round.round,
            expected_version: round.version,
            version: 1,
            contributors: 2,
            epsilon: Some(1.5),
            delta: 1e-5,
            adapter: adapter.clone(),
            metadata: serde_json::json!({
                "statement": statement,
                "signature": hearth_server::auth::encode(&identity.sign(&statement).to_bytes()),
            }),
            at_ms: now_ms(),
        })
        .await
        .expect("publish");
    drop(storage);

    let t = TestServer::start(dir.path()).await;
    assert!(t.server.recovery().resumed.is_empty());
    let response = t
        .client
        .get(t.url("/v1/federations/notes/global/latest"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-hearth-global-version"], "1");
    let sha = response.headers()["x-hearth-sha256"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(response.headers()["x-hearth-contributors"], "2");
    assert_eq!(response.headers()["x-hearth-epsilon"], "1.5");
    let bytes = response.bytes().await.expect("bytes");
    assert_eq!(&bytes[..], &adapter[..]);
    assert_eq!(sha.len(), 64);
    let (_, info) = t.get("/v1/federations/notes").await;
    assert_eq!(info["global"]["version"], 1);
    assert_eq!(info["global"]["sha256"], sha.as_str());
    let devices = ops::devices(&t.config, Some("notes"))
        .await
        .expect("devices");
    assert_eq!(devices.len(), 3);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_past_its_deadline_at_restart_is_aborted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("hearth-server.toml");
    // Advertise-keys deadline of one second.
    let config = common::TEST_CONFIG.replace(
        "checkin = { min_retry_secs = 5, max_retry_secs = 60 }",
        "checkin = { min_retry_secs = 5, max_retry_secs = 60 }\n\
         deadlines = { advertise_keys_secs = 1 }",
    );
    std::fs::write(&config_path, config).expect("config");
    let t = TestServer::start(dir.path()).await;
    let a = t.enrol("notes", 1).await;
    let b = t.enrol("notes", 2).await;
    t.signed_post(&a, CHECKIN, b"{}").await;
    let (_, body) = t.signed_post(&b, CHECKIN, b"{}").await;
    assert!(body.get("join").is_some(), "{body}");
    t.stop().await;

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let t = TestServer::start(dir.path()).await;
    let aborted = &t.server.recovery().aborted;
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    assert!(aborted[0].2.contains("deadline"));
    // A new gathering period starts: the next check-ins open round 2.
    t.signed_post(&a, CHECKIN, b"{}").await;
    let (_, body) = t.signed_post(&b, CHECKIN, b"{}").await;
    assert_eq!(body["join"]["round"], 2, "{body}");
    t.stop().await;
}
