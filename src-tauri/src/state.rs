//! The app's state, explicit pieces managed separately (no god object):
//!
//! - [`LibraryLocation`]: which library folder the app works on. It never
//!   changes while the app runs, so it needs no lock; each command opens
//!   its own connection (SQLite in WAL mode lets a command read while a
//!   job writes), which keeps long jobs from blocking short commands.
//! - [`DeviceConditions`]: where power and idleness are read, per
//!   platform.
//! - [`Jobs`]: the long work that is running (import, embedding, training,
//!   generation), each with the [`CancelToken`] that stops it, so
//!   `cancel_job` and closing the window can reach it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hearth_personalize::eligibility::{self, DeviceState};
use hearth_progress::CancelToken;
use hearth_store::Library;
use serde::Serialize;

use crate::error::{AppError, Result};
use crate::relay::Relay;

/// The environment variable that puts the library elsewhere (as for the
/// `hearth` command); the e2e tests point it at a temporary folder.
pub const LIBRARY_ENV: &str = "HEARTH_LIBRARY";

/// Where the library lives.
#[derive(Debug, Clone)]
pub struct LibraryLocation(PathBuf);

impl LibraryLocation {
    /// A library at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LibraryLocation(path.into())
    }

    /// `$HEARTH_LIBRARY`, when it is set.
    pub fn from_variable() -> Option<Self> {
        std::env::var_os(LIBRARY_ENV)
            .filter(|p| !p.is_empty())
            .map(|path| LibraryLocation(PathBuf::from(path)))
    }

    /// `$HEARTH_LIBRARY`, else the platform data folder (as the CLI does).
    pub fn from_environment() -> Result<Self> {
        if let Some(location) = Self::from_variable() {
            return Ok(location);
        }
        Library::default_location()
            .map(LibraryLocation)
            .ok_or_else(|| {
                AppError::Internal(format!(
                    "this platform has no data folder; set {LIBRARY_ENV} to choose one"
                ))
            })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Opens (creating if needed) the library.
    pub fn open(&self) -> Result<Library> {
        Ok(Library::open(&self.0)?)
    }
}

/// Where the device's power and idle state come from (the federation's
/// eligibility): the platform's reader on desktops
/// ([`eligibility::platform_device_state`]), the app's battery plugin on
/// Android ([`crate::device_state`]).
#[derive(Clone)]
pub struct DeviceConditions(Arc<dyn DeviceState>);

impl DeviceConditions {
    /// Conditions from `source`.
    pub fn new(source: Arc<dyn DeviceState>) -> Self {
        DeviceConditions(source)
    }

    /// This platform's reader.
    pub fn platform() -> Self {
        DeviceConditions(Arc::from(eligibility::platform_device_state()))
    }

    /// The source.
    pub fn source(&self) -> &dyn DeviceState {
        &*self.0
    }
}

/// A job's id, unique for the life of the app.
pub type JobId = u64;

/// What a job does; at most one job of each kind runs at a time (two
/// trainings would halve each other's speed, two imports would race for
/// the library's import lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Importing folders.
    Import,
    /// Embedding photos.
    Embed,
    /// Training (or resuming) a text adapter.
    TrainText,
    /// Training the photo tagger.
    TrainPhotos,
    /// Training the Ask translator on the person's corrections.
    TrainAsk,
    /// Generating text.
    Generate,
    /// Taking part in federated rounds.
    Federate,
    /// Installing a model from the person's copy.
    InstallModel,
}

/// A running job, as `running_jobs` reports it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct JobInfo {
    /// Its id.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// Whether cancellation was asked for.
    pub cancelling: bool,
}

#[derive(Debug)]
struct Running {
    kind: JobKind,
    cancel: CancelToken,
    relay: Arc<Relay>,
}

#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    running: Mutex<HashMap<JobId, Running>>,
    /// Signalled whenever a job ends.
    ended: Condvar,
}

/// The running jobs. Clones share one registry.
#[derive(Debug, Clone, Default)]
pub struct Jobs(Arc<Registry>);

/// Removes its job from the registry when dropped, however the job ends
/// (returned, failed or panicked).
#[derive(Debug)]
pub struct JobGuard {
    jobs: Jobs,
    id: JobId,
    relay: Arc<Relay>,
}

impl JobGuard {
    /// Where the job records its events for later listeners.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
        self.jobs.0.ended.notify_all();
    }
}

impl Jobs {
    /// The registry, even after a panic elsewhere held its lock (the map is
    /// never left half-changed: every change is one insert or remove).
    fn lock(&self) -> MutexGuard<'_, HashMap<JobId, Running>> {
        self.0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a job of `kind`, unless one of that kind is running.
    /// Returns its id, the token that cancels it, and the guard that
    /// unregisters it.
    pub fn register(&self, kind: JobKind) -> Result<(JobId, CancelToken, JobGuard)> {
        let mut running = self.lock();
        if running.values().any(|job| job.kind == kind) {
            return Err(AppError::Busy(format!(
                "a {} job is already running; wait for it or cancel it",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
                    .replace('_', " ")
            )));
        }
        let id = self.0.next.fetch_add(1, Ordering::Relaxed) + 1;
        let cancel = CancelToken::new();
        let relay = Arc::new(Relay::default());
        running.insert(
            id,
            Running {
                kind,
                cancel: cancel.clone(),
                relay: Arc::clone(&relay),
            },
        );
        Ok((
            id,
            cancel,
            JobGuard {
                jobs: self.clone(),
                id,
                relay,
            },
        ))
    }

    /// Asks job `id` to stop at its next safe point (training checkpoints
    /// and pauses). Fails if no such job is running.
    pub fn cancel(&self, id: JobId) -> Result<()> {
        let running = self.lock();
        let job = running.get(&id).ok_or(AppError::NoSuchJob(id))?;
        job.cancel.cancel();
        Ok(())
    }

    /// Job `id`'s recorded events, to follow it from another channel.
    /// Fails if no such job is running.
    pub fn relay(&self, id: JobId) -> Result<Arc<Relay>> {
        let running = self.lock();
        let job = running.get(&id).ok_or(AppError::NoSuchJob(id))?;
        Ok(Arc::clone(&job.relay))
    }

    /// Asks every running job to stop; returns how many there were.
    pub fn cancel_all(&self) -> usize {
        let running = self.lock();
        for job in running.values() {
            job.cancel.cancel();
        }
        running.len()
    }

    /// The running jobs, by id.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut jobs: Vec<JobInfo> = self
            .lock()
            .iter()
            .map(|(id, job)| JobInfo {
                id: *id,
                kind: job.kind,
                cancelling: job.cancel.is_cancelled(),
            })
            .collect();
        jobs.sort_by_key(|job| job.id);
        jobs
    }

    /// Whether a job of `kind` is running.
    pub fn is_running(&self, kind: JobKind) -> bool {
        self.lock().values().any(|job| job.kind == kind)
    }

    /// Waits until no job runs, at most `timeout`; returns whether none
    /// does.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut running = self.lock();
        while !running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            running = self
                .0
                .ended
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_per_kind_cancel_and_wait() {
        let jobs = Jobs::default();
        let (id, token, guard) = jobs.register(JobKind::Import).expect("first");
        assert!(matches!(
            jobs.register(JobKind::Import),
            Err(AppError::Busy(_))
        ));
        let (_, _, other) = jobs.register(JobKind::Generate).expect("another kind");
        assert_eq!(jobs.list().len(), 2);
        jobs.cancel(id).expect("cancel");
        assert!(token.is_cancelled());
        assert!(matches!(jobs.cancel(999), Err(AppError::NoSuchJob(999))));
        drop(other);
        let waiter = std::thread::spawn({
            let jobs = jobs.clone();
            move || jobs.wait_idle(Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(guard);
        assert!(waiter.join().expect("joins"));
        assert!(jobs.list().is_empty());
        assert!(!jobs.is_running(JobKind::Import));
    }
}
