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
//! 6. At the deadline the server asks each uploader, for each of its
//!    neighbours, for the `β` share if that neighbour uploaded and for the
//!    `σ` share if it dropped after step 3.
//! 7. With `t` shares of each needed secret, the server removes survivors'
//!    self masks and the pairwise masks survivors shared with dropped
//!    clients, leaving exactly `Σ x_i` over the uploaders.
//!
//! # Why a client never reveals both shares of one neighbour
//!
//! A neighbour `j`'s upload is `x_j + PRG(β_j) + pairwise masks`. Knowing
//! `β_j` removes the self mask; knowing `σ_j` lets the server recompute all
//! of `j`'s pairwise masks. Both together expose `x_j` alone. The server
//! learns `β_j` only if `t` neighbours say "`j` survived" and `σ_j` only if
//! `t` say "`j` dropped". Each honest client answers one request, once (its
//! state is consumed), and refuses a request naming `j` in both lists; with
//! `2t > k` no server can find two disjoint sets of `t` honest neighbours,
//! so it can never hold both. That is the check in
//! [`ClientAwaitingUnmask::respond`], and why [`Neighbourhood`] insists on
//! `2t > k`.
//!
//! [`Neighbourhood`]: crate::graph::Neighbourhood

pub mod client;
pub mod server;

#[cfg(test)]
mod attacks;

pub use client::{
    ClientAwaitingNeighbours, ClientAwaitingShares, ClientAwaitingUnmask, ClientError,
    ClientReadyToUpload, ClientRound,
};
pub use server::{
    AbortReason, Aborted, AggregatorRound, CollectingKeys, CollectingUploads, DeviceStatus, Done,
    ServerError, SharingKeys, Stage, Unmasking,
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
            crate::graph::Neighbourhood::resolve(n, self.degree, self.threshold)?;
        }
        self.distributed_dp()?;
        Ok(())
    }

    /// The DP encoder/decoder for this round: noise split over
    /// `min_survivors`, wrap-around bound for `max_clients`.
    pub fn distributed_dp(&self) -> Result<DistributedDp, DpError> {
        DistributedDp::new(self.dp, self.min_survivors, self.max_clients)
    }

    pub(crate) fn context(&self) -> RoundContext {
        RoundContext::new(self.federation, self.round)
    }

    pub(crate) fn is_this_round(&self, federation: FederationId, round: RoundId) -> bool {
        self.federation == federation && self.round == round
    }
}
