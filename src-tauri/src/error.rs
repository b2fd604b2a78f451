//! The app's one error type, sent to the front end as `{kind, message}`.
//!
//! `kind` is a closed set (see [`ErrorKind`]; `ui/src/api/types.ts` mirrors
//! it) so the front end can react to what went wrong (offer to resume, say
//! "import some notes first") without parsing messages; `message` is the
//! library's own sentence, written for people.

use hearth_ask::AskError;
use hearth_fed::client::FedClientError;
use hearth_personalize::PersonalizeError;
use hearth_store::StoreError;
use serde::{Serialize, Serializer};

/// What kind of failure an [`AppError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself was malformed (an empty label, a relative path).
    InvalidInput,
    /// The item, run, adapter or job does not exist.
    NotFound,
    /// Something else holds what this needs (an import, a training run).
    Busy,
    /// Nothing to work on yet (no texts, no labelled photos, no tagger).
    NoData,
    /// The run cannot be resumed.
    NotResumable,
    /// The work was cancelled.
    Cancelled,
    /// A model is not on this machine or its registry entry is wrong.
    ModelMissing,
    /// The library's database or folder failed.
    Library,
    /// A model, training or generation failed.
    Model,
    /// The federation's server failed, refused, or misbehaved (its
    /// transparency log did not check out).
    Federation,
    /// Taking part would spend more privacy than the person allowed.
    PrivacyBudget,
    /// A bug: a worker panicked or a record no longer makes sense.
    Internal,
}

/// Anything a command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The library failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A personalization workflow failed.
    #[error(transparent)]
    Personalize(#[from] PersonalizeError),
    /// A model operation failed.
    #[error(transparent)]
    Ml(#[from] hearth_ml::MlError),
    /// The request was malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// No job with this id is running.
    #[error("no job {0} is running")]
    NoSuchJob(u64),
    /// Another job of the same kind is running.
    #[error("{0}")]
    Busy(String),
    /// A bug (a worker panicked).
    #[error("{0}")]
    Internal(String),
}

/// Result with [`AppError`].
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    /// The kind the front end switches on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Store(error) => store_kind(error),
            AppError::Personalize(error) => match error {
                PersonalizeError::Store(error) => store_kind(error),
                PersonalizeError::Ml(error) => ml_kind(error),
                PersonalizeError::Ask(error) => ask_kind(error),
                // The model's query: the person can write it instead.
                PersonalizeError::Untranslated { .. }
                | PersonalizeError::TranslatedQueryFailed { .. } => ErrorKind::Model,
                PersonalizeError::NoData(_) => ErrorKind::NoData,
                PersonalizeError::NotResumable { .. } => ErrorKind::NotResumable,
                PersonalizeError::Cancelled | PersonalizeError::Paused { .. } => {
                    ErrorKind::Cancelled
                }
                PersonalizeError::Io { .. } => ErrorKind::Library,
                PersonalizeError::Invalid(_) => ErrorKind::InvalidInput,
                PersonalizeError::NotMember(_) => ErrorKind::NotFound,
                PersonalizeError::Federation(error) => federation_kind(error),
                PersonalizeError::Audit(_) => ErrorKind::Federation,
                PersonalizeError::BudgetExhausted { .. } => ErrorKind::PrivacyBudget,
                // The server offered a round this device already paid for.
                PersonalizeError::RoundReplayed { .. } => ErrorKind::Federation,
                // The person chose another model file than the federation's.
                PersonalizeError::WrongBaseModel { .. } => ErrorKind::ModelMissing,
                _ => ErrorKind::Internal,
            },
            AppError::Ml(error) => ml_kind(error),
            AppError::InvalidInput(_) => ErrorKind::InvalidInput,
            AppError::NoSuchJob(_) => ErrorKind::NotFound,
            AppError::Busy(_) => ErrorKind::Busy,
            AppError::Internal(_) => ErrorKind::Internal,
        }
    }
}

fn store_kind(error: &StoreError) -> ErrorKind {
    match error {
        StoreError::NoSuchItem(_)
        | StoreError::NoSuchRun(_)
        | StoreError::NoSuchAdapter(_)
        | StoreError::NoSuchTagger(_)
        | StoreError::NoSuchAsk(_) => ErrorKind::NotFound,
        StoreError::InvalidLabel(_) | StoreError::AlreadyMember(_) => ErrorKind::InvalidInput,
        StoreError::Busy(_) => ErrorKind::Busy,
        _ => ErrorKind::Library,
    }
}

fn ask_kind(error: &AskError) -> ErrorKind {
    match error {
        // What the person wrote: the query does not parse, names a label
        // or adapter the library lacks, or computes past whole numbers.
        AskError::Parse(_) | AskError::Check(_) | AskError::Overflow => ErrorKind::InvalidInput,
        // `similar` needs the sentence-embedding model.
        AskError::SemanticUnavailable => ErrorKind::ModelMissing,
        AskError::Semantic(e) if e.model_missing => ErrorKind::ModelMissing,
        AskError::Semantic(_) => ErrorKind::Model,
        AskError::Sqlite(_) | AskError::NoLibrary(_) => ErrorKind::Library,
        _ => ErrorKind::Internal,
    }
}

fn federation_kind(error: &FedClientError) -> ErrorKind {
    match error {
        // What the person typed: the address or the certificate.
        FedClientError::InvalidUrl(_) | FedClientError::Certificate(_) => ErrorKind::InvalidInput,
        FedClientError::Cancelled => ErrorKind::Cancelled,
        _ => ErrorKind::Federation,
    }
}

fn ml_kind(error: &hearth_ml::MlError) -> ErrorKind {
    match error {
        hearth_ml::MlError::Registry(_) => ErrorKind::ModelMissing,
        hearth_ml::MlError::InvalidRequest(_) => ErrorKind::InvalidInput,
        _ => ErrorKind::Model,
    }
}

/// What an [`AppError`] looks like to the front end: `{kind, message}`.
/// Its own type so the TypeScript declaration is generated with the rest
/// (`AppError` in `ui/src/api/bindings.ts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(rename = "AppError")]
pub struct ErrorBody {
    /// Which kind of failure, for the front end to act on.
    pub kind: ErrorKind,
    /// The sentence for the person.
    pub message: String,
}

impl From<&AppError> for ErrorBody {
    fn from(error: &AppError) -> Self {
        ErrorBody {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

impl Serialize for AppError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ErrorBody::from(self).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_kind_and_message() {
        let error = AppError::Store(StoreError::NoSuchItem(7));
        assert_eq!(
            serde_json::to_value(&error).expect("serializes"),
            serde_json::json!({"kind": "not_found", "message": "no item with id 7"})
        );
        let error = AppError::Personalize(PersonalizeError::NoData("import notes".into()));
        assert_eq!(error.kind(), ErrorKind::NoData);
        assert_eq!(
            AppError::Ml(hearth_ml::MlError::Registry("x".into())).kind(),
            ErrorKind::ModelMissing
        );
        let budget = AppError::Personalize(PersonalizeError::BudgetExhausted {
            round: 3,
            budget: 8.0,
            delta: 1e-5,
        });
        assert_eq!(
            serde_json::to_value(&budget).expect("serializes")["kind"],
            "privacy_budget"
        );
        let unreachable =
            AppError::Personalize(FedClientError::Transport("connection refused".into()).into());
        assert_eq!(unreachable.kind(), ErrorKind::Federation);
        let typo = AppError::Personalize(FedClientError::InvalidUrl("ftp://x".into()).into());
        assert_eq!(typo.kind(), ErrorKind::InvalidInput);
        let query = AppError::Personalize(AskError::Overflow.into());
        assert_eq!(query.kind(), ErrorKind::InvalidInput);
        let untranslated = AppError::Personalize(PersonalizeError::Untranslated {
            question: "why?".into(),
            partial: "count".into(),
        });
        assert_eq!(untranslated.kind(), ErrorKind::Model);
    }
}
