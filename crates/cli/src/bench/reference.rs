//! Running the PyTorch references (`bench/pytorch/run.sh`): one-shot runs
//! that print one JSON line, and long-lived ones that time rounds on request
//! so that their rounds interleave with Hearth's.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// `bench/pytorch/run.sh`, or `HEARTH_PYTORCH_BENCH`.
pub fn script() -> Result<PathBuf> {
    let path = match std::env::var_os("HEARTH_PYTORCH_BENCH") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/pytorch/run.sh"
        )),
    };
    if !path.exists() {
        bail!(
            "the PyTorch reference {} is missing (set HEARTH_PYTORCH_BENCH)",
            path.display()
        );
    }
    Ok(path)
}

/// Echoes a child's stderr line by line to ours, keeping the last `error:`
/// line (or else the last line) as the reason to give if it fails.
struct StderrTap {
    reason: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTap {
    fn new(child: &mut Child) -> Self {
        let reason = Arc::new(Mutex::new(String::new()));
        let thread = child.stderr.take().map(|stderr| {
            let reason = Arc::clone(&reason);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    let Ok(mut reason) = reason.lock() else {
                        continue;
                    };
                    let trimmed = line.trim();
                    if trimmed.contains("error:") || !reason.contains("error:") {
                        *reason = trimmed.to_owned();
                    }
                }
            })
        });
        Self { reason, thread }
    }

    /// The reason, once the child's stderr is closed.
    fn reason(mut self) -> String {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.reason
            .lock()
            .map(|reason| reason.clone())
            .unwrap_or_default()
    }
}

/// Runs `command` (stdout piped for its JSON line, stderr echoed) and
/// returns the last non-empty line of its stdout as JSON. A non-zero exit
/// fails with the reason the child gave.
pub fn run_json(mut command: Command, what: &str) -> Result<Value> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let tap = StderrTap::new(&mut child);
    let output = child
        .wait_with_output()
        .with_context(|| format!("running {what}"))?;
    let reason = tap.reason();
    if !output.status.success() {
        bail!("{what} failed ({}): {reason}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading {what}'s JSON line"))
}

/// A reference process in `--serve` mode: ready after its set-up, then one
/// JSON line per `run` request, and a final line when its input closes.
pub struct Served {
    /// What it is, for messages.
    pub name: String,
    /// Its first line (`{"ready": true, ...}`).
    pub ready: Value,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    tap: Option<StderrTap>,
}

impl Served {
    /// Starts `command` and waits for its ready line. A process that
    /// cannot get ready fails with its reason.
    pub fn start(mut command: Command, name: &str) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let tap = StderrTap::new(&mut child);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("{name}: no pipes");
        };
        let mut served = Self {
            name: name.to_owned(),
            ready: Value::Null,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            tap: Some(tap),
        };
        let ready = served.read_line()?;
        if ready["ready"].as_bool() != Some(true) {
            let status = served.child.wait().ok();
            let reason = served.tap.take().map(StderrTap::reason).unwrap_or_default();
            let error = ready["error"].as_str().unwrap_or(&reason);
            bail!("{name} could not get ready ({status:?}): {error}");
        }
        served.ready = ready;
        Ok(served)
    }

    fn read_line(&mut self) -> Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .stdout
                .read_line(&mut line)
                .with_context(|| format!("reading from {}", self.name))?;
            if read == 0 {
                let status = self.child.wait().ok();
                let reason = self.tap.take().map(StderrTap::reason).unwrap_or_default();
                bail!("{} ended early ({status:?}): {reason}", self.name);
            }
            if !line.trim().is_empty() {
                return serde_json::from_str(line.trim())
                    .with_context(|| format!("{}: not a JSON line: {line}", self.name));
            }
        }
    }

    /// Asks for one round; returns its line.
    pub fn round(&mut self) -> Result<Value> {
        let stdin = self.stdin.as_mut().context("input already closed")?;
        stdin
            .write_all(b"run\n")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("writing to {}", self.name))?;
        self.read_line()
    }

    /// Closes its input, reads its final line and waits for it to exit.
    pub fn finish(mut self) -> Result<Value> {
        drop(self.stdin.take());
        let done = self.read_line()?;
        let status = self.child.wait().context("waiting for the reference")?;
        if let Some(tap) = self.tap.take() {
            let reason = tap.reason();
            if !status.success() {
                bail!("{} failed ({status}): {reason}", self.name);
            }
        }
        Ok(done)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only on an early return: a finished child has been waited for.
        if matches!(self.child.try_wait(), Ok(None)) {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
