//! Commands about running jobs: list them, cancel one, and `ping`, the
//! trivial command that shows the app still answers while a job runs.

pub mod commands;
