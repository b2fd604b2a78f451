//! `GET /v1/health`: liveness plus a storage round trip.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::AppError;
use crate::extract::AppJson;

/// The health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` (failures are errors).
    pub status: String,
    /// Server version.
    pub version: String,
    /// Server clock, milliseconds since the Unix epoch, so clients can
    /// estimate their offset before signing.
    pub time_ms: u64,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> Result<AppJson<Health>, AppError> {
    state.storage.ping().await?;
    Ok(AppJson(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time_ms: crate::now_ms(),
    }))
}
