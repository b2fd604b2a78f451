//! Long work off the UI thread, reporting over a typed channel.
//!
//! A job runs on its own thread (never on the main thread, and not on the
//! async runtime's few workers, since training holds a core for minutes).
//! Library progress ([`Progress`]) becomes [`JobEvent`]s; the job ends with
//! exactly one `done` or `failed` event. The front end receives them on a
//! `tauri::ipc::Channel`; tests receive them on anything that implements
//! [`EventSink`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_progress::{CancelToken, Progress};
use serde::Serialize;
use tauri::ipc::{Channel, IpcResponse};

use crate::error::{AppError, Result};
use crate::relay::Relay;
use crate::state::{JobId, JobKind, Jobs};

/// One progress event of a job whose result is `T`. Serialized with an
/// `event` tag: `{"event": "advance", "done": 3}`.
#[derive(Debug, Serialize, ts_rs::TS)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent<T> {
    /// A task begins (`Scanning`, `Importing`, `Training`, ...).
    Begin {
        /// Its name.
        task: String,
        /// Units expected, when known.
        total: Option<u64>,
    },
    /// Units of the current task finished (an absolute count).
    Advance {
        /// Units done.
        done: u64,
    },
    /// A measured value (`loss`, `validation_loss`, `tokens_per_second`).
    Metric {
        /// The metric.
        name: String,
        /// Its step.
        step: u64,
        /// Its value.
        value: f64,
    },
    /// Something to tell the person (a skipped file).
    Note {
        /// The sentence.
        message: String,
    },
    /// The current task ended.
    End,
    /// The job finished; the last event.
    Done {
        /// What it produced.
        result: T,
    },
    /// The job failed; the last event.
    Failed {
        /// Why.
        #[ts(as = "crate::error::ErrorBody")]
        error: AppError,
    },
}

/// Where a job's events go.
pub trait EventSink<E>: Send + Sync + 'static {
    /// Delivers one event. Delivery failures are ignored: a closed window
    /// must not stop the work (training still checkpoints).
    fn send(&self, event: E);
}

impl<E: IpcResponse + Send + Sync + 'static> EventSink<E> for Channel<E> {
    fn send(&self, event: E) {
        let _ = Channel::send(self, event);
    }
}

impl<E: Send + 'static> EventSink<E> for std::sync::mpsc::Sender<E> {
    fn send(&self, event: E) {
        let _ = std::sync::mpsc::Sender::send(self, event);
    }
}

/// A sink that also records each event in the job's [`Relay`], so a page
/// that reloaded can follow the job again (`attach_job`).
pub struct Relayed<S> {
    sink: S,
    relay: Arc<Relay>,
}

impl<T: Serialize, S: EventSink<JobEvent<T>>> EventSink<JobEvent<T>> for Relayed<S> {
    fn send(&self, event: JobEvent<T>) {
        // An event that cannot become JSON fails on the job's own channel
        // too; a later listener then misses it as well.
        match serde_json::to_value(&event) {
            Ok(json) => self.relay.record(json),
            Err(error) => eprintln!("hearth-app: a job event could not be recorded: {error}"),
        }
        self.sink.send(event);
    }
}

/// Advances are sent at most this often (an import reports every file, a
/// tiny model trains hundreds of steps a second); begins, ends, metrics
/// and the final count always go through.
const ADVANCE_EVERY: Duration = Duration::from_millis(50);

/// [`Progress`] that forwards to an [`EventSink`].
pub struct SinkProgress<'a, T, S: EventSink<JobEvent<T>>> {
    sink: &'a S,
    state: Mutex<Throttle>,
    _result: std::marker::PhantomData<fn() -> T>,
}

#[derive(Default)]
struct Throttle {
    total: Option<u64>,
    last_sent: Option<Instant>,
}

impl<'a, T, S: EventSink<JobEvent<T>>> SinkProgress<'a, T, S> {
    /// Progress into `sink`.
    pub fn new(sink: &'a S) -> Self {
        SinkProgress {
            sink,
            state: Mutex::new(Throttle::default()),
            _result: std::marker::PhantomData,
        }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T, S: EventSink<JobEvent<T>>> Progress for SinkProgress<'_, T, S> {
    fn begin(&self, task: &str, total: Option<u64>) {
        *self.throttle() = Throttle {
            total,
            last_sent: None,
        };
        self.sink.send(JobEvent::Begin {
            task: task.to_owned(),
            total,
        });
    }

    fn advance(&self, done: u64) {
        let mut throttle = self.throttle();
        let due = throttle
            .last_sent
            .is_none_or(|sent| sent.elapsed() >= ADVANCE_EVERY);
        if due || throttle.total == Some(done) {
            throttle.last_sent = Some(Instant::now());
            drop(throttle);
            self.sink.send(JobEvent::Advance { done });
        }
    }

    fn note(&self, message: &str) {
        self.sink.send(JobEvent::Note {
            message: message.to_owned(),
        });
    }

    fn metric(&self, name: &str, step: u64, value: f64) {
        self.sink.send(JobEvent::Metric {
            name: name.to_owned(),
            step,
            value,
        });
    }

    fn end(&self) {
        self.sink.send(JobEvent::End);
    }
}

/// Runs `work` on a new thread as job `kind`, streaming its progress into
/// `sink` and ending with `done` or `failed`. Returns the job id at once.
pub fn spawn_progress_job<T, S, F>(jobs: &Jobs, kind: JobKind, sink: S, work: F) -> Result<JobId>
where
    T: Serialize + Send + 'static,
    S: EventSink<JobEvent<T>>,
    F: FnOnce(&dyn Progress, &CancelToken) -> Result<T> + Send + 'static,
{
    spawn_relayed(jobs, kind, move |cancel, relay| {
        let sink = Relayed { sink, relay };
        let progress = SinkProgress::new(&sink);
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&progress, &cancel)));
        sink.send(match outcome {
            Ok(Ok(result)) => JobEvent::Done { result },
            Ok(Err(error)) => JobEvent::Failed { error },
            Err(panic) => JobEvent::Failed {
                error: AppError::Internal(format!(
                    "the {kind:?} job stopped unexpectedly: {}",
                    panic_message(&panic)
                )),
            },
        });
    })
}

/// Runs `work` on a new thread as job `kind`; the work reports by itself
/// (generation streams text, not progress) and so must send its own final
/// event. A panic is caught here only so the job is still unregistered.
pub fn spawn<F>(jobs: &Jobs, kind: JobKind, work: F) -> Result<JobId>
where
    F: FnOnce(CancelToken) + Send + 'static,
{
    spawn_relayed(jobs, kind, move |cancel, _| work(cancel))
}

/// [`spawn`], with the job's [`Relay`] for the work to record into.
fn spawn_relayed<F>(jobs: &Jobs, kind: JobKind, work: F) -> Result<JobId>
where
    F: FnOnce(CancelToken, Arc<Relay>) + Send + 'static,
{
    let (id, cancel, guard) = jobs.register(kind)?;
    let relay = Arc::clone(guard.relay());
    std::thread::Builder::new()
        .name(format!("hearth-job-{id}"))
        .spawn(move || {
            // Unregistered when the thread ends, whatever happens.
            let _guard = guard;
            let _ = catch_unwind(AssertUnwindSafe(|| work(cancel, relay)));
        })
        .map_err(|e| AppError::Internal(format!("cannot start a worker thread: {e}")))?;
    Ok(id)
}

/// Runs short blocking library work (loading a model, a query over the
/// library) on the async runtime's blocking pool, so the async workers
/// and the main thread stay free.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("worker failed: {e}")))?
}

/// The text of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn progress_is_forwarded_throttled_and_ends_with_done() {
        let jobs = Jobs::default();
        let (sender, events) = mpsc::channel::<JobEvent<u32>>();
        spawn_progress_job(&jobs, JobKind::Import, sender, |progress, _| {
            progress.begin("Counting", Some(1000));
            for done in 1..=1000 {
                progress.advance(done);
            }
            progress.metric("loss", 1, 0.5);
            progress.end();
            Ok(7)
        })
        .expect("spawns");
        let events: Vec<_> = events.iter().collect();
        let advances: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Advance { done } => Some(*done),
                _ => None,
            })
            .collect();
        assert!(advances.len() < 100, "throttled: {}", advances.len());
        assert_eq!(advances.last(), Some(&1000), "the final count goes through");
        assert!(matches!(events.last(), Some(JobEvent::Done { result: 7 })));
        assert!(jobs.wait_idle(Duration::from_secs(5)));
    }

    #[test]
    fn a_listener_attached_midway_gets_the_past_events_and_the_result() {
        let jobs = Jobs::default();
        let (sender, events) = mpsc::channel::<JobEvent<u32>>();
        let (go_on, wait) = mpsc::channel::<()>();
        let id = spawn_progress_job(&jobs, JobKind::TrainText, sender, move |progress, _| {
            progress.begin("Training", Some(10));
            progress.advance(3);
            progress.metric("loss", 3, 2.5);
            wait.recv().expect("go on");
            progress.advance(10);
            progress.end();
            Ok(42)
        })
        .expect("spawns");
        // The page that started it reloaded: its channel is gone.
        for _ in 0..3 {
            events.recv().expect("begin, advance, metric");
        }
        drop(events);
        let (attached, replayed) = mpsc::channel::<serde_json::Value>();
        jobs.relay(id)
            .expect("running")
            .attach(Box::new(move |event| {
                let _ = attached.send(event.clone());
            }));
        go_on.send(()).expect("job waits");
        let seen: Vec<serde_json::Value> = replayed.iter().collect();
        let tags: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(
            tags,
            ["begin", "advance", "metric", "advance", "end", "done"]
        );
        assert_eq!(seen[5]["result"], 42);
        assert!(jobs.wait_idle(Duration::from_secs(5)));
        assert!(matches!(jobs.relay(id), Err(AppError::NoSuchJob(_))));
    }

    #[test]
    fn a_panicking_job_fails_and_unregisters() {
        let jobs = Jobs::default();
        let (sender, events) = mpsc::channel::<JobEvent<()>>();
        spawn_progress_job(&jobs, JobKind::Embed, sender, |_, _| -> Result<()> {
            panic!("boom")
        })
        .expect("spawns");
        let last = events.iter().last().expect("an event");
        match last {
            JobEvent::Failed { error } => assert!(error.to_string().contains("boom")),
            other => panic!("expected failed, got {other:?}"),
        }
        assert!(jobs.wait_idle(Duration::from_secs(5)));
    }

    #[test]
    fn events_serialize_with_an_event_tag() {
        let event: JobEvent<()> = JobEvent::Metric {
            name: "loss".into(),
            step: 3,
            value: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            serde_json::json!({"event": "metric", "name": "loss", "step": 3, "value": 1.5})
        );
    }
}
