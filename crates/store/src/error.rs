//! The store's one error type: what can go wrong opening, querying or
//! changing a library. Per-file import problems are not errors of the
//! library; they are outcomes in the import report (see [`crate::import`]).

use std::path::PathBuf;

/// Anything that stops a library operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The library folder or one of its files could not be created or read.
    #[error("library folder {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// SQLite refused a statement.
    #[error("library database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database could not be brought to the current schema.
    #[error("library database schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// The database was written by a newer Hearth than this one.
    #[error(
        "the library at {path} was written by a newer Hearth (schema version {found}, this build knows up to {known}); update Hearth to open it"
    )]
    NewerSchema {
        /// The library database.
        path: PathBuf,
        /// Schema version found in the file.
        found: usize,
        /// Newest schema version this build knows.
        known: usize,
    },
    /// `PRAGMA integrity_check` found damage.
    #[error("library database is damaged: {0}")]
    Corrupt(String),
    /// Another process is importing into the same library right now.
    #[error("another import into {0} is running; wait for it to finish")]
    Busy(PathBuf),
    /// No item has this id.
    #[error("no item with id {0}")]
    NoSuchItem(i64),
    /// No run has this id.
    #[error("no training run with id {0}")]
    NoSuchRun(i64),
    /// No adapter has this id.
    #[error("no adapter with id {0}")]
    NoSuchAdapter(i64),
    /// No photo tagger has this id.
    #[error("no photo tagger with id {0} (see `hearth photos taggers`)")]
    NoSuchTagger(i64),
    /// No ask has this id.
    #[error("no ask with id {0} (see `hearth ask history`)")]
    NoSuchAsk(i64),
    /// A label name that cannot be stored.
    #[error("invalid label name {0:?}: it must not be empty or longer than 100 characters")]
    InvalidLabel(String),
    /// Joining a federation the device already belongs to.
    #[error("{0}")]
    AlreadyMember(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
