//! Hearth's federation protocol: secure aggregation with distributed
//! differential privacy, as a pure library. Messages in, messages out; no
//! network, no clock, no storage.
//!
//! A round is SecAgg+ (Bell et al., CCS 2020): each client masks its update
//! with a self mask and pairwise masks agreed with `O(log n)` neighbours, and
//! Shamir-shares the secrets behind those masks among the same neighbours,
//! so the server can remove the masks of clients that drop out without ever
//! seeing one client's update. Before masking, each client clips, quantizes
//! and adds its share of discrete Gaussian noise (Kairouz, Liu & Steinke,
//! ICML 2021), so the sum the server unmasks is differentially private.
//!
//! - [`protocol`]: the round as state machines. Client: [`ClientRound`] →
//!   [`ClientAwaitingNeighbours`] → [`ClientAwaitingShares`] →
//!   [`ClientReadyToUpload`] → [`ClientAwaitingSurvivors`] →
//!   [`ClientAwaitingUnmask`], each consumed by value. Server:
//!   [`AggregatorRound`], serializable at every stage.
//! - [`wire`]: serde message types and the binary upload codec.
//! - [`dp`]: clipping, fixed-point encoding, the discrete Gaussian sampler,
//!   the zCDP [`PrivacyAccountant`].
//! - [`crypto`], [`shamir`], [`mask`], [`graph`]: the parts, each from a
//!   well-kept crate (dalek, RustCrypto), composed here.
//! - [`audit`]: the device's check of the server's transparency log after
//!   every round (signed heads, consistency, its own commitment, the
//!   published adapter), and the log API's types ([`audit::wire`]).
//! - [`bench`](mod@bench): timings for `hearth bench secagg`.
//! - [`global`]: the global adapter (layout, version 0, safetensors, the
//!   signed publication statement); [`request_auth`]: how devices sign
//!   HTTP requests; [`api`]: the paths and small bodies of the HTTP API.
//!   All pure, shared by the server and the client.
//! - `client` (cargo feature `client`, off by default so the protocol core
//!   stays network-free): a blocking HTTPS driver that enrols, checks in,
//!   fetches the signed global adapter and walks a round.
//!
//! # A round, in process
//!
//! ```
//! use hearth_fed::{AggregatorRound, ClientMessage, ClientRound, DeviceIdentity, DpConfig,
//!                  FederationId, GraphSeed, RoundId, RoundInfo, ServerMessage};
//! use rand::rngs::OsRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let info = RoundInfo {
//!     federation: FederationId::random(&mut OsRng),
//!     round: RoundId(1),
//!     vector_len: 4,
//!     min_clients: 3,
//!     max_clients: 3,
//!     min_survivors: 2,
//!     degree: None,
//!     threshold: None,
//!     graph_seed: GraphSeed::random(&mut OsRng),
//!     dp: DpConfig { clip_norm: 1.0, noise_multiplier: 0.0 },
//!     threat_model: None,
//! };
//! let mut server = AggregatorRound::new(info.clone())?;
//!
//! // 1. Each client advertises signed round keys.
//! let mut clients = Vec::new();
//! for _ in 0..3 {
//!     let identity = DeviceIdentity::generate(&mut OsRng);
//!     let (advert, client) = ClientRound::new(&identity, info.clone(), &mut OsRng)?;
//!     server.receive(ClientMessage::AdvertiseKeys(advert))?;
//!     clients.push((identity.device_id(), identity, client));
//! }
//! server = server.close_stage();
//!
//! // 2–3. Each checks its neighbours' keys and seals them shares.
//! let mut sharing = Vec::new();
//! for (device, identity, client) in clients {
//!     let ServerMessage::NeighbourKeys(keys) = server.message_for(&device)? else { unreachable!() };
//!     let (shares, client) = client.receive_neighbours(&keys, &mut OsRng)?;
//!     server.receive(ClientMessage::EncryptedShares(shares))?;
//!     sharing.push((device, identity, client));
//! }
//! server = server.close_stage();
//!
//! // 4–5. Each opens its shares, then uploads its encoded, masked update.
//! let dp = info.distributed_dp()?;
//! let mut uploaded = Vec::new();
//! for (device, identity, client) in sharing {
//!     let ServerMessage::SharesForDevice(shares) = server.message_for(&device)? else { unreachable!() };
//!     let ready = client.receive_shares(&shares)?;
//!     let update = dp.encode(&[0.25, -0.5, 0.0, 0.125], &mut OsRng)?;
//!     let (upload, client) = ready.upload(&update)?;
//!     server.receive_upload_bytes(&upload.encode())?;
//!     uploaded.push((device, identity, client));
//! }
//! server = server.close_stage();
//!
//! // 6–7. Each uploader signs the survivor set it is shown (consistency round).
//! let mut signed = Vec::new();
//! for (device, identity, client) in uploaded {
//!     let ServerMessage::SurvivorSet(set) = server.message_for(&device)? else { unreachable!() };
//!     let (signature, client) = client.sign_survivors(&identity, &set)?;
//!     server.receive(ClientMessage::ConsistencySignature(signature))?;
//!     signed.push((device, client));
//! }
//! server = server.close_stage();
//!
//! // 8–9. With t neighbours' signatures over that set, each reveals the
//! // shares the server needs to unmask the sum.
//! for (device, client) in signed {
//!     let ServerMessage::UnmaskRequest(request) = server.message_for(&device)? else { unreachable!() };
//!     server.receive(ClientMessage::UnmaskResponse(client.respond(&request)?))?;
//! }
//! let AggregatorRound::Done(done) = server.close_stage() else { unreachable!() };
//! let mean = done.decode_mean()?;
//! assert!((mean[0] - 0.25).abs() < 1e-6 && (mean[1] + 0.5).abs() < 1e-6);
//! # Ok(()) }
//! ```
//!
//! # Trust
//!
//! The server is trusted to deliver messages, not to keep secrets: it sees
//! public keys, sealed shares it cannot open, masked vectors, and the shares
//! clients reveal for unmasking, from which it learns the sum and nothing
//! else as long as it cannot get both shares of any one client (see
//! [`protocol`]). Clients check every signature on relayed keys and derive
//! their neighbourhoods themselves. A device's identity key is its name
//! ([`DeviceId`]); binding names to people is enrolment's job, in the server
//! crate and the transparency log.
#![forbid(unsafe_code, unused_must_use)]
#![deny(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod api;
pub mod audit;
pub mod bench;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod crypto;
pub mod dp;
pub mod global;
pub mod graph;
mod ids;
pub mod mask;
pub mod protocol;
pub mod request_auth;
pub mod shamir;
pub mod wire;

pub use crypto::round_keys::AdvertisementVerified;
pub use crypto::{CryptoError, DeviceId, DeviceIdentity, IdentityKey};
pub use dp::{DistributedDp, DpConfig, DpError, PrivacyAccountant};
pub use graph::{GraphSeed, Neighbourhood};
pub use ids::{FederationId, RoundId};
pub use protocol::{
    AbortReason, Aborted, AggregatorRound, ClientAwaitingNeighbours, ClientAwaitingShares,
    ClientAwaitingSurvivors, ClientAwaitingUnmask, ClientError, ClientReadyToUpload, ClientRound,
    ConfigError, DeviceStatus, Done, ServerError, Stage,
};
pub use wire::{
    AdvertiseKeys, ClientMessage, ConsistencySignature, EncryptedShares, MaskedUpload,
    NeighbourKeys, RoundInfo, ServerMessage, SharesForDevice, SurvivorSet, UnmaskRequest,
    UnmaskResponse,
};
