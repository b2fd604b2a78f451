//! Asking the library and evaluating: `hearth ask` and `hearth eval`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hearth_ml::DeviceChoice;

use super::parse_device;

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
