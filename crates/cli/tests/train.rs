//! `hearth train text` as a person runs it: killed with SIGKILL mid-run,
//! resumed, and ending with exactly the adapter an uninterrupted run makes.

mod common;

use common::{hearth, json, kill_at_checkpoint};

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

    let killed_at = kill_at_checkpoint(&mut train(&[]), &library.join("runs/1"), 10);
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
