//! `/v1/federations/{id}/rounds/{round}/...`: a cohort member's side of a
//! round, every request signed by the device.
//!
//! | method | path | body | answer |
//! |--------|------|------|--------|
//! | GET | `…/poll` | | [`RoundPoll`]: a message, wait, excluded, aborted, done |
//! | POST | `…/keys` | JSON `AdvertiseKeys` | [`RoundReceipt`] |
//! | POST | `…/shares` | JSON `EncryptedShares` | [`RoundReceipt`] |
//! | POST | `…/upload` | binary masked upload | [`RoundReceipt`] |
//! | POST | `…/consistency` | JSON `ConsistencySignature` | [`RoundReceipt`] |
//! | POST | `…/unmask` | JSON `UnmaskResponse` | [`RoundReceipt`] |
//!
//! Each message goes through [`LiveRounds::step`](crate::live::LiveRounds::step)
//! (applied to the round's live state off the async runtime, persisted by
//! compare-and-swap on the stored round), so a refused message leaves the
//! round exactly as it was and the round carries on for everyone else. The upload's body limit is
//! the federation's exact upload size plus [`UPLOAD_SLACK`]: anything
//! larger is refused before it is read.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use hearth_fed::api::{RoundPoll, RoundReceipt};
use hearth_fed::{ClientMessage, DeviceId, MaskedUpload};
use serde::Deserialize;

use crate::AppState;
use crate::adapter;
use crate::config::{Config, FederationConfig};
use crate::error::AppError;
use crate::extract::{AppJson, SignedRequest};
use crate::live::LiveRound;
use crate::rounds::{Advanced, Incoming, Poll, RoundError, RoundInput, StepContext};
use crate::secagg;
use crate::storage::DeviceRecord;
use crate::storage::RoundSummary;

/// Largest key advertisement accepted.
pub const KEYS_BODY_LIMIT: usize = 8 * 1024;
/// Largest share or unmask message accepted (about a thousand neighbours).
pub const ROUND_MESSAGE_BODY_LIMIT: usize = 256 * 1024;
/// Bytes allowed over a federation's exact upload size before a body is
/// refused unread (413); within it, a wrong length is a 400 from the codec.
pub const UPLOAD_SLACK: usize = 1024;

/// Shortest and longest poll delay suggested to a waiting device.
const MIN_POLL_HINT_MS: u64 = 250;
const MAX_POLL_HINT_MS: u64 = 5_000;

#[derive(Debug, Deserialize)]
struct RoundPath {
    id: String,
    round: u64,
}

/// The exact size of a federation's binary upload.
pub fn upload_size(federation: &FederationConfig) -> usize {
    MaskedUpload::encoded_len(usize::try_from(federation.parameter_count()).unwrap_or(usize::MAX))
}

pub(super) fn routes(config: &Arc<Config>) -> Router<AppState> {
    let config = Arc::clone(config);
    let upload: MethodRouter<AppState> = post(upload)
        // The per-federation limit below replaces axum's default 2 MB one.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(
            move |Path(path): Path<RoundPath>, req: Request, next: Next| {
                let config = Arc::clone(&config);
                async move { limit_upload(&config, &path.id, req, next).await }
            },
        ));
    Router::new()
        .route("/{id}/rounds/{round}/poll", get(poll))
        .route(
            "/{id}/rounds/{round}/keys",
            super::with_body_limit(post(keys), KEYS_BODY_LIMIT),
        )
        .route(
            "/{id}/rounds/{round}/shares",
            super::with_body_limit(post(shares), ROUND_MESSAGE_BODY_LIMIT),
        )
        .route("/{id}/rounds/{round}/upload", upload)
        .route(
            "/{id}/rounds/{round}/consistency",
            super::with_body_limit(post(consistency), KEYS_BODY_LIMIT),
        )
        .route(
            "/{id}/rounds/{round}/unmask",
            super::with_body_limit(post(unmask), ROUND_MESSAGE_BODY_LIMIT),
        )
}

async fn limit_upload(config: &Config, id: &str, req: Request, next: Next) -> Response {
    let Some(federation) = config.federation(id) else {
        return AppError::NotFound(format!("no federation {id:?}")).into_response();
    };
    let limit = upload_size(federation).saturating_add(UPLOAD_SLACK);
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    super::refuse_declared_oversize(limit, req, next).await
}

/// The checks every round request shares: a configured federation, the
/// device's own, and a round whose cohort includes it.
async fn admit<'a>(
    state: &'a AppState,
    path: &RoundPath,
    device: &DeviceRecord,
) -> Result<&'a FederationConfig, AppError> {
    let federation = state.federation(&path.id)?;
    if device.federation_id != path.id {
        return Err(AppError::Forbidden(format!(
            "this device is enrolled in federation {:?}, not {:?}",
            device.federation_id, path.id
        )));
    }
    if !state
        .storage
        .is_member(path.id.clone(), path.round, device.id.clone())
        .await?
    {
        return Err(AppError::Forbidden(format!(
            "this device is not in the cohort of round {} of {}",
            path.round, path.id
        )));
    }
    Ok(federation)
}

fn poll_hint_ms(deadline_ms: u64, now_ms: u64) -> u64 {
    (deadline_ms.saturating_sub(now_ms) / 8).clamp(MIN_POLL_HINT_MS, MAX_POLL_HINT_MS)
}

async fn poll(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundPoll>, AppError> {
    admit(&state, &path, &signed.device).await?;
    let device = DeviceId::from_bytes(signed.device.public_key);
    // An in-flight round answers from its live state; only its summary
    // is read from storage.
    let polled = state
        .rounds
        .poll(&*state.storage, &path.id, path.round, &device)
        .await
        .map_err(|e| match e {
            RoundError::NotInFlight { .. } => {
                AppError::NotFound(format!("no round {} of {}", path.round, path.id))
            }
            e => e.into(),
        })?;
    let (answer, summary) = match polled {
        Ok(answer) => answer,
        Err(ended) => {
            let version = state
                .storage
                .global_by_round(path.id.clone(), path.round)
                .await?
                .map(|g| g.version);
            let outcome = ended
                .outcome
                .as_ref()
                .ok_or_else(|| AppError::Internal("an ended round has no outcome".into()))?;
            return Ok(AppJson(secagg::ended(outcome, version)));
        }
    };
    let answer = match answer {
        Poll::Message(message) => RoundPoll::Message { message },
        Poll::Wait => RoundPoll::Wait {
            retry_after_ms: poll_hint_ms(summary.stage_deadline_ms, crate::now_ms()),
        },
        Poll::Excluded(reason) => RoundPoll::Excluded { reason },
    };
    Ok(AppJson(answer))
}

/// Parses a JSON protocol message of the kind the endpoint takes (large
/// ones off the async runtime).
async fn message<T: serde::de::DeserializeOwned + Send + 'static>(
    signed: &SignedRequest,
    wrap: fn(T) -> ClientMessage,
) -> Result<ClientMessage, AppError> {
    signed.json_off_runtime::<T>().await.map(wrap)
}

async fn keys(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let m = message(&signed, ClientMessage::AdvertiseKeys).await?;
    receive(&state, &path, &signed, Owned::Message(m)).await
}

async fn shares(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let m = message(&signed, ClientMessage::EncryptedShares).await?;
    receive(&state, &path, &signed, Owned::Message(m)).await
}

async fn upload(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let body = signed.body.clone();
    receive(&state, &path, &signed, Owned::Upload(body)).await
}

async fn consistency(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let m = message(&signed, ClientMessage::ConsistencySignature).await?;
    receive(&state, &path, &signed, Owned::Message(m)).await
}

async fn unmask(
    State(state): State<AppState>,
    Path(path): Path<RoundPath>,
    signed: SignedRequest,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let m = message(&signed, ClientMessage::UnmaskResponse).await?;
    receive(&state, &path, &signed, Owned::Message(m)).await
}

/// A message as it arrived, owned: it is applied on the blocking pool.
enum Owned {
    Message(ClientMessage),
    Upload(Bytes),
}

async fn receive(
    state: &AppState,
    path: &RoundPath,
    signed: &SignedRequest,
    message: Owned,
) -> Result<AppJson<RoundReceipt>, AppError> {
    let federation = admit(state, path, &signed.device).await?;
    // Only an unmask response can complete a round; only then is the
    // current global (and the signing key) needed.
    let publish = match message {
        Owned::Message(ClientMessage::UnmaskResponse(_)) => Some(
            adapter::publish_context(&*state.storage, federation, &state.identity)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?,
        ),
        _ => None,
    };
    let now_ms = crate::now_ms();
    let device_id = signed.device.id.clone();
    let sender = DeviceId::from_bytes(signed.device.public_key);
    let advanced = state
        .rounds
        .step(
            &*state.storage,
            federation,
            path.round,
            now_ms,
            publish,
            move |round: &mut dyn LiveRound, ctx: &StepContext<'_>, _: &RoundSummary| {
                let message = match &message {
                    Owned::Message(m) => Incoming::Message(m),
                    Owned::Upload(bytes) => Incoming::Upload(bytes),
                };
                let input = RoundInput {
                    device_id: &device_id,
                    sender,
                    message,
                };
                round.receive(ctx, &input)
            },
        )
        .await?;
    let advanced = match advanced {
        Ok(advanced) => advanced,
        Err(rejection) => {
            tracing::info!(
                federation = %path.id,
                round = path.round,
                device = %signed.device.id,
                reason = %rejection,
                "round message refused"
            );
            return Err(rejection.into());
        }
    };
    let stage = match &advanced {
        Advanced::Unchanged(s) | Advanced::Saved(s) => s.stage.as_str().to_owned(),
        Advanced::Published(g) => {
            tracing::info!(
                federation = %path.id,
                round = path.round,
                version = g.version,
                "round published a global adapter"
            );
            "published".to_owned()
        }
        Advanced::Aborted(_) => "aborted".to_owned(),
    };
    Ok(AppJson(RoundReceipt {
        round: path.round,
        stage,
    }))
}
