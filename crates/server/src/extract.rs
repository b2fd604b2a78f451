//! Extractors that turn every input problem into an [`AppError`], so
//! clients see one error shape: [`AppJson`] for unsigned JSON bodies and
//! [`SignedRequest`] for device-signed requests.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, OriginalUri, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::{self, RequestHead};
use crate::error::AppError;
use crate::storage::DeviceRecord;

/// `axum::Json` whose rejections are [`AppError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge
    } else {
        AppError::BadRequest(rejection.body_text())
    }
}

fn bytes_rejection(rejection: BytesRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge
    } else {
        AppError::BadRequest(rejection.body_text())
    }
}

/// A request whose signature verified: the enrolled, non-revoked device
/// that sent it and the exact body it signed.
///
/// Checks, cheapest first, all on the request head: headers present and
/// well-formed (the body's hash among them); timestamp within the
/// clock-skew window; device known and not revoked; signature over the
/// head and the declared body hash; not seen before (see
/// [`crate::replay`]). Any failure is answered (401, or 403 for a revoked
/// device) before a single body byte is read, so someone without a
/// device's key, who may well know its public id, cannot make the server
/// take in an upload-sized body. Only then is the body read, under the
/// route's limit, and checked against the signed hash. Consumes the body,
/// so it must be a handler's last extractor.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The device that signed.
    pub device: DeviceRecord,
    /// The body as received.
    pub body: Bytes,
}

impl SignedRequest {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        parse_json(&self.body)
    }

    /// The body as JSON, parsed on the blocking pool when it is large, so
    /// a burst of big messages does not hold up the runtime's workers.
    pub async fn json_off_runtime<T: DeserializeOwned + Send + 'static>(
        &self,
    ) -> Result<T, AppError> {
        if self.body.len() <= INLINE_WORK_LIMIT {
            return self.json();
        }
        let body = self.body.clone();
        tokio::task::spawn_blocking(move || parse_json(&body))
            .await
            .map_err(|e| AppError::Internal(format!("JSON parsing task failed: {e}")))?
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

struct Credentials {
    device_id: String,
    timestamp_ms: u64,
    body_sha256: [u8; 32],
    signature: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AppError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| AppError::MalformedCredentials(format!("{name} is not ASCII")))
        })
        .transpose()
}

fn credentials(headers: &HeaderMap) -> Result<Credentials, AppError> {
    let device = header(headers, auth::DEVICE_HEADER)?;
    let timestamp = header(headers, auth::TIMESTAMP_HEADER)?;
    let body_sha256 = header(headers, auth::CONTENT_SHA256_HEADER)?;
    let signature = header(headers, auth::SIGNATURE_HEADER)?;
    let (Some(device), Some(timestamp), Some(body_sha256), Some(signature)) =
        (device, timestamp, body_sha256, signature)
    else {
        return Err(AppError::MissingCredentials);
    };
    auth::check_device_id(device).map_err(|e| AppError::MalformedCredentials(e.to_string()))?;
    let timestamp_ms = timestamp.parse().map_err(|_| {
        AppError::MalformedCredentials(format!(
            "{} must be milliseconds since the Unix epoch",
            auth::TIMESTAMP_HEADER
        ))
    })?;
    let body_sha256 = auth::parse_body_sha256(body_sha256)
        .map_err(|e| AppError::MalformedCredentials(e.to_string()))?;
    Ok(Credentials {
        device_id: device.to_owned(),
        timestamp_ms,
        body_sha256,
        signature: signature.to_owned(),
    })
}

/// Bodies up to this size are hashed and parsed on the async runtime;
/// larger ones (a masked upload is 4 bytes per adapter parameter, a share
/// message for a large neighbourhood hundreds of kilobytes of JSON) on the
/// blocking pool.
const INLINE_WORK_LIMIT: usize = 64 * 1024;

/// Checks a read body against the hash its signature covers. Hashing a
/// multi-megabyte upload takes milliseconds of CPU: on a runtime worker,
/// a burst of signed uploads would hold up every other request (health
/// checks and polls included), so large bodies are hashed off it.
async fn check_body(signed_sha256: [u8; 32], body: &Bytes) -> Result<(), AppError> {
    if body.len() <= INLINE_WORK_LIMIT {
        return Ok(auth::check_body(&signed_sha256, body)?);
    }
    // `Bytes` clones share the buffer: nothing is copied.
    let body = body.clone();
    tokio::task::spawn_blocking(move || auth::check_body(&signed_sha256, &body))
        .await
        .map_err(|e| AppError::Internal(format!("body hashing task failed: {e}")))??;
    Ok(())
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let credentials = credentials(req.headers())?;
        let now_ms = crate::now_ms();
        // Refuse stale requests before touching storage or hashing bodies.
        auth::check_clock(credentials.timestamp_ms, now_ms)?;
        let method = req.method().as_str().to_owned();
        // Nested routers see a shortened URI; the signature covers the
        // path as sent.
        let uri = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().clone(), |o| o.0.clone());
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());

        let device = state
            .storage
            .device(credentials.device_id.clone())
            .await?
            .ok_or(AppError::UnknownDevice)?;
        if device.revoked_at_ms.is_some() {
            return Err(AppError::RevokedDevice);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&device.public_key)
            .map_err(|e| AppError::Internal(format!("stored key of {}: {e}", device.id)))?;

        let signature = auth::verify_head(
            &key,
            &RequestHead {
                device_id: &credentials.device_id,
                method: &method,
                path: &path,
                timestamp_ms: credentials.timestamp_ms,
                body_sha256: credentials.body_sha256,
            },
            &credentials.signature,
            now_ms,
        )?;
        // Remembered before the body is read: a replayed head is refused
        // as cheaply as a forged one.
        state.replay.check_and_remember(
            &credentials.device_id,
            &signature,
            credentials.timestamp_ms,
            now_ms,
        )?;

        // The first body byte read, under the route's limit.
        let body = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        check_body(credentials.body_sha256, &body).await?;
        Ok(SignedRequest { device, body })
    }
}
