//! One error type for the workflows.

/// What can stop a personalization workflow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalizeError {
    /// The library failed.
    #[error(transparent)]
    Store(#[from] hearth_store::StoreError),
    /// A model or training failed.
    #[error(transparent)]
    Ml(#[from] hearth_ml::MlError),
    /// Nothing to train on.
    #[error("{0}")]
    NoData(String),
    /// A run that cannot be resumed.
    #[error("run {id} is {status}; only running, paused or failed runs can be resumed")]
    NotResumable {
        /// The run.
        id: i64,
        /// Its status.
        status: hearth_store::RunStatus,
    },
    /// The person asked the work to stop; nothing half-done was kept.
    #[error("cancelled")]
    Cancelled,
    /// A stored record that no longer makes sense (edited by hand?).
    #[error("{0}")]
    Inconsistent(String),
    /// A file operation on the library folder.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Result with [`PersonalizeError`].
pub type Result<T, E = PersonalizeError> = std::result::Result<T, E>;
