//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hearth_ml::train::TrainConfig;
use hearth_ml::{DeviceChoice, Target};
use hearth_personalize::generate::GenerateRequest;
use hearth_sim::SimRequest;
use hearth_store::ItemKind;

/// Hearth: personalize a small model on your own photos and text, on your
/// own device.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, propagate_version = true)]
pub struct Cli {
    /// The library folder [default: the platform data directory, e.g.
    /// ~/.local/share/hearth].
    #[arg(long, global = true, env = "HEARTH_LIBRARY", value_name = "PATH")]
    pub library: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import photos (JPEG, PNG, WebP, GIF, BMP, TIFF) and notes (.txt, .md)
    /// from files and folders. Originals are never modified.
    Import(ImportArgs),
    /// Look at and tidy the library.
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Put labels on items and take them off.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Personal photo tags: embed photos, learn your labels, get
    /// suggestions and look-alikes.
    #[command(subcommand)]
    Photos(PhotosCommand),
    /// Base models: what is known, what is on this machine, fetch one.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Personalize a model on your library.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Training runs: history, status, results.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Adapters (what training produces): list, export, import (PEFT format).
    #[command(subcommand)]
    Adapters(AdaptersCommand),
    /// Write with the base model or a personalized adapter (streams tokens).
    Generate(GenerateArgs),
    /// Measure how well personalization works: held-out perplexity on
    /// your texts, few-shot photo tagging on a labelled dataset.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// What an adapter was trained on: `hearth lineage ADAPTER`, and
    /// `hearth lineage prove ADAPTER ITEM` for a Merkle proof that an item
    /// was (or was not) in its training data.
    Lineage(LineageArgs),
    /// Ask about your library: a query in the Ask language (docs/ask.md)
    /// runs read-only and shows its answer and the items it came from;
    /// `hearth ask correct ID QUERY` keeps what an ask should have run.
    Ask(AskArgs),
    /// Federation, opt-in and off by default: join one, take part in rounds
    /// when this device is eligible, see everything that was shared.
    #[command(subcommand)]
    Fed(FedCommand),
    /// Re-verify, from what this device stored, that every federation
    /// server's transparency log is consistent and holds its uploads.
    Audit,
    /// Simulate federated learning on this machine: a real server on
    /// 127.0.0.1 and N real clients over HTTPS, each with its own library
    /// holding one speaking role of a public text (LEAF-style), with
    /// dropouts; one line per round.
    Sim(SimArgs),
    /// Measure Hearth's speed and memory (not a test).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The data sets `hearth sim` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimData {
    /// tinyshakespeare split by speaking role (`../shared/data/text`).
    Shakespeare,
}

/// `hearth sim`'s flags: each maps onto a field of
/// [`hearth_sim::SimRequest`], whose defaults they show.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Simulated devices (each gets one speaking role).
    #[arg(long, default_value_t = SimRequest::default().clients, value_parser = clap::value_parser!(u32).range(3..=64))]
    pub clients: u32,
    /// Federated rounds.
    #[arg(long, default_value_t = SimRequest::default().rounds, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Fraction of each round's devices that drop after sharing keys.
    #[arg(long, default_value_t = SimRequest::default().dropout)]
    pub dropout: f64,
    /// The federated data set.
    #[arg(long, value_enum, default_value = "shakespeare")]
    pub data: SimData,
    /// Base model: registry name or path.
    #[arg(long, default_value_t = SimRequest::default().model)]
    pub model: String,
    /// Local training steps per round.
    #[arg(long, default_value_t = SimRequest::default().steps)]
    pub steps: u64,
    /// Sequences per local step.
    #[arg(long, default_value_t = SimRequest::default().batch)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = SimRequest::default().seq)]
    pub seq: usize,
    /// Local learning rate.
    #[arg(long, default_value_t = SimRequest::default().learning_rate)]
    pub learning_rate: f64,
    /// DP noise multiplier (Gaussian standard deviation / clip).
    #[arg(long, default_value_t = SimRequest::default().noise)]
    pub noise: f64,
    /// DP clip norm of each device's update.
    #[arg(long, default_value_t = SimRequest::default().clip)]
    pub clip: f64,
    /// Seconds the upload stage waits for dropped devices.
    #[arg(long, default_value_t = SimRequest::default().upload_deadline, value_parser = clap::value_parser!(u32).range(2..=3600))]
    pub upload_deadline: u32,
    /// Seed for the dropout draws.
    #[arg(long, default_value_t = SimRequest::default().seed)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl SimArgs {
    /// The simulation these flags ask for.
    pub fn request(&self) -> SimRequest {
        SimRequest {
            clients: self.clients,
            rounds: self.rounds,
            dropout: self.dropout,
            data: match self.data {
                SimData::Shakespeare => hearth_sim::SimData::Shakespeare,
            },
            model: self.model.clone(),
            steps: self.steps,
            batch: self.batch,
            seq: self.seq,
            learning_rate: self.learning_rate,
            noise: self.noise,
            clip: self.clip,
            upload_deadline: self.upload_deadline,
            seed: self.seed,
            shared_data: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Every model in the registry, and whether it is on this machine.
    List,
    /// Download a model from the hub into the standard cache (verifying it).
    Pull {
        /// Registry name, e.g. smollm2-135m-instruct.
        name: String,
    },
    /// ImageNet top-5 of photos with the photo model (a sanity tool).
    Classify {
        /// Image files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Fine-tune LoRA adapters on your texts (all, or those with a label).
    /// Ctrl-C pauses at the next step with a checkpoint; `--resume RUN`
    /// continues.
    Text(TrainTextArgs),
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// A comma-separated list of LoRA targets.
#[derive(Debug, Clone)]
pub struct Targets(pub Vec<Target>);

impl std::fmt::Display for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: Vec<&str> = self
            .0
            .iter()
            .map(|t| t.name().trim_end_matches("_proj"))
            .collect();
        f.write_str(&short.join(","))
    }
}

fn parse_targets(s: &str) -> Result<Targets, String> {
    s.split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map(Targets)
}

#[derive(Debug, Args)]
pub struct TrainTextArgs {
    /// Continue this paused or interrupted run (other options are taken
    /// from the run).
    #[arg(long, value_name = "RUN")]
    pub resume: Option<i64>,
    /// Train only on texts with this label.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Base model: registry name or path [default: the default text model].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Optimizer steps.
    #[arg(long, default_value_t = TrainConfig::default().steps)]
    pub steps: u64,
    /// LoRA rank.
    #[arg(long, default_value_t = TrainConfig::default().lora.rank)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = TrainConfig::default().lora.alpha)]
    pub alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = TrainConfig::default().lora.dropout)]
    pub dropout: f32,
    /// Projections to adapt, comma-separated (q,k,v,o,gate,up,down).
    #[arg(long, value_parser = parse_targets, default_value_t = Targets(TrainConfig::default().lora.targets))]
    pub targets: Targets,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = TrainConfig::default().seq_len)]
    pub seq_len: usize,
    /// Micro-batches per step.
    #[arg(long, default_value_t = TrainConfig::default().grad_accumulation)]
    pub grad_accumulation: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    pub warmup: u64,
    /// Steps between held-out evaluations.
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    pub patience: Option<u64>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: u64,
    /// Seed for initialisation, data order and dropout.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Hold the frozen base weights as f32, or bf16 / f16 to halve their
    /// memory (computation stays f32).
    #[arg(long, default_value_t = TrainConfig::default().base_dtype, value_parser = ["f32", "bf16", "f16"])]
    pub base_dtype: String,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Every training run, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One run in full.
    Show {
        /// The run's id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdaptersCommand {
    /// Every adapter, newest first.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy an adapter out as a PEFT folder (adapter_model.safetensors +
    /// adapter_config.json).
    Export {
        /// The adapter's id.
        id: i64,
        /// Destination folder.
        dir: PathBuf,
    },
    /// Bring in a PEFT LoRA folder.
    Import {
        /// The PEFT folder.
        dir: PathBuf,
        /// A name for it.
        #[arg(long)]
        name: Option<String>,
        /// Check it fits this base model (registry name or path) first.
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write about (a user turn for chat models; raw text with --raw).
    pub prompt: String,
    /// Use this adapter.
    #[arg(long, value_name = "ID")]
    pub adapter: Option<i64>,
    /// Show the base model's answer and the adapter's, one after the other.
    #[arg(long, requires = "adapter")]
    pub compare: bool,
    /// Base model: registry name or path [default: the adapter's, else the
    /// default text model].
    #[arg(long)]
    pub model: Option<String>,
    /// Continue the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// 0 for greedy.
    #[arg(long, default_value_t = GenerateRequest::default().temperature)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = GenerateRequest::default().top_p)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = GenerateRequest::default().seed)]
    pub seed: u64,
    /// Repetition penalty on the last 64 tokens (1 is off).
    #[arg(long, default_value_t = GenerateRequest::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// Most new tokens.
    #[arg(long, default_value_t = GenerateRequest::default().max_tokens)]
    pub max_tokens: usize,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Debug, Subcommand)]
pub enum FedCommand {
    /// Join a federation with an invite from its operator.
    Join(FedJoinArgs),
    /// Memberships, privacy spent, and whether the device is eligible now.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Leave a federation (the upload history stays visible).
    Leave {
        /// The membership (see `hearth fed status`); the only one if omitted.
        id: Option<i64>,
    },
    /// Take part in rounds whenever the device is eligible (Ctrl-C stops).
    Run(FedRunArgs),
    /// Every upload: round, bytes, privacy spent, hash of what was sent.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FedJoinArgs {
    /// The server, https://host:port.
    pub url: String,
    /// The invite token from the operator (base64url: it may start with
    /// a `-`, which is still the token, not a flag).
    #[arg(long, allow_hyphen_values = true)]
    pub invite: String,
    /// The server's certificate (PEM), pinned as the only one trusted.
    #[arg(long, value_name = "PEM")]
    pub cert: PathBuf,
    /// Total privacy budget (epsilon, at delta 1e-5); rounds past it are
    /// refused.
    #[arg(long, default_value_t = 8.0)]
    pub epsilon_budget: f64,
    /// Only between these local hours, e.g. 22-6.
    #[arg(long, value_parser = parse_hours)]
    pub hours: Option<(u8, u8)>,
    /// Also on battery.
    #[arg(long)]
    pub any_power: bool,
    /// Also when the machine is busy.
    #[arg(long)]
    pub any_load: bool,
}

fn parse_hours(s: &str) -> Result<(u8, u8), String> {
    let (start, end) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected START-END, e.g. 22-6"))?;
    let hour = |h: &str| -> Result<u8, String> {
        h.trim()
            .parse::<u8>()
            .ok()
            .filter(|h| *h < 24)
            .ok_or_else(|| format!("{h:?} is not an hour 0-23"))
    };
    Ok((hour(start)?, hour(end)?))
}

#[derive(Debug, Args)]
pub struct FedRunArgs {
    /// Check in once and stop when there is no round for this device.
    #[arg(long)]
    pub once: bool,
    /// Stop after this many rounds.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// The base model (the federation's): registry name or path.
    #[arg(long)]
    pub model: Option<String>,
    /// Train on texts with this label only.
    #[arg(long)]
    pub label: Option<String>,
    /// Local training steps per round.
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Local learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LineageArgs {
    #[command(subcommand)]
    pub command: Option<LineageCommand>,
    /// The adapter's id (see `hearth adapters list`).
    pub adapter: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Prove whether an item was in an adapter's training data.
    Prove {
        /// The adapter's id.
        adapter: i64,
        /// The item: its id in the library, its sha256, or a file (hashed).
        item: String,
        /// Print JSON (the proof itself, to check elsewhere).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AskArgs {
    #[command(subcommand)]
    pub command: Option<AskCommand>,
    /// The question in your words: the text model translates it into a
    /// query (held to the query language and your library's labels),
    /// which runs read-only.
    pub question: Option<String>,
    /// Run this query instead of translating, e.g. 'count photos label
    /// "Rex" in last_summer' (with a question, the two are recorded
    /// together).
    #[arg(long, value_name = "QUERY")]
    pub query: Option<String>,
    /// Also show how the question was translated: the query the model
    /// wrote, its tokens and time, and the grammar's cost per token.
    #[arg(long)]
    pub show_query: bool,
    /// The text model that translates (registry name or path) [default:
    /// the default text model].
    #[arg(long)]
    pub model: Option<String>,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
    #[command(flatten)]
    pub common: AskCommon,
}

/// Flags every ask takes.
#[derive(Debug, Args)]
pub struct AskCommon {
    /// The day relative dates (last_summer, this_year) are counted from
    /// [default: today].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub today: Option<hearth_personalize::ask::NaiveDate>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AskCommand {
    /// Correct an ask: run QUERY and keep it as what ask ID should have
    /// run (the pairs train the translation from words to queries).
    Correct {
        /// The ask's id (printed with every answer; see `hearth ask history`).
        id: i64,
        /// The query it should have run.
        query: String,
        #[command(flatten)]
        common: AskCommon,
    },
    /// Train the translation on your corrected asks: a small adapter used
    /// only for turning questions into queries (the newest one is used
    /// from then on).
    Train {
        /// Training steps [default: the ask training default, 80].
        #[arg(long)]
        steps: Option<u64>,
        /// The text model to adapt (registry name or path) [default: the
        /// default text model].
        #[arg(long)]
        model: Option<String>,
        /// auto, cpu, cuda or metal.
        #[arg(long, value_parser = parse_device, default_value = "auto")]
        device: DeviceChoice,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Past asks and their corrections.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Held-out perplexity of the base model and an adapter on your texts.
    Text(EvalArgs),
    /// Few-shot photo tagging accuracy on Fashion-MNIST (its ten classes
    /// stand in for your labels): frozen head, fine-tuned last blocks, and
    /// a nearest-centroid baseline.
    Photos(EvalPhotosArgs),
    /// Exact answers to questions in words over a generated library: the
    /// base model with constrained decoding, after `hearth ask train` on
    /// corrected pairs, and without the grammar.
    Ask(EvalAskArgs),
}

#[derive(Debug, Args)]
pub struct EvalAskArgs {
    /// Questions asked in each configuration.
    #[arg(long, default_value_t = 200)]
    pub questions: usize,
    /// Corrected pairs trained on (none of them an evaluated question).
    #[arg(long, default_value_t = 100)]
    pub train_pairs: usize,
    /// Ask training steps [default: the ask training default].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed for the library and the questions.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// A text file whose paragraphs become filler notes (e.g. the shared
    /// data's tinyshakespeare.txt).
    #[arg(long, value_name = "FILE")]
    pub notes_from: Option<PathBuf>,
    /// Leave out unconstrained generation (faster).
    #[arg(long)]
    pub no_unconstrained: bool,
    /// The text model (registry name or path) [default: the default text
    /// model].
    #[arg(long)]
    pub model: Option<String>,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalPhotosArgs {
    /// Use Fashion-MNIST (Debian package dataset-fashion-mnist).
    #[arg(long, required = true)]
    pub fashion_mnist: bool,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long, default_value = hearth_personalize::photo_eval::FASHION_MNIST_DIR)]
    pub dir: PathBuf,
    /// Labelled examples per class, one result row each.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
    pub shots: Vec<usize>,
    /// Test images, balanced over the classes.
    #[arg(long, default_value_t = 1000)]
    pub test_images: usize,
    /// MBConv blocks to fine-tune, counted from the end (0: only the head
    /// convolution).
    #[arg(long, default_value_t = 2)]
    pub fine_tune_blocks: usize,
    /// Leave out the fine-tuned variant (faster).
    #[arg(long)]
    pub no_fine_tune: bool,
    /// Seed for picking examples and test images.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Independent draws of the labelled examples (results are averaged;
    /// the test images stay the same).
    #[arg(long, default_value_t = 3)]
    pub draws: usize,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Compare this adapter with its base model (on its run's held-out text).
    #[arg(long, value_name = "ID")]
    pub adapter: Option<i64>,
    /// Base model: registry name or path.
    #[arg(long)]
    pub model: Option<String>,
    /// Score texts with this label (without an adapter).
    #[arg(long)]
    pub label: Option<String>,
    /// auto, cpu, cuda or metal.
    #[arg(long, value_parser = parse_device, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files and folders to import (folders are searched recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print a machine-readable report on standard output.
    #[arg(long)]
    pub json: bool,
    /// Refuse files larger than this many megabytes.
    #[arg(long, default_value_t = 100, value_name = "MB")]
    pub max_file_mb: u64,
    /// Refuse images whose header claims more than this many megapixels.
    #[arg(long, default_value_t = 100, value_name = "MP")]
    pub max_megapixels: u64,
    /// Also follow symbolic links that lead outside the folders imported
    /// (by default they are reported and skipped).
    #[arg(long)]
    pub follow_links_outside: bool,
}

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// List items.
    List {
        /// Only photos or only texts.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ItemKind>,
        /// Only items with this label.
        #[arg(long, value_name = "NAME")]
        label: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show everything about one item.
    Show {
        /// The item's id (see `hearth library list`).
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts and sizes.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an item and its thumbnail from the library (the original file
    /// is never touched).
    /// Adapters trained on the item are listed first: they keep what they
    /// learned from it until retrained.
    Remove {
        /// The item's id.
        id: i64,
        /// Remove it even when adapters were trained on it (no question).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Put a label on an item.
    Add {
        /// The item's id.
        id: i64,
        /// The label, e.g. "Rex".
        name: String,
    },
    /// Take a label off an item.
    Remove {
        /// The item's id.
        id: i64,
        /// The label.
        name: String,
    },
    /// Every label with its item count.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Agree with a suggested label: the photo gets it, and it trains the
    /// next tagger.
    Accept {
        /// The item's id.
        id: i64,
        /// The label.
        name: String,
    },
    /// Disagree with a suggested label: a negative example for the next
    /// tagger.
    Reject {
        /// The item's id.
        id: i64,
        /// The label.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PhotosCommand {
    /// Compute embeddings for photos that have none yet (cached in the
    /// library; photos that no longer decode are noted and skipped).
    Embed {
        /// Photos per batch.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// auto, cpu, cuda or metal.
        #[arg(long, value_parser = parse_device, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Learn your labels from labelled photos and your accept/reject
    /// verdicts. Ctrl-C pauses fine-tuning at a checkpoint; `--resume RUN`
    /// continues (also a run that was killed).
    Train {
        /// Continue this paused or interrupted photo run (other options are
        /// taken from the run).
        #[arg(long, value_name = "RUN", conflicts_with_all = ["fine_tune_blocks", "steps"])]
        resume: Option<i64>,
        /// Also fine-tune the network's last N blocks (with augmented views
        /// of your labelled photos); every photo is then embedded again.
        #[arg(long, value_name = "N")]
        fine_tune_blocks: Option<usize>,
        /// Fine-tuning steps [default: 80].
        #[arg(long)]
        steps: Option<usize>,
        /// auto, cpu, cuda or metal.
        #[arg(long, value_parser = parse_device, default_value = "auto")]
        device: DeviceChoice,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Suggested labels, with confidence, for photos without labels.
    Tag {
        /// Include photos that already have labels.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The photos the tagger is least sure about: label these next.
    Ask {
        /// How many.
        #[arg(short, long, default_value_t = 5)]
        n: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Photos that look like this one.
    Similar {
        /// The photo's id.
        id: i64,
        /// How many.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The taggers photo runs have trained, newest first (the newest over
    /// the active network is the one tagging uses).
    Taggers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where a tagger came from: its run, the photos it learned from
    /// (checked against the run's Merkle root) and its head file's hash.
    Lineage {
        /// The tagger's id (see `hearth photos taggers`).
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Import generated 12-megapixel JPEGs into a scratch library; prints
    /// photos/s and the importer's peak RSS.
    Import {
        /// How many photos to generate.
        #[arg(long, default_value_t = 200)]
        photos: usize,
        /// Megapixels per photo (4:3).
        #[arg(long, default_value_t = 12.0)]
        megapixels: f64,
    },
    /// LoRA training steps/s and peak RSS against PyTorch + PEFT on the same
    /// workload (and generation speed with the KV cache).
    Train(BenchTrainArgs),
    /// Generation tokens/s and peak RSS at batch 1 on a GGUF: Hearth's
    /// quantized path (base and with an adapter) against llama.cpp and
    /// PyTorch on the same file and thread count.
    Generate(BenchGenerateArgs),
    /// Photo embeddings per second and peak RSS (EfficientNet-Lite0,
    /// 224x224), next to PyTorch on the same machine.
    Embed(BenchEmbedArgs),
    /// Secure aggregation costs: client masking, server unmasking for
    /// 100 and 1,000 clients, bytes per client.
    Secagg(BenchSecaggArgs),
    /// Transparency log: append rate, proof generation and verification at
    /// a million entries.
    Log(BenchLogArgs),
}

#[derive(Debug, Args)]
pub struct BenchSecaggArgs {
    /// Update length (parameters).
    #[arg(long, default_value_t = 1_000_000)]
    pub params: usize,
    /// A client's SecAgg+ neighbours.
    #[arg(long, default_value_t = 16)]
    pub neighbours: usize,
    /// Cohort sizes for the server figures.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub clients: Vec<usize>,
    /// Share of clients that drop out after sharing their keys.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// The threat model's colluding fraction the server's neighbourhoods
    /// are sized against (`hearth-server`'s default).
    #[arg(long, default_value_t = hearth_server::config::DEFAULT_CORRUPT_FRACTION)]
    pub corrupt_fraction: f64,
    /// The threat model's dropout fraction (`hearth-server`'s default).
    #[arg(long, default_value_t = hearth_server::config::DEFAULT_DROPOUT_FRACTION)]
    pub dropout_fraction: f64,
    /// Size neighbourhoods as about log2 n instead (the figures before the
    /// threat model).
    #[arg(long)]
    pub log2_neighbourhoods: bool,
}

#[derive(Debug, Args)]
pub struct BenchLogArgs {
    /// Log entries.
    #[arg(long, default_value_t = hearth_ledger::bench::DEFAULT_ENTRIES)]
    pub entries: u64,
    /// Proofs timed (each verified).
    #[arg(long, default_value_t = 1000)]
    pub samples: u32,
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// GGUF model: registry name or path [default: the default text model].
    #[arg(long)]
    pub model: Option<String>,
    /// Prompt tokens (processed in one batch).
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// New tokens decoded greedily per pass.
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Interleaved rounds (medians reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// LoRA rank of the adapter measured.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Skip the llama.cpp reference.
    #[arg(long)]
    pub no_llamacpp: bool,
    /// Skip the PyTorch reference.
    #[arg(long)]
    pub no_pytorch: bool,
    /// Also time Hearth's f32 path (the model training uses, dequantized
    /// from the GGUF), base and with the same adapter, in the same rounds.
    /// Its weights count in Hearth's peak RSS.
    #[arg(long)]
    pub f32_reference: bool,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Batches run before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed batches per round (the median over every round's is reported).
    #[arg(long, default_value_t = 8)]
    pub iterations: usize,
    /// Interleaved rounds: each times every PyTorch variant, then Hearth.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// PyTorch variants to run (the fastest is the reference): functional,
    /// folded, folded-cl, jit, jit-cl, compile (torch.compile: its first
    /// run on a machine compiles for minutes, later ones reuse the cache).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "functional,folded,folded-cl,jit,jit-cl,compile"
    )]
    pub variants: Vec<String>,
    /// Skip the PyTorch reference.
    #[arg(long)]
    pub no_reference: bool,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Base model: registry name or path [default: the default text model
    /// when present, else random weights of its shape]. The PyTorch
    /// reference loads the same weights (a GGUF file or a Hugging Face
    /// folder) or the bench fails; other models need --no-reference.
    #[arg(long)]
    pub model: Option<String>,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Projections to adapt.
    #[arg(long, value_parser = parse_targets, default_value = "q,k,v,o,gate,up,down")]
    pub targets: Targets,
    /// Warm-up steps (not timed).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// New tokens for the generation benchmark (0 skips it).
    #[arg(long, default_value_t = 32)]
    pub generate: usize,
    /// Skip the PyTorch + PEFT reference.
    #[arg(long)]
    pub no_reference: bool,
    /// Time candle's general autograd path instead of the CPU training
    /// step (for comparison).
    #[arg(long)]
    pub autograd: bool,
    /// Interleaved rounds: each runs the reference, then Hearth, for
    /// `--steps` timed steps; medians are over every round's steps.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}

fn parse_kind(s: &str) -> Result<ItemKind, String> {
    s.parse()
}
