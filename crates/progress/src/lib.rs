//! How Hearth's long work (import, download, training, aggregation) tells
//! its caller how far it got, and how the caller asks it to stop.
//!
//! One small trait keeps the libraries free of any UI: the CLI renders it
//! with indicatif, the app forwards it over a Tauri channel, tests record
//! it. A [`CancelToken`] asks the work to stop at its next safe point.
//!
//! ```
//! use hearth_progress::{CancelToken, Progress};
//!
//! struct Print;
//! impl Progress for Print {
//!     fn metric(&self, name: &str, step: u64, value: f64) {
//!         println!("{step}: {name} = {value}");
//!     }
//! }
//!
//! fn work(progress: &dyn Progress, cancel: &CancelToken) {
//!     progress.begin("Training", Some(3));
//!     for step in 1..=3 {
//!         if cancel.is_cancelled() {
//!             break;
//!         }
//!         progress.metric("loss", step, 1.0 / step as f64);
//!         progress.advance(step);
//!     }
//!     progress.end();
//! }
//! work(&Print, &CancelToken::new());
//! ```
#![deny(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Receives progress from long-running work. Every method may be called
/// from several worker threads at once.
pub trait Progress: Send + Sync {
    /// Work named `task` begins; `total` units are expected when known.
    fn begin(&self, task: &str, total: Option<u64>) {
        let _ = (task, total);
    }
    /// `done` units of the current task are finished (an absolute count).
    fn advance(&self, done: u64) {
        let _ = done;
    }
    /// Something the person may want to read now (a skipped file, say).
    fn note(&self, message: &str) {
        let _ = message;
    }
    /// A measured value at a step of the current task (training loss,
    /// learning rate, tokens/s), for curves and logs.
    fn metric(&self, name: &str, step: u64, value: f64) {
        let _ = (name, step, value);
    }
    /// The current task has ended, completed or not.
    fn end(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Asks long work to stop at its next safe point. Clones share one flag, so
/// the UI keeps one clone and the worker another.
#[derive(Debug, Default, Clone)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation; work already committed stays committed.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_cancellation() {
        let token = CancelToken::new();
        let worker = token.clone();
        assert!(!worker.is_cancelled());
        token.cancel();
        assert!(worker.is_cancelled());
    }
}
