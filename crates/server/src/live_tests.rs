//! The live cache against storage: journaled messages, restarts, stale
//! caches, and round work off the runtime.
use crate::storage::prelude::*;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_fed::DeviceId;
use tower::ServiceExt;

use super::*;
use crate::config::{Config, EXAMPLE_CONFIG};
use crate::identity::ServerIdentity;
use crate::rounds::{Incoming, RoundInput, RoundProtocol, close_expired_stages, open_round};
use crate::storage::{RoundRecord, SqliteStorage};
use crate::testing::{Counter, Hold, T0, decode, setup};

/// One counted message from `dev-1`, through the live state.
async fn count(
    live: &LiveRounds,
    storage: &dyn Storage,
    federation: &FederationConfig,
) -> Advanced {
    live.step(
        storage,
        federation,
        1,
        T0 + 1,
        None,
        |round: &mut dyn LiveRound, ctx: &StepContext<'_>, _: &RoundSummary| {
            round.receive(
                ctx,
                &RoundInput {
                    device_id: "dev-1",
                    sender: DeviceId::from_bytes([1; 32]),
                    message: Incoming::Upload(&[]),
                },
            )
        },
    )
    .await
    .expect("step")
    .expect("accepted")
}

async fn stored(storage: &dyn Storage, federation: &FederationConfig) -> RoundRecord {
    storage
        .load_round(federation.id.clone(), 1)
        .await
        .expect("load")
        .expect("round")
}

#[tokio::test]
async fn messages_are_journaled_and_a_restart_resumes_what_storage_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SqliteStorage::open(dir.path()).expect("db");
    let (fed, members) = setup(&s, 2).await;
    open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");
    let live = LiveRounds::new(Arc::new(Counter::default()));
    for version in 2..=4 {
        let Advanced::Saved(summary) = count(&live, &s, &fed).await else {
            panic!("saved expected");
        };
        assert_eq!(summary.version, version);
    }
    assert_eq!(live.held(), [(fed.id.clone(), 1)]);
    // Each message is a journal entry; the whole state is as opened.
    let record = stored(&s, &fed).await;
    assert_eq!(record.journal.len(), 3);
    let whole: crate::testing::CounterState = serde_json::from_slice(&record.state).expect("state");
    assert_eq!(whole.messages, 0);
    assert_eq!(decode(&record).expect("decodes").messages, 3);

    // Kill: drop the cache and the connection, open the folder again.
    drop(live);
    drop(s);
    let s = SqliteStorage::open(dir.path()).expect("reopen");
    let record = stored(&s, &fed).await;
    assert_eq!(Counter::default().check_resumable(&record), Ok(()));
    let live = LiveRounds::new(Arc::new(Counter::default()));
    let Advanced::Saved(summary) = count(&live, &s, &fed).await else {
        panic!("saved expected");
    };
    assert_eq!(summary.version, 5);
    assert_eq!(
        decode(&stored(&s, &fed).await).expect("decodes").messages,
        4
    );

    // A stage change stores the state whole and empties the journal.
    let config = Config::parse(EXAMPLE_CONFIG, std::path::Path::new(".")).expect("config");
    let identity = Arc::new(ServerIdentity::generate());
    let closed = close_expired_stages(&s, &live, &config, &identity, summary.stage_deadline_ms + 1)
        .await
        .expect("sweep");
    assert_eq!(closed.len(), 1);
    let record = stored(&s, &fed).await;
    assert!(record.journal.is_empty());
    assert_eq!(record.summary.stage, Stage::SharingKeys);
    let whole: crate::testing::CounterState = serde_json::from_slice(&record.state).expect("state");
    assert_eq!((whole.messages, whole.stage), (4, Stage::SharingKeys));
}

#[tokio::test]
async fn a_cache_behind_storage_is_decoded_again_and_loses_nothing() {
    let s = SqliteStorage::open_in_memory().expect("db");
    let (fed, members) = setup(&s, 2).await;
    open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");
    // Two servers' caches over one store: each write moves the version
    // under the other.
    let a = LiveRounds::new(Arc::new(Counter::default()));
    let b = LiveRounds::new(Arc::new(Counter::default()));
    count(&a, &s, &fed).await;
    count(&b, &s, &fed).await;
    count(&a, &s, &fed).await;
    count(&b, &s, &fed).await;
    let record = stored(&s, &fed).await;
    assert_eq!(record.summary.version, 5);
    assert_eq!(decode(&record).expect("decodes").messages, 4);
    // Polls check the version too (and answer from the live state).
    let (answer, summary) = a
        .poll(&s, &fed.id, 1, &DeviceId::from_bytes([1; 32]))
        .await
        .expect("poll")
        .expect("in flight");
    assert_eq!((answer, summary.version), (Poll::Wait, 5));
}

#[tokio::test]
async fn an_ended_round_is_forgotten() {
    let s = SqliteStorage::open_in_memory().expect("db");
    let (fed, members) = setup(&s, 2).await;
    let round = open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");
    let live = LiveRounds::new(Arc::new(Counter::default()));
    count(&live, &s, &fed).await;
    s.abort_round(crate::storage::RoundAbort {
        federation_id: fed.id.clone(),
        round: 1,
        expected_version: round.summary.version + 1,
        reason: "test".into(),
        at_ms: T0 + 2,
    })
    .await
    .expect("abort");
    assert!(stored(&s, &fed).await.journal.is_empty());
    let again = live
        .step(
            &s,
            &fed,
            1,
            T0 + 3,
            None,
            |_: &mut dyn LiveRound, _: &StepContext<'_>, _: &RoundSummary| {
                Ok::<_, ()>(Step::Unchanged)
            },
        )
        .await;
    assert!(matches!(again, Err(RoundError::NotInFlight { .. })));
    assert!(live.held().is_empty());
}

/// A stage close held on the blocking pool (the hook stands in for a long
/// unmask) while `/v1/health` is asked, on a runtime with a single thread:
/// were the close run on the runtime, nothing else could run until it
/// ended.
#[tokio::test(flavor = "current_thread")]
async fn health_answers_while_a_stage_close_is_running() {
    let s = SqliteStorage::open_in_memory().expect("db");
    let (fed, members) = setup(&s, 2).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = mpsc::channel();
    let protocol = Counter {
        hold: Some(Arc::new(Hold {
            started: started_tx,
            release: Mutex::new(release_rx),
        })),
    };
    let round = open_round(&s, &protocol, &fed, members, T0)
        .await
        .expect("open");
    let config = Arc::new(Config::parse(EXAMPLE_CONFIG, std::path::Path::new(".")).expect("cfg"));
    let state = crate::AppState {
        config: Arc::clone(&config),
        storage: Arc::new(s),
        rounds: Arc::new(LiveRounds::new(Arc::new(protocol))),
        replay: Arc::new(crate::ReplayGuard::new(crate::ReplayLimits::default(), 0)),
        identity: Arc::new(ServerIdentity::generate()),
        log_key: Arc::new(crate::log::LogKey::from_seed(&[9; 32])),
    };
    let sweep = {
        let state = state.clone();
        tokio::spawn(async move {
            close_expired_stages(
                &*state.storage,
                &state.rounds,
                &state.config,
                &state.identity,
                round.summary.stage_deadline_ms + 1,
            )
            .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), started.recv())
        .await
        .expect("the close started")
        .expect("hook");

    let health = tokio::time::timeout(
        Duration::from_secs(30),
        crate::app(state.clone()).oneshot(
            Request::get("/v1/health")
                .body(Body::empty())
                .expect("request"),
        ),
    )
    .await
    .expect("health answered while the close was held")
    .expect("response");
    assert_eq!(health.status(), StatusCode::OK);
    // The close is provably still running: it waits for `release`.
    assert!(!sweep.is_finished());

    release.send(()).expect("release");
    let closed = tokio::time::timeout(Duration::from_secs(30), sweep)
        .await
        .expect("the sweep finished")
        .expect("join")
        .expect("sweep");
    assert_eq!(closed.len(), 1);
    assert!(matches!(closed[0].result, Advanced::Saved(ref s) if s.stage == Stage::SharingKeys));
}
