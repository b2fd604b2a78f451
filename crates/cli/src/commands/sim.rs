//! `hearth sim`: federated learning end to end on one machine.
//!
//! A real hearth-server runs in this process on 127.0.0.1 (HTTPS with a
//! certificate it generates in a temporary folder; see
//! [`hearth_server::sim`]). N simulated devices run as threads, each with
//! its own identity, `FedClient` and temporary library holding one
//! speaking role of tinyshakespeare as notes (the LEAF split: a role's
//! speeches are its "user's" data). Every round each device trains LoRA
//! locally from the global adapter ([`train_round`], as `hearth fed run`
//! does), the SecAgg+ protocol aggregates, and each contributor audits the
//! server's transparency log. A planned fraction of each round's devices
//! drops after sharing keys (its trainer fails, so it never uploads), which
//! makes the server recover their masks from the survivors' shares.
//!
//! After each round the published global adapter is fetched (signature
//! checked) and scored on held-out speeches of the same roles. Every wait is
//! bounded; nothing leaves loopback.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hearth_fed::DeviceIdentity;
use hearth_fed::client::{
    Checkin, ClientOptions, FedClient, GlobalAdapter, Membership, RoundCharge, RoundTrainer,
    TrainerError,
};
use hearth_fed::dp::zcdp_epsilon;
use hearth_ml::candle::{Device, Tensor};
use hearth_ml::train::TrainConfig;
use hearth_ml::{DeviceChoice, LoadedModel, LoraAdapter, LoraConfig, Target};
use hearth_personalize::federated::{RoundTraining, adapter_shape, lora_config_for, train_round};
use hearth_progress::{CancelToken, NoProgress};
use hearth_server::sim::LocalServer;
use hearth_store::{ImportOptions, Library};
use rand::SeedableRng;
use rand::seq::index;
use serde::Serialize;

use crate::args::{SimArgs, SimData};

const FEDERATION: &str = "sim";
/// Speeches per imported note: fewer, larger files import faster and train
/// the same (the trainer packs all texts into sequences anyway).
const SPEECHES_PER_NOTE: usize = 10;
/// Held-out sequences the global adapter is scored on each round.
const EVAL_SEQUENCES: usize = 64;

/// One row of the report.
#[derive(Debug, Serialize)]
struct RoundRow {
    round: u32,
    server_round: Option<u64>,
    contributors: usize,
    dropped: usize,
    failed: usize,
    global_version: Option<u64>,
    validation_loss: Option<f32>,
    bytes_sent_mean: Option<f64>,
    client_train_secs_mean: Option<f64>,
    client_secs_mean: Option<f64>,
    server_secs: Option<f64>,
    round_secs: f64,
    epsilon_round: Option<f64>,
    epsilon_total: Option<f64>,
    audits_ok: usize,
    audit_failures: Vec<String>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SimReport {
    clients: u32,
    rounds: u32,
    dropout: f64,
    dropped_per_round: u32,
    min_clients: u32,
    neighbours: u32,
    model: String,
    adapter_parameters: usize,
    roles: Vec<String>,
    base_validation_loss: f32,
    rows: Vec<RoundRow>,
    ok: bool,
}

/// What a device thread reports for one simulated round.
enum Outcome {
    Contributed {
        server_round: u64,
        bytes_sent: u64,
        rho: f64,
        delta: f64,
        global_version: u64,
        train_secs: f64,
        total_secs: f64,
        uploaded_at: Instant,
        published_at: Instant,
        audit: std::result::Result<(), String>,
    },
    Dropped,
    Failed(String),
}

pub fn sim(args: SimArgs) -> Result<ExitCode> {
    ensure!(
        (0.0..1.0).contains(&args.dropout),
        "--dropout must be at least 0 and below 1"
    );
    ensure!(
        args.noise.is_finite() && args.noise >= 0.0,
        "--noise must be a non-negative number"
    );
    ensure!(
        args.clip.is_finite() && args.clip > 0.0,
        "--clip must be positive"
    );
    ensure!(args.steps >= 1, "--steps must be at least 1");
    let n = args.clients;
    let drops = (args.dropout * f64::from(n)).round() as u32;
    let survivors = n - drops;
    ensure!(
        survivors >= 2,
        "with --dropout {} only {survivors} of {n} devices would upload; SecAgg needs at least 2",
        args.dropout
    );
    let neighbours = neighbours_for(n, drops).with_context(|| {
        format!("--dropout {} is too high for {n} devices: SecAgg+ could not recover the dropped devices' masks", args.dropout)
    })?;

    let SimData::Shakespeare = args.data;
    let text_path = shakespeare_path()?;
    let text = std::fs::read_to_string(&text_path)
        .with_context(|| format!("reading {}", text_path.display()))?;
    let roles = split_by_role(&text, n as usize)?;

    let model = model_location(&args.model)?;
    let device = DeviceChoice::Cpu.open()?;
    let (_, loaded) = hearth_personalize::load_model(Some(&model), &device)
        .with_context(|| format!("loading the model {:?}", args.model))?;
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
    let validation = validation_sequences(&loaded, &roles, args.seq)?;
    let refs: Vec<&Vec<u32>> = validation.iter().collect();
    let base_loss = hearth_ml::train::mean_loss(&loaded.model, None, &refs, 8)?;

    let work = tempfile::Builder::new().prefix("hearth-sim-").tempdir()?;
    let config = server_config(&args, &loaded.info.sha256, &layout, survivors, neighbours);
    let server = LocalServer::start(&work.path().join("server"), &config)
        .context("starting the in-process server")?;
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(60),
        retry_for: Duration::from_secs(20),
        min_poll_interval: Duration::from_millis(50),
        max_poll_interval: Duration::from_millis(500),
        round_timeout: Duration::from_secs(600),
    };
    let enrol = || -> Result<(Membership, [u8; 32])> {
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
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let plan: Vec<Vec<bool>> = (0..args.rounds)
        .map(|_| {
            let mut row = vec![false; n as usize];
            for i in index::sample(&mut rng, n as usize, drops as usize).into_vec() {
                row[i] = true;
            }
            row
        })
        .collect();

    let (tx, rx) = mpsc::channel::<(u32, usize, Outcome)>();
    let mut threads = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let dir = work.path().join(format!("device-{i:02}"));
        let library = prepare_library(&dir, &role.train)
            .with_context(|| format!("preparing device {i}'s library"))?;
        drop(library);
        let (membership, secret) = enrol()?;
        let sim_device = SimDevice {
            index: i,
            membership,
            secret,
            options: options.clone(),
            library: dir.join("library"),
            drops: plan.iter().map(|row| row[i]).collect(),
            request: RoundTraining {
                model: Some(model.clone()),
                label: None,
                config: TrainConfig {
                    lora: lora.clone(),
                    steps: args.steps,
                    batch_size: args.batch,
                    seq_len: args.seq,
                    learning_rate: args.learning_rate,
                    warmup_steps: 0,
                    seed: args.seed.wrapping_add(i as u64),
                    ..TrainConfig::default()
                },
                device: DeviceChoice::Cpu,
            },
        };
        let tx = tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("sim-device-{i}"))
                .spawn(move || sim_device.run(&tx))?,
        );
    }
    drop(tx);

    let print = !args.json;
    if print {
        println!(
            "hearth sim: {n} devices ({} roles of tinyshakespeare), {} rounds, {drops} drop per round, \
             model {}, {parameters} adapter parameters, SecAgg+ k={neighbours}, min {survivors} uploads, \
             DP clip {} noise {}",
            roles.len(),
            args.rounds,
            args.model,
            args.clip,
            args.noise
        );
        println!("round 0: validation loss {base_loss:.4} (base model)");
    }
    let eval_config =
        lora_config_for(layout.iter().map(|(name, s)| (name.as_str(), s.as_slice())))?;
    let mut pending: HashMap<u32, Vec<Outcome>> = HashMap::new();
    let mut rows = Vec::new();
    let mut total_rho = 0.0;
    let mut previous_version = 0;
    // Bound on one round: training on every device at once, the upload
    // deadline for dropped devices, and the other stages.
    let round_limit = Duration::from_secs(u64::from(args.upload_deadline) + 120 + args.steps * 5);
    for r in 0..args.rounds {
        let started = Instant::now();
        let deadline = started + round_limit;
        while pending.get(&r).map_or(0, Vec::len) < n as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((round, _, outcome)) => pending.entry(round).or_default().push(outcome),
                Err(_) => break,
            }
        }
        let outcomes = pending.remove(&r).unwrap_or_default();
        let mut row = summarize(r + 1, &outcomes, started.elapsed());
        if outcomes.len() < n as usize {
            row.errors.push(format!(
                "{} devices did not report within {} s",
                n as usize - outcomes.len(),
                round_limit.as_secs()
            ));
        }
        if let Some(rho) = outcomes.iter().find_map(|o| match o {
            Outcome::Contributed { rho, delta, .. } => Some((*rho, *delta)),
            _ => None,
        }) {
            total_rho += rho.0;
            row.epsilon_round = Some(zcdp_epsilon(rho.0, rho.1));
            row.epsilon_total = Some(zcdp_epsilon(total_rho, rho.1));
        }
        if let Some(version) = row.global_version
            && version > previous_version
        {
            previous_version = version;
            match observer
                .fetch_global()
                .map_err(anyhow::Error::from)
                .and_then(|global| score(&loaded, &eval_config, &global, &refs))
            {
                Ok(loss) => row.validation_loss = Some(loss),
                Err(e) => row
                    .errors
                    .push(format!("evaluating the global adapter: {e:#}")),
            }
        }
        if print {
            print_row(&row);
        }
        rows.push(row);
    }
    for thread in threads {
        // Device threads end after their last round; every wait in them is
        // bounded by the client's timeouts.
        let _ = thread.join();
    }
    if let Err(e) = server.shutdown() {
        eprintln!("warning: the server did not stop cleanly: {e}");
    }
    let ok = rows.iter().all(|row| {
        row.contributors >= survivors as usize
            && row.audit_failures.is_empty()
            && row.errors.is_empty()
            && row.validation_loss.is_some_and(f32::is_finite)
    });
    if args.json {
        crate::output::json(&SimReport {
            clients: n,
            rounds: args.rounds,
            dropout: args.dropout,
            dropped_per_round: drops,
            min_clients: survivors,
            neighbours,
            model: args.model.clone(),
            adapter_parameters: parameters,
            roles: roles.iter().map(|r| r.name.clone()).collect(),
            base_validation_loss: base_loss,
            rows,
            ok,
        })?;
    } else if ok {
        println!(
            "all rounds aggregated; every contributor verified its round in the transparency log"
        );
    } else {
        println!("some rounds failed or did not verify (see above)");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// SecAgg+ neighbours: the automatic `ceil(log2 n)` unless dropouts need
/// more. A dropped device's mask seed and every survivor's self-mask are
/// rebuilt from shares held by neighbours; with a majority threshold
/// `t = k/2 + 1`, `k - drops >= t` guarantees that even a device whose
/// every dropped peer is its neighbour keeps enough live ones.
fn neighbours_for(n: u32, drops: u32) -> Option<u32> {
    let auto = hearth_server::config::SecAggConfig::default()
        .for_cohort(n)
        .neighbours;
    (auto..n).find(|k| k.saturating_sub(drops) > k / 2)
}

fn server_config(
    args: &SimArgs,
    model_sha256: &str,
    layout: &[(String, Vec<usize>)],
    min_clients: u32,
    neighbours: u32,
) -> String {
    let tensors: Vec<String> = layout
        .iter()
        .map(|(name, shape)| format!("{{ name = {name:?}, shape = {shape:?} }}"))
        .collect();
    // Over-selection is 1: the simulated population is exactly the N
    // devices, so inviting more would only wait out the gather deadline;
    // the dropout margin is carried by min_clients (the fewest uploads
    // unmasked) instead.
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 60
max_concurrent_requests = 256
# Every simulated device shares 127.0.0.1.
max_connections_per_ip = 4096
max_requests_per_ip = 1024

[[federation]]
id = "{FEDERATION}"
min_clients = {min_clients}
target_clients = {n}
over_selection = 1.0
server_learning_rate = 1.0
base_model = {{ id = {model:?}, sha256 = "{model_sha256}" }}
adapter = {{ tensors = [ {tensors} ] }}
dp = {{ clip_norm = {clip:?}, noise_multiplier = {noise:?} }}
secagg = {{ neighbours = {neighbours} }}
deadlines = {{ gather_secs = 60, advertise_keys_secs = 20, share_keys_secs = 20, masked_input_secs = {upload}, unmasking_secs = 20 }}
checkin = {{ min_retry_secs = 1, max_retry_secs = 2 }}
"#,
        n = args.clients,
        model = args.model,
        tensors = tensors.join(", "),
        clip = args.clip,
        noise = args.noise,
        upload = args.upload_deadline,
    )
}

/// The project's shared data: `$HEARTH_SHARED_DATA`, or `../shared/data`
/// beside the repository (where hearth-testdata looks).
fn shared_data() -> PathBuf {
    std::env::var_os("HEARTH_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// What to load `model` from: the registry's copy when this machine has
/// one, else, for models the registry keeps in the shared test data (the
/// tiny stories260K), that file, checked against the registry's sha256.
fn model_location(model: &str) -> Result<String> {
    if hearth_ml::registry::resolve(model).is_ok() {
        return Ok(model.to_owned());
    }
    let Some(shared) = hearth_ml::registry::entry(model)
        .ok()
        .and_then(|entry| entry.shared)
    else {
        return Ok(model.to_owned());
    };
    let path = shared_data().join(&shared.file);
    ensure!(
        path.is_file(),
        "model {model} not found at {} (set HEARTH_SHARED_DATA, or pass --model PATH)",
        path.display()
    );
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    ensure!(
        digest == shared.sha256,
        "{} has sha256 {digest}, the registry says {}",
        path.display(),
        shared.sha256
    );
    Ok(path.display().to_string())
}

/// tinyshakespeare in the project's shared data.
fn shakespeare_path() -> Result<PathBuf> {
    let path = shared_data().join("text/tinyshakespeare.txt");
    ensure!(
        path.is_file(),
        "tinyshakespeare not found at {} (set HEARTH_SHARED_DATA to the folder holding text/tinyshakespeare.txt)",
        path.display()
    );
    Ok(path)
}

/// One speaking role: its speeches for training and a few held out.
struct Role {
    name: String,
    train: Vec<String>,
    held_out: Vec<String>,
}

/// Splits the play by speaker (a line `NAME:` opens a speech that runs to
/// the next blank line) and keeps the `n` roles with the most lines,
/// holding out the last tenth (at least one) of each role's speeches.
fn split_by_role(text: &str, n: usize) -> Result<Vec<Role>> {
    let mut speeches: HashMap<&str, (usize, Vec<String>)> = HashMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        let Some(name) = head.trim().strip_suffix(':') else {
            continue;
        };
        if name.is_empty() || name.contains(':') {
            continue;
        }
        let body: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
        if body.is_empty() {
            continue;
        }
        let entry = speeches.entry(name).or_default();
        entry.0 += body.len();
        entry.1.push(body.join("\n"));
    }
    let mut ranked: Vec<_> = speeches
        .into_iter()
        .filter(|(_, (_, s))| s.len() >= 2)
        .collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    ensure!(
        ranked.len() >= n,
        "the text has only {} roles with two or more speeches, fewer than {n} devices",
        ranked.len()
    );
    Ok(ranked
        .into_iter()
        .take(n)
        .map(|(name, (_, mut all))| {
            let held = (all.len() / 10).max(1);
            let held_out = all.split_off(all.len() - held);
            Role {
                name: name.to_owned(),
                train: all,
                held_out,
            }
        })
        .collect())
}

/// Writes `speeches` as notes and imports them into a new library.
fn prepare_library(dir: &Path, speeches: &[String]) -> Result<Library> {
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes)?;
    for (i, chunk) in speeches.chunks(SPEECHES_PER_NOTE).enumerate() {
        std::fs::write(notes.join(format!("{i:04}.txt")), chunk.join("\n\n"))?;
    }
    let mut library = Library::open(dir.join("library"))?;
    let report = library.import(
        &[notes],
        &ImportOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )?;
    ensure!(
        report.failed == 0,
        "{} notes failed to import",
        report.failed
    );
    Ok(library)
}

/// The held-out speeches of every role, tokenized, joined and cut into
/// sequences of `seq + 1` tokens (input and shifted target).
fn validation_sequences(loaded: &LoadedModel, roles: &[Role], seq: usize) -> Result<Vec<Vec<u32>>> {
    let mut tokens = Vec::new();
    for speech in roles.iter().flat_map(|r| &r.held_out) {
        tokens.extend(loaded.tokenizer.encode(speech, false)?);
        tokens.extend(loaded.tokenizer.separator());
    }
    let sequences: Vec<Vec<u32>> = tokens
        .chunks_exact(seq + 1)
        .take(EVAL_SEQUENCES)
        .map(<[u32]>::to_vec)
        .collect();
    ensure!(
        !sequences.is_empty(),
        "the held-out text is shorter than one sequence of {seq} tokens"
    );
    Ok(sequences)
}

/// Mean held-out loss of the base model with the global adapter.
fn score(
    loaded: &LoadedModel,
    lora: &LoraConfig,
    global: &GlobalAdapter,
    sequences: &[&Vec<u32>],
) -> Result<f32> {
    let tensors: HashMap<String, Tensor> =
        hearth_ml::candle::safetensors::load_buffer(global.bytes(), &Device::Cpu)?;
    let adapter = LoraAdapter::from_tensors(lora, loaded.model.config(), &tensors, &Device::Cpu)?;
    Ok(hearth_ml::train::mean_loss(
        &loaded.model,
        Some(&adapter),
        sequences,
        8,
    )?)
}

fn summarize(round: u32, outcomes: &[Outcome], elapsed: Duration) -> RoundRow {
    let mut row = RoundRow {
        round,
        server_round: None,
        contributors: 0,
        dropped: 0,
        failed: 0,
        global_version: None,
        validation_loss: None,
        bytes_sent_mean: None,
        client_train_secs_mean: None,
        client_secs_mean: None,
        server_secs: None,
        round_secs: elapsed.as_secs_f64(),
        epsilon_round: None,
        epsilon_total: None,
        audits_ok: 0,
        audit_failures: Vec::new(),
        errors: Vec::new(),
    };
    let (mut bytes, mut train, mut total) = (0u64, 0.0, 0.0);
    let (mut last_upload, mut last_publish) = (None::<Instant>, None::<Instant>);
    for outcome in outcomes {
        match outcome {
            Outcome::Contributed {
                server_round,
                bytes_sent,
                global_version,
                train_secs,
                total_secs,
                uploaded_at,
                published_at,
                audit,
                ..
            } => {
                row.contributors += 1;
                row.server_round = Some(*server_round);
                row.global_version = row.global_version.max(Some(*global_version));
                bytes += bytes_sent;
                train += train_secs;
                total += total_secs;
                last_upload = last_upload.max(Some(*uploaded_at));
                last_publish = last_publish.max(Some(*published_at));
                match audit {
                    Ok(()) => row.audits_ok += 1,
                    Err(e) => row.audit_failures.push(e.clone()),
                }
            }
            Outcome::Dropped => row.dropped += 1,
            Outcome::Failed(e) => {
                row.failed += 1;
                row.errors.push(e.clone());
            }
        }
    }
    if row.contributors > 0 {
        let c = row.contributors as f64;
        row.bytes_sent_mean = Some(bytes as f64 / c);
        row.client_train_secs_mean = Some(train / c);
        row.client_secs_mean = Some(total / c);
    }
    // From the last upload leaving a device to the last device seeing the
    // published version: unmasking, aggregation, publication (and polling).
    if let (Some(upload), Some(publish)) = (last_upload, last_publish) {
        row.server_secs = Some(publish.saturating_duration_since(upload).as_secs_f64());
    }
    row
}

fn print_row(row: &RoundRow) {
    let num = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    println!(
        "round {}: {} contributors ({} dropped, {} failed), validation loss {}, \
         {} sent per client, client {} s (train {} s), server {} s, round {:.1} s, \
         epsilon {} this round / {} total, audits {}/{}",
        row.round,
        row.contributors,
        row.dropped,
        row.failed,
        row.validation_loss
            .map_or("-".to_owned(), |l| format!("{l:.4}")),
        row.bytes_sent_mean
            .map_or("-".to_owned(), |b| crate::output::bytes(b as u64)),
        num(row.client_secs_mean, 2),
        num(row.client_train_secs_mean, 2),
        num(row.server_secs, 2),
        row.round_secs,
        num(row.epsilon_round, 3),
        num(row.epsilon_total, 3),
        row.audits_ok,
        row.contributors,
    );
    for failure in &row.audit_failures {
        println!("  AUDIT FAILED: {failure}");
    }
    for error in &row.errors {
        println!("  error: {error}");
    }
}

/// A simulated device: everything its thread needs.
struct SimDevice {
    index: usize,
    membership: Membership,
    secret: [u8; 32],
    options: ClientOptions,
    library: PathBuf,
    /// Whether it drops in each simulated round.
    drops: Vec<bool>,
    request: RoundTraining,
}

impl SimDevice {
    fn run(self, tx: &mpsc::Sender<(u32, usize, Outcome)>) {
        let send = |r: u32, outcome| {
            let _ = tx.send((r, self.index, outcome));
        };
        let setup = Library::open(&self.library)
            .map_err(anyhow::Error::from)
            .and_then(|library| {
                let client = FedClient::with_options(
                    self.membership.clone(),
                    DeviceIdentity::from_secret_bytes(&self.secret),
                    self.options.clone(),
                )?;
                let audit = client.log_audit()?;
                Ok((library, client, audit))
            });
        let (library, client, mut audit) = match setup {
            Ok(ready) => ready,
            Err(e) => {
                for r in 0..self.drops.len() as u32 {
                    send(r, Outcome::Failed(format!("device {}: {e:#}", self.index)));
                }
                return;
            }
        };
        let library = RefCell::new(library);
        let mut last_round = 0;
        for (r, &drop_out) in self.drops.iter().enumerate() {
            let r = r as u32;
            let round = match join(&client, last_round) {
                Ok(round) => round,
                Err(e) => {
                    send(r, Outcome::Failed(format!("device {}: {e:#}", self.index)));
                    continue;
                }
            };
            last_round = round;
            let mut request = self.request.clone();
            request.config.seed = request.config.seed.wrapping_add(u64::from(r) << 16);
            let trainer = SimTrainer {
                library: &library,
                request,
                drop_out,
                train_secs: Cell::new(0.0),
                uploaded_at: Cell::new(None),
                charged_rho: Cell::new(None),
            };
            let started = Instant::now();
            let result = client.participate(round, &trainer, &NoProgress, &CancelToken::new());
            let published_at = Instant::now();
            let outcome = match result {
                Ok(report) => Outcome::Contributed {
                    server_round: round,
                    bytes_sent: report.bytes_sent,
                    rho: trainer.charged_rho.get().unwrap_or(report.rho),
                    delta: report.delta,
                    global_version: report.global_version_after,
                    train_secs: trainer.train_secs.get(),
                    total_secs: (published_at - started).as_secs_f64(),
                    uploaded_at: trainer.uploaded_at.get().unwrap_or(published_at),
                    published_at,
                    audit: client
                        .audit_round(&mut audit, &report)
                        .map(|_| ())
                        .map_err(|e| format!("device {}: {e}", self.index)),
                },
                Err(_) if drop_out => Outcome::Dropped,
                Err(e) => Outcome::Failed(format!("device {} round {round}: {e}", self.index)),
            };
            send(r, outcome);
        }
    }
}

/// Checks in until asked to join a round after `after` (bounded): a device
/// that dropped is still in its old round's cohort until that round ends.
fn join(client: &FedClient, after: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let wait = match client.checkin(true)? {
            Checkin::Join { round, .. } if round > after => return Ok(round),
            Checkin::Join { .. } => Duration::from_millis(200),
            Checkin::ComeBackIn { seconds } => {
                Duration::from_secs(u64::from(seconds)).min(Duration::from_millis(500))
            }
        };
        if Instant::now() + wait > deadline {
            bail!("never asked to join a round");
        }
        std::thread::sleep(wait);
    }
}

/// The device's local training, as `hearth fed run` does it, plus the
/// simulated dropout and timings.
struct SimTrainer<'a> {
    library: &'a RefCell<Library>,
    request: RoundTraining,
    drop_out: bool,
    train_secs: Cell<f64>,
    uploaded_at: Cell<Option<Instant>>,
    /// The privacy charge booked for the round (the larger, if raised).
    charged_rho: Cell<Option<f64>>,
}

#[derive(Debug)]
struct DroppedOut;

impl std::fmt::Display for DroppedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this simulated device dropped out after sharing its keys")
    }
}

impl std::error::Error for DroppedOut {}

impl RoundTrainer for SimTrainer<'_> {
    fn charge(&self, charge: &RoundCharge) -> Result<(), TrainerError> {
        // A simulated device keeps its books in memory, for the round's row.
        let booked = self
            .charged_rho
            .get()
            .map_or(charge.rho, |r| r.max(charge.rho));
        self.charged_rho.set(Some(booked));
        Ok(())
    }

    fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError> {
        // Called once keys are shared: failing here is exactly a dropout
        // before the upload, which the survivors' shares must repair.
        if self.drop_out {
            return Err(Box::new(DroppedOut));
        }
        let started = Instant::now();
        let tensors: HashMap<String, Tensor> =
            hearth_ml::candle::safetensors::load_buffer(global.bytes(), &Device::Cpu)?;
        let order: Vec<(String, Vec<usize>)> = global
            .layout()
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        let update = train_round(
            &mut self.library.borrow_mut(),
            &self.request,
            &tensors,
            &hex::encode(global.sha256()),
            &order,
            &NoProgress,
            &CancelToken::new(),
        )?;
        self.train_secs.set(started.elapsed().as_secs_f64());
        self.uploaded_at.set(Some(Instant::now()));
        Ok(update.delta)
    }
}
