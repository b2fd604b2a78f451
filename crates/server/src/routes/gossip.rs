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
//!
//! A post may also carry the device's own signed upload commitments
//! (`hearth_fed::audit::commitment`, at most [`MAX_COMMITMENTS_PER_POST`]).
//! Each must name this federation, the posting device and a round the
//! federation had, and verify under the device's enrolled key; otherwise
//! the whole post is a `400 bad_request` saying which and why, and nothing
//! of it is stored (a server relays only what a device really signed).
//! The first commitment per device and round is kept, and appended to the
//! transparency log in the same transaction (an `upload_committed` entry),
//! where every device replays it and the posting device checks it is
//! (`hearth_fed::audit::logged`). `GET
//! {id}/gossip/commitments` (public, [`GossipCommitmentsQuery`]) serves
//! them by round, then device id, [`MAX_GOSSIP_COMMITMENTS`] a page, so
//! every device can hold the log's participation entries to the devices'
//! own word (`hearth_fed::audit::uploads`).

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use ed25519_dalek::Signature;
use hearth_fed::audit::SignedUploadCommitment;
use hearth_fed::audit::wire::{
    GOSSIP_BODY_LIMIT, GossipAccepted, GossipCommitmentsQuery, GossipCommitmentsResponse,
    GossipPost, GossipResponse, MAX_COMMITMENTS_PER_POST, MAX_GOSSIP_COMMITMENTS, MAX_GOSSIP_HEADS,
};
use hearth_fed::audit::{UploadCommitment, commitment::MAX_COMMITMENT_ID_LEN};
use hearth_ledger::Hash;

use crate::AppState;
use crate::error::AppError;
use crate::extract::{AppJson, SignedRequest};
use crate::storage::{DeviceRecord, GossipCommitment, GossipHead};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{id}/gossip",
            super::with_body_limit(get(heads).post(post_head), GOSSIP_BODY_LIMIT),
        )
        .route("/{id}/gossip/commitments", get(commitments))
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
    let at_ms = crate::now_ms();
    let commitments = if post.commitments.is_empty() {
        Vec::new()
    } else {
        let last_round = state.storage.last_round_number(id.clone()).await?;
        checked_commitments(&post.commitments, &id, &signed.device, last_round, at_ms)?
    };
    let matches_log = state
        .storage
        .record_gossip_head(GossipHead {
            federation_id: id,
            device_id: signed.device.id.clone(),
            sth: post.sth,
            at_ms,
        })
        .await?;
    let commitments_stored = if commitments.is_empty() {
        0
    } else {
        state.storage.record_gossip_commitments(commitments).await?
    };
    Ok(AppJson(GossipAccepted {
        matches_log,
        commitments_stored,
    }))
}

/// The posted commitments as stored, each checked: this federation, the
/// posting device, a round the federation had, a signature under the
/// device's enrolled key.
fn checked_commitments(
    posted: &[SignedUploadCommitment],
    federation: &str,
    device: &DeviceRecord,
    last_round: u64,
    at_ms: u64,
) -> Result<Vec<GossipCommitment>, AppError> {
    if posted.len() > MAX_COMMITMENTS_PER_POST {
        return Err(AppError::BadRequest(format!(
            "a gossip post carries at most {MAX_COMMITMENTS_PER_POST} upload commitments, not {}",
            posted.len()
        )));
    }
    let mut out = Vec::with_capacity(posted.len());
    for signed in posted {
        let c = &signed.commitment;
        if c.federation != federation {
            return Err(AppError::BadRequest(format!(
                "an upload commitment for federation {:?} was posted to {federation:?}",
                c.federation
            )));
        }
        if c.device != device.id {
            return Err(AppError::BadRequest(format!(
                "the upload commitment names device {:?}, not the posting device {:?}: a device \
                 gossips only its own commitments",
                c.device, device.id
            )));
        }
        if c.round == 0 || c.round > last_round {
            return Err(AppError::BadRequest(format!(
                "round {} of {federation} does not exist (the latest is {last_round})",
                c.round
            )));
        }
        signed
            .verify(&device.public_key)
            .map_err(|e| AppError::BadRequest(format!("{e} (its enrolled key): not stored")))?;
        out.push(GossipCommitment {
            federation_id: federation.to_owned(),
            round: c.round,
            device_id: c.device.clone(),
            upload_sha256: *c.upload_sha256.as_bytes(),
            round_digest: *c.round_digest.as_bytes(),
            signature: signed.signature.to_bytes(),
            at_ms,
        });
    }
    Ok(out)
}

async fn commitments(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<GossipCommitmentsQuery>, QueryRejection>,
) -> Result<AppJson<GossipCommitmentsResponse>, AppError> {
    state.federation(&id)?;
    let Query(query) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let after = match (query.after_round, query.after_device) {
        (None, None) => None,
        (Some(round), device) => {
            let device = device.unwrap_or_default();
            if device.len() > MAX_COMMITMENT_ID_LEN {
                return Err(AppError::BadRequest("after_device is too long".into()));
            }
            Some((round, device))
        }
        (None, Some(_)) => {
            return Err(AppError::BadRequest(
                "after_device needs after_round".into(),
            ));
        }
    };
    // One more than a page, to tell whether more follow.
    let limit = u32::try_from(MAX_GOSSIP_COMMITMENTS + 1).unwrap_or(u32::MAX);
    let mut stored = state
        .storage
        .gossip_commitments(id.clone(), after, limit)
        .await?;
    let more = stored.len() > MAX_GOSSIP_COMMITMENTS;
    stored.truncate(MAX_GOSSIP_COMMITMENTS);
    let commitments = stored
        .into_iter()
        .map(|c| SignedUploadCommitment {
            commitment: UploadCommitment {
                federation: c.federation_id,
                round: c.round,
                device: c.device_id,
                upload_sha256: Hash::from_bytes(c.upload_sha256),
                round_digest: Hash::from_bytes(c.round_digest),
            },
            signature: Signature::from_bytes(&c.signature),
        })
        .collect();
    Ok(AppJson(GossipCommitmentsResponse {
        federation: id,
        commitments,
        more,
    }))
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
