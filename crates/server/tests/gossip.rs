//! Gossip of signed tree heads end to end: a server that shows two groups
//! of devices two histories (a second server on a copy of its data folder:
//! the same log key, the same past) passes every device's own audit, and
//! the heads the devices post to the gossip endpoint make the split
//! visible to a device that was only ever shown one history.

mod common;
mod support;
use hearth_server::storage::prelude::*;

use hearth_fed::audit::wire::{self, GossipPost, GossipResponse, MAX_GOSSIP_HEADS};
use hearth_fed::audit::{AuditError, LogAudit, audit_all};
use hearth_fed::client::{FedClientError, Membership, ParticipationReport};
use support::{Raw, Server, TestTrainer, kind, participate};

use std::sync::Arc;

/// Runs one round of `notes` with `devices`; the reports in their order.
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

fn at(server: &Server, (m, s): &(Membership, [u8; 32])) -> (Membership, [u8; 32]) {
    (
        Membership {
            server_url: server.url.clone(),
            ..m.clone()
        },
        *s,
    )
}

fn is_split_view(result: &Result<hearth_fed::audit::GossipReport, FedClientError>) -> bool {
    matches!(
        result,
        Err(FedClientError::Audit(AuditError::SplitView { .. }))
    )
}

#[test]
fn gossip_makes_a_split_view_visible_to_a_device_shown_one_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<_> = (0..6).map(|_| server.enrol("notes")).collect();

    // Someone copies the data folder and runs a second server from it: the
    // same log key, the same past (configurations, six enrolments).
    server.kill();
    let copy = tempfile::tempdir().expect("tempdir");
    common::copy_dir(dir.path(), copy.path());
    server.restart();
    let fork = Server::start(copy.path(), "unused: the copy has its configuration");
    assert_eq!(
        fork.running().log_public_key(),
        server.running().log_public_key()
    );

    // Devices 0-2 are served the real history, devices 3-5 the fork (a
    // redirected address): each group runs round 1, and every device's own
    // audit passes, since each history is consistent in itself.
    let honest = &devices[..3];
    let misled: Vec<_> = devices[3..].iter().map(|d| at(&fork, d)).collect();
    let honest_reports = run_round(honest, 0);
    let misled_reports = run_round(&misled, 100);
    let mut audits = Vec::new();
    for ((membership, secret), report) in honest
        .iter()
        .chain(&misled)
        .zip(honest_reports.iter().chain(&misled_reports))
    {
        let client = support::client(membership, secret);
        let mut audit = client.log_audit().expect("pinned log key");
        let verified = client
            .audit_round(&mut audit, report)
            .expect("own audit passes");
        // 2 configurations, 6 enrolments, the round's parameters, 3
        // commitments, the outcome, the publication: the same size in both.
        assert_eq!(verified.head.size, 14);
        audits.push(audit);
    }
    let real_root = audits[0].signed_head().expect("head").head.root;
    let forked_root = audits[3].signed_head().expect("head").head.root;
    assert_ne!(real_root, forked_root, "two histories of one size");

    // Gossip among devices shown the same history finds nothing.
    let gossip = |device: &(Membership, [u8; 32]), audit: &mut LogAudit| {
        support::client(&device.0, &device.1).gossip(audit)
    };
    let report = gossip(&honest[0], &mut audits[0]).expect("alone");
    assert_eq!((report.heads, report.consistent), (1, 1), "its own head");
    let report = gossip(&honest[1], &mut audits[1]).expect("consistent");
    assert_eq!(
        (report.heads, report.consistent),
        (1, 1),
        "one distinct tree"
    );
    let report = gossip(&misled[0], &mut audits[3]).expect("the fork alone");
    assert_eq!(report.consistent, 1);

    // Device 3 reaches the real server again (the redirect ends) and posts
    // the head it was shown; it learns of the split itself.
    let back = at(&server, &misled[0]);
    let result = gossip(&back, &mut audits[3]);
    assert!(is_split_view(&result), "{result:?}");
    // The server cannot recognise that head as its own: its operator is told.
    let conflicts = server
        .events()
        .into_iter()
        .filter(|e| e.kind == "log_head_conflict")
        .count();
    assert_eq!(conflicts, 1);

    // Device 2 was only ever shown the real history, and its own audit
    // passed; gossip shows it a head of the same size with another root.
    let before = audits[2].clone();
    let err = match gossip(&honest[2], &mut audits[2]) {
        Err(FedClientError::Audit(e)) => e,
        other => panic!("expected a split view, got {other:?}"),
    };
    assert!(
        matches!(&err, AuditError::SplitView { mine, theirs, .. }
            if mine.size == 14 && theirs.size == 14
                && mine.root == real_root && theirs.root == forked_root),
        "{err}"
    );
    assert!(err.to_string().starts_with("SPLIT VIEW"), "{err}");
    // The evidence is kept: the stored audit fails `hearth audit` from now
    // on, and it re-verifies from the stored state alone.
    assert_eq!(audits[2].split_views().len(), 1);
    assert_ne!(audits[2], before);
    assert!(audit_all(&before).is_ok(), "before gossip, nothing to see");
    let stored: LogAudit =
        serde_json::from_str(&serde_json::to_string(&audits[2]).expect("save")).expect("load");
    let err = audit_all(&stored).expect_err("hearth audit reports it");
    assert!(err.to_string().starts_with("SPLIT VIEW"), "{err}");

    // The fork grows on; a device shown it posts the larger head at the
    // real server, which cannot prove it consistent with its own tree.
    fork.block_on(
        fork.storage()
            .sync_federation(hearth_server::storage::FederationSync {
                id: "notes".into(),
                config_json: "{\"changed\":true}".into(),
                at_ms: hearth_server::now_ms(),
            }),
    )
    .expect("the fork appends");
    let client = support::client(&misled[1].0, &misled[1].1);
    let verified = client
        .audit_round(&mut audits[4], &misled_reports[1])
        .expect("the fork's own audit passes");
    assert_eq!(verified.head.size, 15);
    let result = gossip(&at(&server, &misled[1]), &mut audits[4]);
    assert!(is_split_view(&result), "{result:?}");
    let result = gossip(&honest[1], &mut audits[1]);
    let Err(FedClientError::Audit(err)) = result else {
        panic!("expected a split view, got {result:?}");
    };
    assert!(
        matches!(&err, AuditError::SplitView { theirs, .. } if theirs.size == 15),
        "{err}"
    );
    assert!(err.to_string().contains("cannot prove"), "{err}");

    // The endpoint: a bounded list, only heads of this log, only from
    // enrolled devices of the federation.
    let raw = Raw::new(&server);
    let path = wire::gossip_path("notes");
    let (status, body) = raw.send(
        raw.client
            .get(format!("{}{path}", raw.url))
            .build()
            .expect("request"),
    );
    assert_eq!(status, 200, "{body}");
    let listed: GossipResponse = serde_json::from_value(body).expect("gossip answer");
    assert!(listed.heads.len() <= MAX_GOSSIP_HEADS);
    assert_eq!(listed.heads.len(), 3, "the real tree, the fork's two");
    let mut forged = audits[0].signed_head().expect("head").clone();
    forged.head.size += 1;
    let body = serde_json::to_vec(&GossipPost {
        sth: forged,
        commitments: Vec::new(),
    })
    .expect("json");
    let (id, secret) = (&honest[0].0.device_id, &honest[0].1);
    let (status, answer) = raw.signed("POST", &path, &body, id, secret);
    assert_eq!((status, kind(&answer)), (400, "bad_request"), "{answer}");
    let (status, answer) = raw.send(
        raw.client
            .post(format!("{}{path}", raw.url))
            .body(body.clone())
            .build()
            .expect("request"),
    );
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = raw.signed(
        "POST",
        &path,
        &vec![b' '; wire::GOSSIP_BODY_LIMIT + 1],
        id,
        secret,
    );
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = raw.signed("POST", &wire::gossip_path("photos"), &body, id, secret);
    assert_eq!((status, kind(&answer)), (403, "forbidden"), "{answer}");
    fork.stop();
    server.stop();
}
