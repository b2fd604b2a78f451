//! Running the `hearth` binary from the CLI's integration tests.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `hearth --library LIBRARY`, ready for arguments.
pub fn hearth(library: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command.arg("--library").arg(library);
    command
}

/// Runs `command`, which must succeed; its output.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("hearth runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `command`, which must succeed and print JSON; the JSON.
pub fn json(command: &mut Command) -> Value {
    serde_json::from_slice(&run_ok(command).stdout).expect("valid JSON on stdout")
}

/// The step of the latest checkpoint in a run's folder.
fn latest_step(run_dir: &Path) -> Option<u64> {
    let latest = std::fs::read_to_string(run_dir.join("checkpoints/LATEST")).ok()?;
    latest.trim().strip_prefix("step-")?.parse().ok()
}

/// Starts a training `command` and kills it with SIGKILL as soon as the
/// run in `run_dir` has a checkpoint at step `from_step` or later; the step
/// it was killed at. (Used by the training tests only, hence the
/// allowance.)
#[allow(dead_code)]
pub fn kill_at_checkpoint(command: &mut Command, run_dir: &Path, from_step: u64) -> u64 {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(300);
    let killed_at = loop {
        if let Some(step) = latest_step(run_dir).filter(|&s| s >= from_step) {
            child.kill().expect("SIGKILL");
            break step;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint at step {from_step} within five minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    child.wait().expect("reap");
    killed_at
}
