//! The transparency log end to end: a real server over HTTPS on loopback,
//! a device-side `hearth_fed::audit` checking what it serves, and a server
//! that misbehaves in each way the audit must catch (a changed entry in its
//! database, a forked history, a dropped commitment, a wrong key).

mod common;
use hearth_server::storage::prelude::*;

use std::path::Path;

use common::{Device, TestServer, copy_dir, kind, status_and_json};
use hearth_fed::audit::wire::{
    self, AdapterEntryResponse, ConsistencyProofResponse, EntriesResponse, InclusionProofResponse,
    LogKeyResponse, SthResponse,
};
use hearth_fed::audit::{
    Absence, AdapterCheck, AuditError, CommitmentCheck, LogAudit, LogReplay, ParametersCheck,
    RoundCheck, commitment_leaf_hash,
};
use hearth_fed::global::GlobalStatement;
use hearth_ledger::{Hash, LogEntry, ProofError, leaf_hash, verify_consistency, verify_inclusion};
use hearth_server::now_ms;
use hearth_server::storage::{Publication, SqliteStorage, UploadCommitment};
use serde::de::DeserializeOwned;

const CHECKIN: &str = "/v1/federations/notes/checkin";

/// The device side: fetches what the audit needs, as the driver will.
impl TestServer {
    async fn log_get<T: DeserializeOwned>(&self, path: &str) -> Option<T> {
        let (status, body) = self.get(path).await;
        match status {
            200 => Some(serde_json::from_value(body).expect("log response")),
            404 => None,
            other => panic!("{path}: status {other}: {body}"),
        }
    }

    async fn log_key(&self) -> LogKeyResponse {
        self.log_get(wire::KEY_PATH).await.expect("key")
    }

    async fn sth(&self) -> SthResponse {
        self.log_get(wire::STH_PATH).await.expect("sth")
    }

    async fn consistency(&self, old: u64, new: u64) -> ConsistencyProofResponse {
        self.log_get(&format!("{}?old={old}&new={new}", wire::CONSISTENCY_PATH))
            .await
            .expect("consistency")
    }

    async fn inclusion_by_hash(&self, leaf: Hash, size: u64) -> Option<InclusionProofResponse> {
        self.log_get(&format!("{}?hash={leaf}&size={size}", wire::INCLUSION_PATH))
            .await
    }

    async fn adapter_entry(&self, version: u64, size: u64) -> Option<AdapterEntryResponse> {
        self.log_get(&format!(
            "{}?federation=notes&version={version}&size={size}",
            wire::ADAPTER_PATH
        ))
        .await
    }

    async fn entries(&self, start: u64, end: u64) -> EntriesResponse {
        self.log_get(&format!("{}?start={start}&end={end}", wire::ENTRIES_PATH))
            .await
            .expect("entries")
    }

    /// Downloads the latest global adapter: (version, SHA-256 computed
    /// here over the bytes received).
    async fn download_global(&self) -> (u64, Hash) {
        let response = self
            .client
            .get(self.url("/v1/federations/notes/global/latest"))
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), 200);
        let version = response.headers()["x-hearth-global-version"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        let bytes = response.bytes().await.expect("bytes");
        (version, Hash::sha256(&bytes))
    }

    /// Everything a device that uploaded `upload` in `round` fetches after
    /// the round to check it.
    async fn after_round(
        &self,
        audit: &LogAudit,
        device: &str,
        round: u64,
        upload: &[u8],
    ) -> RoundCheck {
        let sth = self.sth().await;
        let size = sth.head.size;
        let consistency = self.consistency(audit.size(), size).await;
        let upload_sha256 = Hash::sha256(upload);
        let proof = self
            .inclusion_by_hash(
                commitment_leaf_hash("notes", round, device, upload_sha256),
                size,
            )
            .await;
        let (version, adapter_sha256) = self.download_global().await;
        RoundCheck {
            sth,
            consistency,
            federation: "notes".into(),
            round,
            commitment: Some(CommitmentCheck {
                device: device.into(),
                upload_sha256,
                proof,
            }),
            adapter: Some(AdapterCheck {
                version,
                adapter_sha256,
                logged: self.adapter_entry(version, size).await,
            }),
            // These devices take no part in the protocol, so were shown no
            // parameters; a_device_verifies_... checks the logged ones.
            parameters: None,
        }
    }

    /// Re-reads every entry and checks they hash to the verified root.
    async fn replay(&self, audit: &LogAudit) -> Result<(), AuditError> {
        let mut replay = LogReplay::new();
        let size = audit.size();
        while replay.size() < size {
            let start = replay.size();
            let end = size.min(start + wire::MAX_ENTRIES_PER_REQUEST);
            replay.push(&self.entries(start, end).await)?;
        }
        audit.check_contents(&replay)
    }
}

/// Two devices of "notes" check in, which opens round 1 with both.
async fn round_with_two(t: &TestServer) -> (Device, Device) {
    let a = t.enrol("notes", 1).await;
    let b = t.enrol("notes", 2).await;
    t.signed_post(&a, CHECKIN, b"{}").await;
    let (_, body) = t.signed_post(&b, CHECKIN, b"{}").await;
    assert_eq!(body["join"]["round"], 1, "{body}");
    (a, b)
}

/// The statement and signature a publication carries, as the round code
/// makes them (the download endpoint serves them), signed with the
/// server's key from `dir`.
fn signed_metadata(
    dir: &Path,
    version: u64,
    round: u64,
    adapter: &[u8],
    contributors: u64,
) -> serde_json::Value {
    let statement = GlobalStatement {
        federation: "notes".into(),
        version,
        round,
        adapter_sha256: hearth_fed::global::adapter_sha256(adapter),
        contributors,
        epsilon: Some(0.8),
    };
    let identity = hearth_server::ServerIdentity::load(dir).expect("server key");
    serde_json::json!({
        "statement": statement,
        "signature": hearth_server::auth::encode(&identity.sign(&statement).to_bytes()),
    })
}

/// What the round code does as uploads arrive and the round completes,
/// through the storage API it calls, on the running server's database.
async fn uploads_then_publish(
    dir: &Path,
    round: u64,
    uploads: &[(&Device, &[u8])],
    adapter: &[u8],
) {
    let storage = SqliteStorage::open(dir).expect("storage");
    for (device, bytes) in uploads {
        storage
            .record_upload_commitment(
                UploadCommitment {
                    federation_id: "notes".into(),
                    round,
                    device_id: device.id.clone(),
                    upload_sha256: Hash::sha256(bytes).to_bytes(),
                    at_ms: now_ms(),
                },
                None,
            )
            .await
            .expect("commitment");
    }
    let flight = storage
        .round_in_flight("notes".into())
        .await
        .expect("flight")
        .expect("round in flight");
    let version = storage
        .latest_global("notes".into())
        .await
        .expect("latest")
        .map_or(0, |g| g.version)
        + 1;
    let contributors = uploads.len() as u64;
    storage
        .publish_global(Publication {
            federation_id: "notes".into(),
            round,
            expected_version: flight.version,
            version,
            adapter: adapter.to_vec(),
            metadata: signed_metadata(dir, version, round, adapter, contributors),
            contributors,
            epsilon: Some(0.8),
            delta: 1e-5,
            at_ms: now_ms(),
        })
        .await
        .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_verifies_its_round_with_the_pinned_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;

    // Pinned at join: what the server prints is what it serves.
    let served = t.log_key().await;
    assert_eq!(served.public_key, t.server.log_public_key());
    let mut audit = LogAudit::pin(&served).expect("pin");

    // The two configured federations are logged from the start.
    let first = t.sth().await;
    assert_eq!(first.head.size, 2);
    let verified = first
        .verify(audit.log_key())
        .expect("signed by the pinned key");
    audit
        .advance(&first, &ConsistencyProofResponse::trivial(0, 2))
        .expect("first head");
    // Asked again with nothing new, the same head comes back.
    assert_eq!(t.sth().await, first);

    let (a, b) = round_with_two(&t).await;
    uploads_then_publish(
        dir.path(),
        1,
        &[(&a, b"a's masked upload"), (&b, b"b's")],
        b"global v1",
    )
    .await;

    let check = t.after_round(&audit, &a.id, 1, b"a's masked upload").await;
    let sth = check.sth.clone();
    assert_eq!(
        sth.head.size, 9,
        "2 configs, 2 enrolments, round opened, 2 commitments, outcome, publication"
    );
    let result = audit
        .verify_round(check.clone())
        .expect("the honest round verifies");
    assert_eq!(result.commitment_index, Some(5));
    let adapter = result.adapter.expect("adapter verified");
    assert_eq!(
        (adapter.contributors, adapter.epsilon, adapter.delta),
        (2, 0.8, 1e-5)
    );

    // The endpoints' proofs verify with hearth-ledger directly, too.
    let commitment = check
        .commitment
        .and_then(|c| c.proof)
        .expect("inclusion proof");
    assert_eq!(
        verify_inclusion(
            &commitment.leaf_hash,
            commitment.index,
            sth.head.size,
            &commitment.path,
            &sth.head.root
        ),
        Ok(())
    );
    let by_index: InclusionProofResponse = t
        .log_get(&format!("{}?index=5&size=9", wire::INCLUSION_PATH))
        .await
        .expect("by index");
    assert_eq!(by_index, commitment);
    for old in 1..=9 {
        let c = t.consistency(old, 9).await;
        let old_root = leaf_root(&t, old).await;
        assert_eq!(
            verify_consistency(old, 9, &old_root, &sth.head.root, &c.path),
            Ok(()),
            "consistency {old}..9"
        );
    }
    assert_eq!(verified.size(), 2);

    // Entries decode, and all of them hash to the signed root.
    let page = t.entries(0, 9).await;
    assert!(matches!(
        page.entries[8].entry,
        Some(LogEntry::AdapterPublished { version: 1, .. })
    ));
    t.replay(&audit).await.expect("contents match the root");

    // The round's parameters were logged when check-in opened it, before
    // any device could poll them: decodable, hashing to their digest, and
    // provably in the tree under the round's RoundInfo.
    let Some(LogEntry::RoundOpened {
        round: 1,
        parameters_sha256,
        parameters,
        ..
    }) = page.entries[4].entry.clone()
    else {
        panic!("no round_opened entry at 4: {:?}", page.entries[4]);
    };
    let info = hearth_fed::audit::parameters::decode(&parameters).expect("parameters decode");
    assert_eq!(info.digest(), parameters_sha256.to_bytes());
    assert_eq!(
        info.federation,
        hearth_fed::FederationId::from_name("notes")
    );
    assert_eq!((info.round.0, info.max_clients), (1, 2));
    let opened = hearth_fed::audit::parameters::round_opened_entry("notes", &info);
    let check = ParametersCheck {
        proof: t.inclusion_by_hash(opened.leaf_hash(), sth.head.size).await,
        info,
    };
    assert_eq!(audit.check_parameters("notes", 1, &check), Ok(4));

    // Everything stored re-verifies from scratch (`hearth audit`).
    let stored: LogAudit =
        serde_json::from_str(&serde_json::to_string(&audit).expect("save")).expect("load");
    let report = hearth_fed::audit::audit_all(&stored).expect("re-verifies");
    assert_eq!(
        (report.rounds, report.commitments, report.adapters),
        (1, 1, 1)
    );
    t.stop().await;
}

/// The root of the first `size` entries, rebuilt from served entries.
async fn leaf_root(t: &TestServer, size: u64) -> Hash {
    let page = t.entries(0, size).await;
    let mut log = hearth_ledger::MerkleLog::new(hearth_ledger::MemoryStore::new());
    for e in &page.entries {
        log.append_hash(leaf_hash(&e.leaf_bytes().expect("base64")))
            .expect("append");
    }
    log.root().expect("root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let size = t.sth().await.head.size;
    assert_eq!(size, 2);
    let bad = [
        (
            format!("{}?index=2&size=2", wire::INCLUSION_PATH),
            "not in a tree",
        ),
        (
            format!("{}?index=0&size=3", wire::INCLUSION_PATH),
            "beyond the log",
        ),
        (format!("{}?size=2", wire::INCLUSION_PATH), "exactly one of"),
        (
            format!(
                "{}?index=0&hash={}&size=2",
                wire::INCLUSION_PATH,
                Hash::sha256(b"x")
            ),
            "exactly one of",
        ),
        (format!("{}?hash=zz&size=2", wire::INCLUSION_PATH), "hash"),
        (format!("{}?index=0", wire::INCLUSION_PATH), "size"),
        (format!("{}?index=-1&size=2", wire::INCLUSION_PATH), "index"),
        (
            format!("{}?old=2&new=1", wire::CONSISTENCY_PATH),
            "a log only grows",
        ),
        (
            format!("{}?old=1&new=3", wire::CONSISTENCY_PATH),
            "beyond the log",
        ),
        (
            format!("{}?start=1&end=1", wire::ENTRIES_PATH),
            "empty range",
        ),
        (
            format!("{}?start=0&end=1001", wire::ENTRIES_PATH),
            "at most 1000",
        ),
        (
            format!("{}?start=0&end=18446744073709551615", wire::ENTRIES_PATH),
            "at most 1000",
        ),
        (
            format!("{}?start=0&end=3", wire::ENTRIES_PATH),
            "not in the log",
        ),
        (
            format!("{}?federation=notes&size=2", wire::ADAPTER_PATH),
            "version",
        ),
    ];
    for (path, says) in bad {
        let (status, body) = t.get(&path).await;
        assert_eq!(
            (status, kind(&body)),
            (400, "bad_request"),
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{path}: {message:?} lacks {says:?}");
    }
    let (status, body) = t
        .get(&format!(
            "{}?hash={}&size=2",
            wire::INCLUSION_PATH,
            Hash::sha256(b"x")
        ))
        .await;
    assert_eq!((status, kind(&body)), (404, "not_found"), "{body}");
    let (status, body) = t
        .get(&format!(
            "{}?federation=notes&version=1&size=2",
            wire::ADAPTER_PATH
        ))
        .await;
    assert_eq!((status, kind(&body)), (404, "not_found"), "{body}");
    // The key answers the public half only, in hex.
    let (status, key) = t.get(wire::KEY_PATH).await;
    assert_eq!(status, 200);
    assert_eq!(key["algorithm"], "ed25519");
    let response = t
        .client
        .post(t.url(wire::STH_PATH))
        .send()
        .await
        .expect("post");
    let (status, body) = status_and_json(response).await;
    assert_eq!((status, kind(&body)), (405, "method_not_allowed"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_entry_in_the_database_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let mut audit = LogAudit::pin(&t.log_key().await).expect("pin");
    let (a, b) = round_with_two(&t).await;
    uploads_then_publish(
        dir.path(),
        1,
        &[(&a, b"a1"), (&b, b"b1")],
        b"honest adapter",
    )
    .await;
    let check = t.after_round(&audit, &a.id, 1, b"a1").await;
    let _ = audit.verify_round(check).expect("honest");
    t.stop().await;

    // Someone with the database file swaps the published adapter for
    // another and rewrites its log entry to match, past the triggers.
    let evil = b"backdoored adapter";
    let forged = LogEntry::AdapterPublished {
        federation: "notes".into(),
        version: 1,
        round: 1,
        adapter_sha256: Hash::sha256(evil),
        contributors: 2,
        epsilon: 0.8,
        delta: 1e-5,
    };
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(hearth_server::storage::DATABASE_FILE))
                .expect("raw database");
        conn.execute_batch("DROP TRIGGER log_leaves_no_update")
            .expect("drop trigger");
        conn.execute(
            "UPDATE log_leaves SET leaf_data = ?1 WHERE kind = 'adapter_published'",
            [forged.leaf_data()],
        )
        .expect("forge entry");
        // With the data folder comes the publication key: the swapped
        // adapter carries a valid signature, so only the log can tell.
        conn.execute(
            "UPDATE global_versions SET adapter = ?1, sha256 = ?2, metadata_json = ?3",
            rusqlite::params![
                evil.to_vec(),
                Hash::sha256(evil).to_bytes(),
                signed_metadata(dir.path(), 1, 1, evil, 2).to_string()
            ],
        )
        .expect("swap adapter");
    }

    let t = TestServer::start(dir.path()).await;
    // A device downloading now gets the swapped bytes, and the log's entry
    // names them, but that entry does not hash into the signed tree.
    let (version, downloaded) = t.download_global().await;
    assert_eq!(downloaded, Hash::sha256(evil));
    let logged = t.adapter_entry(version, audit.size()).await;
    let err = audit
        .check_adapter(
            "notes",
            &AdapterCheck {
                version,
                adapter_sha256: downloaded,
                logged,
            },
        )
        .expect_err("tampering detected");
    assert!(
        matches!(
            err,
            AuditError::AdapterNotLogged {
                why: Absence::NotInTree(ProofError::RootMismatch),
                ..
            }
        ),
        "{err}"
    );
    // Re-reading the whole log shows the root no longer matches.
    let err = t.replay(&audit).await.expect_err("root mismatch");
    assert!(
        matches!(err, AuditError::RootMismatch { size: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("root mismatch"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_history_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let mut audit = LogAudit::pin(&t.log_key().await).expect("pin");
    let (a, b) = round_with_two(&t).await;
    let sth = t.sth().await;
    let consistency = t.consistency(0, sth.head.size).await;
    audit.advance(&sth, &consistency).expect("first head");
    t.stop().await;

    // A second server on a copy of the data folder: same key, same past.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    let original = TestServer::start(dir.path()).await;
    let fork = TestServer::start(copy.path()).await;
    assert_eq!(
        fork.server.log_public_key(),
        original.server.log_public_key()
    );

    // Each records a different upload for device a.
    uploads_then_publish(
        dir.path(),
        1,
        &[(&a, b"a's real upload"), (&b, b"b")],
        b"v1",
    )
    .await;
    uploads_then_publish(
        copy.path(),
        1,
        &[(&a, b"a swapped upload"), (&b, b"b")],
        b"v1",
    )
    .await;

    let check = original
        .after_round(&audit, &a.id, 1, b"a's real upload")
        .await;
    let _ = audit.verify_round(check).expect("original verifies");
    let before = audit.clone();

    // The forked server's head: same size, different root.
    let forked = fork.sth().await;
    assert_eq!(forked.head.size, audit.size());
    let err = audit
        .advance(
            &forked,
            &ConsistencyProofResponse::trivial(audit.size(), audit.size()),
        )
        .expect_err("fork");
    assert!(matches!(err, AuditError::Fork { .. }), "{err}");
    assert_eq!(audit, before);

    // The fork grows on (a round abort): its larger tree does not extend
    // what the device verified.
    let storage = SqliteStorage::open(copy.path()).expect("storage");
    storage
        .sync_federation(hearth_server::storage::FederationSync {
            id: "notes".into(),
            config_json: "{\"changed\":true}".into(),
            at_ms: now_ms(),
        })
        .await
        .expect("fork appends");
    let grown = fork.sth().await;
    assert!(grown.head.size > audit.size());
    let proof = fork.consistency(audit.size(), grown.head.size).await;
    let err = audit.advance(&grown, &proof).expect_err("rewritten");
    assert!(matches!(err, AuditError::HistoryRewritten { .. }), "{err}");
    assert!(err.to_string().starts_with("fork:"));

    // On the fork, device a's real upload is not logged either.
    let check = fork
        .after_round(
            &LogAudit::pin(&fork.log_key().await).expect("pin"),
            &a.id,
            1,
            b"a's real upload",
        )
        .await;
    assert!(check.commitment.as_ref().is_some_and(|c| c.proof.is_none()));
    original.stop().await;
    fork.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_commitment_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let mut audit = LogAudit::pin(&t.log_key().await).expect("pin");
    let (a, b) = round_with_two(&t).await;
    // Device b uploaded, but the server logs only a's upload (and
    // aggregates whatever it likes).
    uploads_then_publish(dir.path(), 1, &[(&a, b"a's upload")], b"v1").await;
    let check = t.after_round(&audit, &b.id, 1, b"b's upload").await;
    let before = audit.clone();
    let err = audit.verify_round(check).expect_err("dropped");
    assert!(
        matches!(
            &err,
            AuditError::MissingCommitment { why: Absence::NoEntry, device, .. } if *device == b.id
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("missing commitment"));
    assert_eq!(audit, before, "nothing accepted");
    // Device a's check of the same round passes.
    let check = t.after_round(&audit, &a.id, 1, b"a's upload").await;
    let _ = audit.verify_round(check).expect("a is logged");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let served = t.log_key().await;
    let mut audit = LogAudit::pin(&served).expect("pin");
    let sth = t.sth().await;
    audit
        .advance(&sth, &t.consistency(0, sth.head.size).await)
        .expect("first head");

    // A head whose signature was altered in transit.
    let mut altered = sth.clone();
    let mut sig = altered.signature.to_bytes();
    sig[10] ^= 0x40;
    altered.signature = hearth_ledger::Signature::from_bytes(&sig);
    assert_eq!(
        audit.advance(&altered, &ConsistencyProofResponse::trivial(2, 2)),
        Err(AuditError::BadSignature)
    );
    t.stop().await;

    // The server loses its key and makes a new one: devices refuse it.
    std::fs::remove_file(dir.path().join(hearth_server::log::LOG_KEY_FILE)).expect("rm key");
    let t = TestServer::start(dir.path()).await;
    assert_ne!(t.server.log_public_key(), served.public_key);
    assert!(matches!(
        audit.check_key(&t.log_key().await),
        Err(AuditError::KeyChanged { .. })
    ));
    let resigned = t.sth().await;
    assert_eq!(resigned.head.root, sth.head.root, "same tree, new key");
    let err = audit
        .advance(&resigned, &ConsistencyProofResponse::trivial(2, 2))
        .expect_err("bad signature");
    assert_eq!(err, AuditError::BadSignature);
    assert!(err.to_string().starts_with("bad signature"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrolments_of_a_cohort_come_with_proofs_and_strangers_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = TestServer::start(dir.path()).await;
    let (a, b) = round_with_two(&t).await;
    let sth = t.sth().await;
    let key = t.log_key().await.verifying_key().expect("log key");
    let head = sth.verify(&key).expect("signed head");
    let id = |k: &hearth_ledger::SigningKey| {
        hearth_fed::DeviceId::from_bytes(k.verifying_key().to_bytes())
    };
    let stranger = hearth_fed::DeviceId::from_bytes([9; 32]);
    let post = |query: serde_json::Value| {
        let request = t
            .client
            .post(t.url(wire::ENROLMENTS_PATH))
            .header("content-type", "application/json")
            .body(query.to_string());
        async move { status_and_json(request.send().await.expect("post")).await }
    };

    let cohort = vec![id(&a.key), id(&b.key), stranger];
    let (status, body) = post(serde_json::json!({
        "federation": "notes", "size": head.size(), "devices": cohort,
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: wire::EnrolmentsResponse = serde_json::from_value(body).expect("answer");
    assert_eq!(answer.enrolments.len(), 2, "the stranger has no entry");
    assert_eq!(
        hearth_fed::audit::check_cohort_enrolled(
            &head,
            "notes",
            1,
            &cohort[..2],
            &answer.enrolments
        ),
        Ok(2)
    );
    let err =
        hearth_fed::audit::check_cohort_enrolled(&head, "notes", 1, &cohort, &answer.enrolments)
            .expect_err("the stranger");
    assert!(
        matches!(err, AuditError::CohortNotEnrolled { missing: 1, .. }),
        "{err}"
    );
    // Another federation's view of the same keys: nothing.
    let (status, body) = post(serde_json::json!({
        "federation": "photos", "size": head.size(), "devices": cohort,
    }))
    .await;
    assert_eq!(
        (status, body["enrolments"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // Bounded, and only about trees the log has.
    let too_many = vec![stranger; wire::MAX_ENROLMENTS_PER_REQUEST + 1];
    for (query, status_kind, says) in [
        (
            serde_json::json!({"federation": "notes", "size": head.size(), "devices": too_many}),
            (400, "bad_request"),
            "at most 1024",
        ),
        (
            serde_json::json!({"federation": "notes", "size": head.size() + 1, "devices": []}),
            (400, "bad_request"),
            "beyond the log",
        ),
        (
            serde_json::json!({"federation": "notes", "size": 1, "devices": ["zz"]}),
            (400, "bad_request"),
            "devices",
        ),
    ] {
        let (status, body) = post(query).await;
        assert_eq!((status, kind(&body)), status_kind, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{message:?} lacks {says:?}");
    }
    t.stop().await;
}
