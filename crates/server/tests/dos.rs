//! Denial of service without a key, against the real `hearth-server`
//! binary on 127.0.0.1. The server is a child process so that its memory
//! (VmRSS in `/proc/PID/status`) and its file descriptors are its own.
//!
//! - A flood of unsigned or wrongly signed 64 MiB uploads naming a real,
//!   enrolled device is refused with 401 before the bodies are read, and
//!   the server's memory stays flat.
//! - A thousand slow clients (silent connections, request heads trickled a
//!   byte at a time) do not stall anyone else's request, and are cut off
//!   at the header time-out.
//! - One address cannot hold more than its share of connections and
//!   requests, and a request waiting for a slot is shed, not queued forever.
//!
//! Every loop is bounded: by a count, and by a deadline.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hearth_fed::DeviceIdentity;
use hearth_fed::client::FedClient;
use hearth_fed::request_auth::{self, RequestToSign};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A federation whose masked upload is 64 MiB (plus its 68-byte header):
/// the upload route's body limit lets such a body through unrefused.
const BIG_PARAMETERS: usize = 16 * 1024 * 1024;
const UPLOAD_PATH: &str = "/v1/federations/big/rounds/1/upload";

fn server_config(extra_server_lines: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 10
{extra_server_lines}

[[federation]]
id = "big"
min_clients = 2
target_clients = 2
base_model = {{ id = "tiny", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }}
adapter = {{ parameters = {BIG_PARAMETERS} }}
dp = {{ clip_norm = 1.0, noise_multiplier = 1.0 }}
"#
    )
}

/// `hearth-server run` in a folder of its own; killed when dropped.
struct Served {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    url: String,
    cert_pem: String,
}

impl Served {
    fn start(config: &str) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("hearth-server.toml");
        std::fs::write(&config_path, config).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth-server"))
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hearth-server run starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "hearth-server run did not start: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
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
        let addr = url
            .strip_prefix("https://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {url:?}"));
        let cert_pem =
            std::fs::read_to_string(dir.path().join("tls").join("cert.pem")).expect("cert");
        Served {
            child,
            dir,
            addr,
            url,
            cert_pem,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("hearth-server.toml")
    }

    /// The server process's resident set, in bytes.
    fn rss_bytes(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Enrols a fresh device with an invite from the operator's command;
    /// its id.
    fn enrol(&self, federation: &str) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_hearth-server"))
            .arg("--config")
            .arg(self.config_path())
            .args(["invite", "--federation", federation])
            .output()
            .expect("invite runs");
        assert!(output.status.success(), "invite failed");
        let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
        FedClient::enrol_with(
            &self.url,
            &self.cert_pem,
            &token,
            &identity,
            &support::options(),
        )
        .expect("enrol")
        .device_id
    }

    fn tls(&self) -> TlsConnector {
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("cert");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

/// Samples a process's RSS every few milliseconds until stopped; the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_of(pid)));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            // Bounded by the flag, which the test always sets.
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("sampler");
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    tls.connect(name, tcp).await
}

/// Reads a response's status line and headers (at most 16 KiB); the status.
async fn read_status(reader: &mut (impl AsyncRead + Unpin)) -> std::io::Result<u16> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("response head too long"));
        }
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {text:?}")))
}

/// How one request of the flood ended.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    /// Body bytes written before the answer came.
    body_sent: u64,
}

/// One upload: the head declares `declared` bytes; then either no body at
/// all, or the body streamed in 64 KiB pieces every 5 ms, while the answer
/// is awaited.
async fn upload(
    addr: SocketAddr,
    tls: TlsConnector,
    head: Arc<Vec<u8>>,
    declared: u64,
    stream_body: bool,
) -> Outcome {
    let mut outcome = Outcome {
        status: None,
        body_sent: 0,
    };
    let Ok(mut stream) = connect(addr, &tls).await else {
        return outcome;
    };
    if stream.write_all(&head).await.is_err() || stream.flush().await.is_err() {
        return outcome;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let sent = &mut outcome.body_sent;
    let body = async {
        if stream_body {
            let chunk = vec![0u8; 64 * 1024];
            while *sent < declared {
                let n = chunk
                    .len()
                    .min(usize::try_from(declared - *sent).unwrap_or(chunk.len()));
                if writer.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
                *sent += n as u64;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        status = read_status(&mut reader) => outcome.status = status.ok(),
        () = body => {}
    }
    outcome
}

/// The request head of an upload as `device_id`, signed with a key that is
/// not the device's (or not signed at all), declaring `declared` bytes.
fn upload_head(addr: SocketAddr, device_id: &str, declared: u64, signed: bool) -> Vec<u8> {
    let mut head = format!(
        "POST {UPLOAD_PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\ncontent-length: {declared}\r\n"
    );
    if signed {
        let impostor = SigningKey::from_bytes(&[0x5a; 32]);
        let headers = request_auth::sign_request(
            &impostor,
            &RequestToSign {
                device_id,
                method: "POST",
                path: UPLOAD_PATH,
                timestamp_ms: hearth_server::now_ms(),
                body: b"",
            },
        )
        .expect("sign");
        for (name, value) in headers.pairs() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    } else {
        head.push_str(&format!("x-hearth-device: {device_id}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

const FLOOD_REQUESTS: usize = 1024;
const FLOOD_CONCURRENCY: usize = 16;
const FLOOD_DEADLINE: Duration = Duration::from_secs(60);
const PER_REQUEST_LIMIT: Duration = Duration::from_secs(15);
const RSS_BUDGET: u64 = 50 * 1000 * 1000;

#[test]
fn unsigned_and_forged_64_mib_uploads_are_refused_before_the_body_is_read() {
    let served = Served::start(&server_config(""));
    let device_id = served.enrol("big");
    let declared = (BIG_PARAMETERS * 4 + 68) as u64;
    let tls = served.tls();
    let addr = served.addr;
    let heads = [
        Arc::new(upload_head(addr, &device_id, declared, true)),
        Arc::new(upload_head(addr, &device_id, declared, false)),
    ];
    let rt = runtime();

    // Warm up (TLS, the allocator's arenas) with a few body-less requests.
    rt.block_on(async {
        for _ in 0..8 {
            let outcome = tokio::time::timeout(
                PER_REQUEST_LIMIT,
                upload(addr, tls.clone(), Arc::clone(&heads[1]), declared, false),
            )
            .await;
            assert!(
                matches!(
                    outcome,
                    Ok(Outcome {
                        status: Some(401),
                        ..
                    })
                ),
                "{outcome:?}"
            );
        }
    });
    let baseline = served.rss_bytes();
    let sampler = RssSampler::start(served.child.id());
    let started = Instant::now();

    let outcomes = rt.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(FLOOD_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..FLOOD_REQUESTS {
            if started.elapsed() > FLOOD_DEADLINE {
                break;
            }
            let slot = Arc::clone(&slots).acquire_owned().await.expect("semaphore");
            // Alternately forged and unsigned; every other pair streams its body.
            let head = Arc::clone(&heads[i % 2]);
            let stream_body = (i / 2) % 2 == 1;
            let tls = tls.clone();
            tasks.spawn(async move {
                let _slot = slot;
                let outcome = tokio::time::timeout(
                    PER_REQUEST_LIMIT,
                    upload(addr, tls, head, declared, stream_body),
                )
                .await
                .unwrap_or(Outcome {
                    status: None,
                    body_sent: u64::MAX,
                });
                (i, stream_body, outcome)
            });
        }
        let mut outcomes = Vec::with_capacity(FLOOD_REQUESTS);
        while let Some(joined) = tasks.join_next().await {
            outcomes.push(joined.expect("task"));
        }
        outcomes
    });
    let elapsed = started.elapsed();
    let peak = sampler.finish();
    let after = served.rss_bytes();
    let growth = peak.saturating_sub(baseline);

    let refused = outcomes
        .iter()
        .filter(|(_, _, o)| o.status == Some(401))
        .count();
    let most_sent = outcomes
        .iter()
        .filter(|(_, streamed, _)| *streamed)
        .map(|(_, _, o)| o.body_sent)
        .max()
        .unwrap_or(0);
    let other: Vec<_> = outcomes
        .iter()
        .filter(|(_, _, o)| o.status != Some(401))
        .take(5)
        .collect();
    eprintln!(
        "flood: {} requests in {:.1} s, {refused} refused with 401; server RSS {} MB before, \
         {} MB peak (+{} MB), {} MB after; most body bytes sent before an answer: {most_sent}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        baseline / 1_000_000,
        peak / 1_000_000,
        growth / 1_000_000,
        after / 1_000_000,
    );
    assert_eq!(outcomes.len(), FLOOD_REQUESTS, "the flood ran out of time");
    assert_eq!(
        refused, FLOOD_REQUESTS,
        "not all refused with 401: {other:?}"
    );
    assert!(
        growth < RSS_BUDGET,
        "the server grew by {} MB under the flood",
        growth / 1_000_000
    );
    // Half the requests sent no body at all and were answered: the answer
    // did not wait for the body. The streaming half were answered long
    // before their 64 MiB were through.
    assert!(
        most_sent < declared / 8,
        "a streamed body got {most_sent} bytes through before its 401"
    );
}

/// A client that trusts the server's certificate and opens a fresh
/// connection for every request.
fn fresh_connection_client(served: &Served) -> reqwest::Client {
    let cert = CertificateDer::from_pem_slice(served.cert_pem.as_bytes()).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `GET /v1/health` on a new connection: the status (or none) and how long
/// it took, connection and handshake included.
async fn probe_health(client: &reqwest::Client, url: &str) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let status = match client.get(format!("{url}/v1/health")).send().await {
        Ok(response) => Some(response.status().as_u16()),
        Err(_) => None,
    };
    (status, started.elapsed())
}

/// Waits until the server closes the connection (a read ends or fails), or
/// until `stop_at`; true if the server closed it.
async fn closed_by_server(
    reader: &mut (impl AsyncRead + Unpin),
    stop_at: tokio::time::Instant,
) -> bool {
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                // Whatever the server says (an error answer), it must then close.
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(stop_at) => return false,
        }
    }
}

/// A slow client, connected: a TCP connection that will never say
/// anything, or a TLS connection that will trickle a request head.
enum Slow {
    Silent(TcpStream, Instant),
    Trickle(Box<TlsStream<TcpStream>>, Instant),
}

async fn open_slow(addr: SocketAddr, tls: TlsConnector, silent: bool) -> Option<Slow> {
    if silent {
        let tcp = TcpStream::connect(addr).await.ok()?;
        Some(Slow::Silent(tcp, Instant::now()))
    } else {
        let stream = connect(addr, &tls).await.ok()?;
        Some(Slow::Trickle(Box::new(stream), Instant::now()))
    }
}

/// Holds a slow client open, trickling one byte of a request head every
/// 100 ms, until the server closes it or `stop_at`; how long after it was
/// opened the server closed it, if it did.
async fn hold(
    slow: Slow,
    closed: Arc<AtomicU64>,
    stop_at: tokio::time::Instant,
) -> Option<Duration> {
    let (was_closed, since) = match slow {
        Slow::Silent(mut tcp, since) => (closed_by_server(&mut tcp, stop_at).await, since),
        Slow::Trickle(stream, since) => {
            let (mut reader, mut writer) = tokio::io::split(*stream);
            let head = format!(
                "POST /v1/enrol HTTP/1.1\r\ncontent-type: application/json\r\nx-padding: {}",
                "a".repeat(4096)
            );
            let trickle = async {
                for byte in head.as_bytes() {
                    if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                std::future::pending::<()>().await;
            };
            let was_closed = tokio::select! {
                was_closed = closed_by_server(&mut reader, stop_at) => was_closed,
                () = trickle => false,
            };
            (was_closed, since)
        }
    };
    if was_closed {
        closed.fetch_add(1, Ordering::Relaxed);
    }
    was_closed.then(|| since.elapsed())
}

const SLOW_CLIENTS: usize = 1024;
const HEADER_TIMEOUT_SECS: u64 = 5;

#[test]
fn a_thousand_slow_clients_do_not_stall_health_and_are_cut_off_at_the_header_timeout() {
    // Every client here shares 127.0.0.1, so the flood, which stands for
    // many addresses, gets a per-address allowance above its size; the
    // per-address caps have their own test below.
    let served = Served::start(&server_config(&format!(
        "header_timeout_secs = {HEADER_TIMEOUT_SECS}\nmax_connections = 4096\n\
         max_connections_per_ip = 2048"
    )));
    let (addr, tls, url) = (served.addr, served.tls(), served.url.clone());
    let probe = fresh_connection_client(&served);
    let rt = runtime();
    rt.block_on(async {
        let (status, took) = probe_health(&probe, &url).await;
        assert_eq!(status, Some(200), "health before the flood");
        eprintln!("health before the flood: {} ms", took.as_millis());

        // Half silent, half trickling; opened 64 at a time.
        let started = Instant::now();
        let opening = Arc::new(tokio::sync::Semaphore::new(64));
        let mut openers = tokio::task::JoinSet::new();
        for i in 0..SLOW_CLIENTS {
            let (tls, opening) = (tls.clone(), Arc::clone(&opening));
            openers.spawn(async move {
                let _permit = opening.acquire_owned().await.expect("semaphore");
                tokio::time::timeout(Duration::from_secs(10), open_slow(addr, tls, i % 2 == 0))
                    .await
                    .ok()
                    .flatten()
            });
        }
        let closed = Arc::new(AtomicU64::new(0));
        let stop_at = tokio::time::Instant::now() + Duration::from_secs(HEADER_TIMEOUT_SECS + 20);
        let mut holders = tokio::task::JoinSet::new();
        while let Some(opened) = openers.join_next().await {
            let slow = opened
                .expect("task")
                .expect("a slow client could not connect");
            holders.spawn(hold(slow, Arc::clone(&closed), stop_at));
        }
        let opened_all = started.elapsed();

        // With them all connected, health answers promptly, each time on a
        // new connection (accept, handshake and request).
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let (status, took) = probe_health(&probe, &url).await;
            assert_eq!(status, Some(200), "health during the flood");
            slowest = slowest.max(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let closed_while_probing = closed.load(Ordering::Relaxed);
        eprintln!(
            "{SLOW_CLIENTS} slow clients connected in {:.1} s; slowest of 5 health probes \
             among them: {} ms ({closed_while_probing} closed by then)",
            opened_all.as_secs_f64(),
            slowest.as_millis()
        );
        assert!(
            closed_while_probing < SLOW_CLIENTS as u64 / 2,
            "the flood was gone before the probes"
        );
        assert!(
            slowest < Duration::from_secs(1),
            "health took {slowest:?} during the flood"
        );

        // And the server cuts every one of them off at the header time-out.
        let mut held = Vec::with_capacity(SLOW_CLIENTS);
        while let Some(joined) = holders.join_next().await {
            held.push(joined.expect("task"));
        }
        let never_closed = held.iter().filter(|h| h.is_none()).count();
        let longest = held.iter().flatten().max().copied().unwrap_or_default();
        eprintln!(
            "slow clients closed by the server: {} of {SLOW_CLIENTS}, the longest after {:.1} s",
            SLOW_CLIENTS - never_closed,
            longest.as_secs_f64()
        );
        assert_eq!(
            never_closed, 0,
            "slow clients outstayed the header time-out"
        );
        assert!(
            longest < Duration::from_secs(HEADER_TIMEOUT_SECS + 3),
            "{longest:?}"
        );
    });
}

/// Sends a request head on a new TLS connection; the connection.
async fn send_head(addr: SocketAddr, tls: &TlsConnector, head: &str) -> TlsStream<TcpStream> {
    let mut stream = connect(addr, tls).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.flush().await.expect("flush");
    stream
}

#[test]
fn one_address_gets_its_share_of_connections_and_requests_and_waiting_is_bounded() {
    let served = Served::start(&server_config(
        "max_concurrent_requests = 2\nmax_requests_per_ip = 3\nmax_connections_per_ip = 8",
    ));
    let (addr, tls, url) = (served.addr, served.tls(), served.url.clone());
    let rt = runtime();
    rt.block_on(async {
        // Two enrolments whose declared bodies never come hold both slots.
        let stuck_head = format!(
            "POST /v1/enrol HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"
        );
        let stuck = [
            send_head(addr, &tls, &stuck_head).await,
            send_head(addr, &tls, &stuck_head).await,
        ];
        tokio::time::sleep(Duration::from_millis(300)).await;

        // A third request waits for a slot, at most MAX_SLOT_WAIT, then is
        // shed with 503; meanwhile a fourth from the same address is over
        // its allowance and answered 429 at once.
        let health = format!("GET /v1/health HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        let waiting = {
            let (tls, health) = (tls.clone(), health.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = send_head(addr, &tls, &health).await;
                (read_status(&mut stream).await.ok(), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let mut fourth = send_head(addr, &tls, &health).await;
        let status = read_status(&mut fourth).await.ok();
        assert_eq!(status, Some(429), "over the address's allowance");
        assert!(started.elapsed() < Duration::from_secs(1));
        let (status, waited) = waiting.await.expect("task");
        eprintln!("a request waiting for a slot was shed after {} ms", waited.as_millis());
        assert_eq!(status, Some(503), "shed after waiting for a slot");
        assert!(waited >= Duration::from_millis(1_500) && waited < Duration::from_secs(5), "{waited:?}");
        drop((stuck, fourth));

        // Connections: the address's eight are open; a ninth is closed as
        // soon as it is accepted.
        // The connections of the steps above may still be counted for a
        // moment after they closed (on a loaded machine); one of the eight
        // is then refused. The eight must all be open before the ninth
        // tests the limit, so a refused set is closed and opened again.
        let mut attempts = 0;
        let eight = loop {
            attempts += 1;
            let mut eight = Vec::new();
            for _ in 0..8 {
                eight.push(TcpStream::connect(addr).await.expect("connect"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut all_open = true;
            for connection in &mut eight {
                let stop_at = tokio::time::Instant::now() + Duration::from_millis(20);
                all_open &= !closed_by_server(connection, stop_at).await;
            }
            if all_open {
                break eight;
            }
            assert!(attempts < 5, "eight connections from one address were never all kept");
            drop(eight);
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut ninth = TcpStream::connect(addr).await.expect("the kernel accepts");
        let stop_at = tokio::time::Instant::now() + Duration::from_secs(2);
        assert!(closed_by_server(&mut ninth, stop_at).await, "the ninth connection was kept");
        let client = fresh_connection_client(&served);
        assert_eq!(probe_health(&client, &url).await.0, None, "nor can it make a request");

        // Once they close, the address is welcome again.
        drop(eight);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if probe_health(&client, &url).await.0 == Some(200) {
                break;
            }
            assert!(Instant::now() < deadline, "the address stayed locked out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
