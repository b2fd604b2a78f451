//! The round driver's tests.
use crate::storage::prelude::*;

use super::*;
use crate::config::{Config, EXAMPLE_CONFIG};
use crate::storage::{RoundOutcome, SqliteStorage};
use crate::testing::T0;

use crate::testing::{Counter, CounterState};

fn live() -> LiveRounds {
    LiveRounds::new(Arc::new(Counter::default()))
}

async fn setup(devices: u8) -> (SqliteStorage, FederationConfig, Vec<CohortMember>) {
    let s = SqliteStorage::open_in_memory().expect("db");
    let (fed, members) = crate::testing::setup(&s, devices).await;
    (s, fed, members)
}

#[test]
fn stage_names_round_trip() {
    for stage in Stage::ALL {
        assert_eq!(Stage::parse(stage.as_str()), Some(stage));
    }
    assert_eq!(Stage::parse("gathering"), None);
}

#[tokio::test]
async fn opening_stores_the_protocol_state_with_the_first_deadline() {
    let (s, fed, members) = setup(3).await;
    let round = open_round(
        &s,
        &Counter::default(),
        &fed,
        members.into_iter().rev().collect(),
        T0,
    )
    .await
    .expect("open");
    assert_eq!(round.summary.round, 1);
    assert_eq!(round.summary.stage, Stage::CollectingKeys);
    assert_eq!(
        round.summary.stage_deadline_ms,
        T0 + u64::from(fed.deadlines.advertise_keys_secs) * 1000
    );
    let state: CounterState = serde_json::from_slice(&round.state).expect("decodes");
    assert_eq!(state.cohort.len(), 3);
    assert_eq!(state.cohort[0], "dev-1");
    assert_eq!((state.neighbours, state.threshold), (2, 2));
    assert_eq!(Counter::default().check_resumable(&round), Ok(()));
    // Only one in flight.
    let again = open_round(&s, &Counter::default(), &fed, vec![], T0).await;
    assert!(matches!(
        again,
        Err(RoundError::Storage(StorageError::Conflict(_)))
    ));
}

#[tokio::test]
async fn steps_persist_and_stage_changes_start_new_deadlines() {
    let (s, fed, members) = setup(2).await;
    open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");

    let same_stage = advance_round(&s, &fed, 1, T0 + 5, |r| {
        Ok::<_, ()>(Step::Continue {
            state: RoundState {
                stage: r.summary.stage,
                blob: b"more keys".to_vec(),
            },
            upload: None,
        })
    })
    .await
    .expect("advance")
    .expect("step");
    let Advanced::Saved(summary) = same_stage else {
        panic!("saved expected: {same_stage:?}");
    };
    assert_eq!(summary.version, 2);
    assert_eq!(
        summary.stage_deadline_ms,
        T0 + u64::from(fed.deadlines.advertise_keys_secs) * 1000
    );

    let next_stage = advance_round(&s, &fed, 1, T0 + 9, |_| {
        Ok::<_, ()>(Step::Continue {
            state: RoundState {
                stage: Stage::SharingKeys,
                blob: b"shares".to_vec(),
            },
            upload: None,
        })
    })
    .await
    .expect("advance")
    .expect("step");
    let Advanced::Saved(summary) = next_stage else {
        panic!("saved expected");
    };
    assert_eq!(summary.stage, Stage::SharingKeys);
    assert_eq!(
        summary.stage_deadline_ms,
        T0 + 9 + u64::from(fed.deadlines.share_keys_secs) * 1000
    );

    // A step error is the caller's, and writes nothing.
    let refused = advance_round(&s, &fed, 1, T0 + 10, |_| Err::<Step, _>("bad message"))
        .await
        .expect("advance");
    assert_eq!(refused, Err("bad message"));

    let published = advance_round(&s, &fed, 1, T0 + 20, |r| {
        assert_eq!(r.state, b"shares");
        Ok::<_, ()>(Step::Publish(Box::new(PublishStep {
            adapter: vec![1, 2, 3],
            version: 1,
            contributors: 2,
            epsilon: None,
            delta: 1e-5,
            metadata: serde_json::json!({ "clients": 2 }),
        })))
    })
    .await
    .expect("advance")
    .expect("step");
    assert!(matches!(published, Advanced::Published(ref g) if g.version == 1));
    let closed = advance_round(&s, &fed, 1, T0 + 30, |_| Ok::<_, ()>(Step::Unchanged)).await;
    assert!(matches!(closed, Err(RoundError::NotInFlight { .. })));
}

#[tokio::test]
async fn restart_recovery_resumes_live_rounds_and_aborts_late_ones() {
    let (s, fed, members) = setup(2).await;
    let round = open_round(&s, &Counter::default(), &fed, members.clone(), T0)
        .await
        .expect("open");
    let deadline = round.summary.stage_deadline_ms;

    assert_eq!(
        recovery_rule(&round, deadline, &Counter::default()),
        Recovery::Resume
    );
    assert!(matches!(
        recovery_rule(&round, deadline + 1, &Counter::default()),
        Recovery::Abort(_)
    ));
    let mut garbled = round.clone();
    garbled.state = b"not json".to_vec();
    assert!(matches!(
        recovery_rule(&garbled, T0, &Counter::default()),
        Recovery::Abort(ref why) if why.contains("cannot be resumed")
    ));

    let report = recover_rounds(&s, &Counter::default(), T0 + 1)
        .await
        .expect("recover");
    assert_eq!(report.resumed, [(fed.id.clone(), 1)]);
    assert!(report.aborted.is_empty());

    let report = recover_rounds(&s, &Counter::default(), deadline + 1)
        .await
        .expect("recover");
    assert_eq!(report.aborted.len(), 1);
    let closed = s
        .load_round(fed.id.clone(), 1)
        .await
        .expect("load")
        .expect("some");
    assert!(matches!(
        closed.summary.outcome,
        Some(RoundOutcome::Aborted { ref detail, .. }) if detail.contains("while the server was down")
    ));
    let fed_record = s
        .federation(fed.id.clone())
        .await
        .expect("fed")
        .expect("some");
    assert_eq!(fed_record.gathering_since_ms, deadline + 1);
}

#[tokio::test]
async fn the_sweeper_closes_stages_past_their_deadline_through_the_protocol() {
    let (s, fed, members) = setup(2).await;
    let config = Config::parse(EXAMPLE_CONFIG, std::path::Path::new(".")).expect("config");
    let identity = Arc::new(ServerIdentity::generate());
    let round = open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");
    let deadline = round.summary.stage_deadline_ms;
    let live = live();
    let sweep = |now| close_expired_stages(&s, &live, &config, &identity, now);
    assert!(sweep(deadline).await.expect("sweep").is_empty());

    // Past the deadline the stage closes: the round moves on, with the
    // next stage's deadline.
    let closed = sweep(deadline + 1).await.expect("sweep");
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].stage, Stage::CollectingKeys);
    let Advanced::Saved(ref next) = closed[0].result else {
        panic!("saved expected: {closed:?}");
    };
    assert_eq!(next.stage, Stage::SharingKeys);
    assert_eq!(
        next.stage_deadline_ms,
        deadline + 1 + u64::from(fed.deadlines.share_keys_secs) * 1000
    );

    // Through every stage; closing the last one aborts (the counter
    // has nothing to publish).
    let mut now = next.stage_deadline_ms;
    for _ in 0..4 {
        now += 100_000_000;
        assert_eq!(sweep(now).await.expect("sweep").len(), 1);
    }
    assert!(
        s.round_in_flight(fed.id.clone())
            .await
            .expect("flight")
            .is_none()
    );
    let record = s
        .load_round(fed.id.clone(), 1)
        .await
        .expect("load")
        .expect("round");
    assert!(matches!(
        record.summary.outcome,
        Some(RoundOutcome::Aborted { ref detail, .. }) if detail.contains("no sum")
    ));
}

#[tokio::test]
async fn the_sweeper_aborts_rounds_of_federations_no_longer_configured() {
    let (s, fed, members) = setup(2).await;
    let mut config = Config::parse(EXAMPLE_CONFIG, std::path::Path::new(".")).expect("config");
    config.federations.clear();
    let identity = Arc::new(ServerIdentity::generate());
    let round = open_round(&s, &Counter::default(), &fed, members, T0)
        .await
        .expect("open");
    let closed = close_expired_stages(
        &s,
        &live(),
        &config,
        &identity,
        round.summary.stage_deadline_ms + 1,
    )
    .await
    .expect("sweep");
    assert!(matches!(closed[0].result, Advanced::Aborted(_)));
}
