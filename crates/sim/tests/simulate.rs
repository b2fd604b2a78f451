//! The simulation as a library call: a real server and five real devices
//! on loopback, one of which drops after sharing its keys in each round,
//! so the server must rebuild its masks from the survivors' shares.

use hearth_progress::{CancelToken, NoProgress};
use hearth_sim::{SimError, SimRequest, simulate};

#[test]
fn a_dropped_device_is_recovered_and_every_round_aggregates_and_verifies() {
    let (Some(_model), Some(text)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
    ) else {
        return;
    };
    let shared = text
        .parent()
        .and_then(|text| text.parent())
        .expect("the shared data folder")
        .to_path_buf();
    let request = SimRequest {
        clients: 5,
        rounds: 2,
        dropout: 0.2,
        steps: 2,
        upload_deadline: 5,
        shared_data: Some(shared),
        ..SimRequest::default()
    };
    let report = simulate(&request, &NoProgress, &CancelToken::new()).expect("simulates");
    assert!(report.ok, "{report:#?}");
    assert_eq!((report.dropped_per_round, report.min_clients), (1, 4));
    assert_eq!(report.rows.len(), 2);
    for row in &report.rows {
        assert_eq!(
            (row.contributors, row.dropped, row.failed),
            (4, 1, 0),
            "{row}"
        );
        assert_eq!(row.audits_ok, 4, "{row}");
        assert!(row.validation_loss.is_some_and(f32::is_finite), "{row}");
    }
    let totals: Vec<f64> = report
        .rows
        .iter()
        .map(|row| row.epsilon_total.expect("epsilon"))
        .collect();
    assert!(totals[1] > totals[0], "privacy spent grows: {totals:?}");
}

#[test]
fn a_cancelled_simulation_stops_with_cancelled() {
    let Some(text) = hearth_testdata::shared("text/tinyshakespeare.txt") else {
        return;
    };
    let cancel = CancelToken::new();
    cancel.cancel();
    let request = SimRequest {
        clients: 3,
        rounds: 1,
        shared_data: text.parent().and_then(|t| t.parent()).map(Into::into),
        ..SimRequest::default()
    };
    assert!(matches!(
        simulate(&request, &NoProgress, &cancel),
        Err(SimError::Cancelled)
    ));
}
