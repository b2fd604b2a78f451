//! The HTTP API, versioned under `/v1`. One module per area, each a
//! `Router<AppState>`; [`app`] nests them and wraps the whole in the global
//! layers (uniform errors, tracing, time-out, admission limits). Body
//! limits are per route, set where the route is defined.

mod enrol;
mod federations;
mod gossip;
mod health;
mod log;
mod rounds;
mod server_key;

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use enrol::{ENROL_BODY_LIMIT, EnrolRequest, EnrolResponse};
pub use federations::{CHECKIN_BODY_LIMIT, GlobalInfo, PublicFederation};
pub use health::Health;
pub use rounds::{KEYS_BODY_LIMIT, ROUND_MESSAGE_BODY_LIMIT, UPLOAD_SLACK, upload_size};

use crate::AppState;
use crate::error::{AppError, finish_response};
use crate::limits::{self, RequestLimits};

/// The server's router with all layers, ready to serve.
pub fn app(state: AppState) -> Router {
    let server = &state.config.server;
    let timeout = Duration::from_secs(server.request_timeout_secs);
    let limits = RequestLimits::new(server.max_concurrent_requests, server.max_requests_per_ip);
    Router::new()
        .nest("/v1", v1(&state))
        .fallback(|| async { AppError::NoRoute("no such endpoint".into()) })
        .with_state(state)
        // Innermost first: admission (per-address allowance, then a slot
        // among `max_concurrent_requests`, one set shared by every route;
        // see `limits`), then the time-out around it, so a request waiting
        // for a slot is timed out too; the outermost pass gives every error
        // the same JSON shape.
        .layer(axum::middleware::from_fn_with_state(limits, limits::admit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::map_response(finish_response))
}

fn v1(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(health::routes())
        .merge(enrol::routes())
        .merge(server_key::routes())
        .nest(
            "/federations",
            federations::routes()
                .merge(rounds::routes(&state.config))
                .merge(gossip::routes()),
        )
        .nest("/log", log::routes())
}

/// Most bytes of a declared-oversized body read and discarded before
/// answering 413. Closing with unread data makes the kernel reset the
/// connection, and a client still writing then sees a broken pipe instead
/// of the 413; draining a bounded amount lets ordinary clients read the
/// answer. Larger bodies are cut off at once.
pub const OVERSIZE_DRAIN_BYTES: usize = 256 * 1024;
/// Longest spent draining an oversized body.
const OVERSIZE_DRAIN_TIME: Duration = Duration::from_secs(2);

/// Applies a body limit of `limit` bytes to a route: bodies declaring a
/// larger `Content-Length` are refused up front, and
/// [`RequestBodyLimitLayer`] stops streamed bodies that grow past it.
pub(crate) fn with_body_limit(
    route: MethodRouter<AppState>,
    limit: usize,
) -> MethodRouter<AppState> {
    route
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| refuse_declared_oversize(limit, req, next),
        ))
}

pub(crate) async fn refuse_declared_oversize(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => {
            if length <= limit.saturating_add(OVERSIZE_DRAIN_BYTES) {
                // What it reads is thrown away; only the draining matters.
                let _ = tokio::time::timeout(
                    OVERSIZE_DRAIN_TIME,
                    axum::body::to_bytes(req.into_body(), length),
                )
                .await;
            }
            AppError::PayloadTooLarge.into_response()
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use ed25519_dalek::SigningKey;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{self, RequestToSign};
    use crate::config::{Config, EXAMPLE_CONFIG};
    use crate::identity::ServerIdentity;
    use crate::replay::{ReplayGuard, ReplayLimits};
    use crate::secagg::SecAggRounds;
    use crate::storage::prelude::*;
    use crate::storage::{Enrolment, NewInvite, SqliteStorage};

    async fn state_with_device(key: &SigningKey) -> AppState {
        let config = Config::parse(EXAMPLE_CONFIG, std::path::Path::new(".")).expect("config");
        let storage = SqliteStorage::open_in_memory().expect("db");
        crate::ops::sync_federations(&storage, &config, 0)
            .await
            .expect("sync");
        storage
            .create_invite(NewInvite {
                federation_id: "notes".into(),
                token_sha256: [1; 32],
                created_at_ms: 0,
                expires_at_ms: u64::MAX / 2,
            })
            .await
            .expect("invite");
        storage
            .enrol(Enrolment {
                token_sha256: [1; 32],
                device_id: "dev_one".into(),
                public_key: key.verifying_key().to_bytes(),
                at_ms: 1,
            })
            .await
            .expect("enrol");
        AppState {
            config: Arc::new(config),
            storage: Arc::new(storage),
            rounds: Arc::new(crate::live::LiveRounds::new(Arc::new(SecAggRounds))),
            replay: Arc::new(ReplayGuard::new(ReplayLimits::default(), 0)),
            identity: Arc::new(ServerIdentity::generate()),
            log_key: Arc::new(crate::log::LogKey::from_seed(&[9; 32])),
        }
    }

    async fn kind_of(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json body");
        (
            status,
            json["error"]["kind"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// A POST of `body` to `path`, signed by device `dev_one` with `key`.
    fn signed_post(key: &SigningKey, path: &str, body: Vec<u8>) -> Request<Body> {
        let signed = auth::sign_request(
            key,
            &RequestToSign {
                device_id: "dev_one",
                method: "POST",
                path,
                timestamp_ms: crate::now_ms(),
                body: &body,
            },
        )
        .expect("sign");
        let mut request = Request::post(path);
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        request.body(Body::from(body)).expect("request")
    }

    #[tokio::test]
    async fn streamed_bodies_past_the_limit_are_413_in_our_shape() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let app = app(state_with_device(&key).await);
        // No Content-Length: only the streaming limit can catch it.
        let body = vec![b' '; CHECKIN_BODY_LIMIT + 1];
        let path = "/v1/federations/notes/checkin";
        let response = app
            .clone()
            .oneshot(signed_post(&key, path, body))
            .await
            .expect("infallible");
        assert_eq!(
            kind_of(response).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
        );

        let response = app
            .oneshot(
                Request::post("/v1/enrol")
                    .header("content-type", "application/json")
                    .body(Body::from(vec![b' '; ENROL_BODY_LIMIT + 1]))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(
            kind_of(response).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
        );
    }

    #[tokio::test]
    async fn streamed_uploads_past_the_federations_size_are_413() {
        let app_fn = app;
        let key = SigningKey::from_bytes(&[3; 32]);
        let state = state_with_device(&key).await;
        let notes = state.config.federation("notes").expect("notes");
        let limit = upload_size(notes) + UPLOAD_SLACK;
        let app = app(state);
        // Past axum's default 2 MB too, which the upload route lifts.
        for size in [limit + 1, 3 << 20] {
            let body = vec![0u8; size];
            let path = "/v1/federations/notes/rounds/1/upload";
            let response = app
                .clone()
                .oneshot(signed_post(&key, path, body))
                .await
                .expect("infallible");
            assert_eq!(
                kind_of(response).await,
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
            );
        }

        // A federation whose uploads are larger than axum's default 2 MB
        // body limit: an upload of exactly its size is read (and then
        // refused for what it is, here a device outside any round).
        let mut state = state_with_device(&key).await;
        let mut config = (*state.config).clone();
        config.federations[0].adapter = crate::config::AdapterShape {
            tensors: vec![],
            parameters: Some(600_000),
        };
        state.config = Arc::new(config);
        let size = upload_size(state.config.federation("notes").expect("notes"));
        assert!(size > 2 << 20);
        let body = vec![0u8; size];
        let path = "/v1/federations/notes/rounds/1/upload";
        let response = app_fn(state)
            .oneshot(signed_post(&key, path, body))
            .await
            .expect("infallible");
        assert_eq!(
            kind_of(response).await,
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
    }

    #[tokio::test]
    async fn a_signed_checkin_through_the_router() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let app = app(state_with_device(&key).await);
        let path = "/v1/federations/notes/checkin";
        let response = app
            .oneshot(signed_post(&key, path, b"{}".to_vec()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let answer: crate::CheckinResponse = serde_json::from_slice(&bytes).expect("json");
        assert!(matches!(answer, crate::CheckinResponse::ComeBackIn { .. }));
    }
}
