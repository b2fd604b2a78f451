//! `hearth train text` as a person runs it: killed with SIGKILL mid-run,
//! resumed, and ending with exactly the adapter an uninterrupted run makes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{hearth, json};

fn latest_step(run_dir: &Path) -> Option<u64> {
    let latest = std::fs::read_to_string(run_dir.join("checkpoints/LATEST")).ok()?;
    latest.trim().strip_prefix("step-")?.parse().ok()
}

#[test]
fn kill_9_mid_training_then_resume_gives_the_uninterrupted_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(model), Some(notes)) = (
        hearth_testdata::shared("models/stories260K/stories260K.bin"),
        hearth_testdata::shakespeare_notes(dir.path(), 200),
    ) else {
        return;
    };
    let library = dir.path().join("library");
    json(hearth(&library).arg("import").arg("--json").arg(&notes));

    const STEPS: u64 = 60;
    let train = |extra: &[&str]| {
        let mut command = hearth(&library);
        command
            .args(["train", "text", "--json", "--device", "cpu", "--model"])
            .arg(&model)
            .args([
                "--steps",
                &STEPS.to_string(),
                "--seq-len",
                "64",
                "--batch-size",
                "4",
                "--lr",
                "5e-3",
            ])
            .args(["--checkpoint-every", "1", "--eval-every", "30"])
            .args(extra);
        command
    };

    let mut child = train(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let run_dir = library.join("runs/1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_at = loop {
        if let Some(step) = latest_step(&run_dir).filter(|&s| s >= 10) {
            child.kill().expect("SIGKILL");
            break step;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint at step 10 within two minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    child.wait().expect("reap");
    assert!(
        killed_at < STEPS,
        "the run finished before it could be killed"
    );
    let run = json(hearth(&library).args(["runs", "show", "1", "--json"]));
    assert_eq!(
        run["status"], "running",
        "a killed run never got to say otherwise"
    );

    let resumed = json(&mut train(&["--resume", "1"]));
    assert_eq!(resumed["outcome"], "completed");
    assert_eq!(resumed["steps"], STEPS);
    let straight = json(&mut train(&[]));
    assert_eq!(straight["run_id"], 2);
    assert_eq!(
        straight["adapter_id"], resumed["adapter_id"],
        "identical weights are recorded as one adapter"
    );
    let adapters = json(hearth(&library).args(["adapters", "list", "--json"]));
    assert_eq!(adapters.as_array().expect("array").len(), 1);
}
