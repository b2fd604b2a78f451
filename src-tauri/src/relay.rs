//! A running job's events, kept so a web view that reloaded (or a second
//! window) can follow the job again.
//!
//! The channel a job was started with belongs to the page that started it;
//! after a reload nobody listens on it, yet the job (a training of many
//! minutes) goes on. Each job therefore records its events here as JSON,
//! and `attach_job` replays them to a new channel and then forwards the
//! rest. The history is bounded: consecutive `advance` events collapse into
//! the latest (only the count matters), and past [`MAX_HISTORY`] events
//! only the ones that end a task or the job are kept.

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

/// Events kept per job beyond which only `end`, `done` and `failed` are.
pub const MAX_HISTORY: usize = 20_000;

/// Receives a job's events after [`Relay::attach`].
pub type Listener = Box<dyn Fn(&Value) + Send + Sync>;

/// One job's recorded events and the listeners that joined later.
#[derive(Default)]
pub struct Relay {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    history: Vec<Value>,
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Relay")
            .field("history", &state.history.len())
            .field("listeners", &state.listeners.len())
            .finish()
    }
}

fn event_tag(event: &Value) -> Option<&str> {
    event.get("event").and_then(Value::as_str)
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `event` and forwards it to every attached listener.
    pub fn record(&self, event: Value) {
        let mut state = self.lock();
        for listener in &state.listeners {
            listener(&event);
        }
        let tag = event_tag(&event);
        let last_is_advance = state
            .history
            .last()
            .is_some_and(|last| event_tag(last) == Some("advance"));
        if tag == Some("advance") && last_is_advance {
            if let Some(last) = state.history.last_mut() {
                *last = event;
            }
        } else if state.history.len() < MAX_HISTORY
            || matches!(tag, Some("end" | "done" | "failed"))
        {
            state.history.push(event);
        }
    }

    /// Replays what happened so far to `listener`, then forwards every
    /// later event to it (under one lock, so nothing is missed or sent
    /// twice).
    pub fn attach(&self, listener: Listener) {
        let mut state = self.lock();
        for event in &state.history {
            listener(event);
        }
        state.listeners.push(listener);
    }

    /// How many events are kept.
    pub fn len(&self) -> usize {
        self.lock().history.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn collector() -> (Arc<Mutex<Vec<Value>>>, Listener) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        (
            seen,
            Box::new(move |event: &Value| sink.lock().expect("lock").push(event.clone())),
        )
    }

    #[test]
    fn a_late_listener_gets_the_history_then_the_rest() {
        let relay = Relay::default();
        relay.record(json!({"event": "begin", "task": "Training", "total": 10}));
        for done in 1..=5 {
            relay.record(json!({"event": "advance", "done": done}));
        }
        relay.record(json!({"event": "metric", "name": "loss", "step": 5, "value": 2.0}));
        assert_eq!(relay.len(), 3, "advances collapse into the latest");
        let (seen, listener) = collector();
        relay.attach(listener);
        relay.record(json!({"event": "done", "result": 7}));
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                json!({"event": "begin", "task": "Training", "total": 10}),
                json!({"event": "advance", "done": 5}),
                json!({"event": "metric", "name": "loss", "step": 5, "value": 2.0}),
                json!({"event": "done", "result": 7}),
            ]
        );
    }

    #[test]
    fn the_history_is_bounded_but_keeps_how_the_job_ended() {
        let relay = Relay::default();
        for step in 0..(MAX_HISTORY + 100) {
            relay.record(json!({"event": "metric", "name": "loss", "step": step, "value": 1.0}));
        }
        relay.record(json!({"event": "failed", "error": {"kind": "model", "message": "x"}}));
        assert_eq!(relay.len(), MAX_HISTORY + 1);
        let (seen, listener) = collector();
        relay.attach(listener);
        let seen = seen.lock().expect("lock");
        assert_eq!(event_tag(seen.last().expect("events")), Some("failed"));
    }
}
