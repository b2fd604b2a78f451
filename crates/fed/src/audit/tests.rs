//! The audit against an in-memory log driven honestly and dishonestly.

use hearth_ledger::{MemoryStore, MerkleLog, ProofError, SigningKey};

use super::wire::{EntriesResponse, EntryResponse, InclusionProofResponse};
use super::*;

const T0: u64 = 1_700_000_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// A toy server: a log and its key, answering like the endpoints do.
struct Server {
    log: MerkleLog<MemoryStore>,
    key: SigningKey,
    clock: u64,
}

impl Server {
    fn new() -> Self {
        let mut s = Self {
            log: MerkleLog::new(MemoryStore::new()),
            key: key(),
            clock: T0,
        };
        s.append(&LogEntry::FederationConfig {
            federation: "notes".into(),
            config_sha256: Hash::sha256(b"config"),
        });
        s
    }

    fn append(&mut self, entry: &LogEntry) -> u64 {
        self.log.append(&entry.leaf_data()).expect("append")
    }

    fn size(&self) -> u64 {
        self.log.size().expect("size")
    }

    fn sth(&mut self) -> SignedTreeHead {
        self.clock += 1;
        self.log
            .tree_head(self.clock)
            .expect("head")
            .sign(&self.key)
    }

    fn consistency(&self, old: u64) -> ConsistencyProofResponse {
        let new = self.size();
        ConsistencyProofResponse {
            old,
            new,
            path: self.log.consistency_proof(old, new).expect("proof"),
        }
    }

    fn inclusion(&self, index: u64) -> InclusionProofResponse {
        let size = self.size();
        InclusionProofResponse {
            index,
            size,
            leaf_hash: self.log.leaf(index).expect("leaf"),
            path: self.log.inclusion_proof(index, size).expect("proof"),
        }
    }

    fn adapter_entry(&self, index: u64, entry: &LogEntry) -> AdapterEntryResponse {
        AdapterEntryResponse {
            entry: EntryResponse::new(index, &entry.leaf_data()),
            proof: self.inclusion(index),
        }
    }

    /// Runs round `round`: `device` uploads `upload`, the server logs it
    /// (unless `drop_commitment`), publishes version `round` with bytes
    /// `adapter`, and answers the device's after-round questions.
    fn round(&mut self, audit: &LogAudit, round: u64, upload: &[u8], adapter: &[u8]) -> RoundCheck {
        let info = round_info(round, 1);
        let opened_index = self.append(&parameters::round_opened_entry("notes", &info));
        let mine = LogEntry::RoundParticipation {
            federation: "notes".into(),
            round,
            device: "dev_me".into(),
            upload_sha256: Hash::sha256(upload),
        };
        let mine_index = self.append(&mine);
        self.append(&LogEntry::RoundParticipation {
            federation: "notes".into(),
            round,
            device: "dev_other".into(),
            upload_sha256: Hash::sha256(b"theirs"),
        });
        self.append(&LogEntry::RoundOutcome {
            federation: "notes".into(),
            round,
            contributors: 2,
            aborted: false,
        });
        let published = LogEntry::AdapterPublished {
            federation: "notes".into(),
            version: round,
            round,
            adapter_sha256: Hash::sha256(adapter),
            contributors: 2,
            epsilon: 0.5 * round as f64,
            delta: 1e-6,
        };
        let adapter_index = self.append(&published);
        RoundCheck {
            sth: self.sth(),
            consistency: self.consistency(audit.size()),
            federation: "notes".into(),
            round,
            commitment: Some(CommitmentCheck {
                device: "dev_me".into(),
                upload_sha256: Hash::sha256(upload),
                proof: Some(self.inclusion(mine_index)),
            }),
            adapter: Some(AdapterCheck {
                version: round,
                adapter_sha256: Hash::sha256(adapter),
                logged: Some(self.adapter_entry(adapter_index, &published)),
            }),
            parameters: Some(ParametersCheck {
                info,
                proof: Some(self.inclusion(opened_index)),
            }),
        }
    }
}

/// The parameters of `round` with graph seed `seed`.
fn round_info(round: u64, seed: u8) -> crate::RoundInfo {
    crate::RoundInfo {
        federation: crate::FederationId::from_name("notes"),
        round: crate::RoundId(round),
        vector_len: 16,
        min_clients: 2,
        max_clients: 2,
        min_survivors: 2,
        degree: None,
        threshold: None,
        graph_seed: crate::GraphSeed([seed; 32]),
        dp: crate::DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 0.0,
        },
        threat_model: None,
    }
}

#[test]
fn parameters_other_than_the_logged_ones_are_caught() {
    let (mut server, mut audit) = audited(1);
    let mut check = server.round(&audit, 2, b"u", b"a");
    let honest = check.clone();
    let before = audit.clone();
    // This device was shown another graph seed than the logged one; the
    // server answers the inclusion query (by that leaf hash) with nothing,
    // or with the logged entry's proof.
    let shown = round_info(2, 9);
    check.parameters = Some(ParametersCheck {
        info: shown.clone(),
        proof: None,
    });
    let err = audit.verify_round(check.clone()).expect_err("not logged");
    assert!(
        matches!(&err, AuditError::ParametersNotLogged { round: 2, why: Absence::NoEntry, digest, .. }
            if *digest == Hash::from_bytes(shown.digest())),
        "{err}"
    );
    assert!(err.to_string().starts_with("round parameters not logged"));
    check.parameters = Some(ParametersCheck {
        info: shown,
        proof: honest.parameters.as_ref().and_then(|p| p.proof.clone()),
    });
    let err = audit.verify_round(check).expect_err("another leaf");
    assert!(
        matches!(
            &err,
            AuditError::ParametersNotLogged {
                why: Absence::OtherLeaf { .. },
                ..
            }
        ),
        "{err}"
    );
    // Parameters of another round are refused as such.
    let mut other = honest.clone();
    if let Some(p) = other.parameters.as_mut() {
        p.info.round = crate::RoundId(1);
    }
    assert!(matches!(
        audit.verify_round(other),
        Err(AuditError::Malformed(_))
    ));
    assert_eq!(audit, before);
    let verified = audit.verify_round(honest).expect("the logged parameters");
    assert_eq!(verified.parameters_index, Some(6));
    let report = audit_all(&audit).expect("re-verifies");
    assert_eq!(report.parameters, 2);
}

fn audited(rounds: u64) -> (Server, LogAudit) {
    let mut server = Server::new();
    let mut audit = LogAudit::new(key().verifying_key());
    for r in 1..=rounds {
        let check = server.round(&audit, r, &[r as u8; 8], &[r as u8; 16]);
        let verified = audit.verify_round(check).expect("honest round verifies");
        let adapter = verified.adapter.expect("adapter");
        assert_eq!((adapter.contributors, adapter.delta), (2, 1e-6));
    }
    (server, audit)
}

#[test]
fn honest_rounds_verify_and_replay_from_storage() {
    let (server, audit) = audited(4);
    assert_eq!(audit.size(), server.size());
    assert_eq!(audit.history().len(), 4);
    let json = serde_json::to_string(&audit).expect("serialize");
    let back: LogAudit = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, audit);
    let report = audit_all(&back).expect("re-verifies");
    assert_eq!(
        (
            report.checkpoints,
            report.rounds,
            report.commitments,
            report.adapters
        ),
        (4, 4, 4, 4)
    );
    assert_eq!(report.head.map(|h| h.size), Some(server.size()));
}

#[test]
fn a_fork_and_a_rewritten_history_are_caught() {
    let (mut server, mut audit) = audited(2);
    let before = audit.clone();
    let n = audit.size();
    let mut check = server.round(&audit, 3, b"up", b"adapter");

    // A log under the same key whose last entry differs: same size as
    // the audited tree, another root.
    let mut forked = Server::new();
    forked.clock = server.clock + 10;
    for i in 1..n - 1 {
        let leaf = server.log.leaf(i).expect("leaf");
        forked.log.append_hash(leaf).expect("append");
    }
    let other = |round| LogEntry::RoundOutcome {
        federation: "notes".into(),
        round,
        contributors: 0,
        aborted: true,
    };
    forked.append(&other(99));
    assert_eq!(forked.size(), n);
    check.sth = forked.sth();
    check.consistency = ConsistencyProofResponse::trivial(n, n);
    let err = audit.verify_round(check.clone()).expect_err("fork");
    assert!(
        matches!(err, AuditError::Fork { size, .. } if size == n),
        "{err}"
    );
    assert_eq!(audit, before, "a failed check changes nothing");

    // It grows on: a larger tree that does not extend the audited one.
    forked.append(&other(100));
    check.sth = forked.sth();
    check.consistency = forked.consistency(n);
    let err = audit.verify_round(check).expect_err("rewritten");
    assert!(
        matches!(err, AuditError::HistoryRewritten { from, .. } if from == n),
        "{err}"
    );
    assert!(err.to_string().starts_with("fork:"));
    assert_eq!(audit, before);
}

#[test]
fn a_wrong_signature_or_key_is_caught() {
    let (mut server, mut audit) = audited(1);
    let mut check = server.round(&audit, 2, b"up", b"adapter");
    let mut sig = check.sth.signature.to_bytes();
    sig[0] ^= 1;
    check.sth.signature = hearth_ledger::Signature::from_bytes(&sig);
    assert_eq!(
        audit.verify_round(check.clone()),
        Err(AuditError::BadSignature)
    );

    // A head signed by another key (a server that lost or swapped it).
    check.sth = check.sth.head.sign(&SigningKey::from_bytes(&[12; 32]));
    assert_eq!(audit.verify_round(check), Err(AuditError::BadSignature));

    let served = wire::LogKeyResponse::new(&SigningKey::from_bytes(&[12; 32]).verifying_key());
    assert!(matches!(
        audit.check_key(&served),
        Err(AuditError::KeyChanged { .. })
    ));
    assert_eq!(
        audit.check_key(&wire::LogKeyResponse::new(&key().verifying_key())),
        Ok(())
    );
}

#[test]
fn a_dropped_or_swapped_commitment_is_caught() {
    let (mut server, mut audit) = audited(1);
    let mut check = server.round(&audit, 2, b"what I sent", b"adapter");

    // The server says it has no such entry.
    let mut dropped = check.clone();
    if let Some(c) = dropped.commitment.as_mut() {
        c.proof = None;
    }
    let err = audit.verify_round(dropped).expect_err("dropped");
    assert!(
        matches!(
            &err,
            AuditError::MissingCommitment {
                why: Absence::NoEntry,
                round: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("missing commitment"));

    // The server logged other bytes for this device: it answers with the
    // proof of that (swapped) entry.
    let swapped = LogEntry::RoundParticipation {
        federation: "notes".into(),
        round: 2,
        device: "dev_me".into(),
        upload_sha256: Hash::sha256(b"something else"),
    };
    let index = server.append(&swapped);
    check.sth = server.sth();
    check.consistency = server.consistency(audit.size());
    let adapter_index = check
        .adapter
        .as_ref()
        .and_then(|a| a.logged.as_ref())
        .map(|l| l.entry.index)
        .expect("adapter index");
    if let Some(a) = check.adapter.as_mut() {
        a.logged = Some(AdapterEntryResponse {
            entry: a.logged.clone().expect("logged").entry,
            proof: server.inclusion(adapter_index),
        });
    }
    if let Some(c) = check.commitment.as_mut() {
        let mine = c.proof.as_ref().map(|p| p.index).expect("my index");
        c.proof = Some(server.inclusion(mine));
    }
    if let Some(p) = check.parameters.as_mut() {
        let opened = p.proof.as_ref().map(|p| p.index).expect("opened index");
        p.proof = Some(server.inclusion(opened));
    }
    let mut other = check.clone();
    if let Some(c) = other.commitment.as_mut() {
        c.proof = Some(server.inclusion(index));
    }
    let err = audit.verify_round(other).expect_err("swapped");
    assert!(
        matches!(
            &err,
            AuditError::MissingCommitment {
                why: Absence::OtherLeaf { .. },
                ..
            }
        ),
        "{err}"
    );

    // A proof claiming the right leaf at a wrong place.
    let mut lying = check.clone();
    if let Some(c) = lying.commitment.as_mut() {
        let mut p = server.inclusion(index);
        p.leaf_hash = commitment_leaf_hash("notes", 2, "dev_me", Hash::sha256(b"what I sent"));
        c.proof = Some(p);
    }
    let err = audit.verify_round(lying).expect_err("lying proof");
    assert!(
        matches!(
            &err,
            AuditError::MissingCommitment {
                why: Absence::NotInTree(_),
                ..
            }
        ),
        "{err}"
    );

    // A proof for an older tree than the head.
    let mut stale = check.clone();
    if let Some(p) = stale.commitment.as_mut().and_then(|c| c.proof.as_mut()) {
        p.size -= 1;
    }
    assert!(matches!(
        audit.verify_round(stale),
        Err(AuditError::WrongTreeSize { .. })
    ));
    // The honest answers still verify.
    let _ = audit.verify_round(check).expect("honest");
}

#[test]
fn a_wrong_or_unlogged_adapter_is_caught() {
    let (mut server, mut audit) = audited(1);
    let check = server.round(&audit, 2, b"up", b"the real adapter");

    let mut wrong = check.clone();
    if let Some(a) = wrong.adapter.as_mut() {
        a.adapter_sha256 = Hash::sha256(b"what I was served");
    }
    let err = audit.verify_round(wrong).expect_err("wrong adapter");
    assert!(
        matches!(&err, AuditError::WrongAdapter { version: 2, logged, .. }
            if *logged == Hash::sha256(b"the real adapter")),
        "{err}"
    );
    assert!(err.to_string().starts_with("wrong adapter hash"));

    let mut absent = check.clone();
    if let Some(a) = absent.adapter.as_mut() {
        a.logged = None;
    }
    assert!(matches!(
        audit.verify_round(absent),
        Err(AuditError::AdapterNotLogged {
            why: Absence::NoEntry,
            ..
        })
    ));

    // Asked for version 2, answered with version 1's (real, included) entry.
    let mut other_version = check.clone();
    let first = audit.history()[0]
        .round
        .as_ref()
        .and_then(|r| r.adapter.as_ref())
        .and_then(|a| a.logged.as_ref())
        .map(|l| l.entry.clone())
        .expect("first adapter entry");
    if let Some(a) = other_version.adapter.as_mut() {
        a.logged = Some(AdapterEntryResponse {
            proof: server.inclusion(first.index),
            entry: first,
        });
    }
    assert!(matches!(
        audit.verify_round(other_version),
        Err(AuditError::AdapterNotLogged {
            why: Absence::OtherSubject { .. },
            ..
        })
    ));

    // The stored entry's bytes were altered to name the served adapter:
    // they no longer hash into the signed root.
    let mut altered = check.clone();
    if let Some(a) = altered.adapter.as_mut() {
        a.adapter_sha256 = Hash::sha256(b"evil");
        if let Some(logged) = a.logged.as_mut() {
            let forged = LogEntry::AdapterPublished {
                federation: "notes".into(),
                version: 2,
                round: 2,
                adapter_sha256: Hash::sha256(b"evil"),
                contributors: 2,
                epsilon: 1.0,
                delta: 1e-6,
            };
            logged.entry = EntryResponse::new(logged.entry.index, &forged.leaf_data());
        }
    }
    assert!(matches!(
        audit.verify_round(altered),
        Err(AuditError::AdapterNotLogged {
            why: Absence::NotInTree(ProofError::RootMismatch),
            ..
        })
    ));
    let _ = audit.verify_round(check).expect("honest");
}

#[test]
fn a_full_replay_catches_an_altered_entry() {
    let (server, audit) = audited(3);
    let page = |start: u64, end: u64, alter: Option<u64>| EntriesResponse {
        start,
        end,
        entries: (start..end)
            .map(|i| {
                let mut bytes = server_leaf_data(&server, i);
                if alter == Some(i)
                    && let Some(last) = bytes.last_mut()
                {
                    *last ^= 1;
                }
                EntryResponse::new(i, &bytes)
            })
            .collect(),
    };
    let n = server.size();
    let mut honest = LogReplay::new();
    honest.push(&page(0, 5, None)).expect("page");
    assert!(honest.push(&page(6, n, None)).is_err(), "gap refused");
    honest.push(&page(5, n, None)).expect("page");
    assert_eq!(audit.check_contents(&honest), Ok(()));

    let mut altered = LogReplay::new();
    altered.push(&page(0, n, Some(4))).expect("page");
    assert!(matches!(
        audit.check_contents(&altered),
        Err(AuditError::RootMismatch { size, .. }) if size == n
    ));
    let short = LogReplay::new();
    assert!(matches!(
        audit.check_contents(&short),
        Err(AuditError::WrongTreeSize { .. })
    ));
}

/// The toy server keeps only hashes; rebuild the entries it appended.
fn server_leaf_data(server: &Server, index: u64) -> Vec<u8> {
    let mut candidates = vec![
        LogEntry::FederationConfig {
            federation: "notes".into(),
            config_sha256: Hash::sha256(b"config"),
        }
        .leaf_data(),
    ];
    for r in 1..=8u64 {
        candidates.push(parameters::round_opened_entry("notes", &round_info(r, 1)).leaf_data());
        candidates.push(
            LogEntry::RoundParticipation {
                federation: "notes".into(),
                round: r,
                device: "dev_me".into(),
                upload_sha256: Hash::sha256(&[r as u8; 8]),
            }
            .leaf_data(),
        );
        candidates.push(
            LogEntry::RoundParticipation {
                federation: "notes".into(),
                round: r,
                device: "dev_other".into(),
                upload_sha256: Hash::sha256(b"theirs"),
            }
            .leaf_data(),
        );
        candidates.push(
            LogEntry::RoundOutcome {
                federation: "notes".into(),
                round: r,
                contributors: 2,
                aborted: false,
            }
            .leaf_data(),
        );
        candidates.push(
            LogEntry::AdapterPublished {
                federation: "notes".into(),
                version: r,
                round: r,
                adapter_sha256: Hash::sha256(&[r as u8; 16]),
                contributors: 2,
                epsilon: 0.5 * r as f64,
                delta: 1e-6,
            }
            .leaf_data(),
        );
    }
    let want = server.log.leaf(index).expect("leaf");
    candidates
        .into_iter()
        .find(|c| leaf_hash(c) == want)
        .expect("known entry")
}

#[test]
fn a_tampered_state_file_fails_the_full_audit() {
    let (_, audit) = audited(3);
    // Drop a checkpoint: the next one's consistency proof no longer fits.
    let mut json = serde_json::to_value(&audit).expect("serialize");
    if let Some(history) = json["history"].as_array_mut() {
        history.remove(1);
    }
    let truncated: LogAudit = serde_json::from_value(json).expect("parse");
    assert!(matches!(
        audit_all(&truncated),
        Err(AuditError::History { checkpoint: 1, .. })
    ));

    // Swap the recorded upload hash: the commitment no longer verifies.
    let mut json = serde_json::to_value(&audit).expect("serialize");
    json["history"][2]["round"]["commitment"]["upload_sha256"] =
        serde_json::Value::String(Hash::sha256(b"x").to_string());
    let swapped: LogAudit = serde_json::from_value(json).expect("parse");
    let err = audit_all(&swapped).expect_err("swapped");
    assert!(
        matches!(&err, AuditError::History { checkpoint: 2, error }
            if matches!(**error, AuditError::MissingCommitment { .. })),
        "{err}"
    );

    // A head the key never signed does not even load.
    let mut json = serde_json::to_value(&audit).expect("serialize");
    json["watcher"]["latest"]["head"]["size"] = serde_json::json!(1);
    assert!(serde_json::from_value::<LogAudit>(json).is_err());
}

#[test]
fn advancing_without_a_round_records_checkpoints() {
    let mut server = Server::new();
    let mut audit = LogAudit::new(key().verifying_key());
    let sth = server.sth();
    audit
        .advance(&sth, &ConsistencyProofResponse::trivial(0, 1))
        .expect("first head");
    // The same tree re-signed later replaces the head and is recorded.
    let again = server.sth();
    audit
        .advance(&again, &ConsistencyProofResponse::trivial(1, 1))
        .expect("re-signed");
    assert_eq!(audit.signed_head(), Some(&again));
    server.append(&LogEntry::RoundOutcome {
        federation: "notes".into(),
        round: 1,
        contributors: 0,
        aborted: true,
    });
    let grown = server.sth();
    // A proof between the wrong sizes is refused before it is checked.
    assert!(matches!(
        audit.advance(&grown, &ConsistencyProofResponse::trivial(0, 2)),
        Err(AuditError::Malformed(_))
    ));
    audit
        .advance(&grown, &server.consistency(1))
        .expect("grown");
    assert_eq!(audit.history().len(), 3);
    let report = audit_all(&audit).expect("re-verifies");
    assert_eq!((report.checkpoints, report.rounds), (3, 0));
}

/// A second history under the same key: the toy server's log up to
/// `shared` entries, then other entries.
fn forked(server: &Server, shared: u64, extra: u64) -> Server {
    let mut fork = Server::new();
    for i in 1..shared {
        let leaf = server.log.leaf(i).expect("leaf");
        fork.log.append_hash(leaf).expect("append");
    }
    for i in 0..extra {
        fork.append(&LogEntry::FederationConfig {
            federation: "notes".into(),
            config_sha256: Hash::sha256(&i.to_be_bytes()),
        });
    }
    fork
}

fn head(sth: SignedTreeHead, consistency: Option<ConsistencyProofResponse>) -> GossipHead {
    GossipHead { sth, consistency }
}

#[test]
fn gossip_of_consistent_heads_passes() {
    let (mut server, mut audit) = audited(1);
    let older = server.log.tree_head(T0).expect("head").sign(&key());
    let same = server.sth();
    let _ = server.round(&audit, 2, b"u", b"a");
    let newer = server.sth();
    let mine = audit.size();
    let heads = [
        head(
            older.clone(),
            Some(ConsistencyProofResponse {
                old: older.head.size,
                new: mine,
                path: server
                    .log
                    .consistency_proof(older.head.size, mine)
                    .expect("proof"),
            }),
        ),
        head(same, None),
        head(newer, Some(server.consistency(mine))),
        // Not the log's key: ignored, not evidence.
        head(
            server
                .log
                .tree_head(T0)
                .expect("head")
                .sign(&SigningKey::from_bytes(&[1; 32])),
            None,
        ),
    ];
    let report = audit.gossip(&heads).expect("consistent");
    assert_eq!((report.heads, report.consistent, report.ignored), (4, 3, 1));
    assert!(audit.split_views().is_empty());
}

#[test]
fn gossip_exposes_a_split_view_and_the_full_audit_keeps_reporting_it() {
    let (server, mut audit) = audited(1);
    let size = audit.size();
    // Same size, another root.
    let mut fork = forked(&server, size - 1, 1);
    assert_eq!(fork.size(), size);
    let theirs = fork.sth();
    let before = audit.clone();
    let err = audit
        .gossip(&[head(theirs.clone(), None)])
        .expect_err("split view");
    assert!(
        matches!(&err, AuditError::SplitView { mine, theirs: t, proof: None }
            if mine.size == size && *t == theirs.head),
        "{err}"
    );
    assert!(err.to_string().starts_with("SPLIT VIEW"), "{err}");
    assert_eq!(audit.split_views().len(), 1, "evidence kept");
    assert_ne!(audit, before);
    // Stored and re-read, the full audit still reports it.
    let stored: LogAudit =
        serde_json::from_str(&serde_json::to_string(&audit).expect("save")).expect("load");
    assert!(matches!(
        audit_all(&stored),
        Err(AuditError::SplitView { .. })
    ));
    // The same evidence again is not stored twice.
    let _ = audit.gossip(&[head(theirs, None)]).expect_err("again");
    assert_eq!(audit.split_views().len(), 1);

    // A larger tree that does not extend this device's: the fork's own
    // consistency proof fails, and no proof at all is no better.
    let (_, mut audit) = audited(1);
    let mut fork = forked(&server, size - 1, 3);
    let bigger = fork.sth();
    let proof = fork.consistency(size);
    let err = audit
        .gossip(&[head(bigger.clone(), Some(proof))])
        .expect_err("inconsistent");
    assert!(
        matches!(&err, AuditError::SplitView { proof: Some(_), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not consistent"), "{err}");
    let (_, mut audit) = audited(1);
    let err = audit.gossip(&[head(bigger, None)]).expect_err("no proof");
    assert!(err.to_string().contains("cannot prove"), "{err}");
    assert!(matches!(
        audit_all(&audit),
        Err(AuditError::SplitView { .. })
    ));

    // Two other devices' heads of one size that disagree: a split even
    // before this device has verified anything.
    let mut fresh = LogAudit::new(key().verifying_key());
    let mut honest = Server::new();
    let a = honest.sth();
    let mut other = Server::new();
    other.log = MerkleLog::new(MemoryStore::new());
    other.append(&LogEntry::FederationConfig {
        federation: "other".into(),
        config_sha256: Hash::sha256(b"x"),
    });
    let b = other.sth();
    assert!(matches!(
        fresh.gossip(&[head(a, None), head(b, None)]),
        Err(AuditError::SplitView { .. })
    ));

    // A tampered state file whose evidence no longer proves anything
    // (the foreign head's signature broken) no longer reports it.
    let mut json = serde_json::to_value(&stored).expect("serialize");
    json["split_views"][0]["theirs"]["head"]["timestamp_ms"] = serde_json::json!(1);
    let tampered: LogAudit = serde_json::from_value(json).expect("parse");
    assert!(audit_all(&tampered).is_ok());
}

#[test]
fn a_head_a_round_relied_on_joins_the_history_or_is_caught() {
    let (mut server, mut audit) = audited(2);
    // Mid-round (the cohort check): an older head, a prefix of the tree
    // the audit verified since, joins without changing anything.
    let old_size = 3;
    let mut prefix = MerkleLog::new(MemoryStore::new());
    for i in 0..old_size {
        prefix
            .append_hash(server.log.leaf(i).expect("leaf"))
            .expect("append");
    }
    let earlier = prefix.tree_head(T0).expect("head").sign(&key());
    let proof = |server: &Server, old, new| ConsistencyProofResponse {
        old,
        new,
        path: server.log.consistency_proof(old, new).expect("proof"),
    };
    let before = audit.clone();
    audit
        .join_head(&earlier, &proof(&server, old_size, audit.size()))
        .expect("a prefix of the verified tree");
    assert_eq!(audit, before);
    // The same head signed over another history of that size is caught.
    let elsewhere = forked(&server, old_size - 1, 1);
    let other = elsewhere.log.tree_head(T0).expect("head").sign(&key());
    assert_eq!(other.head.size, old_size);
    let err = audit
        .join_head(&other, &proof(&server, old_size, audit.size()))
        .expect_err("not a prefix");
    assert!(
        matches!(err, AuditError::HistoryRewritten { from: 3, .. }),
        "{err}"
    );
    // A proof between other sizes proves nothing.
    assert!(matches!(
        audit.join_head(&earlier, &proof(&server, 2, audit.size())),
        Err(AuditError::Malformed(_))
    ));
    // The verified head itself, re-signed under another root: a fork.
    let size = audit.size();
    let mut fork = forked(&server, size - 1, 1);
    fork.clock = server.clock + 1;
    let err = audit
        .join_head(&fork.sth(), &ConsistencyProofResponse::trivial(size, size))
        .expect_err("fork");
    assert!(matches!(err, AuditError::Fork { .. }), "{err}");
    // A newer head is accepted along its proof, as by `advance`.
    server.append(&LogEntry::FederationConfig {
        federation: "notes".into(),
        config_sha256: Hash::sha256(b"later"),
    });
    let newer = server.sth();
    audit
        .join_head(&newer, &server.consistency(size))
        .expect("extends");
    assert_eq!(audit.size(), size + 1);
    assert_eq!(audit, {
        let mut advanced = before.clone();
        advanced
            .advance(&newer, &server.consistency(size))
            .expect("advance");
        advanced
    });
}
