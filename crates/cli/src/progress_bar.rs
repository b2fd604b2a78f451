//! Renders library progress with indicatif on standard error (hidden when
//! standard error is not a terminal).

use std::time::Duration;

use hearth_store::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that follows [`Progress`] events.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar on standard error, or an invisible one when `hidden`.
    pub fn new(hidden: bool) -> Self {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bar {
            bar: ProgressBar::with_draw_target(None, target),
        }
    }
}

impl Progress for Bar {
    fn begin(&self, task: &str, total: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(total.unwrap_or(0));
        let template = match total {
            Some(_) => "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
            None => "{msg:>10} {spinner} {pos} files found",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_message(task.to_owned());
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn advance(&self, done: u64) {
        self.bar.set_position(done);
    }

    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("  {message}"));
    }

    fn metric(&self, name: &str, step: u64, value: f64) {
        match name {
            "loss" => self.bar.set_message(format!("loss {value:.3}")),
            "validation_loss" => self.bar.suspend(|| {
                eprintln!(
                    "  step {step}: held-out loss {value:.4} (perplexity {:.2})",
                    value.exp()
                )
            }),
            _ => {}
        }
    }

    fn end(&self) {
        self.bar.disable_steady_tick();
        self.bar.finish_and_clear();
    }
}
