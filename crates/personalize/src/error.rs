//! One error type for the workflows.

/// What can stop a personalization workflow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalizeError {
    /// The library failed.
    #[error(transparent)]
    Store(#[from] hearth_store::StoreError),
    /// An ask failed: the query does not parse, does not fit the library,
    /// or could not run.
    #[error(transparent)]
    Ask(#[from] hearth_ask::AskError),
    /// The model did not finish a query for a question within its token
    /// budget.
    #[error(
        "the model did not finish a query for {question:?} (it wrote {partial:?}); write the query yourself: hearth ask --query 'QUERY' (the language is in docs/ask.md)"
    )]
    Untranslated {
        /// The question.
        question: String,
        /// What the model wrote before the budget ran out.
        partial: String,
    },
    /// The model's query parsed (the grammar sees to that) but could not
    /// run against the library, e.g. a `between` whose days are backwards.
    #[error("the model translated the question into `{query}`, which cannot run: {source}")]
    TranslatedQueryFailed {
        /// The query the model wrote.
        query: String,
        /// Why it could not run.
        source: hearth_ask::AskError,
    },
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
    /// The person asked a run to stop; it was kept at a checkpoint and can
    /// be resumed.
    #[error(
        "paused run {run_id} at step {steps_done} of {total_steps}; resume it to continue from there"
    )]
    Paused {
        /// The run.
        run_id: i64,
        /// Steps done.
        steps_done: u64,
        /// Steps planned.
        total_steps: u64,
    },
    /// The person asked the work to stop; nothing half-done was kept.
    #[error("cancelled")]
    Cancelled,
    /// A stored record that no longer makes sense (edited by hand?).
    #[error("{0}")]
    Inconsistent(String),
    /// The request cannot be carried out as given (a blank server URL, a
    /// budget that is not a positive number, several memberships and none
    /// named).
    #[error("{0}")]
    Invalid(String),
    /// Federation is off: this device is a member of no (such) federation.
    #[error("{0}")]
    NotMember(String),
    /// Talking to the federation's server failed, or the server refused.
    /// (Boxed: the client's error is large, and every workflow returns
    /// this type.)
    #[error("federation: {0}")]
    Federation(Box<hearth_fed::client::FedClientError>),
    /// The server's transparency log does not show what it must (or the
    /// stored evidence no longer verifies): the server misbehaved, so this
    /// device stops taking part.
    #[error("the server's transparency log does not check out ({0}); not taking part")]
    Audit(String),
    /// Taking part would spend more privacy than the person allowed.
    #[error(
        "taking part in round {round} would spend more than your privacy budget (epsilon {budget} at delta {delta:e}); not taking part"
    )]
    BudgetExhausted {
        /// The round refused.
        round: u64,
        /// The budget.
        budget: f64,
        /// Its delta.
        delta: f64,
    },
    /// The server offered a round number this device has already been
    /// charged for (or an older one): a replay, refused before any work.
    #[error(
        "round {round} is not newer than round {last}, which this device already took part in; refused as a replay"
    )]
    RoundReplayed {
        /// The round offered.
        round: u64,
        /// The newest round this device was charged for.
        last: u64,
    },
    /// This device's base model is not the federation's.
    #[error(
        "the federation trains {model} with sha256 {expected}, but this device's model {local} has sha256 {found}; choose the federation's model file"
    )]
    WrongBaseModel {
        /// The federation's model name.
        model: String,
        /// The sha256 the federation announced.
        expected: String,
        /// The local model asked for.
        local: String,
        /// Its sha256.
        found: String,
    },
    /// A file operation on the library folder.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl From<hearth_fed::client::FedClientError> for PersonalizeError {
    fn from(error: hearth_fed::client::FedClientError) -> Self {
        PersonalizeError::Federation(Box::new(error))
    }
}

/// Result with [`PersonalizeError`].
pub type Result<T, E = PersonalizeError> = std::result::Result<T, E>;
