//! The SecAgg+ round (Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure
//! Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020) as
//! state machines that take messages in and give messages out. No I/O: the
//! server crate carries the messages and persists the server's state; the
//! CLI carries the client's.
//!
//! # The round
//!
//! 0. The server publishes [`RoundInfo`], including
//!    the neighbour-graph seed.
//! 1. Each client makes fresh round keys and sends a signed
//!    [`AdvertiseKeys`](crate::wire::AdvertiseKeys).
//! 2. At the stage deadline the cohort is fixed (sorted device ids); each
//!    client gets the cohort and its neighbours' advertisements, checks every
//!    signature, re-derives its neighbourhood from the seed, and
//! 3. Shamir-shares its mask scalar `σ` and self-mask scalar `β` among its
//!    `k` neighbours with threshold `t`, each pair of shares sealed to the
//!    neighbour's share key.
//! 4. The server forwards each client the shares sealed to it by neighbours
//!    that completed step 3; those neighbours are exactly whom it masks with.
//! 5. Each client uploads `x + PRG(β-seed) ± PRG(pairwise seeds)`; the server
//!    sums uploads as they arrive.
//! 6. At the deadline the server shows each uploader the survivor set (whose
//!    uploads are in the sum), and
//! 7. each uploader that is in it signs it ([`consistency`]).
//! 8. The server relays to each signer its neighbours' signatures; a signer
//!    that sees `t` neighbours' signatures over the set it signed reveals,
//!    for each neighbour, the `β` share if that neighbour is in the set and
//!    the `σ` share if it shared but is not.
//! 9. With `t` shares of each needed secret, the server removes survivors'
//!    self masks and the pairwise masks survivors shared with dropped
//!    clients, leaving exactly `Σ x_i` over the uploaders.
//!
//! Every signature, key derivation and share box is bound to the round's
//! parameter digest ([`RoundInfo::digest`]), and share boxes and consistency
//! signatures to the cohort list too, so devices shown different views of
//! one round cannot complete it with each other.
//!
//! # Why the server never gets both secrets behind a device's masks
//!
//! A neighbour `j`'s upload is `x_j + PRG(β_j) + pairwise masks`. Knowing
//! `β_j` removes the self mask; knowing `σ` of each of `j`'s neighbours (or
//! `σ_j` itself) lets the server recompute `j`'s pairwise masks. The server
//! learns `β_j` only if `t` of `j`'s neighbours act on a survivor set that
//! contains `j`, and a neighbour's `σ_m` only if `t` of `m`'s neighbours act
//! on a set without `m`. Each honest client signs one set, only one that
//! contains itself, and acts only when `t` of its neighbours signed the
//! same set; with `2t > k`, a device's honest neighbours cannot split into
//! two groups of `t` acting on different sets. Without the consistency
//! round the server could tell the two groups different stories (the test
//! in `protocol::attacks` does, and reads one device's update).
//!
//! [`Neighbourhood`]: crate::graph::Neighbourhood

pub mod client;
pub(crate) mod consistency;
pub mod server;

#[cfg(test)]
mod attacks;

pub use client::{
    ClientAwaitingNeighbours, ClientAwaitingShares, ClientAwaitingSurvivors, ClientAwaitingUnmask,
    ClientError, ClientReadyToUpload, ClientRound,
};
pub use consistency::SurvivorSetError;
pub use server::{
    AbortReason, Aborted, AggregatorRound, CheckingConsistency, CollectingKeys, CollectingUploads,
    DeviceStatus, Done, ServerError, SharingKeys, Stage, SumError, Unmasking,
};

use crate::dp::{DistributedDp, DpError};
use crate::graph::GraphError;
use crate::ids::{FederationId, RoundContext, RoundId};
use crate::wire::{MAX_VECTOR_LEN, RoundInfo};

/// Why round parameters are unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Vector length 0 or above [`MAX_VECTOR_LEN`].
    #[error("vector length {len} is outside 1..={max}")]
    VectorLen {
        /// The length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Client bounds out of order, or a minimum below 2 (aggregating one
    /// client would publish its update).
    #[error(
        "need 2 <= min_survivors ({min_survivors}) <= min_clients ({min_clients}) <= max_clients ({max_clients})"
    )]
    ClientBounds {
        /// Fewest survivors.
        min_survivors: u32,
        /// Fewest clients.
        min_clients: u32,
        /// Most clients.
        max_clients: u32,
    },
    /// The DP policy cannot be met.
    #[error(transparent)]
    Dp(#[from] DpError),
    /// The degree or threshold cannot work.
    #[error(transparent)]
    Neighbourhood(#[from] GraphError),
}

impl RoundInfo {
    /// Checks the parameters are consistent and usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vector_len == 0 || self.vector_len > MAX_VECTOR_LEN {
            return Err(ConfigError::VectorLen {
                len: self.vector_len,
                max: MAX_VECTOR_LEN,
            });
        }
        if !(2 <= self.min_survivors
            && self.min_survivors <= self.min_clients
            && self.min_clients <= self.max_clients
            && self.max_clients <= 1 << 24)
        {
            return Err(ConfigError::ClientBounds {
                min_survivors: self.min_survivors,
                min_clients: self.min_clients,
                max_clients: self.max_clients,
            });
        }
        // Every cohort size the server could form must have a neighbourhood.
        // The resolved degree grows with n, so checking both ends suffices:
        // `t <= k` is hardest at the smallest cohort, `2t > k` at the largest.
        for n in [self.min_clients, self.max_clients] {
            self.neighbourhood(n)?;
        }
        self.distributed_dp()?;
        Ok(())
    }

    /// The DP encoder/decoder for this round: noise split over
    /// `min_survivors`, wrap-around bound for `max_clients`.
    pub fn distributed_dp(&self) -> Result<DistributedDp, DpError> {
        DistributedDp::new(self.dp, self.min_survivors, self.max_clients)
    }

    /// SHA-256 of the canonical encoding of every field: what the
    /// transparency log records before the round starts, and what every
    /// signature, key derivation and share box of the round is bound to
    /// (through [`RoundContext`]). Two devices shown different parameters
    /// for one round hold different digests, and nothing one of them signs
    /// or seals is accepted by the other.
    /// The canonical encoding is [`crate::audit::parameters::encode`], which
    /// the transparency log stores with the digest.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(crate::audit::parameters::encode(self)).into()
    }

    /// The neighbourhood a cohort of `nodes` runs with: the explicit degree
    /// and threshold if set, else the threat model's (Bell et al.'s
    /// bounds), else about `log2 n`. Every device and the server resolve it
    /// the same way from the same parameters.
    pub fn neighbourhood(&self, nodes: u32) -> Result<crate::graph::Neighbourhood, GraphError> {
        match (self.degree, self.threat_model) {
            (None, Some(model)) => match self.threshold {
                None => model.neighbourhood(nodes),
                Some(t) => {
                    let k = model.neighbourhood(nodes)?.degree;
                    crate::graph::Neighbourhood::resolve(nodes, Some(k), Some(t))
                }
            },
            _ => crate::graph::Neighbourhood::resolve(nodes, self.degree, self.threshold),
        }
    }

    pub(crate) fn context(&self) -> RoundContext {
        RoundContext::bound(self.federation, self.round, self.digest())
    }

    pub(crate) fn is_this_round(&self, federation: FederationId, round: RoundId) -> bool {
        self.federation == federation && self.round == round
    }
}
