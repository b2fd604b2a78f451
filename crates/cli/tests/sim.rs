//! `hearth sim` end to end: a real server and four real devices on
//! loopback, two rounds of stories260K LoRA training on tinyshakespeare
//! roles, every round aggregated, scored, accounted and audited.

use std::process::Command;

use serde_json::Value;

#[test]
fn four_devices_two_rounds_aggregate_and_verify() {
    let (Some(_model), Some(_text)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shared("text/tinyshakespeare.txt"),
    ) else {
        return;
    };
    let library = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--library")
        .arg(library.path())
        .args(["sim", "--clients", "4", "--rounds", "2", "--dropout", "0"])
        .args(["--steps", "2", "--data", "shakespeare", "--json"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hearth sim failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["ok"], true, "{report:#}");
    let min = report["min_clients"].as_u64().expect("min_clients");
    assert!(
        report["base_validation_loss"]
            .as_f64()
            .expect("base loss")
            .is_finite()
    );
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{report:#}");
    let mut previous_epsilon = 0.0;
    for row in rows {
        let contributors = row["contributors"].as_u64().expect("contributors");
        assert!(contributors >= min, "{row:#}");
        let loss = row["validation_loss"].as_f64().expect("validation loss");
        assert!(loss.is_finite(), "{row:#}");
        let epsilon = row["epsilon_total"].as_f64().expect("epsilon");
        assert!(epsilon.is_finite() && epsilon > previous_epsilon, "{row:#}");
        previous_epsilon = epsilon;
        assert!(row["epsilon_round"].as_f64().expect("round epsilon") > 0.0);
        assert_eq!(row["audits_ok"].as_u64(), Some(contributors), "{row:#}");
        assert_eq!(row["audit_failures"].as_array().map(Vec::len), Some(0));
        assert!(row["bytes_sent_mean"].as_f64().expect("bytes") > 0.0);
    }
}
