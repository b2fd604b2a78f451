//! The Try screen: base and personalized completions side by side
//! (streamed), suggested photo tags with accept/reject, similar photos.

pub mod commands;
pub mod helpers;
pub mod models;
#[cfg(test)]
mod tests;
