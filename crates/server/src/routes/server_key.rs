//! `GET /v1/server-key`: the Ed25519 key the server signs published global
//! adapters with. Devices fetch it over the pinned TLS connection when they
//! join, keep it, and check every adapter they download against it.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use hearth_fed::api::{SERVER_KEY_ALGORITHM, ServerKeyInfo};

use crate::AppState;
use crate::extract::AppJson;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/server-key", get(server_key))
}

async fn server_key(State(state): State<AppState>) -> AppJson<ServerKeyInfo> {
    AppJson(ServerKeyInfo {
        algorithm: SERVER_KEY_ALGORITHM.to_owned(),
        public_key: state.identity.public_key_base64(),
    })
}
