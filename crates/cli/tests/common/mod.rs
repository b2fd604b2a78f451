//! Running the `hearth` binary from the CLI's integration tests.

use std::path::Path;
use std::process::{Command, Output};

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
