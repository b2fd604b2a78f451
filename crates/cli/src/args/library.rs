//! The library itself: `hearth import`, `hearth library`, `hearth label`,
//! `hearth photos`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hearth_ml::DeviceChoice;
use hearth_store::ItemKind;

use super::parse_device;

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

fn parse_kind(s: &str) -> Result<ItemKind, String> {
    s.parse()
}
