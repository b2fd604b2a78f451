//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
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
    /// Measure Hearth's speed and memory (not a test).
    #[command(subcommand)]
    Bench(BenchCommand),
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
    Remove {
        /// The item's id.
        id: i64,
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
}

fn parse_kind(s: &str) -> Result<ItemKind, String> {
    s.parse()
}
