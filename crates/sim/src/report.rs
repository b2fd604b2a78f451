//! What a simulation reports: one row per round (contributors, dropouts,
//! the global adapter's held-out loss, bytes, times, privacy spent, audit
//! results) and the whole run's summary.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::device::Outcome;

/// One simulated round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    /// 1-based simulated round.
    pub round: u32,
    /// The server's round number.
    pub server_round: Option<u64>,
    /// Devices whose upload was aggregated.
    pub contributors: usize,
    /// Devices that dropped as planned.
    pub dropped: usize,
    /// Devices that failed for any other reason.
    pub failed: usize,
    /// The global adapter version the round published.
    pub global_version: Option<u64>,
    /// Held-out loss of the base model with the published global adapter.
    pub validation_loss: Option<f32>,
    /// Mean bytes a contributor sent.
    pub bytes_sent_mean: Option<f64>,
    /// Mean seconds a contributor spent training.
    pub client_train_secs_mean: Option<f64>,
    /// Mean seconds a contributor spent in the round.
    pub client_secs_mean: Option<f64>,
    /// From the last upload to the last device seeing the publication.
    pub server_secs: Option<f64>,
    /// The whole round, as the simulation waited for it.
    pub round_secs: f64,
    /// Epsilon (at the federation's delta) this round cost each device.
    pub epsilon_round: Option<f64>,
    /// Epsilon spent so far.
    pub epsilon_total: Option<f64>,
    /// Contributors whose transparency-log audit passed.
    pub audits_ok: usize,
    /// What failed audits said.
    pub audit_failures: Vec<String>,
    /// Anything else that went wrong.
    pub errors: Vec<String>,
}

/// A whole simulation.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Simulated devices.
    pub clients: u32,
    /// Simulated rounds.
    pub rounds: u32,
    /// The planned dropout fraction.
    pub dropout: f64,
    /// Devices dropped each round.
    pub dropped_per_round: u32,
    /// The fewest uploads a round unmasks.
    pub min_clients: u32,
    /// SecAgg+ neighbours per device.
    pub neighbours: u32,
    /// The base model.
    pub model: String,
    /// Parameters of the federated adapter.
    pub adapter_parameters: usize,
    /// The speaking role each device trained on.
    pub roles: Vec<String>,
    /// Held-out loss of the base model alone.
    pub base_validation_loss: f32,
    /// One row per round.
    pub rows: Vec<RoundRow>,
    /// Every round aggregated enough uploads, scored finitely, and every
    /// contributor's audit passed.
    pub ok: bool,
}

impl RoundRow {
    /// Whether the round aggregated at least `min_clients` uploads, every
    /// audit passed, nothing failed and the global adapter scored.
    pub fn succeeded(&self, min_clients: u32) -> bool {
        self.contributors >= min_clients as usize
            && self.audit_failures.is_empty()
            && self.errors.is_empty()
            && self.validation_loss.is_some_and(f32::is_finite)
    }
}

/// Adds up what the devices reported for round `round`.
pub(crate) fn summarize(round: u32, outcomes: &[Outcome], elapsed: Duration) -> RoundRow {
    let mut row = RoundRow {
        round,
        server_round: None,
        contributors: 0,
        dropped: 0,
        failed: 0,
        global_version: None,
        validation_loss: None,
        bytes_sent_mean: None,
        client_train_secs_mean: None,
        client_secs_mean: None,
        server_secs: None,
        round_secs: elapsed.as_secs_f64(),
        epsilon_round: None,
        epsilon_total: None,
        audits_ok: 0,
        audit_failures: Vec::new(),
        errors: Vec::new(),
    };
    let (mut bytes, mut train, mut total) = (0u64, 0.0, 0.0);
    let (mut last_upload, mut last_publish) = (None::<Instant>, None::<Instant>);
    for outcome in outcomes {
        match outcome {
            Outcome::Contributed {
                server_round,
                bytes_sent,
                global_version,
                train_secs,
                total_secs,
                uploaded_at,
                published_at,
                audit,
                ..
            } => {
                row.contributors += 1;
                row.server_round = Some(*server_round);
                row.global_version = row.global_version.max(Some(*global_version));
                bytes += bytes_sent;
                train += train_secs;
                total += total_secs;
                last_upload = last_upload.max(Some(*uploaded_at));
                last_publish = last_publish.max(Some(*published_at));
                match audit {
                    Ok(()) => row.audits_ok += 1,
                    Err(e) => row.audit_failures.push(e.clone()),
                }
            }
            Outcome::Dropped => row.dropped += 1,
            Outcome::Failed(e) => {
                row.failed += 1;
                row.errors.push(e.clone());
            }
        }
    }
    if row.contributors > 0 {
        let c = row.contributors as f64;
        row.bytes_sent_mean = Some(bytes as f64 / c);
        row.client_train_secs_mean = Some(train / c);
        row.client_secs_mean = Some(total / c);
    }
    // From the last upload leaving a device to the last device seeing the
    // published version: unmasking, aggregation, publication (and polling).
    if let (Some(upload), Some(publish)) = (last_upload, last_publish) {
        row.server_secs = Some(publish.saturating_duration_since(upload).as_secs_f64());
    }
    row
}

/// The round's line in `hearth sim`'s output, with any failures below it.
impl fmt::Display for RoundRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
        write!(
            f,
            "round {}: {} contributors ({} dropped, {} failed), validation loss {}, \
             {} kB sent per client, client {} s (train {} s), server {} s, round {:.1} s, \
             epsilon {} this round / {} total, audits {}/{}",
            self.round,
            self.contributors,
            self.dropped,
            self.failed,
            self.validation_loss
                .map_or("-".to_owned(), |l| format!("{l:.4}")),
            num(self.bytes_sent_mean.map(|b| b / 1000.0), 1),
            num(self.client_secs_mean, 2),
            num(self.client_train_secs_mean, 2),
            num(self.server_secs, 2),
            self.round_secs,
            num(self.epsilon_round, 3),
            num(self.epsilon_total, 3),
            self.audits_ok,
            self.contributors,
        )?;
        for failure in &self.audit_failures {
            write!(f, "\n  AUDIT FAILED: {failure}")?;
        }
        for error in &self.errors {
            write!(f, "\n  error: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contributed(bytes_sent: u64, audit: Result<(), String>) -> Outcome {
        let now = Instant::now();
        Outcome::Contributed {
            server_round: 7,
            bytes_sent,
            rho: 0.1,
            delta: 1e-5,
            global_version: 3,
            train_secs: 1.0,
            total_secs: 2.0,
            uploaded_at: now,
            published_at: now + Duration::from_millis(500),
            audit,
        }
    }

    #[test]
    fn a_round_adds_up_its_devices_and_fails_on_any_audit_failure() {
        let outcomes = [
            contributed(1000, Ok(())),
            contributed(3000, Err("device 1: not in the log".into())),
            Outcome::Dropped,
        ];
        let mut row = summarize(1, &outcomes, Duration::from_secs(4));
        assert_eq!((row.contributors, row.dropped, row.failed), (2, 1, 0));
        assert_eq!(row.bytes_sent_mean, Some(2000.0));
        assert_eq!(row.global_version, Some(3));
        assert_eq!(row.server_secs, Some(0.5));
        assert_eq!(row.audits_ok, 1);
        row.validation_loss = Some(2.5);
        assert!(!row.succeeded(2), "an audit failed");
        row.audit_failures.clear();
        assert!(row.succeeded(2));
        assert!(!row.succeeded(3), "too few contributors");
        let line = row.to_string();
        assert!(
            line.starts_with("round 1: 2 contributors (1 dropped, 0 failed)"),
            "{line}"
        );
        assert!(line.contains("2.0 kB sent"), "{line}");
    }
}
