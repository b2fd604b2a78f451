//! The app on Tauri's mock runtime, for command tests: commands are
//! invoked through the real IPC layer (argument parsing, state, errors)
//! from the origin a Linux webview has (`tauri://localhost`), and channel
//! messages are captured by a channel interceptor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{
    INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets,
};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};

use crate::state::LibraryLocation;

/// A real federation server and peer device on 127.0.0.1 (shared with the
/// e2e test's helper, `examples/federation_peer`).
#[path = "../examples/federation_peer/peer.rs"]
pub mod peer;

type Messages = Arc<Mutex<HashMap<u32, Vec<Value>>>>;

/// A mock app over a library in a temporary folder.
pub struct TestApp {
    /// The app (kept alive for the webview).
    app: App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
    messages: Messages,
    next_channel: Mutex<u32>,
    /// The temporary folder (library in `library/`).
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// A fresh app and library.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let messages: Messages = Arc::default();
        let captured = messages.clone();
        let builder = mock_builder().channel_interceptor(move |_, callback, _, body| {
            let value = match body {
                InvokeResponseBody::Json(json) => serde_json::from_str(json).expect("channel JSON"),
                InvokeResponseBody::Raw(bytes) => Value::from(bytes.clone()),
            };
            captured
                .lock()
                .expect("messages")
                .entry(callback.0)
                .or_default()
                .push(value);
            true
        });
        let app = crate::run_app(
            builder,
            Some(LibraryLocation::new(dir.path().join("library"))),
        )
        .build(mock_context(noop_assets()))
        .expect("mock app builds");
        let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("mock window");
        TestApp {
            app,
            webview,
            messages,
            next_channel: Mutex::new(100),
            dir,
        }
    }

    /// The app's job registry (what closing the window reaches).
    pub fn jobs(&self) -> crate::state::Jobs {
        self.app.state::<crate::state::Jobs>().inner().clone()
    }

    /// A piece of the app's managed state (the shared handle to it).
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> T {
        self.app.state::<T>().inner().clone()
    }

    /// The library folder.
    pub fn library(&self) -> PathBuf {
        self.dir.path().join("library")
    }

    /// Invokes `cmd` with JSON `args`; the command's JSON answer or error.
    pub fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        get_ipc_response(
            &self.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("url"),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<Value>().expect("JSON answer"))
    }

    /// Invokes `cmd`, which must succeed.
    pub fn ok(&self, cmd: &str, args: Value) -> Value {
        self.invoke(cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    /// A new channel: its argument value and its id.
    pub fn channel(&self) -> (String, u32) {
        let mut next = self.next_channel.lock().expect("counter");
        *next += 1;
        (format!("__CHANNEL__:{next}"), *next)
    }

    /// The messages channel `id` has received so far.
    pub fn messages(&self, id: u32) -> Vec<Value> {
        self.messages
            .lock()
            .expect("messages")
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `done(messages)` holds for channel `id` (at most
    /// `timeout`); returns the messages.
    pub fn wait_for(
        &self,
        id: u32,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages(id);
            if done(&messages) {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "channel {id} did not finish in {timeout:?}: {messages:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a job channel's last event (`done` or `failed`) and
    /// returns every event.
    pub fn finish(&self, id: u32, timeout: Duration) -> Vec<Value> {
        self.wait_for(id, timeout, |messages| {
            messages
                .last()
                .is_some_and(|m| matches!(m["event"].as_str(), Some("done" | "failed")))
        })
    }
}

/// A copy of the shared photos in `dir/photos` (skips, or fails under CI,
/// when the shared data is absent).
pub fn shared_photos(dir: &Path) -> Option<PathBuf> {
    let source = hearth_testdata::shared("photos")?;
    let target = dir.join("photos");
    std::fs::create_dir_all(&target).expect("mkdir");
    for entry in std::fs::read_dir(&source).expect("read photos") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy");
    }
    Some(target)
}
