//! `POST /v1/enrol`: an invite token and a fresh Ed25519 key become a
//! device. The proof of possession (see [`crate::auth`]) is checked before
//! storage is touched; consuming the invite and creating the device are one
//! transaction, so a token enrols exactly one device.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{self, AuthError};
use crate::error::AppError;
use crate::extract::AppJson;
use crate::ids::{INVITE_TOKEN_LEN, new_device_id};
use crate::storage::{Enrolment, InviteRefusal};

/// Largest enrolment body accepted (three short base64url strings).
pub const ENROL_BODY_LIMIT: usize = 4 * 1024;

/// What a device sends to enrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The invite token, base64url as the operator received it.
    pub invite: String,
    /// The device's Ed25519 public key, base64url.
    pub public_key: String,
    /// [`auth::sign_enrolment`] over the token and key, base64url.
    pub signature: String,
}

/// The new device's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// Device id to put in [`auth::DEVICE_HEADER`].
    pub device_id: String,
    /// The federation the invite admitted to.
    pub federation_id: String,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/enrol",
        super::with_body_limit(post(enrol), ENROL_BODY_LIMIT),
    )
}

async fn enrol(
    State(state): State<AppState>,
    AppJson(request): AppJson<EnrolRequest>,
) -> Result<(StatusCode, AppJson<EnrolResponse>), AppError> {
    let token =
        auth::decode(&request.invite, "invite").map_err(|e| AppError::BadRequest(e.to_string()))?;
    if token.len() != INVITE_TOKEN_LEN {
        // Not one of ours: no stored hash can match.
        return Err(AppError::InviteRefused(InviteRefusal::Unknown));
    }
    let key = auth::decode_public_key(&request.public_key)
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let token_sha256 = auth::invite_token_hash(&token);
    auth::verify_enrolment(&key, &token_sha256, &request.signature).map_err(|e| match e {
        AuthError::BadSignature => AppError::BadSignature,
        other => AppError::BadRequest(other.to_string()),
    })?;
    let device = state
        .storage
        .enrol(Enrolment {
            token_sha256,
            device_id: new_device_id(),
            public_key: key.to_bytes(),
            at_ms: crate::now_ms(),
        })
        .await?;
    tracing::info!(device = %device.id, federation = %device.federation_id, "device enrolled");
    Ok((
        StatusCode::CREATED,
        AppJson(EnrolResponse {
            device_id: device.id,
            federation_id: device.federation_id,
        }),
    ))
}
