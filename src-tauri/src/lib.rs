//! Hearth's desktop (and, later, mobile) app: thin Tauri commands over the
//! same library calls the `hearth` command makes, never a second
//! implementation.
//!
//! - [`run`] is the entry point (the binary's `main`, and the mobile entry
//!   point); [`run_app`] configures any [`tauri::Builder`], so tests pass
//!   `tauri::test::mock_builder()` and drive the commands through the real
//!   IPC layer on the mock runtime.
//! - [`commands`]: one folder per screen (library, personalize, try, ask,
//!   federation, audit) plus job control.
//! - [`state`]: the library's location, where power and idleness are
//!   read (on Android through `device_state`, the app's battery plugin),
//!   and the registry of running jobs, separately managed pieces; the Ask screen's translator
//!   ([`commands::ask::models::AskTranslator`]) is a third, loaded on the
//!   first question.
//! - [`jobs`]: long work on its own thread, progress over a typed
//!   `tauri::ipc::Channel`, cancellation by job id.
//! - [`thumbnails`]: the `hearth-thumb` URI scheme that serves the photo
//!   grid's thumbnails from the library's thumbnail folder only.
//! - [`error`]: one error type, sent as `{kind, message}`.
//!
//! Closing the window while a job runs cancels every job and waits for it:
//! a text training or photo fine-tuning checkpoints and is recorded as
//! paused, so it resumes where it stopped; a federated round is left (the protocol tolerates a
//! device dropping out) and nothing half-done is recorded.

pub mod bindings;
pub mod commands;
#[cfg(target_os = "android")]
pub mod device_state;
pub mod error;
pub mod jobs;
pub mod relay;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod thumbnails;

use std::time::Duration;

use tauri::{Manager, Runtime, Window, WindowEvent};

pub use error::{AppError, ErrorKind};
pub use state::{DeviceConditions, Jobs, LibraryLocation};

/// How long closing the window waits for running jobs to reach a safe
/// point (a training step on the default model takes seconds).
const CLOSE_WAIT: Duration = Duration::from_secs(120);

/// Starts the app with the library from `$HEARTH_LIBRARY`, else on a
/// desktop the platform data folder (the one the `hearth` command uses, so
/// both open one library), else on a phone the app's own data folder as
/// Tauri resolves it: `dirs`' data folder on Android is `$HOME/.local/share`,
/// outside the app's sandbox.
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let location = if cfg!(mobile) {
        LibraryLocation::from_variable()
    } else {
        match LibraryLocation::from_environment() {
            Ok(location) => Some(location),
            Err(error) => {
                eprintln!("hearth-app: {error}");
                std::process::exit(1);
            }
        }
    };
    if let Err(error) = run_app(tauri::Builder::default(), location).run(tauri::generate_context!())
    {
        eprintln!("hearth-app: {error}");
        std::process::exit(1);
    }
}

/// Configures `builder` with Hearth's plugins, state, thumbnail scheme,
/// close behaviour and commands. Without a `location` the library is
/// `library/` in the app's data folder (Tauri's path resolver).
pub fn run_app<R: Runtime>(
    builder: tauri::Builder<R>,
    location: Option<LibraryLocation>,
) -> tauri::Builder<R> {
    // Known now, it is managed now (commands may run before `setup`, as in
    // the tests' mock runtime); otherwise `setup` resolves it.
    let resolve_in_setup = location.is_none();
    let builder = match location {
        Some(location) => builder.manage(location),
        None => builder,
    };
    // Power and idleness: the platform's reader, or on Android the app's
    // battery plugin (which manages its own).
    #[cfg(not(target_os = "android"))]
    let builder = builder.manage(DeviceConditions::platform());
    #[cfg(target_os = "android")]
    let builder = builder.plugin(device_state::init());
    builder
        .plugin(tauri_plugin_dialog::init())
        .manage(Jobs::default())
        .manage(commands::ask::models::AskTranslator::default())
        .register_asynchronous_uri_scheme_protocol(
            thumbnails::SCHEME,
            move |context, request, responder| {
                let library = context
                    .app_handle()
                    .state::<LibraryLocation>()
                    .path()
                    .to_path_buf();
                let path = request.uri().path().to_owned();
                // File reads stay off the main thread.
                tauri::async_runtime::spawn_blocking(move || {
                    responder.respond(thumbnails::respond(&library, &path));
                });
            },
        )
        .setup(move |app| {
            if resolve_in_setup {
                let folder = app.path().app_data_dir()?.join("library");
                app.manage(LibraryLocation::new(folder));
            }
            // On phones models live in the app's sandbox too (installed
            // there from a copy the person picks: `install_model`).
            if cfg!(mobile) {
                let models = app.path().app_local_data_dir()?.join("models");
                hearth_ml::registry::set_models_dir(models);
            }
            lean_webview(app);
            Ok(())
        })
        .on_window_event(pause_jobs_on_close)
        .invoke_handler(tauri::generate_handler![
            commands::jobs::commands::cancel_job,
            commands::jobs::commands::running_jobs,
            commands::jobs::commands::attach_job,
            commands::jobs::commands::ping,
            commands::jobs::commands::app_platform,
            commands::library::commands::library_info,
            commands::library::commands::list_items,
            commands::library::commands::get_item,
            commands::library::commands::item_text,
            commands::library::commands::list_labels,
            commands::library::commands::add_label,
            commands::library::commands::remove_label,
            commands::library::commands::remove_item,
            commands::library::commands::import_folders,
            commands::personalize::commands::list_models,
            commands::personalize::commands::request_defaults,
            commands::personalize::commands::list_runs,
            commands::personalize::commands::list_adapters,
            commands::personalize::commands::start_text_training,
            commands::personalize::commands::resume_text_training,
            commands::personalize::commands::discard_run,
            commands::personalize::commands::install_model,
            commands::personalize::commands::embed_photos,
            commands::personalize::commands::train_photo_tagger,
            commands::personalize::commands::resume_photo_tagger,
            commands::try_it::commands::generate_text,
            commands::try_it::commands::suggest_tags,
            commands::try_it::commands::similar_photos,
            commands::try_it::commands::accept_tag,
            commands::try_it::commands::reject_tag,
            commands::ask::commands::ask_question,
            commands::ask::commands::ask_query,
            commands::ask::commands::correct_ask,
            commands::ask::commands::ask_history,
            commands::ask::commands::train_ask,
            commands::federation::commands::federation_status,
            commands::federation::commands::join_federation,
            commands::federation::commands::leave_federation,
            commands::federation::commands::federation_history,
            commands::federation::commands::set_participation_policy,
            commands::federation::commands::start_federated_round,
            commands::audit::commands::adapter_lineage,
            commands::audit::commands::list_photo_taggers,
            commands::audit::commands::photo_tagger_lineage,
            commands::audit::commands::audit_federations,
        ])
}

/// WebKitGTK's defaults suit a browser: accelerated compositing (which,
/// on a machine without a usable GPU, keeps software GL surfaces for every
/// layer) and memory caches sized for many sites and back/forward pages.
/// Hearth shows one local page of forms, thumbnails and a small SVG chart,
/// so it draws without compositing and caches as a document viewer: the
/// idle app needs about a third less memory, and nothing visible changes.
#[cfg(target_os = "linux")]
fn lean_webview<R: Runtime>(app: &tauri::App<R>) {
    use webkit2gtk::{
        CacheModel, HardwareAccelerationPolicy, SettingsExt, WebContextExt, WebViewExt,
    };
    for window in app.webview_windows().into_values() {
        let configured = window.with_webview(|platform| {
            let view = platform.inner();
            if let Some(settings) = WebViewExt::settings(&view) {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
                settings.set_enable_page_cache(false);
            }
            if let Some(context) = view.context() {
                context.set_cache_model(CacheModel::DocumentViewer);
            }
        });
        // Only memory is at stake: the window works either way.
        if let Err(error) = configured {
            eprintln!("hearth-app: could not configure the web view: {error}");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lean_webview<R: Runtime>(_app: &tauri::App<R>) {}

/// Closing the window while jobs run: keep it open, ask every job to stop
/// (training checkpoints and pauses), wait, then close.
fn pause_jobs_on_close<R: Runtime>(window: &Window<R>, event: &WindowEvent) {
    let WindowEvent::CloseRequested { api, .. } = event else {
        return;
    };
    let jobs = window.state::<Jobs>().inner().clone();
    if jobs.list().is_empty() {
        return;
    }
    api.prevent_close();
    let _ = window.set_title("Hearth — pausing training before closing…");
    let window = window.clone();
    std::thread::spawn(move || {
        pause_all(&jobs, CLOSE_WAIT);
        let _ = window.destroy();
    });
}

/// Cancels every job and waits (at most `timeout`) until all have
/// stopped; returns whether they did.
pub fn pause_all(jobs: &Jobs, timeout: Duration) -> bool {
    jobs.cancel_all();
    jobs.wait_idle(timeout)
}
