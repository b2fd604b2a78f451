//! The ML crate's error type.

use std::path::PathBuf;

/// Anything that stops loading, training or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// A tensor operation failed (shapes, dtypes, device).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A model file that is not what it claims (truncated, wrong format,
    /// missing tensors, inconsistent shapes).
    #[error("{path}: not a usable model file: {reason}")]
    BadModel {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tokenizer could not be built or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An adapter that does not fit the model it is applied to.
    #[error("adapter does not fit this model: {0}")]
    AdapterMismatch(String),
    /// An adapter directory that is not a valid PEFT LoRA adapter.
    #[error("{path}: not a usable LoRA adapter: {reason}")]
    BadAdapter {
        /// The adapter file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A grammar for constrained decoding that cannot be compiled or
    /// followed with this model's vocabulary.
    #[error("constrained decoding: {0}")]
    Constraint(String),
    /// A request the model cannot serve (prompt longer than the context, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// Training data that cannot train anything.
    #[error("training data: {0}")]
    Data(String),
    /// Training diverged.
    #[error(
        "training stopped at step {step}: the loss became {loss} (the last good checkpoint is kept)"
    )]
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f32,
    },
    /// A checkpoint that cannot be resumed.
    #[error("checkpoint {path}: {reason}")]
    BadCheckpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device {0} is not available: {1}")]
    DeviceUnavailable(String, String),
    /// A model name the registry does not know, or files that fail verification.
    #[error("model registry: {0}")]
    Registry(String),
}

impl MlError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MlError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        MlError::BadModel {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`MlError`].
pub type Result<T, E = MlError> = std::result::Result<T, E>;
