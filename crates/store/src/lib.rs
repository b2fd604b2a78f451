//! Hearth's personal library: the photos and text a person imported, kept in
//! one folder on their own device.
//!
//! A [`Library`] is a folder holding a SQLite database (items, labels,
//! training runs with the items they used, the adapters and photo taggers
//! they produced) and content-addressed
//! thumbnails, run checkpoints and adapter folders. Originals are referenced by path and never modified or
//! deleted. [`Library::import`] walks folders, hashes, decodes and
//! thumbnails files on all cores, and commits them from a single writer, so
//! a kill at any moment leaves no partial item.
//!
//! ```
//! use hearth_store::{CancelToken, ImportOptions, ItemFilter, Library, NoProgress};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("note.txt"), "Rex likes the garden.")?;
//!
//! let mut library = Library::open(dir.path().join("library"))?;
//! let report = library.import(&[dir.path().to_path_buf()], &ImportOptions::default(),
//!                             &NoProgress, &CancelToken::new())?;
//! assert_eq!(report.imported, 1);
//!
//! let items = library.items(&ItemFilter::default())?;
//! library.add_label(items[0].id, "Rex")?;
//! assert_eq!(library.items(&ItemFilter { label: Some("rex".into()), ..Default::default() })?.len(), 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod asks;
pub mod atomic;
mod db;
mod embeddings;
mod error;
mod federation;
pub mod import;
mod items;
mod labels;
mod note_embeddings;
mod runs;
mod taggers;
mod thumbnails;

pub use asks::{AskCorrection, AskId, AskRecord};
pub use db::{DATABASE_FILE, Library, open_read_only};
pub use embeddings::{EmbeddingResult, PhotoEmbedding, Verdict};
pub use error::{Result, StoreError};
pub use federation::{Membership, MembershipId, NewMembership, NewUpload, Upload};
pub use hearth_progress::{CancelToken, NoProgress, Progress};
pub use import::{FileReport, ImportOptions, ImportReport, Outcome};
pub use items::{Item, ItemFilter, ItemId, ItemKind, LibraryStats};
pub use labels::LabelSummary;
pub use note_embeddings::{NewNoteEmbedding, NoteEmbeddingState, NoteToEmbed, text_sha256};
pub use runs::{Adapter, AdapterId, NewAdapter, NewRun, Run, RunId, RunKind, RunStatus, RunUpdate};
pub use taggers::{NewPhotoTagger, PhotoTagger, TaggerId};
pub use thumbnails::THUMBNAIL_MAX_SIDE;
