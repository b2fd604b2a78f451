//! Devices' signed upload commitments against a server that lies in its
//! log about their uploads.
//!
//! A real round first: every device signs what it uploaded and gossips
//! it; an observer's replay finds every participation backed. Then the
//! server (played here by writing its storage directly, the way a
//! malicious operator could) runs a round in which it logs another upload
//! hash for one device and no upload at all for another, and closes the
//! round. Every check devices had before passes for the observer (its
//! head verifies and extends the last, its stored history re-verifies, no
//! split view); the devices' gossiped signatures show both lies. The
//! endpoint refuses commitments that are not the posting device's own
//! signed word.

mod support;
use hearth_server::storage::prelude::*;

use hearth_fed::audit::uploads::Finding;
use hearth_fed::audit::wire::{
    self, ConsistencyProofResponse, GossipCommitmentsResponse, GossipPost, SthResponse,
};
use hearth_fed::audit::{
    AuditError, LogAudit, SignedUploadCommitment, UploadCommitment, audit_all,
};
use hearth_fed::client::{FedClient, FedClientError, Membership, ParticipationReport};
use hearth_fed::crypto::DeviceIdentity;
use hearth_ledger::Hash;
use hearth_server::Stage;
use hearth_server::storage::{DATABASE_FILE, NewRound, RoundAbort, UploadCommitment as Logged};
use support::{Raw, Server, TestTrainer, kind, participate};

use std::sync::Arc;

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

fn client(device: &(Membership, [u8; 32])) -> FedClient {
    support::client(&device.0, &device.1)
}

/// What `device` signs for round `round`: an upload of `upload`.
fn signed(device: &(Membership, [u8; 32]), round: u64, upload: &[u8]) -> SignedUploadCommitment {
    UploadCommitment {
        federation: "notes".into(),
        round,
        device: device.0.device_id.clone(),
        upload_sha256: Hash::sha256(upload),
        round_digest: Hash::sha256(b"round 2 parameters"),
    }
    .sign(&DeviceIdentity::from_secret_bytes(&device.1))
    .expect("sign")
}

/// Moves `audit` to the log's latest head (check 1 alone), as any device
/// does at its next round.
fn follow_log(raw: &Raw, audit: &mut LogAudit) {
    let get = |path: &str| {
        let (status, body) = raw.send(
            raw.client
                .get(format!("{}{path}", raw.url))
                .build()
                .expect("request"),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let sth: SthResponse = serde_json::from_value(get(wire::STH_PATH)).expect("sth");
    let proof: ConsistencyProofResponse = serde_json::from_value(get(&format!(
        "{}?old={}&new={}",
        wire::CONSISTENCY_PATH,
        audit.size(),
        sth.head.size
    )))
    .expect("proof");
    audit.advance(&sth, &proof).expect("the log's head extends");
}

#[test]
fn gossiped_commitments_show_a_swapped_and_a_dropped_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..3).map(|_| server.enrol("notes")).collect();
    let (a, b, c) = (&devices[0], &devices[1], &devices[2]);

    // Round 1, honest: every device audits, signs and gossips its upload.
    let mut audits = honest_round_one(&devices);
    let report = client(a)
        .audit_uploads(&mut audits[0])
        .expect("an honest log");
    assert_eq!((report.participations, report.backed), (3, 3));
    assert_eq!((report.verified, report.contradicted), (3, 0));

    // Round 2, by a lying server: it logs device b's upload with another
    // hash and device c's not at all, and closes the round.
    let ids = lie_about_round_two(&mut server, &devices);
    server.restart();

    // Each device signs what it really uploaded; b and c also find their
    // own uploads missing from the log, but nobody else could tell: the
    // observer a's checks all pass on the new head.
    let raw = Raw::new(&server);
    let mut observer = audits[0].clone();
    follow_log(&raw, &mut observer);
    assert!(audit_all(&observer).is_ok(), "its stored history verifies");
    let heads = client(a).gossip(&mut observer).expect("no split view");
    assert_eq!(heads.consistent, heads.heads);
    let posts = [
        (a, signed(a, 2, b"a's round 2 upload"), 0),
        (b, signed(b, 2, b"b's round 2 upload"), 1),
        (c, signed(c, 2, b"c's round 2 upload"), 2),
    ];
    for (device, commitment, i) in posts {
        let mut audit = audits[i].clone();
        follow_log(&raw, &mut audit);
        let _ = client(device)
            .gossip_with(&mut audit, &[commitment])
            .expect("gossip");
    }

    // The observer's replay holds the log to the devices' word.
    let before = observer.clone();
    let err = match client(a).audit_uploads(&mut observer) {
        Err(FedClientError::Audit(e)) => e,
        other => panic!("expected a contradiction, got {other:?}"),
    };
    // Both lies are found (the error names the first, by device id) and
    // kept as evidence.
    assert!(
        matches!(&err, AuditError::UploadContradicted { device, round: 2, .. }
            if *device == ids[1] || *device == ids[2]),
        "{err}"
    );
    let kept = observer.upload_contradictions();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let finding = |id: &str| {
        kept.iter()
            .find(|e| e.commitment.commitment.device == id)
            .map(|e| e.finding.clone())
    };
    assert!(matches!(finding(&ids[1]), Some(Finding::Swapped { .. })));
    assert!(matches!(finding(&ids[2]), Some(Finding::Dropped { .. })));
    assert_eq!(finding(&ids[0]), None, "a's upload is logged as signed");
    let text = err.to_string();
    assert!(
        text.contains("the log swapped it") || text.contains("the log dropped it"),
        "{text}"
    );
    // Kept: `hearth audit` reports it from the stored state from now on.
    assert!(audit_all(&before).is_ok());
    let stored: LogAudit =
        serde_json::from_str(&serde_json::to_string(&observer).expect("save")).expect("load");
    let err = audit_all(&stored).expect_err("hearth audit reports it");
    assert!(err.to_string().starts_with("UPLOAD CONTRADICTED"), "{err}");

    // The endpoint serves what was posted, by round then device.
    let path = wire::gossip_commitments_path("notes");
    let (status, body) = raw.send(
        raw.client
            .get(format!("{}{path}", raw.url))
            .build()
            .expect("request"),
    );
    assert_eq!(status, 200, "{body}");
    let listed: GossipCommitmentsResponse = serde_json::from_value(body).expect("answer");
    assert_eq!(listed.commitments.len(), 6);
    assert!(!listed.more);
    let last = listed.commitments.last().expect("one");
    let (status, body) = raw.send(
        raw.client
            .get(format!(
                "{}{path}?after_round=2&after_device={}",
                raw.url, last.commitment.device
            ))
            .build()
            .expect("request"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commitments"].as_array().map(Vec::len), Some(0));
    server.stop();
}

/// Round 2, by a lying server (played by writing its storage while it is
/// down, as a malicious operator could): it logs device b's upload with
/// another hash and device c's not at all, and closes the round. Leaves
/// the server down; returns the devices' ids.
fn lie_about_round_two(server: &mut Server, devices: &[(Membership, [u8; 32])]) -> Vec<String> {
    server.kill();
    let storage = server.storage();
    let ids: Vec<String> = devices.iter().map(|d| d.0.device_id.clone()).collect();
    server.block_on(async {
        let now = hearth_server::now_ms();
        let round = storage
            .open_round(NewRound {
                federation_id: "notes".into(),
                round: 2,
                cohort: ids.clone(),
                stage: Stage::CollectingUploads,
                state: Vec::new(),
                opened_at_ms: now,
                stage_deadline_ms: now + 60_000,
                parameters: None,
            })
            .await
            .expect("open");
        for (device, bytes) in [
            (&ids[0], &b"a's round 2 upload"[..]),
            (&ids[1], b"sybil bytes"),
        ] {
            storage
                .record_upload_commitment(
                    Logged {
                        federation_id: "notes".into(),
                        round: 2,
                        device_id: device.clone(),
                        upload_sha256: *Hash::sha256(bytes).as_bytes(),
                        at_ms: now,
                    },
                    None,
                )
                .await
                .expect("logged");
        }
        storage
            .abort_round(RoundAbort {
                federation_id: "notes".into(),
                round: 2,
                expected_version: round.summary.version,
                reason: "too few unmasking responses".into(),
                at_ms: now,
            })
            .await
            .expect("closed");
    });
    ids
}

/// An honest round 1 in which every device audits, signs and gossips its
/// upload; their audits.
fn honest_round_one(devices: &[(Membership, [u8; 32])]) -> Vec<LogAudit> {
    let reports = run_round(devices, 0);
    let mut audits = Vec::new();
    for (device, report) in devices.iter().zip(&reports) {
        let client = client(device);
        let mut audit = client.log_audit().expect("pinned log key");
        let _ = client.audit_round(&mut audit, report).expect("own audit");
        let mine = client.sign_upload(report).expect("sign");
        assert_eq!(mine.verify(&secret_key(device)), Ok(()));
        let _ = client.gossip_with(&mut audit, &[mine]).expect("gossip");
        audits.push(audit);
    }
    audits
}

/// The commitments the gossip endpoint serves now for `round`.
fn served(raw: &Raw, round: u64) -> Vec<SignedUploadCommitment> {
    let (status, body) = raw.send(
        raw.client
            .get(format!(
                "{}{}",
                raw.url,
                wire::gossip_commitments_path("notes")
            ))
            .build()
            .expect("request"),
    );
    assert_eq!(status, 200, "{body}");
    let listed: GossipCommitmentsResponse = serde_json::from_value(body).expect("answer");
    listed
        .commitments
        .into_iter()
        .filter(|c| c.commitment.round == round)
        .collect()
}

fn database(server: &Server) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(server.dir.join(DATABASE_FILE)).expect("database");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("timeout");
    db
}

/// The operator shows device c one commitment set and everyone else
/// another: before c posts, it plants a row under c's name for round 2
/// (the first per device and round is kept, and nobody can verify the
/// planted one, so audits ignore it). c's real commitment, which shows
/// the log dropped c's upload, is answered as posted but never kept, so no
/// other device ever sees it. c checks the log for it, finds it missing,
/// stops, and keeps the evidence for `hearth audit`.
#[test]
fn a_commitment_the_server_answers_but_does_not_log_is_found_by_its_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..3).map(|_| server.enrol("notes")).collect();
    let audits = honest_round_one(&devices);
    let ids = lie_about_round_two(&mut server, &devices);
    let planted = database(&server)
        .execute(
            "INSERT INTO gossip_commitments (federation_id, round, device_id, upload_sha256, \
             round_digest, signature, received_at_ms) VALUES ('notes', 2, ?1, ?2, ?2, ?3, 0)",
            rusqlite::params![ids[2], [0u8; 32].as_slice(), [0u8; 64].as_slice()],
        )
        .expect("the operator plants a row");
    assert_eq!(planted, 1);
    server.restart();
    let raw = Raw::new(&server);

    // b's commitment is kept and logged: its own check passes.
    let mut audit = audits[1].clone();
    follow_log(&raw, &mut audit);
    let _ = client(&devices[1])
        .gossip_with(&mut audit, &[signed(&devices[1], 2, b"b's round 2 upload")])
        .expect("b's commitment is in the log");

    // c's is answered as posted, and is in no log.
    let mut audit = audits[2].clone();
    follow_log(&raw, &mut audit);
    let mine = signed(&devices[2], 2, b"c's round 2 upload");
    let result = client(&devices[2]).gossip_with(&mut audit, std::slice::from_ref(&mine));
    let Err(FedClientError::Audit(err)) = &result else {
        panic!("c believes the other devices can see its commitment: {result:?}");
    };
    assert!(
        err.to_string().starts_with("COMMITMENT NOT LOGGED"),
        "{err}"
    );
    assert!(err.to_string().contains(&ids[2]), "{err}");
    // The other devices are served the planted one, not c's.
    assert!(!served(&raw, 2).contains(&mine));
    // Kept: `hearth audit` reports it from the stored state from now on.
    let stored: LogAudit =
        serde_json::from_str(&serde_json::to_string(&audit).expect("save")).expect("load");
    let reported = audit_all(&stored).expect_err("hearth audit reports it");
    assert!(
        reported.to_string().starts_with("COMMITMENT NOT LOGGED"),
        "{reported}"
    );
    server.stop();
}

/// The operator shows the devices different commitment sets the other
/// way: b's commitment, which shows the log swapped b's upload, is kept
/// and logged (b's own check passes), then taken out of what the gossip
/// endpoint serves everyone else. The observer a is served a set without
/// it, but replays the log, which holds it, and finds the swap.
#[test]
fn a_commitment_hidden_from_other_devices_is_still_in_the_log_they_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..3).map(|_| server.enrol("notes")).collect();
    let audits = honest_round_one(&devices);
    let ids = lie_about_round_two(&mut server, &devices);
    server.restart();
    let raw = Raw::new(&server);

    let mut audit = audits[1].clone();
    follow_log(&raw, &mut audit);
    let mine = signed(&devices[1], 2, b"b's round 2 upload");
    let _ = client(&devices[1])
        .gossip_with(&mut audit, std::slice::from_ref(&mine))
        .expect("b's commitment is kept");
    assert_eq!(served(&raw, 2), vec![mine.clone()]);
    let hidden = database(&server)
        .execute(
            "DELETE FROM gossip_commitments WHERE round = 2 AND device_id = ?1",
            rusqlite::params![ids[1]],
        )
        .expect("the operator hides it");
    assert_eq!(hidden, 1);
    assert!(served(&raw, 2).is_empty(), "a is served a set without it");

    let mut observer = audits[0].clone();
    follow_log(&raw, &mut observer);
    let result = client(&devices[0]).audit_uploads(&mut observer);
    let Err(FedClientError::Audit(AuditError::UploadContradicted { device, round, .. })) = &result
    else {
        panic!("the observer did not see b's word against the log: {result:?}");
    };
    assert_eq!((device, *round), (&ids[1], 2));
    let kept = observer.upload_contradictions();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].commitment, mine);
    assert!(matches!(kept[0].finding, Finding::Swapped { .. }));
    server.stop();
}

fn secret_key(device: &(Membership, [u8; 32])) -> [u8; 32] {
    DeviceIdentity::from_secret_bytes(&device.1)
        .identity_key()
        .to_bytes()
}

#[test]
fn the_server_refuses_commitments_that_are_not_the_posting_devices_signed_word() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..3).map(|_| server.enrol("notes")).collect();
    let reports = run_round(&devices, 0);
    let device = &devices[0];
    let client = client(device);
    let mut audit = client.log_audit().expect("pinned log key");
    let _ = client
        .audit_round(&mut audit, &reports[0])
        .expect("own audit");
    let sth = audit.signed_head().expect("head").clone();
    let raw = Raw::new(&server);
    let path = wire::gossip_path("notes");
    let post = |commitments: Vec<SignedUploadCommitment>| {
        let body = serde_json::to_vec(&GossipPost {
            sth: sth.clone(),
            commitments,
        })
        .expect("json");
        // A request signed in the same millisecond as the last is a replay.
        std::thread::sleep(std::time::Duration::from_millis(2));
        raw.signed("POST", &path, &body, &device.0.device_id, &device.1)
    };
    let refused = |commitments, why: &str| {
        let (status, answer) = post(commitments);
        assert_eq!((status, kind(&answer)), (400, "bad_request"), "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{message}");
    };

    // A bad signature: signed by another device's key.
    let mut forged = signed(device, 1, b"x");
    forged.signature = signed(&devices[1], 1, b"x").signature;
    refused(vec![forged], "not signed by that device's key");
    // Another device's commitment, and one for a device never enrolled.
    refused(vec![signed(&devices[1], 1, b"x")], "gossips only its own");
    let mut stranger = signed(device, 1, b"x");
    stranger.commitment.device = "dev_not_enrolled".into();
    refused(vec![stranger], "gossips only its own");
    // A round the federation never had, another federation, too many.
    refused(vec![signed(device, 9, b"x")], "does not exist");
    let mut elsewhere = signed(device, 1, b"x");
    elsewhere.commitment.federation = "photos".into();
    refused(vec![elsewhere], "was posted to");
    refused(
        vec![signed(device, 1, b"x"); wire::MAX_COMMITMENTS_PER_POST + 1],
        "at most",
    );
    // A device that is not enrolled cannot post at all.
    let body = serde_json::to_vec(&GossipPost {
        sth: sth.clone(),
        commitments: vec![signed(device, 1, b"x")],
    })
    .expect("json");
    let (status, answer) = raw.signed("POST", &path, &body, "dev_not_enrolled", &[7; 32]);
    assert_eq!(status, 401, "{answer}");

    // Nothing refused was stored; the device's own is, once.
    let mine = client.sign_upload(&reports[0]).expect("sign");
    let (status, answer) = post(vec![mine.clone()]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["commitments_stored"], 1);
    let (status, answer) = post(vec![mine.clone()]);
    assert_eq!(
        (status, answer["commitments_stored"].as_u64()),
        (200, Some(0))
    );
    let (_, body) = raw.send(
        raw.client
            .get(format!(
                "{}{}",
                raw.url,
                wire::gossip_commitments_path("notes")
            ))
            .build()
            .expect("request"),
    );
    let listed: GossipCommitmentsResponse = serde_json::from_value(body).expect("answer");
    assert_eq!(listed.commitments, vec![mine]);
    server.stop();
}
