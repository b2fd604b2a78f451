//! A small real federation on 127.0.0.1 for tests: a hearth-server in this
//! process (HTTPS with the self-signed certificate it generates) running a
//! federation of the tiny stories260K model that opens a round as soon as
//! two devices are eligible, and a second device that takes part through
//! the same library calls as the app and `hearth fed run`. Shared by the
//! federation commands' tests (`test_support`) and the e2e test's helper
//! (`federation_peer`). Nothing here is a stand-in: the server, the
//! protocol, the training and the log audits are the real ones.

use std::error::Error;
use std::path::{Path, PathBuf};

use hearth_ml::lora::{LoraConfig, Target};
use hearth_personalize::eligibility::{DeviceState, ParticipationPolicy};
use hearth_personalize::federation::{self, JoinRequest, Participation, ParticipationSummary};
use hearth_progress::{CancelToken, NoProgress};
use hearth_server::sim::LocalServer;
use hearth_store::{ImportOptions, Library};

/// The federation's name.
pub const FEDERATION: &str = "e2e";

/// Errors of a helper that only tests and the e2e run use.
pub type PeerResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// A running server and where its certificate is.
pub struct PeerServer {
    /// The server.
    pub server: LocalServer,
    /// Its certificate (PEM), as a file the app can be pointed at.
    pub certificate: PathBuf,
}

/// Starts the server in `dir` for a federation training LoRA rank 4 on the
/// query and value projections of `model` (stories260K), with two devices
/// per round, DP noise, and short deadlines and check-in delays.
pub fn start_server(dir: &Path, model: &Path) -> PeerResult<PeerServer> {
    let loaded = hearth_ml::load(model, &hearth_ml::candle::Device::Cpu)?;
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![Target::QProj, Target::VProj],
    };
    let layout = hearth_personalize::federated::adapter_shape(loaded.model.config(), &lora)?;
    let tensors: Vec<String> = layout
        .iter()
        .map(|(name, shape)| format!("{{ name = {name:?}, shape = {shape:?} }}"))
        .collect();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 60
max_concurrent_requests = 64

[[federation]]
id = "{FEDERATION}"
min_clients = 2
target_clients = 2
over_selection = 1.0
server_learning_rate = 1.0
base_model = {{ id = "stories260k", sha256 = "{sha256}" }}
adapter = {{ tensors = [ {tensors} ] }}
dp = {{ clip_norm = 1.0, noise_multiplier = 1.0 }}
deadlines = {{ gather_secs = 60, advertise_keys_secs = 60, share_keys_secs = 60, masked_input_secs = 300, consistency_check_secs = 15, unmasking_secs = 60 }}
checkin = {{ min_retry_secs = 1, max_retry_secs = 2 }}
"#,
        sha256 = loaded.info.sha256,
        tensors = tensors.join(", "),
    );
    let server = LocalServer::start(dir, &config)?;
    let certificate = dir.join("certificate.pem");
    std::fs::write(&certificate, server.cert_pem())?;
    Ok(PeerServer {
        server,
        certificate,
    })
}

/// Conditions that always allow taking part: the peer stands for a device
/// that is plugged in and idle, whatever this test machine is doing.
pub struct Always;

impl DeviceState for Always {
    fn conditions(&self) -> hearth_personalize::eligibility::Conditions {
        hearth_personalize::eligibility::Conditions {
            on_power: Some(true),
            idle: Some(true),
            local_hour: 12,
        }
    }
}

/// The second device: imports 60 speeches of tinyshakespeare (from
/// `shakespeare`, further into the play than the app's notes) into its own
/// library in `dir`, joins the server at `server_url` (pinning
/// `certificate_pem`) with `invite`, and takes part in one round,
/// training `model` a few steps. Returns when the round is published and
/// verified in the server's log (or fails, or `cancel` stops it).
pub fn run_peer(
    dir: &Path,
    server_url: &str,
    certificate_pem: &str,
    invite: &str,
    model: &Path,
    shakespeare: &Path,
    cancel: &CancelToken,
) -> PeerResult<ParticipationSummary> {
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes)?;
    let text = std::fs::read_to_string(shakespeare)?;
    for (index, speech) in text.split("\n\n").skip(400).take(60).enumerate() {
        std::fs::write(notes.join(format!("{index:03}.txt")), speech)?;
    }
    let mut library = Library::open(dir.join("library"))?;
    library.import(
        &[notes],
        &ImportOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )?;
    federation::join(
        &mut library,
        &JoinRequest {
            server_url: server_url.to_owned(),
            certificate_pem: certificate_pem.to_owned(),
            invite: invite.to_owned(),
            epsilon_budget: federation::DEFAULT_EPSILON_BUDGET,
            policy: ParticipationPolicy {
                require_power: false,
                require_idle: false,
                hours: None,
            },
        },
    )?;
    Ok(federation::participate(
        &mut library,
        &Participation {
            model: Some(model.display().to_string()),
            steps: 3,
            seq_len: 32,
            batch_size: 2,
            learning_rate: 5e-3,
            device: hearth_ml::DeviceChoice::Cpu,
            rounds: Some(1),
            ..Participation::default()
        },
        &Always,
        &NoProgress,
        cancel,
    )?)
}
