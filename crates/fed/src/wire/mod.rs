//! Every message of a round, as serde types (JSON-friendly: 32-byte names
//! and keys in hex, other bytes in base64), plus a compact binary codec
//! ([`codec`]) for the one large message, the masked vector.
//!
//! | step | from → to | message |
//! |------|-----------|---------|
//! | 0 | server → all | [`RoundInfo`] |
//! | 1 | client → server | [`AdvertiseKeys`] (signed) |
//! | 2 | server → client | [`NeighbourKeys`] |
//! | 3 | client → server | [`EncryptedShares`] |
//! | 4 | server → client | [`SharesForDevice`] |
//! | 5 | client → server | [`MaskedUpload`] (binary) |
//! | 6 | server → uploader | [`SurvivorSet`] |
//! | 7 | uploader → server | [`ConsistencySignature`] (signed) |
//! | 8 | server → signer | [`UnmaskRequest`] (neighbours' signatures) |
//! | 9 | signer → server | [`UnmaskResponse`] |
//!
//! [`ClientMessage`] and [`ServerMessage`] wrap them with a `"type"` tag for
//! a single endpoint each way.
//!
//! [`AdvertiseKeys`] and [`ConsistencySignature`] carry signatures: they are
//! the messages whose contents the server relays to *other clients*, who
//! must not have to trust the server for them. Both are bound to the round's
//! parameter digest ([`RoundInfo::digest`]), so one made under one view of
//! the round verifies under no other. Every other message goes between a
//! client and the server only, and the transport (the server crate's
//! authenticated device requests) vouches for its sender.

pub mod codec;
pub(crate) mod encoding;
mod size;

pub use codec::{CodecError, UPLOAD_HEADER_LEN, UPLOAD_MAGIC, UPLOAD_VERSION, UploadHeader};
pub use size::{ClientBytes, client_bytes_per_round};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use x25519_dalek::PublicKey;

use crate::crypto::DeviceId;
use crate::dp::DpConfig;
use crate::graph::{GraphSeed, ThreatModel};
use crate::ids::{FederationId, RoundId};
use crate::shamir::{Commitments, Share};

pub use crate::crypto::share_box::SEALED_SHARE_LEN;

/// The longest vector a round may have: 2^28 parameters (a 1 GiB upload).
pub const MAX_VECTOR_LEN: u32 = 1 << 28;

/// Step 0, server → all: the public parameters of a round. Everything
/// afterwards is checked against it, by clients and server alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundInfo {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Length of the update vector, in parameters.
    pub vector_len: u32,
    /// Fewest clients to start with; fewer advertisements abort the round.
    pub min_clients: u32,
    /// Most clients accepted into the cohort; also the wrap-around bound of
    /// the fixed-point encoding.
    pub max_clients: u32,
    /// Fewest survivors the server will unmask; the DP noise is split over
    /// this many clients.
    pub min_survivors: u32,
    /// Neighbours per client (`None`: about `log2 n`, see
    /// [`crate::graph::default_degree`]).
    pub degree: Option<u32>,
    /// Shamir threshold per neighbourhood (`None`: `k/2 + 1`).
    pub threshold: Option<u32>,
    /// Seed of the neighbour graph, fixed before any client joins.
    pub graph_seed: GraphSeed,
    /// The DP policy.
    pub dp: DpConfig,
    /// What neighbourhoods are sized against when `degree` is `None`
    /// ([`ThreatModel::neighbourhood`], for the cohort that actually
    /// formed); `None`: about `log2 n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat_model: Option<ThreatModel>,
}

/// Step 1, client → server (relayed to neighbours in step 2): a client's
/// two round public keys and self-mask commitment, signed with its identity
/// key over `federation || round || device || keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertiseKeys {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The advertising device (its identity key).
    pub device: DeviceId,
    /// X25519 key that shares for this device are encrypted to.
    #[serde(with = "encoding::x25519_public")]
    pub share_key: PublicKey,
    /// X25519 key for pairwise mask agreement.
    #[serde(with = "encoding::x25519_public")]
    pub mask_key: PublicKey,
    /// Commitment to the self-mask scalar, checked after reconstruction.
    #[serde(with = "encoding::hex_array")]
    pub self_mask_commitment: [u8; 32],
    /// Ed25519 signature by `device`.
    #[serde(with = "encoding::signature")]
    pub signature: Signature,
}

/// Step 2, server → client: the cohort (sorted, so each client can derive
/// positions and the graph) and the signed advertisements of this client's
/// neighbours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourKeys {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Every device in the cohort, strictly ascending.
    pub cohort: Vec<DeviceId>,
    /// The advertisements of the recipient's neighbours.
    pub advertisements: Vec<AdvertiseKeys>,
}

/// One sealed share pair addressed to a neighbour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareForRecipient {
    /// The neighbour it is for.
    pub recipient: DeviceId,
    /// [`SEALED_SHARE_LEN`] bytes.
    #[serde(with = "encoding::base64_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Feldman commitments to the two polynomials a client shared its secrets
/// with, `t` points each: every share can be checked on its own, by its
/// recipient when it arrives and by the server when it is revealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingCommitments {
    /// For the mask scalar `σ`.
    pub mask_scalar: Commitments,
    /// For the self-mask scalar `β`.
    pub self_mask: Commitments,
}

/// Step 3, client → server: one sealed share pair for each neighbour, and
/// the commitments they can be checked against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShares {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The sender.
    pub sender: DeviceId,
    /// Exactly one per neighbour.
    pub shares: Vec<ShareForRecipient>,
    /// Commitments to the polynomials the shares lie on.
    pub commitments: SharingCommitments,
}

/// One sealed share pair, as forwarded to its recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareFromSender {
    /// The neighbour that sealed it.
    pub sender: DeviceId,
    /// [`SEALED_SHARE_LEN`] bytes.
    #[serde(with = "encoding::base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// The sender's commitments, to check the opened shares against.
    pub commitments: SharingCommitments,
}

/// Step 4, server → client: the shares the recipient's neighbours sealed to
/// it. Their senders are exactly the neighbours the recipient must mask
/// with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharesForDevice {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Whom they are for.
    pub recipient: DeviceId,
    /// One per neighbour that completed step 3.
    pub shares: Vec<ShareFromSender>,
}

/// Step 5, client → server: the masked, quantized update. Sent with the
/// binary [`codec`]; serde (base64) is a fallback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedUpload {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The uploading device.
    pub device: DeviceId,
    /// `x + self mask ± pairwise masks` in Z_2^32.
    #[serde(with = "encoding::u32_vec")]
    pub masked: Vec<u32>,
}

/// Step 6, server → uploader: the survivor set, every cohort position
/// whose masked upload is in the sum, as a bitmap (bit `i` of byte `i / 8`,
/// least significant first, `ceil(n / 8)` bytes). The uploader signs it
/// (step 7) only if it is in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorSet {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Whom it is for.
    pub recipient: DeviceId,
    /// The bitmap over cohort positions.
    #[serde(with = "encoding::base64_bytes")]
    pub survivors: Vec<u8>,
}

/// Step 7, uploader → server (relayed to its neighbours in step 8): its
/// signature over the round (parameter digest included), the cohort it was
/// shown and the survivor set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencySignature {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The signing device.
    pub sender: DeviceId,
    /// Ed25519 signature by `sender`.
    #[serde(with = "encoding::signature")]
    pub signature: Signature,
}

/// A neighbour's consistency signature, as relayed in step 8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorSignature {
    /// The neighbour that signed.
    pub device: DeviceId,
    /// Its signature over the survivor set.
    #[serde(with = "encoding::signature")]
    pub signature: Signature,
}

/// Step 8, server → signer: the survivor set again, with the consistency
/// signatures of the recipient's neighbours. The recipient reveals nothing
/// unless at least `t` of its neighbours signed exactly the set it signed;
/// then it reveals the self-mask share of each neighbour in the set and the
/// mask-key share of each neighbour outside it, never both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Whom it is for.
    pub recipient: DeviceId,
    /// The survivor set (as in step 6).
    #[serde(with = "encoding::base64_bytes")]
    pub survivors: Vec<u8>,
    /// The recipient's neighbours' signatures over it.
    pub signatures: Vec<SurvivorSignature>,
}

/// A share revealed to the server, of `owner`'s secret, at the sender's
/// x-coordinate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedShare {
    /// Whose secret it is a share of.
    pub owner: DeviceId,
    /// The share value.
    #[serde(with = "encoding::scalar")]
    pub value: curve25519_dalek::Scalar,
}

impl std::fmt::Debug for RevealedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedShare")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// Step 9, client → server: self-mask shares of surviving neighbours and
/// mask-key shares of dropped ones; never both for one neighbour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskResponse {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The responding device.
    pub sender: DeviceId,
    /// Shares of survivors' self-mask scalars `β`.
    pub self_mask_shares: Vec<RevealedShare>,
    /// Shares of dropped clients' mask scalars `σ`.
    pub mask_key_shares: Vec<RevealedShare>,
}

/// Any message a client sends, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum ClientMessage {
    /// Step 1.
    AdvertiseKeys(AdvertiseKeys),
    /// Step 3.
    EncryptedShares(EncryptedShares),
    /// Step 5 (JSON fallback; normally binary).
    MaskedUpload(MaskedUpload),
    /// Step 7.
    ConsistencySignature(ConsistencySignature),
    /// Step 9.
    UnmaskResponse(UnmaskResponse),
}

/// Any message the server sends, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Step 0.
    RoundInfo(RoundInfo),
    /// Step 2.
    NeighbourKeys(NeighbourKeys),
    /// Step 4.
    SharesForDevice(SharesForDevice),
    /// Step 6.
    SurvivorSet(SurvivorSet),
    /// Step 8.
    UnmaskRequest(UnmaskRequest),
}

/// Convenience for the serialization round trip the network performs.
impl ClientMessage {
    /// JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl ServerMessage {
    /// JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Keeps `Share` (Shamir) and `RevealedShare` (wire) distinct types: the
/// wire does not say the x-coordinate, the server derives it from the
/// sender's cohort position.
pub(crate) fn share_at(x: u32, revealed: &RevealedShare) -> Share {
    Share {
        x,
        y: revealed.value,
    }
}
