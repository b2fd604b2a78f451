//! Errors: [`AppError`] for what an HTTP client is told, [`Error`] for
//! everything else the library can fail at (configuration, certificates,
//! storage, binding).
//!
//! Every HTTP error has one shape, `{"error": {"kind": ..., "message": ...}}`,
//! whether it comes from a handler, an extractor or a tower layer (body
//! limit, timeout), so clients parse one thing. Internal failures say only
//! "internal error" on the wire; their detail travels to the logging
//! middleware in a response extension and is logged there.

use std::path::PathBuf;

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::config::ConfigError;
use crate::identity::IdentityError;
use crate::replay::ReplayError;
use crate::rounds::{ProtocolError, Rejection, RoundError};
use crate::storage::{InviteRefusal, StorageError};
use crate::tls::TlsError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The request is malformed (bad JSON, bad field).
    #[error("{0}")]
    BadRequest(String),
    /// No signature headers.
    #[error(
        "this endpoint needs a signed request (x-hearth-device, x-hearth-timestamp, x-hearth-content-sha256, x-hearth-signature)"
    )]
    MissingCredentials,
    /// Signature headers present but unusable.
    #[error("{0}")]
    MalformedCredentials(String),
    /// Timestamp outside the window, or from before the server started.
    #[error("{message}; server time is {server_time_ms} ms")]
    StaleTimestamp {
        /// What was wrong.
        message: String,
        /// The server's clock, so the client can correct its offset.
        server_time_ms: u64,
    },
    /// The device id is not enrolled.
    #[error("unknown device")]
    UnknownDevice,
    /// The device was revoked by the operator.
    #[error("this device has been revoked")]
    RevokedDevice,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The signature verified, but the body is not the one it covers.
    #[error("the body does not match the signed x-hearth-content-sha256")]
    BodyMismatch,
    /// This signed request was already used.
    #[error("this signed request was already used; sign each request afresh")]
    Replayed,
    /// The device may not act on this resource.
    #[error("{0}")]
    Forbidden(String),
    /// The invite cannot be used.
    #[error("{0}")]
    InviteRefused(InviteRefusal),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The device's message for this round stage is already in (a resent
    /// request whose first answer was lost, typically).
    #[error("{0}")]
    AlreadyReceived(String),
    /// The body is over the route's limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// The client is sending too fast.
    #[error("{0}")]
    TooManyRequests(String),
    /// The server is overloaded; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// The request took longer than the server allows.
    #[error("the request took too long")]
    Timeout,
    /// An unknown route.
    #[error("{0}")]
    NoRoute(String),
    /// A known route called with the wrong method.
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    /// Something failed inside the server; details are logged, not sent.
    #[error("internal error")]
    Internal(String),
}

/// The detail of an internal error, carried to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    message: String,
}

impl AppError {
    /// HTTP status and the machine-readable kind.
    pub fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::MissingCredentials => (StatusCode::UNAUTHORIZED, "missing_credentials"),
            AppError::MalformedCredentials(_) => {
                (StatusCode::UNAUTHORIZED, "malformed_credentials")
            }
            AppError::StaleTimestamp { .. } => (StatusCode::UNAUTHORIZED, "stale_timestamp"),
            AppError::UnknownDevice => (StatusCode::UNAUTHORIZED, "unknown_device"),
            AppError::RevokedDevice => (StatusCode::FORBIDDEN, "revoked_device"),
            AppError::BadSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
            AppError::BodyMismatch => (StatusCode::UNAUTHORIZED, "body_mismatch"),
            AppError::Replayed => (StatusCode::UNAUTHORIZED, "replayed_request"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::InviteRefused(_) => (StatusCode::FORBIDDEN, "invite_refused"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AppError::AlreadyReceived(_) => (StatusCode::CONFLICT, "already_received"),
            AppError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            AppError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AppError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            AppError::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The error a bare status from a tower layer or the router stands for.
    pub fn from_status(status: StatusCode) -> AppError {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => AppError::Timeout,
            StatusCode::NOT_FOUND => AppError::NoRoute("no such endpoint".into()),
            StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
            StatusCode::SERVICE_UNAVAILABLE => AppError::Busy("server is busy".into()),
            s if s.is_client_error() => {
                AppError::BadRequest(s.canonical_reason().unwrap_or("bad request").into())
            }
            s => AppError::Internal(format!("bare {s} response from a layer")),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let body = Body {
            error: ErrorBody {
                kind,
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let AppError::Internal(detail) = self {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

/// Final response pass: logs internal error details, and gives bare error
/// responses from layers (413 from the body limit, 408 from the timeout,
/// 404/405 from the router) the one JSON error shape.
pub async fn finish_response(mut response: Response) -> Response {
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        tracing::error!(%detail, "internal error");
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        // Keep the layer's status and headers (`Allow`, `Retry-After`);
        // replace only the body.
        let (mut parts, _) = response.into_parts();
        let (json_parts, body) = AppError::from_status(status).into_response().into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        if let Some(content_type) = json_parts.headers.get(CONTENT_TYPE) {
            parts.headers.insert(CONTENT_TYPE, content_type.clone());
        }
        return Response::from_parts(parts, body);
    }
    response
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InviteRefused(why) => AppError::InviteRefused(why),
            StorageError::KeyAlreadyEnrolled => AppError::Conflict(e.to_string()),
            StorageError::Conflict(m) => AppError::Conflict(m),
            StorageError::NotFound(m) => AppError::NotFound(m),
            StorageError::OutOfRange(m) => AppError::BadRequest(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<RoundError> for AppError {
    fn from(e: RoundError) -> Self {
        match e {
            RoundError::NotInFlight { .. } => AppError::Conflict(e.to_string()),
            RoundError::Contended { .. } => AppError::Busy(e.to_string()),
            RoundError::Storage(s) => s.into(),
            RoundError::Protocol(p) => AppError::Internal(p.to_string()),
            RoundError::Task(t) => AppError::Internal(t),
        }
    }
}

impl From<ProtocolError> for AppError {
    fn from(e: ProtocolError) -> Self {
        AppError::Internal(format!("round protocol: {e}"))
    }
}

impl From<Rejection> for AppError {
    fn from(e: Rejection) -> Self {
        match e {
            Rejection::Invalid(m) => AppError::BadRequest(m),
            Rejection::NotYours(m) => AppError::Forbidden(m),
            Rejection::WrongStage(m) => AppError::Conflict(m),
            Rejection::AlreadyReceived(m) => AppError::AlreadyReceived(m),
            Rejection::Protocol(p) => p.into(),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadSignature => AppError::BadSignature,
            AuthError::BodyMismatch => AppError::BodyMismatch,
            AuthError::ClockSkew { now_ms, .. } => AppError::StaleTimestamp {
                message: e.to_string(),
                server_time_ms: now_ms,
            },
            other => AppError::MalformedCredentials(other.to_string()),
        }
    }
}

impl From<ReplayError> for AppError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replayed => AppError::Replayed,
            ReplayError::BeforeStart { .. } => AppError::StaleTimestamp {
                message: e.to_string(),
                server_time_ms: crate::now_ms(),
            },
            ReplayError::DeviceQuota => AppError::TooManyRequests(e.to_string()),
            ReplayError::Full => AppError::Busy(e.to_string()),
        }
    }
}

/// What the library can fail at outside request handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server's signing key could not be made or loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The transparency log's key could not be made or read.
    #[error(transparent)]
    LogKey(#[from] crate::log::LogKeyError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The configuration has no federation with this id.
    #[error("no federation {0:?} in the configuration")]
    UnknownFederation(String),
    /// The HTTP server stopped with an error.
    #[error("server: {0}")]
    Serve(std::io::Error),
}
