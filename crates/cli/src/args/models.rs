//! Models and text personalization: `hearth model`, `hearth train`,
//! `hearth runs`, `hearth adapters`, `hearth generate`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hearth_ml::DeviceChoice;
use hearth_personalize::TextTrainingRequest;
use hearth_personalize::generate::GenerateRequest;

use super::{Targets, parse_device, parse_targets};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Every model in the registry, and whether it is on this machine.
    List,
    /// Download a model from the hub into the standard cache (verifying it).
    Pull {
        /// Registry name, e.g. smollm2-135m-instruct.
        name: String,
    },
    /// Install a model from a copy you have (downloaded elsewhere, or from
    /// another device): each file is checked against the registry's
    /// sha256 before it is kept.
    Install {
        /// Registry name, e.g. smollm2-135m-instruct.
        name: String,
        /// The model file, or for a model of several files the folder
        /// holding them.
        from: PathBuf,
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
    #[arg(long, default_value_t = TextTrainingRequest::default().steps)]
    pub steps: u64,
    /// LoRA rank.
    #[arg(long, default_value_t = TextTrainingRequest::default().rank)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = TextTrainingRequest::default().alpha)]
    pub alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = TextTrainingRequest::default().dropout)]
    pub dropout: f32,
    /// Projections to adapt, comma-separated (q,k,v,o,gate,up,down).
    #[arg(long, value_parser = parse_targets, default_value_t = Targets(TextTrainingRequest::default().targets))]
    pub targets: Targets,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = TextTrainingRequest::default().batch_size)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = TextTrainingRequest::default().seq_len)]
    pub seq_len: usize,
    /// Micro-batches per step.
    #[arg(long, default_value_t = TextTrainingRequest::default().grad_accumulation)]
    pub grad_accumulation: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TextTrainingRequest::default().learning_rate)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = TextTrainingRequest::default().warmup_steps)]
    pub warmup: u64,
    /// Steps between held-out evaluations.
    #[arg(long, default_value_t = TextTrainingRequest::default().eval_every)]
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    pub patience: Option<u64>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = TextTrainingRequest::default().checkpoint_every)]
    pub checkpoint_every: u64,
    /// Seed for initialisation, data order and dropout.
    #[arg(long, default_value_t = TextTrainingRequest::default().seed)]
    pub seed: u64,
    /// Hold the frozen base weights as f32, or bf16 / f16 to halve their
    /// memory (computation stays f32).
    #[arg(long, default_value_t = TextTrainingRequest::default().base_dtype, value_parser = ["f32", "bf16", "f16"])]
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
    /// Gives up a paused or interrupted run: it is marked failed
    /// ("cancelled by you"); its checkpoint stays, so `hearth train text
    /// --resume` can still continue it.
    Discard {
        /// The run's id.
        id: i64,
        /// The run is marked running, but no hearth is training it (it was
        /// killed): discard it anyway.
        #[arg(long)]
        interrupted: bool,
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
