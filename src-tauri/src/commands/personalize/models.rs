//! Response shapes of the personalization commands (the requests are the
//! library's: [`hearth_personalize::TextTrainingRequest`] and
//! [`hearth_personalize::photos::PhotoTrainingRequest`]).

use hearth_personalize::TextTrainingRequest;
use hearth_personalize::federation::{FederatedRoundRequest, JoinFederationRequest};
use hearth_personalize::generate::GenerateRequest;
use serde::Serialize;

/// A base model the person can choose.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ModelChoice {
    /// Registry name.
    pub name: String,
    /// `text` or `vision`.
    pub kind: String,
    /// One line about it.
    pub description: String,
    /// The default of its kind.
    pub default: bool,
    /// Whether its files are on this machine.
    pub present: bool,
    /// Whether it can be installed from a copy the person has
    /// (`install_model`): the registry pins its files.
    pub installable: bool,
    /// Whether that copy is a folder of several files (else one file).
    pub folder: bool,
}

/// What each form starts with: the library's defaults, so the front end
/// declares none of its own.
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
pub struct RequestDefaults {
    /// Training a text adapter (`hearth train text`'s).
    pub text_training: TextTrainingRequest,
    /// Joining a federation (`hearth fed join`'s budget and policy).
    pub join_federation: JoinFederationRequest,
    /// Taking part in a federated round (`hearth fed run`'s, one round).
    pub federated_round: FederatedRoundRequest,
    /// Generating text (`hearth generate`'s: sampled, seeded).
    pub generate: GenerateRequest,
}

/// A run as the Personalize screen lists it: the library's record, and
/// what its JSON configuration says that the screen needs, read in Rust.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct RunView {
    /// The recorded run.
    #[serde(flatten)]
    pub run: hearth_store::Run,
    /// Steps it was asked for (text and Ask translator runs).
    pub total_steps: Option<u64>,
}

impl From<hearth_store::Run> for RunView {
    fn from(run: hearth_store::Run) -> Self {
        RunView {
            total_steps: hearth_personalize::planned_steps(&run),
            run,
        }
    }
}
