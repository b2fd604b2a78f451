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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
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
    let round = server.round("notes", 1).expect("the round opened");
    let state: serde_json::Value = serde_json::from_slice(&round.state).expect("state");
    let text = state.to_string();
    assert!(
        !text.contains("\"ciphertext\""),
        "no sealed share reached the server: {text}"
    );
    server.stop();
}
