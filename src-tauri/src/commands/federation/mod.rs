//! The Federation screen: opt in (join with a server address, invite and
//! certificate), see what was shared (membership, rounds, privacy budget
//! spent, every upload with its size), set when the device may take part,
//! take part in a round as a job, leave. Every command is a call into
//! `hearth_personalize::federation`, as `hearth fed ...` makes.

pub mod commands;
pub mod helpers;
pub mod models;
#[cfg(test)]
mod tests;
