//! Federated learning end to end on one machine (`hearth sim`).
//!
//! A real hearth-server runs in this process on 127.0.0.1 (HTTPS with a
//! certificate it generates in a temporary folder; see
//! [`hearth_server::sim`]). N simulated devices run as threads, each with
//! its own identity, `FedClient` and temporary library holding one
//! speaking role of tinyshakespeare as notes (the LEAF split: a role's
//! speeches are its "user's" data). Every round each device trains LoRA
//! locally from the global adapter
//! ([`hearth_personalize::federated::train_from_global`], as `hearth fed
//! run` does), the SecAgg+ protocol aggregates, and each contributor
//! audits the server's transparency log. A planned fraction of each
//! round's devices drops after sharing keys (its trainer fails, so it
//! never uploads), which makes the server recover their masks from the
//! survivors' shares.
//!
//! After each round the published global adapter is fetched (signature
//! checked) and scored on held-out speeches of the same roles. Every wait
//! is bounded; nothing leaves loopback.
//!
//! This lives in a library (not the `hearth` binary) so the simulation is
//! one workflow with one request type and its defaults, which the CLI maps
//! its flags onto and tests can call directly.

mod device;
mod error;
mod report;
mod roles;
mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_fed::DeviceIdentity;
use hearth_fed::client::{ClientOptions, FedClient, Membership};
use hearth_fed::dp::zcdp_epsilon;
use hearth_ml::train::TrainConfig;
use hearth_ml::{DeviceChoice, LoraConfig, Target};
use hearth_personalize::federated::{RoundTraining, adapter_shape, lora_config_for};
use hearth_progress::{CancelToken, Progress};
use hearth_server::sim::LocalServer;
use rand::SeedableRng;
use rand::seq::index;
use serde::{Deserialize, Serialize};

pub use error::SimError;
pub use report::{RoundRow, SimReport};

use device::{Outcome, SimDevice};

/// The federation's id on the simulated server.
const FEDERATION: &str = "sim";

/// The federated data set a simulation splits among its devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimData {
    /// tinyshakespeare split by speaking role (`../shared/data/text`).
    #[default]
    Shakespeare,
}

/// A simulation: how many devices, rounds and dropouts, what they train
/// and the federation's privacy settings. [`Default`] is `hearth sim`'s
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimRequest {
    /// Simulated devices (each gets one speaking role), 3 to 64.
    pub clients: u32,
    /// Federated rounds, 1 to 1000.
    pub rounds: u32,
    /// Fraction of each round's devices that drop after sharing keys.
    pub dropout: f64,
    /// The federated data set.
    pub data: SimData,
    /// Base model: registry name or path.
    pub model: String,
    /// Local training steps per round.
    pub steps: u64,
    /// Sequences per local step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Local learning rate.
    pub learning_rate: f64,
    /// DP noise multiplier (Gaussian standard deviation / clip).
    pub noise: f64,
    /// DP clip norm of each device's update.
    pub clip: f64,
    /// Seconds the upload stage waits for dropped devices, 2 to 3600.
    pub upload_deadline: u32,
    /// Seed for the dropout draws (and each device's training seed).
    pub seed: u64,
    /// The project's shared data folder (default `$HEARTH_SHARED_DATA`, or
    /// `../shared/data` beside the repository).
    pub shared_data: Option<PathBuf>,
}

impl Default for SimRequest {
    fn default() -> Self {
        SimRequest {
            clients: 8,
            rounds: 3,
            dropout: 0.0,
            data: SimData::Shakespeare,
            model: "stories260k".into(),
            steps: 5,
            batch: 4,
            seq: 64,
            learning_rate: 5e-3,
            noise: 1.0,
            clip: 1.0,
            upload_deadline: 20,
            seed: 0,
            shared_data: None,
        }
    }
}

/// The parameters a request resolves to once checked.
struct Plan {
    survivors: u32,
    drops: u32,
    neighbours: u32,
}

impl SimRequest {
    fn check(&self) -> Result<Plan, SimError> {
        let invalid = |message: String| Err(SimError::Invalid(message));
        if !(3..=64).contains(&self.clients) {
            return invalid(format!("clients must be 3 to 64, not {}", self.clients));
        }
        if !(1..=1000).contains(&self.rounds) {
            return invalid(format!("rounds must be 1 to 1000, not {}", self.rounds));
        }
        if !(2..=3600).contains(&self.upload_deadline) {
            return invalid("the upload deadline must be 2 to 3600 seconds".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid("the dropout must be at least 0 and below 1".into());
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return invalid("the noise multiplier must be a non-negative number".into());
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return invalid("the clip norm must be positive".into());
        }
        if self.steps == 0 {
            return invalid("train at least one step per round".into());
        }
        let n = self.clients;
        let drops = (self.dropout * f64::from(n)).round() as u32;
        let survivors = n - drops;
        if survivors < 2 {
            return invalid(format!(
                "with dropout {} only {survivors} of {n} devices would upload; SecAgg needs at least 2",
                self.dropout
            ));
        }
        let neighbours = setup::neighbours_for(n, drops).ok_or_else(|| {
            SimError::Invalid(format!(
                "dropout {} is too high for {n} devices: SecAgg+ could not recover the dropped devices' masks",
                self.dropout
            ))
        })?;
        Ok(Plan {
            survivors,
            drops,
            neighbours,
        })
    }
}

/// The client settings every simulated device (and the observer) uses:
/// short polls, bounded waits.
fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(60),
        retry_for: Duration::from_secs(20),
        min_poll_interval: Duration::from_millis(50),
        max_poll_interval: Duration::from_millis(500),
        round_timeout: Duration::from_secs(600),
    }
}

/// Runs the simulation. Each round's summary line goes to
/// `progress.note` as the round ends, and `progress` counts the devices
/// that reported; `cancel` stops it between rounds (the devices' own
/// rounds are cancelled with it). The report says whether every round
/// aggregated and every contributor's audit passed (`ok`).
pub fn simulate(
    request: &SimRequest,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<SimReport, SimError> {
    let plan = request.check()?;
    let n = request.clients;
    let shared = setup::shared_data(request.shared_data.as_deref());
    let SimData::Shakespeare = request.data;
    let text_path = shared.join("text/tinyshakespeare.txt");
    let text = setup::read_shared(&text_path, "tinyshakespeare")?;
    let roles = roles::split_by_role(&text, n as usize)?;

    let model = setup::model_location(&request.model, &shared)?;
    let device = DeviceChoice::Cpu.open()?;
    let (_, loaded) = hearth_personalize::load_model(Some(&model), &device)?;
    // The federation's layout: LoRA rank 4 on the query and value
    // projections, the shape `hearth fed run` devices derive it back from.
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![Target::QProj, Target::VProj],
    };
    let layout = adapter_shape(loaded.model.config(), &lora)?;
    let parameters: usize = layout
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    let validation = roles::validation_sequences(&loaded, &roles, request.seq)?;
    let refs: Vec<&Vec<u32>> = validation.iter().collect();
    let base_loss = hearth_ml::train::mean_loss(&loaded.model, None, &refs, 8)?;

    let work = tempfile::Builder::new()
        .prefix("hearth-sim-")
        .tempdir()
        .map_err(|source| SimError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let config = setup::server_config(
        request,
        &loaded.info.sha256,
        &layout,
        plan.survivors,
        plan.neighbours,
    );
    let server = LocalServer::start(&work.path().join("server"), &config)?;
    let options = client_options();
    let enrol = || -> Result<(Membership, [u8; 32]), SimError> {
        let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
        let token = server.invite(FEDERATION)?;
        let membership =
            FedClient::enrol_with(server.url(), server.cert_pem(), &token, &identity, &options)?;
        Ok((membership, *identity.to_secret_bytes()))
    };
    // An observer device that never checks in: it fetches (and verifies)
    // each published global adapter for evaluation, as a device would.
    let (observer_membership, observer_secret) = enrol()?;
    let observer = FedClient::with_options(
        observer_membership,
        DeviceIdentity::from_secret_bytes(&observer_secret),
        options.clone(),
    )?;

    // Which devices drop in which round, drawn up front from the seed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(request.seed);
    let drop_plan: Vec<Vec<bool>> = (0..request.rounds)
        .map(|_| {
            let mut row = vec![false; n as usize];
            for i in index::sample(&mut rng, n as usize, plan.drops as usize).into_vec() {
                row[i] = true;
            }
            row
        })
        .collect();

    let (tx, rx) = mpsc::channel::<(u32, usize, Outcome)>();
    let mut threads = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let dir = work.path().join(format!("device-{i:02}"));
        roles::prepare_library(&dir, &role.train)?;
        let (membership, secret) = enrol()?;
        let sim_device = SimDevice {
            index: i,
            membership,
            secret,
            options: options.clone(),
            library: dir.join("library"),
            drops: drop_plan.iter().map(|row| row[i]).collect(),
            request: RoundTraining {
                model: Some(model.clone()),
                label: None,
                config: TrainConfig {
                    lora: lora.clone(),
                    steps: request.steps,
                    batch_size: request.batch,
                    seq_len: request.seq,
                    learning_rate: request.learning_rate,
                    warmup_steps: 0,
                    seed: request.seed.wrapping_add(i as u64),
                    ..TrainConfig::default()
                },
                device: DeviceChoice::Cpu,
            },
            cancel: cancel.clone(),
        };
        let tx = tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("sim-device-{i}"))
                .spawn(move || sim_device.run(&tx))
                .map_err(|source| SimError::Io {
                    path: dir.clone(),
                    source,
                })?,
        );
    }
    drop(tx);

    progress.note(&format!(
        "{n} devices ({} roles of tinyshakespeare), {} rounds, {} drop per round, \
         model {}, {parameters} adapter parameters, SecAgg+ k={}, min {} uploads, \
         DP clip {} noise {}",
        roles.len(),
        request.rounds,
        plan.drops,
        request.model,
        plan.neighbours,
        plan.survivors,
        request.clip,
        request.noise
    ));
    progress.note(&format!(
        "round 0: validation loss {base_loss:.4} (base model)"
    ));
    let eval_config =
        lora_config_for(layout.iter().map(|(name, s)| (name.as_str(), s.as_slice())))?;
    let mut pending: HashMap<u32, Vec<Outcome>> = HashMap::new();
    let mut rows = Vec::new();
    let mut total_rho = 0.0;
    let mut previous_version = 0;
    // Bound on one round: training on every device at once, the upload
    // deadline for dropped devices, and the other stages.
    let round_limit =
        Duration::from_secs(u64::from(request.upload_deadline) + 120 + request.steps * 5);
    for r in 0..request.rounds {
        if cancel.is_cancelled() {
            break;
        }
        progress.begin(&format!("round {}", r + 1), Some(u64::from(n)));
        let started = Instant::now();
        let deadline = started + round_limit;
        while pending.get(&r).map_or(0, Vec::len) < n as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((round, _, outcome)) => {
                    let reported = pending.entry(round).or_default();
                    reported.push(outcome);
                    if round == r {
                        progress.advance(reported.len() as u64);
                    }
                }
                Err(_) => break,
            }
        }
        let outcomes = pending.remove(&r).unwrap_or_default();
        let mut row = report::summarize(r + 1, &outcomes, started.elapsed());
        if outcomes.len() < n as usize {
            row.errors.push(format!(
                "{} devices did not report within {} s",
                n as usize - outcomes.len(),
                round_limit.as_secs()
            ));
        }
        if let Some((rho, delta)) = outcomes.iter().find_map(|o| match o {
            Outcome::Contributed { rho, delta, .. } => Some((*rho, *delta)),
            _ => None,
        }) {
            total_rho += rho;
            row.epsilon_round = Some(zcdp_epsilon(rho, delta));
            row.epsilon_total = Some(zcdp_epsilon(total_rho, delta));
        }
        if let Some(version) = row.global_version
            && version > previous_version
        {
            previous_version = version;
            match observer
                .fetch_global()
                .map_err(SimError::from)
                .and_then(|global| roles::score(&loaded, &eval_config, &global, &refs))
            {
                Ok(loss) => row.validation_loss = Some(loss),
                Err(e) => row
                    .errors
                    .push(format!("evaluating the global adapter: {e}")),
            }
        }
        progress.end();
        progress.note(&row.to_string());
        rows.push(row);
    }
    // Device threads end after their last round (or at once when
    // cancelled); every wait in them is bounded by the client's timeouts.
    for thread in threads {
        let _ = thread.join();
    }
    if let Err(e) = server.shutdown() {
        progress.note(&format!("warning: the server did not stop cleanly: {e}"));
    }
    if cancel.is_cancelled() {
        return Err(SimError::Cancelled);
    }
    let ok = rows.iter().all(|row| row.succeeded(plan.survivors));
    Ok(SimReport {
        clients: n,
        rounds: request.rounds,
        dropout: request.dropout,
        dropped_per_round: plan.drops,
        min_clients: plan.survivors,
        neighbours: plan.neighbours,
        model: request.model.clone(),
        adapter_parameters: parameters,
        roles: roles.iter().map(|r| r.name.clone()).collect(),
        base_validation_loss: base_loss,
        rows,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_outside_the_limits_are_refused_with_the_reason() {
        let cases = [
            (
                SimRequest {
                    clients: 2,
                    ..SimRequest::default()
                },
                "clients",
            ),
            (
                SimRequest {
                    dropout: 1.0,
                    ..SimRequest::default()
                },
                "dropout",
            ),
            (
                SimRequest {
                    clients: 3,
                    dropout: 0.5,
                    ..SimRequest::default()
                },
                "SecAgg needs at least 2",
            ),
            (
                SimRequest {
                    noise: f64::NAN,
                    ..SimRequest::default()
                },
                "noise",
            ),
            (
                SimRequest {
                    steps: 0,
                    ..SimRequest::default()
                },
                "step",
            ),
        ];
        for (request, expected) in cases {
            match request.check() {
                Err(SimError::Invalid(message)) => {
                    assert!(message.contains(expected), "{message:?} lacks {expected:?}")
                }
                Err(other) => panic!("expected Invalid, got {other}"),
                Ok(_) => panic!("{request:?} was accepted"),
            }
        }
        let plan = SimRequest::default().check().expect("the defaults check");
        assert_eq!((plan.survivors, plan.drops), (8, 0));
    }

    #[test]
    fn dropouts_get_enough_neighbours_to_recover_their_masks() {
        let plan = SimRequest {
            clients: 10,
            dropout: 0.3,
            ..SimRequest::default()
        }
        .check()
        .expect("checks");
        assert_eq!(plan.drops, 3);
        // Even a device whose three neighbours all drop keeps a majority.
        assert!(plan.neighbours - plan.drops > plan.neighbours / 2);
    }
}
