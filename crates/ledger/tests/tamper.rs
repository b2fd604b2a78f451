//! A dishonest log against an honest watcher: changed entries, forked
//! histories, dropped entries, bad signatures, tampered saved state.

use hearth_ledger::{
    Advance, Hash, LogEntry, LogWatcher, MemoryStore, MerkleLog, ProofError, SignedTreeHead,
    SigningKey, SthError, WatchError,
};

const T0: u64 = 1_700_000_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn entry(i: u64) -> Vec<u8> {
    LogEntry::RoundParticipation {
        federation: "photos".into(),
        round: i / 10,
        device: format!("device-{i}"),
        upload_sha256: Hash::sha256(&i.to_le_bytes()),
    }
    .leaf_data()
}

fn log_of(entries: impl IntoIterator<Item = Vec<u8>>) -> MerkleLog<MemoryStore> {
    let mut log = MerkleLog::new(MemoryStore::new());
    for e in entries {
        log.append(&e).expect("append");
    }
    log
}

fn honest(n: u64) -> MerkleLog<MemoryStore> {
    log_of((0..n).map(entry))
}

fn sth(log: &MerkleLog<MemoryStore>, size: u64, ts: u64) -> SignedTreeHead {
    hearth_ledger::TreeHead {
        size,
        root: log.root_at(size).expect("root"),
        timestamp_ms: ts,
    }
    .sign(&key())
}

/// A watcher that has followed `log` up to `size`.
fn watcher_at(log: &MerkleLog<MemoryStore>, size: u64) -> LogWatcher {
    let mut w = LogWatcher::new(key().verifying_key());
    let _ = w.update(&sth(log, size / 2, T0), &[]).expect("first head");
    let proof = log.consistency_proof(size / 2, size).expect("proof");
    let _ = w.update(&sth(log, size, T0 + 1), &proof).expect("advance");
    w
}

#[test]
fn honest_log_advances_step_by_step() {
    let log = honest(100);
    let mut w = LogWatcher::new(key().verifying_key());
    let mut last = 0;
    for (step, size) in [0u64, 1, 2, 3, 8, 9, 50, 64, 99, 100, 100]
        .into_iter()
        .enumerate()
    {
        let proof = log.consistency_proof(last, size).expect("proof");
        let advance = w
            .update(&sth(&log, size, T0 + step as u64), &proof)
            .expect("update");
        if size == last {
            assert_eq!(advance, Advance::Unchanged);
        } else {
            assert_eq!(
                advance,
                Advance::Grew {
                    from: last,
                    to: size
                }
            );
        }
        last = size;
    }
    for i in [0, 37, 99] {
        let proof = log.inclusion_proof(i, 100).expect("proof");
        w.check_included(&entry(i), i, &proof).expect("included");
    }
}

#[test]
fn changed_entry_is_caught() {
    let log = honest(40);
    let mut changed: Vec<Vec<u8>> = (0..40).map(entry).collect();
    changed[17] = entry(1017);
    let evil = log_of(changed);
    let w = watcher_at(&log, 40);

    // The changed entry is not in the tree the watcher trusts, at its
    // index, with either log's proof.
    for source in [&log, &evil] {
        let proof = source.inclusion_proof(17, 40).expect("proof");
        assert!(matches!(
            w.check_included(&entry(1017), 17, &proof),
            Err(WatchError::NotIncluded(_))
        ));
    }
    // The evil log's head of the same size is a fork.
    let mut w2 = w.clone();
    assert!(matches!(
        w2.update(&sth(&evil, 40, T0 + 5), &[]),
        Err(WatchError::Fork { size: 40, .. })
    ));
    // Growing the evil log does not help: its consistency proof fails.
    let mut grown: Vec<Vec<u8>> = (0..40).map(entry).collect();
    grown[17] = entry(1017);
    grown.extend((40..50).map(entry));
    let evil = log_of(grown);
    let proof = evil.consistency_proof(40, 50).expect("proof");
    assert!(matches!(
        w2.update(&sth(&evil, 50, T0 + 6), &proof),
        Err(WatchError::Inconsistent {
            from: 40,
            to: 50,
            ..
        })
    ));
    // The watcher kept its state.
    assert_eq!(w2, w);
}

#[test]
fn forked_history_is_rejected() {
    // Two logs share entries 0..23 and diverge from index 23 on.
    let a = honest(60);
    let b = log_of((0..23).map(entry).chain((23..60).map(|i| entry(i + 5000))));
    assert_eq!(a.root_at(23).expect("root"), b.root_at(23).expect("root"));
    for seen in [24u64, 30, 32, 59] {
        let w = watcher_at(&a, seen);
        for offered in [seen, seen + 1, 60] {
            let mut w = w.clone();
            let proof = b.consistency_proof(seen, offered).expect("proof");
            let err = w
                .update(&sth(&b, offered, T0 + 9), &proof)
                .expect_err("fork");
            if offered == seen {
                assert!(matches!(err, WatchError::Fork { .. }), "{err}");
            } else {
                assert!(matches!(err, WatchError::Inconsistent { .. }), "{err}");
            }
            // Even a proof from the honest log does not vouch for B's root.
            let proof = a.consistency_proof(seen, offered).expect("proof");
            assert!(w.update(&sth(&b, offered, T0 + 9), &proof).is_err());
        }
    }
    // A watcher that only saw the shared prefix accepts either branch:
    // forks are only visible to someone who saw both (gossip).
    let mut w = watcher_at(&a, 23);
    let proof = b.consistency_proof(23, 60).expect("proof");
    assert!(w.update(&sth(&b, 60, T0 + 9), &proof).is_ok());
}

#[test]
fn dropped_entry_is_caught() {
    let log = honest(50);
    let dropped = log_of((0..50).filter(|&i| i != 31).map(entry));
    let w = watcher_at(&log, 50);

    // Going back to 49 entries is a rollback.
    let mut w2 = w.clone();
    assert_eq!(
        w2.update(&sth(&dropped, 49, T0 + 5), &[]),
        Err(WatchError::Rollback {
            current: 50,
            offered: 49
        })
    );
    // Refilling to 50 with another entry is a fork; beyond, inconsistent.
    let refilled = log_of((0..50).filter(|&i| i != 31).chain([777]).map(entry));
    assert!(matches!(
        w2.update(&sth(&refilled, 50, T0 + 5), &[]),
        Err(WatchError::Fork { .. })
    ));
    // Entries after the gap no longer prove at their old index.
    let proof = dropped.inclusion_proof(31, 49).expect("proof");
    assert!(w.check_included(&entry(32), 31, &proof).is_err());
    assert!(w.check_included(&entry(32), 32, &proof).is_err());
}

#[test]
fn wrong_signature_is_rejected() {
    let log = honest(10);
    let mut w = LogWatcher::new(key().verifying_key());
    let other = SigningKey::from_bytes(&[43; 32]);
    let forged = hearth_ledger::TreeHead {
        size: 10,
        root: log.root().expect("root"),
        timestamp_ms: T0,
    }
    .sign(&other);
    assert_eq!(
        w.update(&forged, &[]),
        Err(WatchError::Signature(SthError::BadSignature))
    );
    let mut edited = sth(&log, 10, T0);
    edited.head.size = 9;
    assert_eq!(
        w.update(&edited, &[]),
        Err(WatchError::Signature(SthError::BadSignature))
    );
    assert_eq!(w.size(), 0);
    assert!(w.head().is_none());
}

#[test]
fn timestamps_must_not_go_back() {
    let log = honest(10);
    let mut w = LogWatcher::new(key().verifying_key());
    let _ = w.update(&sth(&log, 5, T0), &[]).expect("first");
    let proof = log.consistency_proof(5, 10).expect("proof");
    assert_eq!(
        w.update(&sth(&log, 10, T0 - 1), &proof),
        Err(WatchError::TimestampRegressed {
            current: T0,
            offered: T0 - 1
        })
    );
    // A re-signed head of the same tree moves the timestamp forward only.
    assert_eq!(w.update(&sth(&log, 5, T0 + 7), &[]), Ok(Advance::Unchanged));
    assert_eq!(w.head().map(|h| h.timestamp_ms()), Some(T0 + 7));
    assert_eq!(w.update(&sth(&log, 5, T0 + 1), &[]), Ok(Advance::Unchanged));
    assert_eq!(w.head().map(|h| h.timestamp_ms()), Some(T0 + 7));
}

#[test]
fn empty_first_head_must_have_the_empty_root() {
    let log = honest(3);
    let mut w = LogWatcher::new(key().verifying_key());
    let lying = hearth_ledger::TreeHead {
        size: 0,
        root: log.root().expect("root"),
        timestamp_ms: T0,
    }
    .sign(&key());
    assert!(matches!(
        w.update(&lying, &[]),
        Err(WatchError::Inconsistent {
            proof: ProofError::RootMismatch,
            ..
        })
    ));
    assert_eq!(w.update(&sth(&log, 0, T0), &[]), Ok(Advance::Unchanged));
}

#[test]
fn saved_state_round_trips_and_tampering_is_refused() {
    let log = honest(20);
    let w = watcher_at(&log, 20);
    let json = serde_json::to_string(&w).expect("save");
    let back: LogWatcher = serde_json::from_str(&json).expect("load");
    assert_eq!(back, w);
    let proof = log.inclusion_proof(3, 20).expect("proof");
    back.check_included(&entry(3), 3, &proof).expect("included");

    // Claiming a larger verified size in the file breaks its signature.
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
    value["latest"]["head"]["size"] = serde_json::json!(21);
    assert!(serde_json::from_value::<LogWatcher>(value).is_err());
    // So does swapping the pinned key.
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
    value["log_key"] = serde_json::json!(hex::encode(
        SigningKey::from_bytes(&[1; 32]).verifying_key().as_bytes()
    ));
    assert!(serde_json::from_value::<LogWatcher>(value).is_err());
    // A fresh watcher saves and loads too.
    let fresh = LogWatcher::new(key().verifying_key());
    let json = serde_json::to_string(&fresh).expect("save");
    assert_eq!(
        serde_json::from_str::<LogWatcher>(&json).expect("load"),
        fresh
    );
}
