//! The transparency log storage's tests.
use crate::storage::prelude::*;

use std::sync::Arc;

use hearth_ledger::{MemoryStore, verify_consistency, verify_inclusion};

use super::*;
use crate::storage::{
    Enrolment, FederationSync, NewInvite, NewRound, Publication, RoundAbort, RoundUpdate,
    SqliteStorage, UploadCommitment, bench_sqlite_log,
};
use hearth_fed::Stage;

const T0: u64 = 1_700_000_000_000;

async fn storage_with_round(devices: u8) -> SqliteStorage {
    let s = SqliteStorage::open_in_memory().expect("db");
    s.sync_federation(FederationSync {
        id: "f".into(),
        config_json: "{\"a\":1}".into(),
        at_ms: T0,
    })
    .await
    .expect("sync");
    let mut cohort = Vec::new();
    for n in 1..=devices {
        s.create_invite(NewInvite {
            federation_id: "f".into(),
            token_sha256: [n; 32],
            created_at_ms: T0,
            expires_at_ms: T0 + 1_000,
        })
        .await
        .expect("invite");
        s.enrol(Enrolment {
            token_sha256: [n; 32],
            device_id: format!("dev-{n}"),
            public_key: [n; 32],
            at_ms: T0 + 1,
        })
        .await
        .expect("enrol");
        cohort.push(format!("dev-{n}"));
    }
    s.open_round(NewRound {
        federation_id: "f".into(),
        round: 1,
        cohort,
        stage: Stage::CollectingUploads,
        state: vec![1],
        opened_at_ms: T0 + 2,
        stage_deadline_ms: T0 + 10_000,
        parameters: None,
    })
    .await
    .expect("open");
    s
}

fn commitment(device: &str, upload: &[u8]) -> UploadCommitment {
    UploadCommitment {
        federation_id: "f".into(),
        round: 1,
        device_id: device.into(),
        upload_sha256: Hash::sha256(upload).to_bytes(),
        at_ms: T0 + 5,
    }
}

fn publication(expected_version: u64, epsilon: Option<f64>) -> Publication {
    Publication {
        federation_id: "f".into(),
        round: 1,
        expected_version,
        version: 1,
        adapter: b"adapter".to_vec(),
        metadata: serde_json::json!({}),
        contributors: 2,
        epsilon,
        delta: 1e-6,
        at_ms: T0 + 9,
    }
}

fn entries_of(s: &SqliteStorage) -> Vec<LogEntry> {
    s.with_connection(|conn| {
        let size = log_size(conn)?;
        entries(conn, 0, size)
    })
    .expect("entries")
    .iter()
    .map(|leaf| LogEntry::from_leaf_data(&leaf.leaf_data).expect("decodes"))
    .collect()
}

#[test]
fn the_sqlite_node_store_agrees_with_memory_at_every_size() {
    let s = SqliteStorage::open_in_memory().expect("db");
    s.with_connection(|conn| {
        let tx = conn.transaction()?;
        let mut sql = MerkleLog::new(SqliteNodes::new(&tx));
        let mut mem = MerkleLog::new(MemoryStore::new());
        let n = 300u64;
        for i in 0..n {
            let data = i.to_be_bytes();
            assert_eq!(sql.append(&data).map_err(log_error)?, i);
            mem.append(&data).expect("memory");
        }
        for size in 0..=n {
            let root = sql.root_at(size).map_err(log_error)?;
            assert_eq!(root, mem.root_at(size).expect("memory"), "root at {size}");
            if size == 0 {
                continue;
            }
            // A spread of indices and older sizes, edges included.
            for index in [0, size / 3, size / 2, size - 1] {
                let proof = sql.inclusion_proof(index, size).map_err(log_error)?;
                assert_eq!(proof, mem.inclusion_proof(index, size).expect("memory"));
                let leaf = sql.leaf(index).map_err(log_error)?;
                assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
            }
            for old in [1, size / 2, size - 1, size] {
                if old == 0 {
                    continue;
                }
                let proof = sql.consistency_proof(old, size).map_err(log_error)?;
                assert_eq!(proof, mem.consistency_proof(old, size).expect("memory"));
                let old_root = sql.root_at(old).map_err(log_error)?;
                assert_eq!(
                    verify_consistency(old, size, &old_root, &root, &proof),
                    Ok(())
                );
            }
        }
        assert!(matches!(
            sql.inclusion_proof(n, n).map_err(log_error),
            Err(StorageError::OutOfRange(_))
        ));
        assert!(matches!(
            sql.consistency_proof(5, 4).map_err(log_error),
            Err(StorageError::OutOfRange(_))
        ));
        assert!(matches!(
            sql.root_at(n + 1).map_err(log_error),
            Err(StorageError::OutOfRange(_))
        ));
        Ok(())
    })
    .expect("agrees");
}

#[tokio::test]
async fn every_logged_change_appends_its_entry() {
    let s = storage_with_round(2).await;
    // Re-syncing an unchanged configuration logs nothing; a change does.
    s.sync_federation(FederationSync {
        id: "f".into(),
        config_json: "{\"a\":1}".into(),
        at_ms: T0 + 3,
    })
    .await
    .expect("sync");
    assert_eq!(s.log_size().await.expect("size"), 3, "config, 2 enrolments");
    s.record_upload_commitment(commitment("dev-1", b"one"), None)
        .await
        .expect("commit");
    s.publish_global(publication(1, Some(0.75)))
        .await
        .expect("publish");
    s.open_round(NewRound {
        federation_id: "f".into(),
        round: 2,
        cohort: vec!["dev-1".into()],
        stage: Stage::CollectingUploads,
        state: vec![],
        opened_at_ms: T0 + 20,
        stage_deadline_ms: T0 + 30,
        parameters: Some(crate::storage::RoundParameters {
            sha256: Hash::sha256(b"parameters").to_bytes(),
            encoding: b"parameters".to_vec(),
        }),
    })
    .await
    .expect("open 2");
    s.abort_round(RoundAbort {
        federation_id: "f".into(),
        round: 2,
        expected_version: 1,
        reason: "deadline".into(),
        at_ms: T0 + 31,
    })
    .await
    .expect("abort");
    let config_sha = Hash::sha256(b"{\"a\":1}");
    assert_eq!(
        entries_of(&s),
        [
            LogEntry::FederationConfig {
                federation: "f".into(),
                config_sha256: config_sha,
            },
            LogEntry::DeviceEnrolled {
                federation: "f".into(),
                device: "dev-1".into(),
                public_key: [1; 32],
            },
            LogEntry::DeviceEnrolled {
                federation: "f".into(),
                device: "dev-2".into(),
                public_key: [2; 32],
            },
            LogEntry::RoundParticipation {
                federation: "f".into(),
                round: 1,
                device: "dev-1".into(),
                upload_sha256: Hash::sha256(b"one"),
            },
            LogEntry::RoundOutcome {
                federation: "f".into(),
                round: 1,
                contributors: 2,
                aborted: false,
            },
            LogEntry::AdapterPublished {
                federation: "f".into(),
                version: 1,
                round: 1,
                adapter_sha256: Hash::sha256(b"adapter"),
                contributors: 2,
                epsilon: 0.75,
                delta: 1e-6,
            },
            LogEntry::RoundOpened {
                federation: "f".into(),
                round: 2,
                parameters_sha256: Hash::sha256(b"parameters"),
                parameters: b"parameters".to_vec(),
            },
            LogEntry::RoundOutcome {
                federation: "f".into(),
                round: 2,
                contributors: 0,
                aborted: true,
            },
        ]
    );
    let events = s.events(0, 100).await.expect("events");
    let accepted = events
        .iter()
        .find(|e| e.kind == "upload_accepted")
        .expect("upload event");
    assert_eq!(accepted.detail["log_index"], 3);
    let published = events
        .iter()
        .find(|e| e.kind == "global_published")
        .expect("publish event");
    assert_eq!(published.detail["log_index"], 5);
    let enrolled = events
        .iter()
        .find(|e| e.kind == "device_enrolled")
        .expect("enrolment event");
    assert_eq!(enrolled.detail["log_index"], 1);
}

#[tokio::test]
async fn enrolments_and_revocations_are_logged_once_and_backfilled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStorage::open(dir.path()).expect("db");
    s.sync_federation(FederationSync {
        id: "f".into(),
        config_json: "{}".into(),
        at_ms: T0,
    })
    .await
    .expect("sync");
    for n in 1..=2u8 {
        s.create_invite(NewInvite {
            federation_id: "f".into(),
            token_sha256: [n; 32],
            created_at_ms: T0,
            expires_at_ms: T0 + 1_000,
        })
        .await
        .expect("invite");
        s.enrol(Enrolment {
            token_sha256: [n; 32],
            device_id: format!("dev-{n}"),
            public_key: [n; 32],
            at_ms: T0 + 1,
        })
        .await
        .expect("enrol");
    }
    // A refused enrolment (the invite is used) logs nothing.
    assert!(
        s.enrol(Enrolment {
            token_sha256: [1; 32],
            device_id: "dev-3".into(),
            public_key: [3; 32],
            at_ms: T0 + 2,
        })
        .await
        .is_err()
    );
    s.revoke_device("dev-1".into(), T0 + 3)
        .await
        .expect("revoke");
    // Revoking again keeps the first time and logs nothing more.
    s.revoke_device("dev-1".into(), T0 + 4)
        .await
        .expect("again");
    let revoked = LogEntry::DeviceRevoked {
        federation: "f".into(),
        device: "dev-1".into(),
    };
    let enrolled = |n: u8| LogEntry::DeviceEnrolled {
        federation: "f".into(),
        device: format!("dev-{n}"),
        public_key: [n; 32],
    };
    assert_eq!(
        entries_of(&s)[1..],
        [enrolled(1), enrolled(2), revoked.clone()]
    );
    drop(s);

    // A database from before enrolments were logged: its devices are
    // logged (revocations too) when it is next opened, once.
    let old = tempfile::tempdir().expect("tempdir");
    {
        let mut conn =
            Connection::open(old.path().join(super::super::DATABASE_FILE)).expect("open");
        let m = rusqlite_migration::Migrations::new(
            super::super::sqlite::MIGRATIONS[..2]
                .iter()
                .map(|sql| rusqlite_migration::M::up(sql))
                .collect(),
        );
        m.to_latest(&mut conn).expect("old schema");
        conn.execute_batch(
            "INSERT INTO federations VALUES ('f', '{}', zeroblob(32), 1, 1, 1);
             INSERT INTO devices (id, federation_id, public_key, enrolled_at_ms, \
             revoked_at_ms) VALUES ('dev-2', 'f', x'0202020202020202020202020202020202020202020202020202020202020202', 2, NULL), \
             ('dev-1', 'f', x'0101010101010101010101010101010101010101010101010101010101010101', 1, 5);",
        )
        .expect("old rows");
    }
    let s = SqliteStorage::open(old.path()).expect("upgraded");
    assert_eq!(
        entries_of(&s),
        [
            LogEntry::FederationConfig {
                federation: "f".into(),
                config_sha256: Hash::from_bytes([0; 32]),
            },
            enrolled(1),
            revoked,
            enrolled(2),
        ]
    );
    drop(s);
    let s = SqliteStorage::open(old.path()).expect("again");
    assert_eq!(s.log_size().await.expect("size"), 4, "nothing twice");
}

#[tokio::test]
async fn a_failed_change_appends_nothing() {
    let s = storage_with_round(2).await;
    let before = s.log_size().await.expect("size");

    // A stale publication, and one whose epsilon the log cannot hold.
    assert!(matches!(
        s.publish_global(publication(9, Some(1.0))).await,
        Err(StorageError::Conflict(_))
    ));
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        assert!(matches!(
            s.publish_global(publication(1, Some(bad))).await,
            Err(StorageError::Invalid(_))
        ));
    }
    assert!(
        s.round_in_flight("f".into())
            .await
            .expect("flight")
            .is_some()
    );
    assert!(s.latest_global("f".into()).await.expect("latest").is_none());

    // A commitment whose round state save loses its compare-and-swap.
    let stale = RoundUpdate {
        federation_id: "f".into(),
        round: 1,
        expected_version: 7,
        stage: Stage::CollectingUploads,
        state: vec![2],
        stage_deadline_ms: T0 + 10_000,
        at_ms: T0 + 5,
    };
    assert!(matches!(
        s.record_upload_commitment(commitment("dev-1", b"one"), Some(stale))
            .await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(s.log_size().await.expect("size"), before);
    assert!(
        !s.events(0, 100)
            .await
            .expect("events")
            .iter()
            .any(|e| e.kind == "upload_accepted")
    );

    // Directly: an entry appended inside a transaction that then fails
    // is gone with it.
    s.with_connection(|conn| {
        let tx = conn.transaction()?;
        append_entry(
            &tx,
            &LogEntry::RoundOutcome {
                federation: "f".into(),
                round: 1,
                contributors: 0,
                aborted: true,
            },
            T0,
        )?;
        assert_eq!(log_size(&tx)?, before + 1);
        drop(tx);
        assert_eq!(log_size(conn)?, before);
        let leaves: u64 =
            conn.query_row("SELECT count(*) FROM log_leaves", [], |row| row.get(0))?;
        assert_eq!(leaves, before);
        Ok(())
    })
    .expect("rolled back");

    // The -0 an accountant may produce is logged as 0.
    let published = s
        .publish_global(Publication {
            delta: -0.0,
            ..publication(1, Some(-0.0))
        })
        .await
        .expect("publish");
    assert_eq!(published.version, 1);
}

#[tokio::test]
async fn a_round_without_noise_is_logged_with_an_infinite_epsilon() {
    let s = storage_with_round(2).await;
    s.publish_global(publication(1, None))
        .await
        .expect("publish");
    let logged = entries_of(&s);
    let Some(LogEntry::AdapterPublished { epsilon, delta, .. }) = logged.last() else {
        panic!("adapter entry expected: {logged:?}");
    };
    // "No bound", never a number that reads as a guarantee.
    assert_eq!(*epsilon, f64::INFINITY);
    assert_eq!(*delta, 1e-6);
    let event = s
        .events(0, 100)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "global_published")
        .expect("publish event");
    assert!(event.detail["epsilon"].is_null());
}

#[tokio::test]
async fn commitments_are_one_per_device_and_round() {
    let s = storage_with_round(2).await;
    let first = s
        .record_upload_commitment(commitment("dev-1", b"one"), None)
        .await
        .expect("commit");
    assert!(first.appended);
    let again = s
        .record_upload_commitment(commitment("dev-1", b"one"), None)
        .await
        .expect("idempotent");
    assert_eq!((again.log_index, again.appended), (first.log_index, false));
    assert!(matches!(
        s.record_upload_commitment(commitment("dev-1", b"other"), None)
            .await,
        Err(StorageError::Conflict(m)) if m.contains("another upload")
    ));
    assert!(matches!(
        s.record_upload_commitment(commitment("dev-9", b"x"), None)
            .await,
        Err(StorageError::Conflict(m)) if m.contains("not in the cohort")
    ));
    assert!(matches!(
        s.record_upload_commitment(
            UploadCommitment {
                round: 5,
                ..commitment("dev-1", b"x")
            },
            None
        )
        .await,
        Err(StorageError::NotFound(_))
    ));

    // With the round's state change: one transaction, version bumped.
    let receipt = s
        .record_upload_commitment(
            commitment("dev-2", b"two"),
            Some(RoundUpdate {
                federation_id: "f".into(),
                round: 1,
                expected_version: 1,
                stage: Stage::CollectingUploads,
                state: b"two uploads".to_vec(),
                stage_deadline_ms: T0 + 10_000,
                at_ms: T0 + 6,
            }),
        )
        .await
        .expect("commit with update");
    assert_eq!(receipt.round.map(|r| r.version), Some(2));
    assert_eq!(receipt.log_index, first.log_index + 1);

    // A closed round takes no more commitments.
    s.publish_global(publication(2, Some(1.0)))
        .await
        .expect("publish");
    assert!(matches!(
        s.record_upload_commitment(commitment("dev-2", b"late"), None)
            .await,
        Err(StorageError::Conflict(m)) if m.contains("already published")
    ));
}

#[tokio::test]
async fn the_log_tables_refuse_rewrites() {
    let s = storage_with_round(1).await;
    s.record_upload_commitment(commitment("dev-1", b"one"), None)
        .await
        .expect("commit");
    let key = Arc::new(LogKey::from_seed(&[1; 32]));
    s.signed_tree_head(key, T0).await.expect("sth");
    s.with_connection(|conn| {
        for sql in [
            "UPDATE log_nodes SET hash = zeroblob(32)",
            "DELETE FROM log_nodes",
            "UPDATE log_leaves SET leaf_data = x'00'",
            "DELETE FROM log_leaves",
            "UPDATE log_heads SET size = 0",
            "DELETE FROM log_heads",
            // Out of order: a gap, and a slot written twice.
            "INSERT INTO log_nodes (level, idx, hash) VALUES (0, 5, zeroblob(32))",
            "INSERT INTO log_nodes (level, idx, hash) VALUES (0, 0, zeroblob(32))",
            "INSERT INTO log_leaves (idx, leaf_data, at_ms, kind, federation_id) \
             VALUES (2, x'00', 0, 'x', 'f')",
            // A head that goes back in size or time, or past the log.
            "INSERT INTO log_heads (size, root, timestamp_ms, signature) \
             VALUES (1, zeroblob(32), 0, zeroblob(64))",
            "INSERT INTO log_heads (size, root, timestamp_ms, signature) \
             VALUES (99, zeroblob(32), 9999999999999, zeroblob(64))",
        ] {
            let refused = conn.execute(sql, []);
            assert!(refused.is_err(), "{sql} was allowed");
        }
        Ok(())
    })
    .expect("checked");
    assert_eq!(s.log_size().await.expect("size"), 3);
}

#[tokio::test]
async fn signed_heads_are_cached_monotonic_and_follow_the_key() {
    let s = storage_with_round(1).await;
    let key = Arc::new(LogKey::from_seed(&[1; 32]));
    let first = s
        .signed_tree_head(Arc::clone(&key), T0 + 100)
        .await
        .expect("sth");
    assert_eq!(first.head.size, 2, "config, enrolment");
    assert!(first.verify(&key.public()).is_ok());
    // Nothing appended: the same head, even asked later.
    let cached = s
        .signed_tree_head(Arc::clone(&key), T0 + 200)
        .await
        .expect("sth");
    assert_eq!(cached, first);
    // Appended, with the clock behind: the timestamp does not go back.
    s.record_upload_commitment(commitment("dev-1", b"one"), None)
        .await
        .expect("commit");
    let grown = s.signed_tree_head(Arc::clone(&key), T0).await.expect("sth");
    assert_eq!(grown.head.size, 3);
    assert_eq!(grown.head.timestamp_ms, T0 + 100);
    // Another key: the cached head is re-signed under it.
    let other = Arc::new(LogKey::from_seed(&[2; 32]));
    let resigned = s
        .signed_tree_head(Arc::clone(&other), T0 + 300)
        .await
        .expect("sth");
    assert_eq!(resigned.head.root, grown.head.root);
    assert!(resigned.verify(&other.public()).is_ok());
}

#[tokio::test]
async fn reads_find_entries_and_refuse_ranges_past_the_log() {
    let s = storage_with_round(2).await;
    let receipt = s
        .record_upload_commitment(commitment("dev-2", b"two"), None)
        .await
        .expect("commit");
    s.publish_global(publication(1, Some(1.0)))
        .await
        .expect("publish");
    let size = s.log_size().await.expect("size");
    assert_eq!(
        size, 6,
        "config, 2 enrolments, commitment, outcome, publication"
    );
    let by_hash = s
        .log_inclusion_proof_by_hash(receipt.leaf_hash, size)
        .await
        .expect("proof")
        .expect("found");
    assert_eq!(by_hash.index, receipt.log_index);
    assert_eq!(
        by_hash,
        s.log_inclusion_proof(receipt.log_index, size)
            .await
            .expect("by index")
    );
    // Not in a tree that ends before it.
    assert!(
        s.log_inclusion_proof_by_hash(receipt.leaf_hash, receipt.log_index)
            .await
            .expect("proof")
            .is_none()
    );
    let (leaf, proof) = s
        .log_adapter_entry("f".into(), 1, size)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(leaf.index, 5);
    assert_eq!(proof.leaf_hash, leaf_hash(&leaf.leaf_data));
    assert!(
        s.log_adapter_entry("f".into(), 2, size)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        s.log_adapter_entry("f".into(), 1, 3).await,
        Err(StorageError::OutOfRange(_))
    ));
    for result in [
        s.log_entries(0, size + 1).await.map(|_| ()),
        s.log_inclusion_proof(size, size).await.map(|_| ()),
        s.log_inclusion_proof(0, size + 1).await.map(|_| ()),
        s.log_consistency_proof(1, size + 1).await.map(|_| ()),
        s.log_consistency_proof(3, 2).await.map(|_| ()),
        s.log_inclusion_proof_by_hash(receipt.leaf_hash, size + 1)
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(StorageError::OutOfRange(_))),
            "{result:?}"
        );
    }
    assert_eq!(s.log_entries(1, 3).await.expect("entries").len(), 2);
}

#[tokio::test]
async fn a_database_from_before_the_log_starts_it_with_its_configurations() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut conn = Connection::open(dir.path().join(super::super::DATABASE_FILE)).expect("raw");
        rusqlite_migration::Migrations::new(vec![rusqlite_migration::M::up(include_str!(
            "../../../migrations/01-server.sql"
        ))])
        .to_latest(&mut conn)
        .expect("schema 1");
        conn.execute(
            "INSERT INTO federations (id, config_json, config_sha256, created_at_ms, \
             updated_at_ms, gathering_since_ms) VALUES ('old', '{}', ?1, 0, 0, 0)",
            [Hash::sha256(b"{}").to_bytes()],
        )
        .expect("federation");
    }
    let s = SqliteStorage::open(dir.path()).expect("upgrade");
    assert_eq!(
        entries_of(&s),
        [LogEntry::FederationConfig {
            federation: "old".into(),
            config_sha256: Hash::sha256(b"{}"),
        }]
    );
    drop(s);
    // Opening again does not log them twice.
    let s = SqliteStorage::open(dir.path()).expect("reopen");
    assert_eq!(s.log_size().await.expect("size"), 1);
}

#[test]
fn the_bench_runs_over_sqlite_and_leaves_nothing_behind() {
    let s = SqliteStorage::open_in_memory().expect("db");
    let figures = s.bench_log(200, 10).expect("bench");
    assert_eq!(figures.entries, 200);
    assert!(figures.inclusion_proof_len > 6.0);
    assert_eq!(s.with_connection(|c| log_size(c)).expect("size"), 0);
    assert_eq!(bench_sqlite_log(50, 5).expect("bench").entries, 50);
}
