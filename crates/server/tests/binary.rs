//! The `hearth-server` binary as an operator runs it: `init`, `run`,
//! `invite`, `devices`, `revoke`, `status`; and a real `kill -9` of the
//! serving process in the middle of a round, after which a restarted
//! process resumes the round and publishes it exactly once.

mod support;
use hearth_server::storage::prelude::*;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hearth_fed::DeviceIdentity;
use hearth_fed::client::{FedClient, Membership};
use hearth_server::storage::{SqliteStorage, event_kinds};
use support::{Gate, TestTrainer, wait_until};

/// The server folder and its configuration, driven through the binary.
struct Operator {
    dir: PathBuf,
}

impl Operator {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearth-server"));
        command
            .arg("--config")
            .arg(self.dir.join("hearth-server.toml"));
        command
    }

    /// Runs a subcommand that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().expect("runs");
        assert!(
            output.status.success(),
            "hearth-server {args:?} failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `hearth-server run`, once it listens; the process and its URL.
    fn serve(&self) -> (Child, String) {
        let mut child = self
            .command()
            .arg("run")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hearth-server run starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The first line names the address; a server that cannot start
        // closes its output instead (then its error is on stderr).
        let Some(Ok(first)) = lines.next() else {
            let mut error = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut error);
            }
            panic!("hearth-server run did not start: {error}");
        };
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        // Keep draining both streams so the server never blocks on a pipe.
        std::thread::spawn(move || lines.for_each(drop));
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
        }
        (child, url)
    }
}

/// A loopback port nobody holds right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn enrol(url: &str, cert_pem: &str, token: &str) -> (Membership, [u8; 32]) {
    let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
    let secret = *identity.to_secret_bytes();
    let membership =
        FedClient::enrol_with(url, cert_pem, token, &identity, &support::options()).expect("enrol");
    (membership, secret)
}

fn events_of_kind(dir: &Path, kind: &str) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let storage = SqliteStorage::open(dir).expect("storage");
    runtime
        .block_on(storage.events(0, 100_000))
        .expect("events")
        .iter()
        .filter(|e| e.kind == kind)
        .count()
}

#[test]
fn an_operator_runs_the_binary_and_a_killed_server_finishes_its_round_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().to_path_buf();
    let operator = Operator { dir: dir.clone() };

    let init = operator.ok(&["init", "--dir", &dir.display().to_string()]);
    assert!(
        init.contains("generated self-signed certificate") && init.contains("fingerprint"),
        "{init}"
    );
    assert!(dir.join("hearth-server.toml").exists());
    let again = operator.ok(&["init", "--dir", &dir.display().to_string()]);
    assert!(
        again.contains("kept"),
        "init twice keeps what exists: {again}"
    );

    // The test's federation on a fixed loopback port, so a restarted
    // process is where the devices expect it.
    let port = free_port();
    std::fs::write(
        dir.join("hearth-server.toml"),
        support::config(4, 4, 1.0, 60).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .expect("config");
    let (mut server, url) = operator.serve();
    assert_eq!(url, format!("https://127.0.0.1:{port}"));
    let cert_pem = std::fs::read_to_string(dir.join("tls").join("cert.pem")).expect("cert");

    // Five devices enrol with invites the operator issues; one is revoked.
    let devices: Vec<_> = (0..5)
        .map(|_| {
            let token = operator.ok(&["invite", "--federation", "notes"]);
            enrol(&url, &cert_pem, token.trim())
        })
        .collect();
    let listed = operator.ok(&["devices"]);
    for (membership, _) in &devices {
        assert!(listed.contains(&membership.device_id), "{listed}");
    }
    let revoked = &devices[4];
    let said = operator.ok(&["revoke", &revoked.0.device_id]);
    assert!(said.contains("revoked"), "{said}");
    assert!(
        support::client(&revoked.0, &revoked.1)
            .checkin(true)
            .is_err(),
        "a revoked device is refused"
    );
    let unknown = operator
        .command()
        .args(["revoke", "no-such-device"])
        .output()
        .expect("runs");
    assert!(!unknown.status.success());

    // A round with the other four. The server is killed (SIGKILL) once
    // one upload is in its running sum; the rest wait at a gate.
    let gate = Gate::default();
    let trainers: Vec<_> = (0..4)
        .map(|i| {
            let mut t = TestTrainer::new(500 + i);
            if i > 0 {
                t.gate = Some(gate.clone());
            }
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices[..4], &trainers);
    wait_until("the first upload", Duration::from_secs(60), || {
        events_of_kind(&dir, event_kinds::UPLOAD_ACCEPTED) == 1
    });
    server.kill().expect("kill -9");
    server.wait().expect("reaped");

    // The operator can look at a stopped server's state.
    let status = operator.ok(&["status"]);
    assert!(status.contains("round 1 in flight"), "{status}");
    assert_eq!(events_of_kind(&dir, event_kinds::GLOBAL_PUBLISHED), 0);

    let (mut server, again) = operator.serve();
    assert_eq!(again, url);
    gate.open();
    for handle in handles {
        let report = handle.join().expect("thread").expect("participation");
        assert_eq!(report.global_version_after, 1);
    }
    let observer = support::client(&devices[0].0, &devices[0].1);
    let v1 = observer.fetch_global().expect("v1");
    assert_eq!((v1.version(), v1.statement().contributors), (1, 4));
    assert_eq!(events_of_kind(&dir, event_kinds::GLOBAL_PUBLISHED), 1);
    assert_eq!(events_of_kind(&dir, event_kinds::UPLOAD_ACCEPTED), 4);
    let status = operator.ok(&["status"]);
    assert!(
        status.contains("federation notes") && status.contains("no round in flight"),
        "{status}"
    );
    server.kill().expect("stop");
    server.wait().expect("reaped");
}
