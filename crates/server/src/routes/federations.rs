//! `/v1/federations/{id}/...`: the public description of a federation, its
//! latest global adapter (signed; version 0 until a round publishes), and
//! device check-in. The round endpoints are in [`super::rounds`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use hearth_fed::global::format_epsilon;

use crate::AppState;
use crate::adapter;
use crate::checkin::{self, CheckinRequest, CheckinResponse};
use crate::config::{AdapterShape, BaseModel, Deadlines, FederationDp, SecAggConfig, SecAggParams};
use crate::error::AppError;
use crate::extract::{AppJson, SignedRequest};
use crate::storage::{Checkin, GlobalVersion};

/// Largest check-in body accepted.
pub const CHECKIN_BODY_LIMIT: usize = 4 * 1024;

/// What anyone may know about a federation before joining.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicFederation {
    /// Federation id.
    pub id: String,
    /// The model adapters are trained for.
    pub base_model: BaseModel,
    /// The adapter's shape.
    pub adapter: AdapterShape,
    /// Total adapter parameters.
    pub parameters: u64,
    /// Differential privacy every client applies.
    pub dp: FederationDp,
    /// SecAgg+ settings as configured (`null` = automatic).
    pub secagg: SecAggConfig,
    /// `k` and `t` a full cohort runs with.
    pub secagg_full_cohort: SecAggParams,
    /// What automatic neighbourhoods are sized against (in every round's
    /// parameters; devices pin it at join).
    pub threat_model: hearth_fed::graph::ThreatModel,
    /// Fewest clients a round starts with.
    pub min_clients: u32,
    /// Clients a round aims to finish with.
    pub target_clients: u32,
    /// Clients invited to a full round.
    pub cohort_target: u32,
    /// Server step size.
    pub server_learning_rate: f64,
    /// Stage deadlines.
    pub deadlines: Deadlines,
    /// The latest published global adapter, if any.
    pub global: Option<GlobalInfo>,
}

/// Metadata of a published global adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalInfo {
    /// Version number, from 1.
    pub version: u64,
    /// The round that produced it.
    pub round: u64,
    /// SHA-256 of the adapter bytes, hex.
    pub sha256: String,
    /// Size of the adapter bytes.
    pub size_bytes: u64,
    /// When published.
    pub published_at_ms: u64,
    /// Facts the round recorded about it.
    pub metadata: serde_json::Value,
}

impl From<GlobalVersion> for GlobalInfo {
    fn from(g: GlobalVersion) -> Self {
        GlobalInfo {
            version: g.version,
            round: g.round,
            sha256: hex::encode(g.sha256),
            size_bytes: g.size_bytes,
            published_at_ms: g.published_at_ms,
            metadata: g.metadata,
        }
    }
}

pub use hearth_fed::api::{
    GLOBAL_CONTRIBUTORS_HEADER, GLOBAL_EPSILON_HEADER, GLOBAL_PUBLISHED_HEADER,
    GLOBAL_ROUND_HEADER, GLOBAL_SHA256_HEADER, GLOBAL_SIGNATURE_HEADER, GLOBAL_VERSION_HEADER,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{id}", get(describe))
        .route("/{id}/global/latest", get(latest_global))
        .route(
            "/{id}/checkin",
            super::with_body_limit(post(checkin), CHECKIN_BODY_LIMIT),
        )
}

async fn describe(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<PublicFederation>, AppError> {
    let f = state.federation(&id)?;
    let global = state.storage.latest_global(id.clone()).await?;
    Ok(AppJson(PublicFederation {
        id: f.id.clone(),
        base_model: f.base_model.clone(),
        adapter: f.adapter.clone(),
        parameters: f.parameter_count(),
        dp: f.dp,
        secagg: f.secagg,
        secagg_full_cohort: f.secagg.for_cohort(f.cohort_target()),
        threat_model: f.secagg.threat_model(),
        min_clients: f.min_clients,
        target_clients: f.target_clients,
        cohort_target: f.cohort_target(),
        server_learning_rate: f.server_learning_rate,
        deadlines: f.deadlines,
        global: global.map(GlobalInfo::from),
    }))
}

async fn latest_global(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let federation = state.federation(&id)?;
    let served = adapter::latest(&*state.storage, federation, &state.identity)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let statement = &served.statement;
    let sha = hex::encode(statement.adapter_sha256);
    let header = |v: String| {
        HeaderValue::from_str(&v).map_err(|e| AppError::Internal(format!("header value: {e}")))
    };
    let headers = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (CONTENT_LENGTH, header(served.bytes.len().to_string())?),
        (ETAG, header(format!("\"{sha}\""))?),
        (
            HeaderName::from_static(GLOBAL_VERSION_HEADER),
            header(statement.version.to_string())?,
        ),
        (
            HeaderName::from_static(GLOBAL_ROUND_HEADER),
            header(statement.round.to_string())?,
        ),
        (HeaderName::from_static(GLOBAL_SHA256_HEADER), header(sha)?),
        (
            HeaderName::from_static(GLOBAL_PUBLISHED_HEADER),
            header(served.published_at_ms.to_string())?,
        ),
        (
            HeaderName::from_static(GLOBAL_CONTRIBUTORS_HEADER),
            header(statement.contributors.to_string())?,
        ),
        (
            HeaderName::from_static(GLOBAL_EPSILON_HEADER),
            header(format_epsilon(statement.epsilon))?,
        ),
        (
            HeaderName::from_static(GLOBAL_SIGNATURE_HEADER),
            header(crate::auth::encode(&served.signature.to_bytes()))?,
        ),
    ];
    Ok((headers, Body::from(served.bytes)).into_response())
}

async fn checkin(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<AppJson<CheckinResponse>, AppError> {
    let federation = state.federation(&id)?;
    if signed.device.federation_id != id {
        return Err(AppError::Forbidden(format!(
            "this device is enrolled in federation {:?}, not {id:?}",
            signed.device.federation_id
        )));
    }
    let request: CheckinRequest = if signed.body.is_empty() {
        CheckinRequest::default()
    } else {
        signed.json()?
    };
    let now_ms = crate::now_ms();
    state
        .storage
        .record_checkin(Checkin {
            device_id: signed.device.id.clone(),
            at_ms: now_ms,
            eligible: request.eligible,
        })
        .await?;
    let response = checkin::respond(&state, federation, &signed.device, now_ms).await?;
    Ok(AppJson(response))
}
