//! Job commands.

use tauri::State;

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

/// Answers at once; the front end measures round trips with it.
#[tauri::command]
pub fn ping() -> &'static str {
    "pong"
}
