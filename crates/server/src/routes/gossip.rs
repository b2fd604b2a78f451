//! `/v1/federations/{id}/gossip`: devices compare the transparency log's
//! signed tree heads.
//!
//! `POST` (signed by an enrolled, unrevoked device of the federation;
//! body [`GossipPost`], at most [`GOSSIP_BODY_LIMIT`] bytes): the latest
//! head the device verified. It must verify under this server's log key
//! (`400 bad_request` otherwise: nothing unsigned is relayed); it replaces
//! the device's previous head. `GET` (public): the heads devices posted,
//! one per distinct tree, newest first, at most [`MAX_GOSSIP_HEADS`]
//! ([`GossipResponse`]). Devices judge them against their own head
//! (`hearth_fed::audit::gossip`): a log that shows two devices two
//! histories is caught by their heads.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use hearth_fed::audit::wire::{
    GOSSIP_BODY_LIMIT, GossipAccepted, GossipPost, GossipResponse, MAX_GOSSIP_HEADS,
};

use crate::AppState;
use crate::error::AppError;
use crate::extract::{AppJson, SignedRequest};
use crate::storage::GossipHead;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/{id}/gossip",
        super::with_body_limit(get(heads).post(post_head), GOSSIP_BODY_LIMIT),
    )
}

async fn post_head(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: SignedRequest,
) -> Result<AppJson<GossipAccepted>, AppError> {
    state.federation(&id)?;
    if signed.device.federation_id != id {
        return Err(AppError::Forbidden(format!(
            "this device is enrolled in federation {:?}, not {id:?}",
            signed.device.federation_id
        )));
    }
    let post: GossipPost = signed.json()?;
    post.sth.verify(&state.log_key.public()).map_err(|_| {
        AppError::BadRequest("the tree head is not signed by this server's log key".into())
    })?;
    let matches_log = state
        .storage
        .record_gossip_head(GossipHead {
            federation_id: id,
            device_id: signed.device.id.clone(),
            sth: post.sth,
            at_ms: crate::now_ms(),
        })
        .await?;
    Ok(AppJson(GossipAccepted { matches_log }))
}

async fn heads(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<AppJson<GossipResponse>, AppError> {
    state.federation(&id)?;
    let limit = u32::try_from(MAX_GOSSIP_HEADS).unwrap_or(u32::MAX);
    let heads = state.storage.gossip_heads(id.clone(), limit).await?;
    Ok(AppJson(GossipResponse {
        federation: id,
        heads,
    }))
}
