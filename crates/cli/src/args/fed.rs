//! Federation: `hearth fed` (join, run, status, ...) and `hearth lineage`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hearth_ml::DeviceChoice;
use hearth_personalize::federation::{DEFAULT_EPSILON_BUDGET, FederatedRoundRequest};

use super::parse_device;

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
    #[arg(long, default_value_t = DEFAULT_EPSILON_BUDGET)]
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
    /// Stop after this many rounds [default: until Ctrl-C].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// The base model (the federation's): registry name or path.
    #[arg(long)]
    pub model: Option<String>,
    /// Train on texts with this label only.
    #[arg(long)]
    pub label: Option<String>,
    /// Local training steps per round.
    #[arg(long, default_value_t = FederatedRoundRequest::default().steps)]
    pub steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = FederatedRoundRequest::default().batch_size)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = FederatedRoundRequest::default().seq_len)]
    pub seq: usize,
    /// Local learning rate.
    #[arg(long, default_value_t = FederatedRoundRequest::default().learning_rate)]
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
