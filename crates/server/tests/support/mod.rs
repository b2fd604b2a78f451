//! Real federated rounds for tests: a server on 127.0.0.1 over HTTPS in a
//! runtime of its own (so a test can kill it abruptly and start it again
//! on the same data folder and port), and real `FedClient`s in threads.
//! Every wait is bounded.

#![allow(dead_code)]
use hearth_server::storage::prelude::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hearth_fed::DeviceIdentity;
use hearth_fed::client::{
    Checkin, ClientOptions, FedClient, FedClientError, GlobalAdapter, Membership,
    ParticipationReport, RoundCharge, RoundTrainer, TrainerError,
};
use hearth_fed::request_auth::{self, RequestToSign};
use hearth_progress::{CancelToken, NoProgress};
use hearth_server::config::Config;
use hearth_server::storage::{Event, RoundRecord, SqliteStorage};
use hearth_server::{RunningServer, SecAggRounds, now_ms, ops};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A LoRA adapter of 2·64 + 64·2 = 256 parameters.
pub const ADAPTER: &str = r#"adapter = { tensors = [
    { name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", shape = [2, 64] },
    { name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", shape = [64, 2] },
] }"#;
/// Parameters of [`ADAPTER`].
pub const PARAMS: usize = 256;
/// Where the `lora_B` half starts in the flat vector (zero in version 0).
pub const B_START: usize = 128;

/// A server configuration: federation `notes` with the given settings and
/// a second federation `photos`.
pub fn config(min_clients: u32, target: u32, noise: f64, masked_input_secs: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 30
max_concurrent_requests = 256

[[federation]]
id = "notes"
min_clients = {min_clients}
target_clients = {target}
over_selection = 1.0
server_learning_rate = 0.5
base_model = {{ id = "tiny", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }}
{ADAPTER}
dp = {{ clip_norm = 1.0, noise_multiplier = {noise} }}
secagg = {{ neighbours = {k} }}
deadlines = {{ gather_secs = 600, advertise_keys_secs = 30, share_keys_secs = 30, masked_input_secs = {masked_input_secs}, unmasking_secs = 30 }}
checkin = {{ min_retry_secs = 1, max_retry_secs = 5 }}

[[federation]]
id = "photos"
min_clients = 2
target_clients = 2
base_model = {{ id = "tiny-vision", sha256 = "2222222222222222222222222222222222222222222222222222222222222222" }}
adapter = {{ parameters = 32 }}
dp = {{ clip_norm = 0.5, noise_multiplier = 1.0 }}
"#,
        // The complete graph: every client neighbours every other, so a
        // few dropouts never leave anyone below the threshold.
        k = target.saturating_sub(1).max(2),
    )
}

/// A server that can be killed and restarted.
pub struct Server {
    pub dir: PathBuf,
    pub config: Config,
    pub url: String,
    pub cert_pem: String,
    runtime: Option<tokio::runtime::Runtime>,
    running: Option<RunningServer>,
}

impl Server {
    /// Starts a server in `dir` with `config_text` (written if absent).
    pub fn start(dir: &Path, config_text: &str) -> Server {
        let path = dir.join("hearth-server.toml");
        if !path.exists() {
            std::fs::write(&path, config_text).expect("write config");
        }
        let (runtime, running, config) = boot(dir);
        let port = running.local_addr().port();
        let cert_pem =
            std::fs::read_to_string(dir.join("tls").join("cert.pem")).expect("certificate");
        Server {
            dir: dir.to_path_buf(),
            config,
            url: format!("https://127.0.0.1:{port}"),
            cert_pem,
            runtime: Some(runtime),
            running: Some(running),
        }
    }

    /// What start-up recovery did.
    pub fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("server is running")
    }

    /// Kills the server: its runtime is torn down without a graceful
    /// shutdown, cancelling requests in flight, as a crash would.
    pub fn kill(&mut self) {
        drop(self.running.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(200));
        }
    }

    /// Starts the server again on the same folder and port.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "kill it first");
        let port = self.url.rsplit(':').next().expect("port").to_owned();
        let path = self.dir.join("hearth-server.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let text = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        std::fs::write(&path, text).expect("config");
        // The old listener may take a moment to be released.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match try_boot(&self.dir) {
                Ok((runtime, running, config)) => {
                    self.runtime = Some(runtime);
                    self.running = Some(running);
                    self.config = config;
                    return;
                }
                Err(hearth_server::Error::Bind { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
    }

    /// Runs a future on the server's runtime (or a fresh one while it is
    /// down).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(f),
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f),
        }
    }

    pub fn invite(&self, federation: &str) -> String {
        self.block_on(ops::invite(
            &self.config,
            federation,
            Duration::from_secs(3600),
        ))
        .expect("invite")
        .token
    }

    /// A second handle on the server's database, for inspection.
    pub fn storage(&self) -> SqliteStorage {
        SqliteStorage::open(&self.dir).expect("storage")
    }

    pub fn events(&self) -> Vec<Event> {
        let storage = self.storage();
        self.block_on(storage.events(0, 100_000)).expect("events")
    }

    pub fn round(&self, federation: &str, round: u64) -> Option<RoundRecord> {
        let storage = self.storage();
        self.block_on(storage.load_round(federation.into(), round))
            .expect("load round")
    }

    /// Enrols a device with a fresh invite; returns its membership and the
    /// secret seed of its identity (so tests can sign raw requests as it).
    pub fn enrol(&self, federation: &str) -> (Membership, [u8; 32]) {
        let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
        let secret = *identity.to_secret_bytes();
        let token = self.invite(federation);
        let membership =
            FedClient::enrol_with(&self.url, &self.cert_pem, &token, &identity, &options())
                .expect("enrol");
        (membership, secret)
    }

    pub fn stop(mut self) {
        if let (Some(runtime), Some(running)) = (self.runtime.take(), self.running.take()) {
            runtime
                .block_on(running.shutdown(Duration::from_secs(5)))
                .expect("clean shutdown");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn boot(dir: &Path) -> (tokio::runtime::Runtime, RunningServer, Config) {
    try_boot(dir).expect("server starts")
}

fn try_boot(
    dir: &Path,
) -> Result<(tokio::runtime::Runtime, RunningServer, Config), hearth_server::Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config::load(&dir.join("hearth-server.toml"))?;
    let running = runtime.block_on(hearth_server::start(config.clone(), Arc::new(SecAggRounds)))?;
    Ok((runtime, running, config))
}

/// Short, bounded client timings for tests.
pub fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        retry_for: Duration::from_secs(20),
        min_poll_interval: Duration::from_millis(50),
        max_poll_interval: Duration::from_millis(500),
        round_timeout: Duration::from_secs(90),
    }
}

pub fn client(membership: &Membership, secret: &[u8; 32]) -> FedClient {
    FedClient::with_options(
        membership.clone(),
        DeviceIdentity::from_secret_bytes(secret),
        options(),
    )
    .expect("client")
}

/// Checks in until told to join; returns the round.
pub fn join(client: &FedClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.checkin(true).expect("check-in") {
            Checkin::Join { round, .. } => return round,
            Checkin::ComeBackIn { .. } => {
                assert!(Instant::now() < deadline, "never asked to join");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Waits (bounded) until `condition` holds.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gate trainers wait at until the test opens it (bounded).
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (lock, cvar) = &*self.0;
        *lock.lock().expect("gate") = true;
        cvar.notify_all();
    }

    fn wait(&self) {
        let (lock, cvar) = &*self.0;
        let open = lock.lock().expect("gate");
        let (open, _) = cvar
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .expect("gate");
        assert!(*open, "the gate never opened");
    }
}

/// A deterministic small update per device, and a record of what it
/// encoded. Updates are tiny (|x| ≤ 1e-4), so the server's mean on the
/// zero-initialised `lora_B` half is exact enough in `f32` to recover the
/// integer sum from the published adapter.
pub struct TestTrainer {
    pub seed: u64,
    pub fail: bool,
    pub gate: Option<Gate>,
    pub encoded: Mutex<Option<Vec<u32>>>,
    pub update: Mutex<Option<Vec<f32>>>,
    /// Runs inside `delta` (during the upload stage), before it returns.
    pub during: Option<Box<dyn Fn() + Send + Sync>>,
    /// Refuses rounds that cost more than this (zCDP rho).
    pub rho_budget: Option<f64>,
    /// The cost `admit` was asked about.
    pub admitted_rho: Mutex<Option<f64>>,
    /// Every charge booked, in order (the client books before uploading).
    pub charges: Mutex<Vec<RoundCharge>>,
}

impl TestTrainer {
    pub fn new(seed: u64) -> Self {
        TestTrainer {
            seed,
            fail: false,
            gate: None,
            encoded: Mutex::new(None),
            update: Mutex::new(None),
            during: None,
            rho_budget: None,
            admitted_rho: Mutex::new(None),
            charges: Mutex::new(Vec::new()),
        }
    }

    /// The charges booked so far.
    pub fn charged(&self) -> Vec<RoundCharge> {
        self.charges.lock().expect("lock").clone()
    }

    pub fn update_for(seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..PARAMS).map(|_| rng.gen_range(-1e-4f32..1e-4)).collect()
    }

    pub fn encoded(&self) -> Option<Vec<u32>> {
        self.encoded.lock().expect("lock").clone()
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this device dropped out")
    }
}

impl std::error::Error for Dropped {}

impl RoundTrainer for TestTrainer {
    fn admit(&self, round: u64, rho: f64) -> Result<(), TrainerError> {
        if self.charged().iter().any(|c| c.round >= round) {
            return Err(Box::new(Dropped));
        }
        *self.admitted_rho.lock().expect("lock") = Some(rho);
        match self.rho_budget {
            Some(budget) if rho > budget => Err(Box::new(Dropped)),
            _ => Ok(()),
        }
    }

    fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError> {
        assert_eq!(global.layout().parameter_count(), PARAMS);
        if let Some(during) = &self.during {
            during();
        }
        if let Some(gate) = &self.gate {
            gate.wait();
        }
        if self.fail {
            return Err(Box::new(Dropped));
        }
        let update = Self::update_for(self.seed);
        *self.update.lock().expect("lock") = Some(update.clone());
        Ok(update)
    }

    fn charge(&self, charge: &RoundCharge) -> Result<(), TrainerError> {
        self.charges.lock().expect("lock").push(*charge);
        Ok(())
    }

    fn encoded(&self, quantized: &[u32]) {
        *self.encoded.lock().expect("lock") = Some(quantized.to_vec());
    }
}

/// Every device takes part with its trainer, each in a thread.
pub fn participate_all(
    devices: &[(Membership, [u8; 32])],
    trainers: &[Arc<TestTrainer>],
) -> Vec<std::thread::JoinHandle<Result<ParticipationReport, FedClientError>>> {
    devices
        .iter()
        .zip(trainers)
        .map(|((m, s), t)| participate(m.clone(), *s, Arc::clone(t)))
        .collect()
}

/// Joins and takes part, in a thread; returns the report or error.
pub fn participate(
    membership: Membership,
    secret: [u8; 32],
    trainer: Arc<TestTrainer>,
) -> std::thread::JoinHandle<Result<ParticipationReport, FedClientError>> {
    std::thread::spawn(move || {
        let client = client(&membership, &secret);
        let round = join(&client);
        client.participate(round, &*trainer, &NoProgress, &CancelToken::new())
    })
}

/// A signed request sent as is (for attacks the client would never make).
pub struct Raw {
    pub url: String,
    pub client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Raw {
    pub fn new(server: &Server) -> Raw {
        let cert = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).expect("cert");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = {
            let _inside = runtime.enter();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client")
        };
        Raw {
            url: server.url.clone(),
            client,
            runtime,
        }
    }

    /// Signs `method path body` as `device_id` with `secret`, at `timestamp_ms`.
    pub fn request(
        &self,
        method: &'static str,
        path: &str,
        body: &[u8],
        device_id: &str,
        secret: &[u8; 32],
        timestamp_ms: u64,
    ) -> reqwest::Request {
        let identity = DeviceIdentity::from_secret_bytes(secret);
        let headers = request_auth::sign_request(
            &identity,
            &RequestToSign {
                device_id,
                method,
                path,
                timestamp_ms,
                body,
            },
        )
        .expect("sign");
        let mut request = self
            .client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.url),
            )
            .body(body.to_vec());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request.build().expect("request")
    }

    /// Sends a request; returns the status and the JSON body.
    pub fn send(&self, request: reqwest::Request) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let response = self.client.execute(request).await.expect("send");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("body");
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// Signs now and sends.
    pub fn signed(
        &self,
        method: &'static str,
        path: &str,
        body: &[u8],
        device_id: &str,
        secret: &[u8; 32],
    ) -> (u16, serde_json::Value) {
        self.send(self.request(method, path, body, device_id, secret, now_ms()))
    }
}

/// The error kind of an error body.
pub fn kind(body: &serde_json::Value) -> &str {
    body["error"]["kind"].as_str().unwrap_or("<no error kind>")
}
