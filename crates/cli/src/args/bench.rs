//! Benchmarks: `hearth bench` and each benchmark's arguments.

use clap::{Args, Subcommand};

use super::{Targets, parse_targets};

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
    /// The type the frozen base weights are held in, on both sides (the
    /// adapter stays f32): Hearth trains as `hearth train text
    /// --base-dtype` does; PyTorch holds the base in that type and runs its
    /// forward pass under `torch.autocast`.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub base_dtype: String,
    /// Interleaved rounds: each runs the reference, then Hearth, for
    /// `--steps` timed steps; medians are over every round's steps.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}
