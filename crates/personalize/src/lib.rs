//! Personalization workflows: the library ([`hearth_store`]) and the models
//! ([`hearth_ml`]) working together. The CLI and the app are two faces over
//! these calls.
//!
//! - [`train_text`] / [`resume_text`]: train a LoRA adapter on the
//!   library's texts (all, or those with a label), record the run with the
//!   items it used, and store the adapter in PEFT layout in the library.
//!   [`discard_run`] gives up a paused or interrupted run.
//! - [`load_model`], [`load_adapter`]: a base model by registry name or
//!   path; a library adapter checked against it.
//! - [`evaluate`]: held-out perplexity, base versus adapter.
//! - [`generate`]: trying a model, base and personalized side by side.
//! - [`export_adapter`], [`import_adapter`]: PEFT folders in and out.
//! - [`photos`]: photo embeddings cached in the library, the personal
//!   tagger, suggestions, questions and look-alikes.
//! - [`eligibility`]: when the device may take part in a federated round.
//! - [`federated`]: a federated round's local training, as a flat update.
//! - [`federation`]: taking part in a federation (join, rounds, privacy
//!   budget, upload history, transparency-log audits), opt-in.
//! - [`lineage`]: what an adapter was trained on, with Merkle proofs.
//! - [`photo_eval`]: few-shot accuracy of the tagger on Fashion-MNIST.
//! - [`ask`]: questions about the library answered by checked, read-only
//!   queries (the `hearth-ask` language), with the person's corrections
//!   kept as training pairs.
#![deny(missing_docs)]

mod adapters;
pub mod ask;
pub mod eligibility;
mod error;
pub mod federated;
pub mod federation;
pub mod generate;
pub mod lineage;
pub mod photo_eval;
pub mod photos;
mod runs;
mod text;

pub use adapters::{export_adapter, import_adapter, load_adapter};
pub use error::{PersonalizeError, Result};
pub use runs::discard_run;
pub use text::{
    EvalReport, RunSummary, TextTraining, TextTrainingRequest, evaluate, load_model, planned_steps,
    resume_text, train_text,
};
