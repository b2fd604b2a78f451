//! Job commands.

use tauri::State;
use tauri::ipc::Channel;

use crate::error::Result;
use crate::state::{JobId, JobInfo, Jobs};

/// Asks job `id` to stop at its next safe point. A text training pauses:
/// it writes a checkpoint, and `resume_text_training` continues it.
#[tauri::command]
pub async fn cancel_job(jobs: State<'_, Jobs>, id: JobId) -> Result<()> {
    jobs.cancel(id)
}

/// The jobs running now.
#[tauri::command]
pub async fn running_jobs(jobs: State<'_, Jobs>) -> Result<Vec<JobInfo>> {
    Ok(jobs.list())
}

/// Follows job `id` on `on_event`: its events so far (advances collapsed
/// into the latest), then the rest as they come, ending with `done` or
/// `failed`, as on the channel it was started with. For a page that
/// reloaded while the job ran (`running_jobs` lists it).
#[tauri::command]
pub async fn attach_job(
    jobs: State<'_, Jobs>,
    id: JobId,
    on_event: Channel<serde_json::Value>,
) -> Result<()> {
    jobs.relay(id)?.attach(Box::new(move |event| {
        // A closed page stops listening; the job goes on.
        let _ = on_event.send(event.clone());
    }));
    Ok(())
}

/// What the app runs on, for what the front end does differently on a
/// phone (pausing training when the app goes to the background).
#[derive(Debug, Clone, Copy, serde::Serialize, ts_rs::TS)]
pub struct AppPlatform {
    /// Android or iOS.
    pub mobile: bool,
}

/// The platform the app was built for.
#[tauri::command]
pub fn app_platform() -> AppPlatform {
    AppPlatform {
        mobile: cfg!(mobile),
    }
}

/// Answers at once; the front end measures round trips with it.
#[tauri::command]
pub fn ping() -> &'static str {
    "pong"
}
