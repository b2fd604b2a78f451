//! The Ask screen: a question in words (translated into a checked query
//! by the text model), or a query written or edited by hand, answered by
//! code from the library with the query, the date ranges it meant and the
//! items it came from; corrections kept as the translator's training
//! pairs; the ask history; training the translator on the corrections.

pub mod commands;
pub mod helpers;
pub mod models;
#[cfg(test)]
mod tests;
