//! Request and response shapes of the library commands.

use hearth_store::{FileReport, ImportReport, LibraryStats, Outcome};
use serde::{Deserialize, Serialize};

/// Which items to list.
#[derive(Debug, Clone, Default, Deserialize, ts_rs::TS)]
#[serde(default)]
pub struct ItemQuery {
    /// `photo` or `text`.
    pub kind: Option<String>,
    /// Only items with this label (case-insensitive).
    pub label: Option<String>,
    /// Only items whose path or labels contain this text
    /// (case-insensitive).
    pub search: Option<String>,
}

/// Where the library is and what is in it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct LibraryInfo {
    /// The library folder.
    pub path: String,
    /// Counts and sizes.
    pub stats: LibraryStats,
}

/// What to import.
#[derive(Debug, Clone, Deserialize)]
pub struct ImportRequest {
    /// Absolute paths of folders (or files).
    pub paths: Vec<String>,
}

/// Most problem files sent back; the rest are counted.
pub const MAX_PROBLEMS: usize = 200;

/// An import's outcome: counts, and the files that were skipped or failed
/// (the library's full report lists every file, which for a large folder
/// is more than a screen needs).
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ImportSummary {
    /// New items.
    pub imported: u64,
    /// Already in the library (moved ones included).
    pub already_present: u64,
    /// Of those, moved.
    pub moved: u64,
    /// Not photos or texts.
    pub skipped: u64,
    /// Could not be imported.
    pub failed: u64,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Failed files first, then skipped ones, at most [`MAX_PROBLEMS`].
    pub problems: Vec<FileReport>,
}

impl From<ImportReport> for ImportSummary {
    fn from(report: ImportReport) -> Self {
        let mut problems: Vec<FileReport> = report
            .files
            .iter()
            .filter(|f| f.outcome == Outcome::Failed)
            .chain(
                report
                    .files
                    .iter()
                    .filter(|f| f.outcome == Outcome::Skipped),
            )
            .take(MAX_PROBLEMS)
            .cloned()
            .collect();
        problems.shrink_to_fit();
        ImportSummary {
            imported: report.imported,
            already_present: report.already_present,
            moved: report.moved,
            skipped: report.skipped,
            failed: report.failed,
            cancelled: report.cancelled,
            problems,
        }
    }
}
