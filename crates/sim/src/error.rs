//! The simulation's one error type: what went wrong setting it up (the
//! request, the shared data, the model, the in-process server). What goes
//! wrong inside a round is not an error of the simulation: it is written
//! into that round's row, and the report says it failed.

use std::path::PathBuf;

use hearth_fed::client::FedClientError;
use hearth_ml::MlError;
use hearth_personalize::PersonalizeError;
use hearth_store::StoreError;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The request is outside what the simulation can run.
    #[error("{0}")]
    Invalid(String),
    /// Shared data or a model the simulation needs is not where it looked.
    #[error("{what} not found at {} (set HEARTH_SHARED_DATA to the folder holding it, or pass a model path)", path.display())]
    Missing {
        /// What was looked for.
        what: String,
        /// Where.
        path: PathBuf,
    },
    /// A file does not hold what the registry says.
    #[error("{} has sha256 {actual}, the registry says {expected}", path.display())]
    Digest {
        /// The file.
        path: PathBuf,
        /// Its sha256.
        actual: String,
        /// The registry's.
        expected: String,
    },
    /// Reading or writing the simulation's files.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The data does not split into the devices asked for.
    #[error("{0}")]
    Data(String),
    /// Loading the model or training.
    #[error(transparent)]
    Personalize(#[from] PersonalizeError),
    /// The model's files or scoring.
    #[error(transparent)]
    Ml(#[from] MlError),
    /// A device's library.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Starting or talking to the in-process server.
    #[error("the in-process server: {0}")]
    Server(#[from] hearth_server::Error),
    /// A device's federation client (enrolling, fetching).
    #[error(transparent)]
    Client(#[from] FedClientError),
    /// Stopped by its cancellation token.
    #[error("the simulation was cancelled")]
    Cancelled,
}
