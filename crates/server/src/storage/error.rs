//! Why a storage call failed ([`StorageError`]), shared by every store.

use std::path::PathBuf;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A compare-and-swap lost, or a uniqueness rule refused the change:
    /// reload and decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The thing to change does not exist (or is no longer in flight).
    #[error("not found: {0}")]
    NotFound(String),
    /// The invite cannot be used.
    #[error("invite refused: {0}")]
    InviteRefused(InviteRefusal),
    /// The public key is already enrolled in this federation.
    #[error("this public key is already enrolled in the federation")]
    KeyAlreadyEnrolled,
    /// Stored data does not decode.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// The database folder could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database was written by a newer hearth-server.
    #[error(
        "{path} was written by a newer hearth-server (schema {found}, this build knows up to {known})"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Schema version found.
        found: usize,
        /// Newest this build knows.
        known: usize,
    },
    /// SQLite refused a statement.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought up to date.
    #[error("database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The blocking task running the call died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A log position or range beyond the log, or `old > new`.
    #[error("{0}")]
    OutOfRange(String),
    /// The change carries a value the log cannot record (a negative or
    /// non-finite epsilon, a delta outside `[0, 1]`).
    #[error("invalid change: {0}")]
    Invalid(String),
}

/// Why an invite was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteRefusal {
    /// No invite has this token.
    #[error("unknown invite")]
    Unknown,
    /// The invite was already used to enrol a device.
    #[error("invite already used")]
    Used,
    /// The invite's time ran out.
    #[error("invite expired")]
    Expired,
}

/// Turns "a uniqueness rule refused this" into [`StorageError::Conflict`]
/// (for the SQLite storage and its transparency log alike).
pub(super) fn conflict_on_constraint(
    what: &str,
) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StorageError::Conflict(format!("{what}: {e}"))
        }
        _ => StorageError::Sqlite(e),
    }
}
