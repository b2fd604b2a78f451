//! Sybils (attack 6 of docs/threat-model.md): a server that puts devices
//! of its own into a round's cohort without enrolling them in public. With
//! `t` of a device's neighbours its own, the server rebuilds that device's
//! masks; with the survivors padded, the noise split assumes people who
//! are not there. Every enrolment is a `device_enrolled` entry of the
//! transparency log, and a device refuses a cohort with any member the log
//! does not show before it seals a single share.
//!
//! The malicious operator is played for real: it writes a device of its
//! own straight into the server's database, bypassing enrolment (and so
//! the log), and takes part with it through the real server.

mod support;
use hearth_server::storage::prelude::*;

use std::sync::Arc;
use std::time::Duration;

use hearth_fed::audit::AuditError;
use hearth_fed::client::{FedClientError, Membership};
use hearth_fed::crypto::DeviceIdentity;
use hearth_server::storage::DATABASE_FILE;
use support::{Server, TestTrainer};

#[test]
fn a_cohort_member_the_log_never_enrolled_is_refused_before_any_share_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let mut devices: Vec<(Membership, [u8; 32])> = (0..2).map(|_| server.enrol("notes")).collect();

    // The operator's own device: a key only it holds, in the devices table
    // (so the server authenticates it and puts it in cohorts), never logged.
    let sybil = DeviceIdentity::generate(&mut rand::rngs::OsRng);
    let now_ms = hearth_server::now_ms() as i64;
    let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("database");
    db.busy_timeout(Duration::from_secs(10)).expect("timeout");
    db.execute(
        "INSERT INTO devices (id, federation_id, public_key, enrolled_at_ms) \
         VALUES ('dev_sybil', 'notes', ?1, ?2)",
        rusqlite::params![sybil.device_id().as_bytes().as_slice(), now_ms],
    )
    .expect("the operator writes its own device");
    devices.push((
        Membership {
            device_id: "dev_sybil".into(),
            ..devices[0].0.clone()
        },
        *sybil.to_secret_bytes(),
    ));

    let trainers: Vec<Arc<TestTrainer>> = (0..3).map(|i| Arc::new(TestTrainer::new(i))).collect();
    let results: Vec<_> = support::participate_all(&devices, &trainers)
        .into_iter()
        .map(|h| h.join().expect("device thread"))
        .collect();
    // Both honest devices see the sybil in their cohort and stop. (The
    // sybil runs the honest client too, so it stops as well.)
    for (i, result) in results.iter().enumerate() {
        let Err(FedClientError::Audit(AuditError::CohortNotEnrolled {
            cohort,
            missing,
            first,
            ..
        })) = result
        else {
            panic!("device {i} took part beside an unlogged device: {result:?}");
        };
        assert_eq!((*cohort, *missing), (3, 1));
        assert_eq!(*first, hex::encode(sybil.device_id().as_bytes()));
    }
    // Nothing was trained, masked, charged or uploaded.
    for trainer in &trainers {
        assert!(trainer.charged().is_empty());
        assert_eq!(trainer.encoded(), None);
    }
    assert_no_sealed_share(&server);
    server.stop();
}

/// The operator revokes a device in public (a `device_revoked` entry: the
/// device is out of the count every auditor makes), then puts it back in
/// its database behind the log's back, so the server authenticates it and
/// puts it in cohorts, with a key the operator may hold. Its enrolment is
/// still in the log, so proofs of enrolment alone pass; the devices' own
/// replay of the log sees the revocation and refuses before sealing.
#[test]
fn a_cohort_member_the_log_revoked_is_refused_before_any_share_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &support::config(3, 3, 0.0, 30));
    let devices: Vec<(Membership, [u8; 32])> = (0..3).map(|_| server.enrol("notes")).collect();
    let revoked = devices[2].0.device_id.clone();
    let revoked_key = DeviceIdentity::from_secret_bytes(&devices[2].1).device_id();

    server.kill();
    let storage = server.storage();
    let record = server
        .block_on(storage.revoke_device(revoked.clone(), hearth_server::now_ms()))
        .expect("revoke")
        .expect("the device is known");
    assert!(record.revoked_at_ms.is_some());
    let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("database");
    db.busy_timeout(Duration::from_secs(10)).expect("timeout");
    let reinstated = db
        .execute(
            "UPDATE devices SET revoked_at_ms = NULL WHERE id = ?1",
            rusqlite::params![revoked],
        )
        .expect("the operator puts it back");
    assert_eq!(reinstated, 1);
    drop(db);
    server.restart();

    let trainers: Vec<Arc<TestTrainer>> = (0..3).map(|i| Arc::new(TestTrainer::new(i))).collect();
    let results: Vec<_> = support::participate_all(&devices, &trainers)
        .into_iter()
        .map(|h| h.join().expect("device thread"))
        .collect();
    for (i, result) in results.iter().enumerate() {
        let Err(FedClientError::Audit(AuditError::CohortRevoked {
            cohort,
            revoked,
            first,
            ..
        })) = result
        else {
            panic!("device {i} took part beside a revoked device: {result:?}");
        };
        assert_eq!((*cohort, *revoked), (3, 1));
        assert_eq!(*first, hex::encode(revoked_key.as_bytes()));
    }
    for trainer in &trainers {
        assert!(trainer.charged().is_empty());
        assert_eq!(trainer.encoded(), None);
    }
    assert_no_sealed_share(&server);
    server.stop();
}

/// No sealed share reached the server in round 1: neither in the state
/// last stored whole nor in the messages journaled since.
fn assert_no_sealed_share(server: &Server) {
    let round = server.round("notes", 1).expect("the round opened");
    let state: serde_json::Value = serde_json::from_slice(&round.state).expect("state");
    let mut text = state.to_string();
    for entry in &round.journal {
        text.push_str(&String::from_utf8_lossy(entry));
    }
    assert!(
        !text.contains("\"ciphertext\""),
        "no sealed share reached the server: {text}"
    );
}
