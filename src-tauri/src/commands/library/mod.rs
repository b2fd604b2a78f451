//! The Library screen: import folders, list items, read texts, label.

pub mod commands;
pub mod helpers;
pub mod models;
#[cfg(test)]
mod tests;
