//! The Personalize screen: text adapters (start, pause, resume, cancel,
//! history) and the photo tagger (embed, train, optional fine-tuning).

pub mod commands;
pub mod helpers;
pub mod models;
#[cfg(test)]
mod tests;
