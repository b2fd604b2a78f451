//! `/v1/log/...`: the transparency log, public and read-only.
//!
//! Anyone may read the log (devices, auditors, the operator): the key,
//! the latest signed tree head, inclusion and consistency proofs, ranges of
//! entries, the entry of a published adapter version, and the enrolments
//! of a list of devices (a `POST`: a cohort's keys do not fit a query). Request and
//! answer types are `hearth_fed::audit::wire`, the same ones the device's
//! verifier consumes. Bad parameters are `400 bad_request` with a message
//! saying what is wrong; unknown entries `404 not_found`.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use hearth_fed::audit::wire::{
    AdapterEntryResponse, AdapterQuery, ConsistencyProofResponse, ConsistencyQuery,
    ENROLMENTS_BODY_LIMIT, EnrolmentsQuery, EnrolmentsResponse, EntriesQuery, EntriesResponse,
    EntryResponse, InclusionProofResponse, InclusionQuery, LogKeyResponse,
    MAX_ENROLMENTS_PER_REQUEST, MAX_ENTRIES_PER_REQUEST, ProvenEntry, SthResponse,
};

use crate::AppState;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::storage::LogInclusion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/key", get(key))
        .route("/sth", get(sth))
        .route("/proof/inclusion", get(inclusion))
        .route("/proof/consistency", get(consistency))
        .route("/entries", get(entries))
        .route("/adapter", get(adapter))
        .route(
            "/enrolments",
            post(enrolments).layer(DefaultBodyLimit::max(ENROLMENTS_BODY_LIMIT)),
        )
}

/// Query strings that do not parse answer in our error shape, with
/// axum's explanation of what is wrong.
fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    query
        .map(|Query(q)| q)
        .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
}

fn proof_response(p: LogInclusion) -> InclusionProofResponse {
    InclusionProofResponse {
        index: p.index,
        size: p.size,
        leaf_hash: p.leaf_hash,
        path: p.path,
    }
}

async fn key(State(state): State<AppState>) -> AppJson<LogKeyResponse> {
    AppJson(LogKeyResponse::new(&state.log_key.public()))
}

async fn sth(State(state): State<AppState>) -> Result<AppJson<SthResponse>, AppError> {
    let signed = state
        .storage
        .signed_tree_head(Arc::clone(&state.log_key), crate::now_ms())
        .await?;
    Ok(AppJson(signed))
}

async fn inclusion(
    State(state): State<AppState>,
    query: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<AppJson<InclusionProofResponse>, AppError> {
    let q = params(query)?;
    let proof = match (q.index, q.hash) {
        (Some(index), None) => state.storage.log_inclusion_proof(index, q.size).await?,
        (None, Some(hash)) => state
            .storage
            .log_inclusion_proof_by_hash(hash, q.size)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(format!(
                    "no entry with leaf hash {hash} among the first {} entries",
                    q.size
                ))
            })?,
        _ => {
            return Err(AppError::BadRequest(
                "give exactly one of index= and hash=, and size=".into(),
            ));
        }
    };
    Ok(AppJson(proof_response(proof)))
}

async fn consistency(
    State(state): State<AppState>,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<AppJson<ConsistencyProofResponse>, AppError> {
    let q = params(query)?;
    if q.old > q.new {
        return Err(AppError::BadRequest(format!(
            "old size {} is larger than new size {}: a log only grows",
            q.old, q.new
        )));
    }
    let path = state.storage.log_consistency_proof(q.old, q.new).await?;
    Ok(AppJson(ConsistencyProofResponse {
        old: q.old,
        new: q.new,
        path,
    }))
}

async fn entries(
    State(state): State<AppState>,
    query: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<AppJson<EntriesResponse>, AppError> {
    let q = params(query)?;
    if q.start >= q.end {
        return Err(AppError::BadRequest(format!(
            "empty range {}..{}: start must be below end",
            q.start, q.end
        )));
    }
    if q.end - q.start > MAX_ENTRIES_PER_REQUEST {
        return Err(AppError::BadRequest(format!(
            "at most {MAX_ENTRIES_PER_REQUEST} entries per request; ask for {}..{}",
            q.start,
            q.start.saturating_add(MAX_ENTRIES_PER_REQUEST)
        )));
    }
    let leaves = state.storage.log_entries(q.start, q.end).await?;
    Ok(AppJson(EntriesResponse {
        start: q.start,
        end: q.end,
        entries: leaves
            .iter()
            .map(|leaf| EntryResponse::new(leaf.index, &leaf.leaf_data))
            .collect(),
    }))
}

async fn adapter(
    State(state): State<AppState>,
    query: Result<Query<AdapterQuery>, QueryRejection>,
) -> Result<AppJson<AdapterEntryResponse>, AppError> {
    let q = params(query)?;
    let (leaf, proof) = state
        .storage
        .log_adapter_entry(q.federation.clone(), q.version, q.size)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "the log has no published adapter version {} of federation {:?}",
                q.version, q.federation
            ))
        })?;
    Ok(AppJson(AdapterEntryResponse {
        entry: EntryResponse::new(leaf.index, &leaf.leaf_data),
        proof: proof_response(proof),
    }))
}

async fn enrolments(
    State(state): State<AppState>,
    AppJson(q): AppJson<EnrolmentsQuery>,
) -> Result<AppJson<EnrolmentsResponse>, AppError> {
    if q.devices.len() > MAX_ENROLMENTS_PER_REQUEST {
        return Err(AppError::BadRequest(format!(
            "at most {MAX_ENROLMENTS_PER_REQUEST} devices per request, not {}",
            q.devices.len()
        )));
    }
    let keys = q.devices.iter().map(|d| *d.as_bytes()).collect();
    let found = state
        .storage
        .log_enrolment_entries(q.federation, keys, q.size)
        .await?;
    Ok(AppJson(EnrolmentsResponse {
        size: q.size,
        enrolments: found
            .into_iter()
            .map(|(leaf, proof)| ProvenEntry {
                entry: EntryResponse::new(leaf.index, &leaf.leaf_data),
                proof: proof_response(proof),
            })
            .collect(),
    }))
}
