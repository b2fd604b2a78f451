//! The HTTP surface a device and the federation server share: paths, header
//! names and the small JSON bodies that are not protocol messages. Server
//! and client both build on these definitions, so a renamed field or path
//! breaks the build rather than the federation. Serde only; no network.
//!
//! | method | path | body in | body out |
//! |--------|------|---------|----------|
//! | GET | `/v1/server-key` | | [`ServerKeyInfo`] |
//! | GET | `/v1/federations/{id}/global/latest` | | safetensors + `x-hearth-*` headers |
//! | GET | `/v1/federations/{id}/rounds/{round}/poll` (signed) | | [`RoundPoll`] |
//! | POST | `…/rounds/{round}/keys` (signed) | [`AdvertiseKeys`](crate::AdvertiseKeys) | [`RoundReceipt`] |
//! | POST | `…/rounds/{round}/shares` (signed) | [`EncryptedShares`](crate::EncryptedShares) | [`RoundReceipt`] |
//! | POST | `…/rounds/{round}/upload` (signed) | binary [`MaskedUpload`](crate::MaskedUpload) | [`RoundReceipt`] |
//! | POST | `…/rounds/{round}/unmask` (signed) | [`UnmaskResponse`](crate::UnmaskResponse) | [`RoundReceipt`] |

use serde::{Deserialize, Serialize};

use crate::wire::ServerMessage;

/// Header: the version number of the global adapter in the body.
pub const GLOBAL_VERSION_HEADER: &str = "x-hearth-global-version";
/// Header: the round that produced it (0 for version 0).
pub const GLOBAL_ROUND_HEADER: &str = "x-hearth-round";
/// Header: hex SHA-256 of the body.
pub const GLOBAL_SHA256_HEADER: &str = "x-hearth-sha256";
/// Header: publication time, milliseconds since the Unix epoch.
pub const GLOBAL_PUBLISHED_HEADER: &str = "x-hearth-published-at-ms";
/// Header: devices whose updates are in it.
pub const GLOBAL_CONTRIBUTORS_HEADER: &str = "x-hearth-contributors";
/// Header: the round's ε (decimal, shortest round-trip form) or `none`.
pub const GLOBAL_EPSILON_HEADER: &str = "x-hearth-epsilon";
/// Header: base64url Ed25519 signature of the
/// [`GlobalStatement`](crate::global::GlobalStatement) by the server key.
pub const GLOBAL_SIGNATURE_HEADER: &str = "x-hearth-global-signature";

/// The one signature algorithm of server keys.
pub const SERVER_KEY_ALGORITHM: &str = "ed25519";

/// `GET /v1/server-key`: the key the server signs published adapters with.
/// A device pins it when it joins and checks every adapter against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerKeyInfo {
    /// Always [`SERVER_KEY_ALGORITHM`].
    pub algorithm: String,
    /// The Ed25519 public key, base64url without padding.
    pub public_key: String,
}

/// The last path segment of each round endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEndpoint {
    /// What the server has for this device now.
    Poll,
    /// Step 1: signed round keys.
    Keys,
    /// Step 3: sealed shares.
    Shares,
    /// Step 5: the binary masked upload.
    Upload,
    /// Step 7: the signature over the survivor set.
    Consistency,
    /// Step 9: revealed shares.
    Unmask,
}

impl RoundEndpoint {
    /// The path segment.
    pub const fn segment(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Keys => "keys",
            Self::Shares => "shares",
            Self::Upload => "upload",
            Self::Consistency => "consistency",
            Self::Unmask => "unmask",
        }
    }

    /// The full path for a federation's round.
    pub fn path(self, federation: &str, round: u64) -> String {
        format!(
            "/v1/federations/{federation}/rounds/{round}/{}",
            self.segment()
        )
    }
}

/// The answer to polling a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum RoundPoll {
    /// The device's message for the current stage.
    Message {
        /// What to process.
        message: ServerMessage,
    },
    /// Nothing new for this device yet (it answered this stage, and others
    /// have not); ask again after this long.
    Wait {
        /// Milliseconds until the next poll.
        retry_after_ms: u64,
    },
    /// The round carries on without this device (it missed a stage).
    Excluded {
        /// Why.
        reason: String,
    },
    /// The round ended without a result; nothing was published.
    Aborted {
        /// Why.
        reason: String,
    },
    /// The round's aggregate was published as this global version.
    Done {
        /// The new global version.
        global_version: u64,
    },
}

/// The answer to a round message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundReceipt {
    /// The round.
    pub round: u64,
    /// Its stage after the message (`advertise_keys`, `share_keys`,
    /// `masked_input`, `consistency_check`, `unmasking`, or `published` / `aborted` when the
    /// message completed the round).
    pub stage: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_poll_answers_have_their_documented_shape() {
        assert_eq!(
            RoundEndpoint::Upload.path("notes", 7),
            "/v1/federations/notes/rounds/7/upload"
        );
        let wait = serde_json::to_value(RoundPoll::Wait {
            retry_after_ms: 250,
        })
        .unwrap();
        assert_eq!(
            wait,
            serde_json::json!({"status": "wait", "retry_after_ms": 250})
        );
        let done: RoundPoll =
            serde_json::from_str(r#"{"status":"done","global_version":3}"#).unwrap();
        assert_eq!(done, RoundPoll::Done { global_version: 3 });
    }
}
