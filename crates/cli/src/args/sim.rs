//! `hearth sim`: the simulated federation's arguments and their defaults
//! (from `hearth_sim::SimRequest`).

use clap::Args;
use hearth_sim::SimRequest;

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
