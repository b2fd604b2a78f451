//! The SQLite storage's tests, against an in-memory database.

use sha2::{Digest, Sha256};

use super::*;
use crate::storage::{InviteRefusal, RoundOutcome, event_kinds};
use hearth_fed::Stage;

const T0: u64 = 1_700_000_000_000;

fn storage() -> SqliteStorage {
    SqliteStorage::open_in_memory().expect("memory db")
}

async fn with_federation(s: &SqliteStorage) {
    s.sync_federation(FederationSync {
        id: "f".into(),
        config_json: "{\"a\":1}".into(),
        at_ms: T0,
    })
    .await
    .expect("sync");
}

async fn enrolled(s: &SqliteStorage, n: u8) -> DeviceRecord {
    let token = [n; 32];
    s.create_invite(NewInvite {
        federation_id: "f".into(),
        token_sha256: token,
        created_at_ms: T0,
        expires_at_ms: T0 + 1_000,
    })
    .await
    .expect("invite");
    s.enrol(Enrolment {
        token_sha256: token,
        device_id: format!("dev-{n}"),
        public_key: [n; 32],
        at_ms: T0 + 1,
    })
    .await
    .expect("enrol")
}

async fn open(s: &SqliteStorage, round: u64, cohort: &[&str]) -> RoundRecord {
    s.open_round(NewRound {
        federation_id: "f".into(),
        round,
        cohort: cohort.iter().map(|c| c.to_string()).collect(),
        stage: Stage::CollectingKeys,
        state: vec![1, 2, 3],
        opened_at_ms: T0 + 10,
        stage_deadline_ms: T0 + 1_000,
        parameters: None,
    })
    .await
    .expect("open")
}

#[test]
fn migrations_are_valid() {
    migrations().validate().expect("migrations validate");
}

#[tokio::test]
async fn opens_a_file_in_wal_mode_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStorage::open(dir.path()).expect("open");
    let mode: String = s
        .conn
        .lock()
        .expect("lock")
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    drop(s);
    let conn = Connection::open(dir.path().join(DATABASE_FILE)).expect("raw");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    assert!(matches!(
        SqliteStorage::open(dir.path()),
        Err(StorageError::NewerSchema { found: 99, .. })
    ));
}

#[tokio::test]
async fn federation_sync_logs_only_changes() {
    let s = storage();
    with_federation(&s).await;
    with_federation(&s).await;
    let changed = s
        .sync_federation(FederationSync {
            id: "f".into(),
            config_json: "{\"a\":2}".into(),
            at_ms: T0 + 5,
        })
        .await
        .expect("sync");
    assert_eq!(changed.created_at_ms, T0);
    assert_eq!(changed.updated_at_ms, T0 + 5);
    let events = s.events(0, 100).await.expect("events");
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["federation_configured", "federation_configured"]);
}

#[tokio::test]
async fn invites_enrol_once_and_expire() {
    let s = storage();
    with_federation(&s).await;
    let device = enrolled(&s, 1).await;
    assert_eq!(device.federation_id, "f");
    assert_eq!(device.public_key, [1; 32]);

    let again = s
        .enrol(Enrolment {
            token_sha256: [1; 32],
            device_id: "dev-x".into(),
            public_key: [7; 32],
            at_ms: T0 + 2,
        })
        .await;
    assert!(matches!(
        again,
        Err(StorageError::InviteRefused(InviteRefusal::Used))
    ));

    s.create_invite(NewInvite {
        federation_id: "f".into(),
        token_sha256: [2; 32],
        created_at_ms: T0,
        expires_at_ms: T0 + 1_000,
    })
    .await
    .expect("invite");
    let late = s
        .enrol(Enrolment {
            token_sha256: [2; 32],
            device_id: "dev-2".into(),
            public_key: [2; 32],
            at_ms: T0 + 1_000,
        })
        .await;
    assert!(matches!(
        late,
        Err(StorageError::InviteRefused(InviteRefusal::Expired))
    ));
    let same_key = s
        .enrol(Enrolment {
            token_sha256: [2; 32],
            device_id: "dev-2".into(),
            public_key: [1; 32],
            at_ms: T0 + 5,
        })
        .await;
    assert!(matches!(same_key, Err(StorageError::KeyAlreadyEnrolled)));
    let unknown = s
        .enrol(Enrolment {
            token_sha256: [3; 32],
            device_id: "dev-3".into(),
            public_key: [3; 32],
            at_ms: T0,
        })
        .await;
    assert!(matches!(
        unknown,
        Err(StorageError::InviteRefused(InviteRefusal::Unknown))
    ));
    assert!(matches!(
        s.create_invite(NewInvite {
            federation_id: "nope".into(),
            token_sha256: [4; 32],
            created_at_ms: T0,
            expires_at_ms: T0 + 1,
        })
        .await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn checkins_feed_the_eligible_population_and_revocation_removes_it() {
    let s = storage();
    with_federation(&s).await;
    for n in 1..=3 {
        enrolled(&s, n).await;
    }
    for (n, eligible) in [(1, true), (2, true), (3, false)] {
        s.record_checkin(Checkin {
            device_id: format!("dev-{n}"),
            at_ms: T0 + 100,
            eligible,
        })
        .await
        .expect("checkin");
    }
    let counts = s.device_counts("f".into(), T0 + 50).await.expect("counts");
    assert_eq!(
        counts,
        DeviceCounts {
            active: 3,
            eligible: 2
        }
    );
    assert_eq!(
        s.device_counts("f".into(), T0 + 101)
            .await
            .expect("counts")
            .eligible,
        0
    );
    let revoked = s
        .revoke_device("dev-1".into(), T0 + 200)
        .await
        .expect("revoke")
        .expect("exists");
    assert_eq!(revoked.revoked_at_ms, Some(T0 + 200));
    let twice = s
        .revoke_device("dev-1".into(), T0 + 300)
        .await
        .expect("revoke");
    assert_eq!(twice.and_then(|d| d.revoked_at_ms), Some(T0 + 200));
    assert!(
        s.revoke_device("nope".into(), T0)
            .await
            .expect("revoke")
            .is_none()
    );
    let eligible = s
        .eligible_devices("f".into(), T0 + 50)
        .await
        .expect("eligible");
    assert_eq!(eligible.len(), 1);
    assert_eq!(eligible[0].device_id, "dev-2");
    assert!(matches!(
        s.record_checkin(Checkin {
            device_id: "nope".into(),
            at_ms: T0,
            eligible: true
        })
        .await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn rounds_round_trip_and_saves_compare_and_swap() {
    let s = storage();
    with_federation(&s).await;
    enrolled(&s, 1).await;
    enrolled(&s, 2).await;
    assert_eq!(s.last_round_number("f".into()).await.expect("n"), 0);
    let round = open(&s, 1, &["dev-2", "dev-1"]).await;
    assert_eq!(round.summary.version, 1);
    assert_eq!(round.summary.cohort_size, 2);
    assert_eq!(round.cohort, ["dev-1", "dev-2"]);
    assert_eq!(round.state, [1, 2, 3]);
    assert!(
        s.is_member("f".into(), 1, "dev-1".into())
            .await
            .expect("member")
    );
    assert!(
        !s.is_member("f".into(), 1, "dev-9".into())
            .await
            .expect("member")
    );

    // Only one round in flight per federation.
    let second = s
        .open_round(NewRound {
            federation_id: "f".into(),
            round: 2,
            cohort: vec![],
            stage: Stage::CollectingKeys,
            state: vec![],
            opened_at_ms: T0,
            stage_deadline_ms: T0,
            parameters: None,
        })
        .await;
    assert!(matches!(second, Err(StorageError::Conflict(_))));

    let update = |expected_version, state: Vec<u8>| RoundUpdate {
        federation_id: "f".into(),
        round: 1,
        expected_version,
        stage: Stage::SharingKeys,
        state,
        stage_deadline_ms: T0 + 2_000,
        at_ms: T0 + 20,
    };
    // An accepted upload saves the round with its commitment, and
    // logs its one event.
    let receipt = s
        .record_upload_commitment(
            UploadCommitment {
                federation_id: "f".into(),
                round: 1,
                device_id: "dev-1".into(),
                upload_sha256: [0; 32],
                at_ms: T0 + 20,
            },
            Some(update(1, vec![4])),
        )
        .await
        .expect("save");
    let saved = receipt.round.expect("saved round");
    assert_eq!(saved.version, 2);
    let logged = s.events(0, 100).await.expect("events");
    assert_eq!(
        logged
            .iter()
            .filter(|e| e.kind == event_kinds::UPLOAD_ACCEPTED
                && e.device_id.as_deref() == Some("dev-1"))
            .count(),
        1
    );
    assert_eq!(saved.stage, Stage::SharingKeys);
    // A writer that computed from version 1 lost the race.
    let stale = s.save_round(update(1, vec![5])).await;
    assert!(
        matches!(&stale, Err(StorageError::Conflict(m)) if m.contains("version 2, not 1")),
        "{stale:?}"
    );
    let loaded = s
        .load_round("f".into(), 1)
        .await
        .expect("load")
        .expect("some");
    assert_eq!(loaded.state, [4]);
    assert_eq!(loaded.summary.stage_deadline_ms, T0 + 2_000);
    assert!(s.load_round("f".into(), 9).await.expect("load").is_none());
    assert!(matches!(
        s.save_round(RoundUpdate {
            round: 9,
            ..update(1, vec![])
        })
        .await,
        Err(StorageError::NotFound(_))
    ));
    let flight = s
        .round_in_flight("f".into())
        .await
        .expect("flight")
        .expect("some");
    assert_eq!(flight.version, 2);
    assert_eq!(s.rounds_in_flight().await.expect("all").len(), 1);
}

#[tokio::test]
async fn publishing_closes_the_round_in_the_same_transaction() {
    let s = storage();
    with_federation(&s).await;
    enrolled(&s, 1).await;
    assert!(s.latest_global("f".into()).await.expect("latest").is_none());
    open(&s, 1, &["dev-1"]).await;

    // A stale publication changes nothing at all.
    let stale = s
        .publish_global(Publication {
            federation_id: "f".into(),
            round: 1,
            expected_version: 7,
            version: 1,
            contributors: 1,
            epsilon: None,
            adapter: vec![9; 10],
            metadata: serde_json::json!({}),
            delta: 1e-6,
            at_ms: T0 + 50,
        })
        .await;
    assert!(matches!(stale, Err(StorageError::Conflict(_))));
    // So does one that names the wrong next version.
    let skipping = s
        .publish_global(Publication {
            federation_id: "f".into(),
            round: 1,
            expected_version: 1,
            version: 2,
            contributors: 1,
            epsilon: None,
            delta: 1e-6,
            adapter: vec![9; 10],
            metadata: serde_json::json!({}),
            at_ms: T0 + 50,
        })
        .await;
    assert!(
        matches!(&skipping, Err(StorageError::Conflict(m)) if m.contains("version 1 next")),
        "{skipping:?}"
    );
    assert!(s.latest_global("f".into()).await.expect("latest").is_none());
    assert!(
        s.round_in_flight("f".into())
            .await
            .expect("flight")
            .is_some()
    );

    let published = s
        .publish_global(Publication {
            federation_id: "f".into(),
            round: 1,
            expected_version: 1,
            version: 1,
            contributors: 1,
            epsilon: Some(2.5),
            adapter: b"adapter bytes".to_vec(),
            metadata: serde_json::json!({ "clients": 1 }),
            delta: 1e-6,
            at_ms: T0 + 60,
        })
        .await
        .expect("publish");
    assert_eq!(published.version, 1);
    assert_eq!(published.size_bytes, 13);
    assert_eq!(
        published.sha256,
        <[u8; 32]>::from(Sha256::digest(b"adapter bytes"))
    );
    let (meta, bytes) = s
        .latest_global_adapter("f".into())
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(meta, published);
    assert_eq!(bytes, b"adapter bytes");
    assert!(
        s.round_in_flight("f".into())
            .await
            .expect("flight")
            .is_none()
    );
    let closed = s
        .load_round("f".into(), 1)
        .await
        .expect("load")
        .expect("some");
    assert!(matches!(
        closed.summary.outcome,
        Some(RoundOutcome::Published { at_ms, .. }) if at_ms == T0 + 60
    ));
    let fed = s.federation("f".into()).await.expect("fed").expect("some");
    assert_eq!(fed.gathering_since_ms, T0 + 60);
    // The closed round cannot be published or aborted again.
    let again = s
        .abort_round(RoundAbort {
            federation_id: "f".into(),
            round: 1,
            expected_version: closed.summary.version,
            reason: "late".into(),
            at_ms: T0 + 70,
        })
        .await;
    assert!(matches!(&again, Err(StorageError::Conflict(m)) if m.contains("already published")));

    // The next round can open and abort; versions keep counting.
    open(&s, 2, &["dev-1"]).await;
    let aborted = s
        .abort_round(RoundAbort {
            federation_id: "f".into(),
            round: 2,
            expected_version: 1,
            reason: "deadline".into(),
            at_ms: T0 + 80,
        })
        .await
        .expect("abort");
    assert!(matches!(
        aborted.outcome,
        Some(RoundOutcome::Aborted { ref detail, .. }) if detail == "deadline"
    ));
    let kinds: Vec<_> = s
        .events(0, 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.ends_with(&[
        "round_opened".to_owned(),
        "global_published".to_owned(),
        "round_outcome".to_owned(),
        "round_opened".to_owned(),
        "round_aborted".to_owned(),
        "round_outcome".to_owned(),
    ]));
    assert_eq!(
        s.global_by_round("f".into(), 1)
            .await
            .expect("by round")
            .map(|g| g.version),
        Some(1)
    );
    assert!(
        s.global_by_round("f".into(), 2)
            .await
            .expect("by round")
            .is_none()
    );
}

#[tokio::test]
async fn the_event_log_is_append_only() {
    let s = storage();
    with_federation(&s).await;
    let conn = s.conn.lock().expect("lock");
    let update = conn.execute("UPDATE events SET kind = 'x'", []);
    assert!(update.is_err());
    let delete = conn.execute("DELETE FROM events", []);
    assert!(delete.is_err());
}
