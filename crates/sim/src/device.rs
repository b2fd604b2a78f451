//! A simulated device: its own identity, client and library, taking part
//! in every round as `hearth fed run` does, except that it drops out
//! (after sharing its keys) in the rounds the plan says.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hearth_fed::DeviceIdentity;
use hearth_fed::client::{
    Checkin, ClientOptions, FedClient, GlobalAdapter, Membership, RoundCharge, RoundTrainer,
    TrainerError,
};
use hearth_personalize::federated::{RoundTraining, train_from_global};
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::Library;

use crate::SimError;

/// What a device thread reports for one simulated round.
pub(crate) enum Outcome {
    Contributed {
        server_round: u64,
        bytes_sent: u64,
        rho: f64,
        delta: f64,
        global_version: u64,
        train_secs: f64,
        total_secs: f64,
        uploaded_at: Instant,
        published_at: Instant,
        audit: Result<(), String>,
    },
    Dropped,
    Failed(String),
}

/// A simulated device: everything its thread needs.
pub(crate) struct SimDevice {
    pub index: usize,
    pub membership: Membership,
    pub secret: [u8; 32],
    pub options: ClientOptions,
    pub library: PathBuf,
    /// Whether it drops in each simulated round.
    pub drops: Vec<bool>,
    pub request: RoundTraining,
    pub cancel: CancelToken,
}

impl SimDevice {
    /// Takes part in every round, sending each round's outcome (tagged
    /// with the simulated round and this device's index) to `tx`.
    pub(crate) fn run(self, tx: &mpsc::Sender<(u32, usize, Outcome)>) {
        let send = |r: u32, outcome| {
            let _ = tx.send((r, self.index, outcome));
        };
        let setup = Library::open(&self.library)
            .map_err(SimError::from)
            .and_then(|library| {
                let client = FedClient::with_options(
                    self.membership.clone(),
                    DeviceIdentity::from_secret_bytes(&self.secret),
                    self.options.clone(),
                )?;
                let audit = client.log_audit()?;
                Ok((library, client, audit))
            });
        let (library, client, mut audit) = match setup {
            Ok(ready) => ready,
            Err(e) => {
                for r in 0..self.drops.len() as u32 {
                    send(r, Outcome::Failed(format!("device {}: {e}", self.index)));
                }
                return;
            }
        };
        let library = RefCell::new(library);
        let mut last_round = 0;
        for (r, &drop_out) in self.drops.iter().enumerate() {
            let r = r as u32;
            if self.cancel.is_cancelled() {
                return;
            }
            let round = match join(&client, last_round, &self.cancel) {
                Ok(round) => round,
                Err(e) => {
                    send(r, Outcome::Failed(format!("device {}: {e}", self.index)));
                    continue;
                }
            };
            last_round = round;
            let mut request = self.request.clone();
            request.config.seed = request.config.seed.wrapping_add(u64::from(r) << 16);
            let trainer = SimTrainer {
                library: &library,
                request,
                drop_out,
                cancel: &self.cancel,
                train_secs: Cell::new(0.0),
                uploaded_at: Cell::new(None),
                charged_rho: Cell::new(None),
            };
            let started = Instant::now();
            let result = client.participate(round, &trainer, &NoProgress, &self.cancel);
            let published_at = Instant::now();
            let outcome = match result {
                Ok(report) => Outcome::Contributed {
                    server_round: round,
                    bytes_sent: report.bytes_sent,
                    rho: trainer.charged_rho.get().unwrap_or(report.rho),
                    delta: report.delta,
                    global_version: report.global_version_after,
                    train_secs: trainer.train_secs.get(),
                    total_secs: (published_at - started).as_secs_f64(),
                    uploaded_at: trainer.uploaded_at.get().unwrap_or(published_at),
                    published_at,
                    audit: client
                        .audit_round(&mut audit, &report)
                        .map(|_| ())
                        .map_err(|e| format!("device {}: {e}", self.index)),
                },
                Err(_) if drop_out => Outcome::Dropped,
                Err(e) => Outcome::Failed(format!("device {} round {round}: {e}", self.index)),
            };
            send(r, outcome);
        }
    }
}

/// Checks in until asked to join a round after `after` (bounded): a device
/// that dropped is still in its old round's cohort until that round ends.
fn join(client: &FedClient, after: u64, cancel: &CancelToken) -> Result<u64, SimError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let wait = match client.checkin(true)? {
            Checkin::Join { round, .. } if round > after => return Ok(round),
            Checkin::Join { .. } => Duration::from_millis(200),
            Checkin::ComeBackIn { seconds } => {
                Duration::from_secs(u64::from(seconds)).min(Duration::from_millis(500))
            }
        };
        if cancel.is_cancelled() {
            return Err(SimError::Cancelled);
        }
        if Instant::now() + wait > deadline {
            return Err(SimError::Data(
                "never asked to join a round within 300 s".into(),
            ));
        }
        std::thread::sleep(wait);
    }
}

/// The device's local training, as `hearth fed run` does it, plus the
/// simulated dropout and timings.
struct SimTrainer<'a> {
    library: &'a RefCell<Library>,
    request: RoundTraining,
    drop_out: bool,
    cancel: &'a CancelToken,
    train_secs: Cell<f64>,
    uploaded_at: Cell<Option<Instant>>,
    /// The privacy charge booked for the round (the larger, if raised).
    charged_rho: Cell<Option<f64>>,
}

#[derive(Debug)]
struct DroppedOut;

impl std::fmt::Display for DroppedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this simulated device dropped out after sharing its keys")
    }
}

impl std::error::Error for DroppedOut {}

impl RoundTrainer for SimTrainer<'_> {
    fn charge(&self, charge: &RoundCharge) -> Result<(), TrainerError> {
        // A simulated device keeps its books in memory, for the round's row.
        let booked = self
            .charged_rho
            .get()
            .map_or(charge.rho, |r| r.max(charge.rho));
        self.charged_rho.set(Some(booked));
        Ok(())
    }

    fn delta(&self, global: &GlobalAdapter) -> Result<Vec<f32>, TrainerError> {
        // Called once keys are shared: failing here is exactly a dropout
        // before the upload, which the survivors' shares must repair.
        if self.drop_out {
            return Err(Box::new(DroppedOut));
        }
        let started = Instant::now();
        let update = train_from_global(
            &mut self.library.borrow_mut(),
            &self.request,
            global,
            &NoProgress,
            self.cancel,
        )?;
        self.train_secs.set(started.elapsed().as_secs_f64());
        self.uploaded_at.set(Some(Instant::now()));
        Ok(update.delta)
    }
}
