//! Measurements behind `hearth bench secagg`: the real protocol code, run
//! in process, timed.
//!
//! - [`client_masking`]: one client's cost for a `params`-parameter update
//!   with `k` neighbours: DP encoding, key agreement and sharing, and the
//!   masking step (one self mask and `k` pairwise masks, each a ChaCha20
//!   expansion of the whole vector), plus the exact bytes it sends.
//! - [`server_unmask`]: the server's cost for `n` clients of which a
//!   fraction drop after sharing: accepting uploads into the running sum and
//!   the unmasking close (reconstructing secrets, regenerating survivors'
//!   self masks and the pairwise masks of survivors with dropped clients).
//!
//! In [`server_unmask`] every message but the masked vectors is real: keys,
//! signatures, sealed and revealed shares, reconstruction. The masked
//! vectors are one uniformly random vector re-addressed to each client. That
//! is exactly what masked uploads look like to the server, and its work does
//! not depend on their contents, but it spares the benchmark `n` client
//! maskings; the sum it unmasks is therefore meaningless (the tests check
//! exact sums on real uploads). Dropouts are chosen at random among clients
//! whose absence the round can survive, so the figures are of an unmask, not
//! of an abort.
//!
//! Times are wall-clock seconds on all cores rayon is given.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_core::OsRng;
use rayon::prelude::*;

use crate::crypto::{DeviceId, DeviceIdentity};
use crate::dp::DpConfig;
use crate::graph::{GraphSeed, GraphSpec, NeighbourGraph, ThreatModel};
use crate::ids::{FederationId, RoundId};
use crate::protocol::{
    AbortReason, AggregatorRound, ClientAwaitingSurvivors, ClientAwaitingUnmask, ClientError,
    ClientReadyToUpload, ClientRound, ConfigError, ServerError,
};
use crate::wire::{ClientBytes, MaskedUpload, RoundInfo, client_bytes_per_round};

/// Why a benchmark could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Unusable sizes.
    #[error("bench parameters: {0}")]
    Config(#[from] ConfigError),
    /// A client step failed.
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// The server rejected a message.
    #[error("server: {0}")]
    Server(#[from] ServerError),
    /// The round aborted.
    #[error("round aborted: {0}")]
    Aborted(AbortReason),
    /// The round ended in an unexpected stage.
    #[error("round ended in the wrong stage")]
    Stage,
}

/// One client's costs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientMaskingFigures {
    /// Update length.
    pub params: usize,
    /// Neighbours.
    pub neighbours: usize,
    /// Clip, quantize and add discrete Gaussian noise.
    pub dp_encode_seconds: f64,
    /// Round keys, verifying neighbours, pairwise agreement, sealing shares,
    /// opening neighbours' shares.
    pub keys_and_shares_seconds: f64,
    /// Self mask plus `k` pairwise masks over the vector.
    pub masking_seconds: f64,
    /// Bytes sent in the round.
    pub bytes: ClientBytes,
}

/// The server's costs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerUnmaskFigures {
    /// Cohort size.
    pub clients: usize,
    /// Update length.
    pub params: usize,
    /// Clients that dropped after sharing.
    pub dropped: usize,
    /// Neighbours per client.
    pub degree: u32,
    /// Shamir threshold.
    pub threshold: u32,
    /// Verifying advertisements, serving keys, checking shares (server side
    /// of stages 1–2).
    pub key_stages_seconds: f64,
    /// Decoding and summing every upload as it arrives.
    pub upload_seconds: f64,
    /// Serving the survivor set, verifying every uploader's signature over
    /// it, and relaying neighbours' signatures (the consistency round).
    pub consistency_seconds: f64,
    /// Checking revealed shares and the unmasking close.
    pub unmask_seconds: f64,
    /// ChaCha20 expansions of the full vector done by the unmasking.
    pub prg_expansions: u32,
    /// Upload bytes received.
    pub upload_bytes: u64,
}

impl ServerUnmaskFigures {
    /// All server-side time.
    pub fn server_seconds(&self) -> f64 {
        self.key_stages_seconds
            + self.upload_seconds
            + self.consistency_seconds
            + self.unmask_seconds
    }
}

impl fmt::Display for ClientMaskingFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client, {} params, k = {}: dp encode {:.3} s, keys+shares {:.4} s, masking {:.3} s; sends {} bytes ({:.4}x plain f32); the consistency round adds {} bytes ({} sent, {} received)",
            self.params,
            self.neighbours,
            self.dp_encode_seconds,
            self.keys_and_shares_seconds,
            self.masking_seconds,
            self.bytes.total(),
            self.bytes.ratio(),
            self.bytes.consistency_overhead(),
            self.bytes.consistency,
            self.bytes.consistency_received
        )
    }
}

impl fmt::Display for ServerUnmaskFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server, {} clients ({} dropped), {} params, k = {}, t = {}: key stages {:.3} s, uploads {:.3} s, consistency {:.3} s, unmask {:.3} s ({} PRG expansions), total {:.3} s",
            self.clients,
            self.dropped,
            self.params,
            self.degree,
            self.threshold,
            self.key_stages_seconds,
            self.upload_seconds,
            self.consistency_seconds,
            self.unmask_seconds,
            self.prg_expansions,
            self.server_seconds()
        )
    }
}

fn bench_info(
    clients: usize,
    params: usize,
    degree: Option<u32>,
    threat_model: Option<ThreatModel>,
) -> RoundInfo {
    RoundInfo {
        federation: FederationId::random(&mut OsRng),
        round: RoundId(1),
        vector_len: u32::try_from(params).unwrap_or(u32::MAX),
        min_clients: clients as u32,
        max_clients: clients as u32,
        min_survivors: 2,
        degree,
        threshold: None,
        graph_seed: GraphSeed::random(&mut OsRng),
        dp: DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
        },
        threat_model,
    }
}

/// Runs a round with `clients` clients up to the point where every client is
/// ready to upload. Returns the server (collecting uploads), the clients and
/// the server-side seconds spent.
/// Clients ready to upload, with their names and identities (for the
/// consistency round's signatures).
type ReadyClients = Vec<(DeviceId, ClientReadyToUpload)>;
type Identities = std::collections::BTreeMap<DeviceId, DeviceIdentity>;

fn run_to_uploads(
    info: &RoundInfo,
    clients: usize,
) -> Result<(AggregatorRound, ReadyClients, Identities, f64), BenchError> {
    let identities: Vec<DeviceIdentity> = (0..clients)
        .map(|_| DeviceIdentity::generate(&mut OsRng))
        .collect();
    let mut server = AggregatorRound::new(info.clone())?;
    let mut server_seconds = 0.0;

    let started: Vec<_> = identities
        .par_iter()
        .map(|id| {
            ClientRound::new(id, info.clone(), &mut OsRng).map(|(ad, st)| (id.device_id(), ad, st))
        })
        .collect::<Result<_, _>>()?;
    let mut waiting = Vec::with_capacity(clients);
    let t = Instant::now();
    for (device, advert, state) in started {
        server.receive(crate::wire::ClientMessage::AdvertiseKeys(advert))?;
        waiting.push((device, state));
    }
    server = server.close_stage();
    server_seconds += t.elapsed().as_secs_f64();
    if let AggregatorRound::Aborted(a) = &server {
        return Err(BenchError::Aborted(a.reason().clone()));
    }

    let keys: Vec<_> = waiting
        .iter()
        .map(|(d, _)| server.message_for(d))
        .collect::<Result<_, _>>()?;
    let shared: Vec<_> = waiting
        .into_par_iter()
        .zip(keys)
        .map(|((device, state), msg)| {
            let crate::wire::ServerMessage::NeighbourKeys(msg) = msg else {
                return Err(BenchError::Stage);
            };
            let (shares, next) = state.receive_neighbours(&msg, &mut OsRng)?;
            Ok((device, shares, next))
        })
        .collect::<Result<_, BenchError>>()?;
    let mut awaiting = Vec::with_capacity(clients);
    let t = Instant::now();
    for (device, shares, state) in shared {
        server.receive(crate::wire::ClientMessage::EncryptedShares(shares))?;
        awaiting.push((device, state));
    }
    server = server.close_stage();
    let forwarded: Vec<_> = awaiting
        .iter()
        .map(|(d, _)| server.message_for(d))
        .collect::<Result<_, _>>()?;
    server_seconds += t.elapsed().as_secs_f64();
    if let AggregatorRound::Aborted(a) = &server {
        return Err(BenchError::Aborted(a.reason().clone()));
    }
    let ready = awaiting
        .into_par_iter()
        .zip(forwarded)
        .map(|((device, state), msg)| {
            let crate::wire::ServerMessage::SharesForDevice(msg) = msg else {
                return Err(BenchError::Stage);
            };
            Ok((device, state.receive_shares(&msg)?))
        })
        .collect::<Result<_, BenchError>>()?;
    let identities = identities.into_iter().map(|i| (i.device_id(), i)).collect();
    Ok((server, ready, identities, server_seconds))
}

/// One client's costs for a `params`-parameter update with `k` neighbours
/// (a cohort of `k + 1`, fully connected). The measured client is the
/// first; the others only play their part.
pub fn client_masking(params: usize, k: usize) -> Result<ClientMaskingFigures, BenchError> {
    use crate::wire::{ClientMessage, ServerMessage};
    let clients = k + 1;
    let info = bench_info(clients, params, Some(k as u32), None);
    let dp = info.distributed_dp().map_err(ConfigError::from)?;
    let mut rng = StdRng::from_rng(OsRng).map_err(|_| BenchError::Stage)?;
    let update: Vec<f32> = (0..params)
        .map(|i| ((i as f32) * 0.001).sin() * 0.01)
        .collect();
    let t = Instant::now();
    let quantized = dp.encode(&update, &mut rng).map_err(ConfigError::from)?;
    let dp_encode_seconds = t.elapsed().as_secs_f64();

    let mut keys_and_shares_seconds = 0.0;
    let mut timed = |index: usize, seconds: f64| {
        if index == 0 {
            keys_and_shares_seconds += seconds;
        }
    };
    let mut server = AggregatorRound::new(info.clone())?;
    let mut waiting = Vec::with_capacity(clients);
    for index in 0..clients {
        let identity = DeviceIdentity::generate(&mut OsRng);
        let t = Instant::now();
        let (advert, state) = ClientRound::new(&identity, info.clone(), &mut OsRng)?;
        timed(index, t.elapsed().as_secs_f64());
        server.receive(ClientMessage::AdvertiseKeys(advert))?;
        waiting.push((identity.device_id(), state));
    }
    server = server.close_stage();
    let mut awaiting = Vec::with_capacity(clients);
    for (index, (device, state)) in waiting.into_iter().enumerate() {
        let ServerMessage::NeighbourKeys(msg) = server.message_for(&device)? else {
            return Err(BenchError::Stage);
        };
        let t = Instant::now();
        let (shares, next) = state.receive_neighbours(&msg, &mut OsRng)?;
        timed(index, t.elapsed().as_secs_f64());
        server.receive(ClientMessage::EncryptedShares(shares))?;
        awaiting.push((device, next));
    }
    server = server.close_stage();
    let mut measured = None;
    for (index, (device, state)) in awaiting.into_iter().enumerate() {
        let ServerMessage::SharesForDevice(msg) = server.message_for(&device)? else {
            return Err(BenchError::Stage);
        };
        let t = Instant::now();
        let ready = state.receive_shares(&msg)?;
        timed(index, t.elapsed().as_secs_f64());
        if index == 0 {
            measured = Some(ready);
        }
    }
    let client = measured.ok_or(BenchError::Stage)?;

    let t = Instant::now();
    let (upload, _next) = client.upload(&quantized)?;
    let masking_seconds = t.elapsed().as_secs_f64();
    if upload.masked.len() != params {
        return Err(BenchError::Stage);
    }
    let bytes = client_bytes_per_round(info.federation, info.round, params, k, clients)
        .ok_or(BenchError::Stage)?;
    Ok(ClientMaskingFigures {
        params,
        neighbours: k,
        dp_encode_seconds,
        keys_and_shares_seconds,
        masking_seconds,
        bytes,
    })
}

/// Picks up to `target` clients to drop, at random, keeping every live
/// client's and every needed dropped client's live neighbourhood at `t` or
/// more.
fn choose_dropouts(
    graph: &NeighbourGraph,
    threshold: u32,
    target: usize,
    rng: &mut StdRng,
) -> BTreeSet<u32> {
    let n = graph.nodes();
    let mut order: Vec<u32> = (0..n).collect();
    order.shuffle(rng);
    let mut dropped = BTreeSet::new();
    let live = |p: u32, dropped: &BTreeSet<u32>| {
        graph
            .neighbours(p)
            .iter()
            .filter(|q| !dropped.contains(q))
            .count() as u32
    };
    for candidate in order {
        if dropped.len() >= target {
            break;
        }
        dropped.insert(candidate);
        // Only the candidate and its neighbours (live or already dropped)
        // have fewer live neighbours now.
        let mut affected = graph.neighbours(candidate);
        affected.push(candidate);
        let ok = affected.iter().all(|&p| {
            let l = live(p, &dropped);
            // A dropped client with no live neighbour needs no
            // reconstruction; any other needs t live holders.
            l >= threshold || (dropped.contains(&p) && l == 0)
        });
        if !ok {
            dropped.remove(&candidate);
        }
    }
    dropped
}

/// The server's costs for `clients` clients and `params`-parameter updates,
/// with a fraction `dropout` of clients dropping after sharing, and
/// neighbourhoods sized as a server does: against `threat_model` (the
/// server's default is γ = 1%, δ = 5%), or about `log2 n` with `None`.
pub fn server_unmask(
    clients: usize,
    params: usize,
    dropout: f64,
    threat_model: Option<ThreatModel>,
) -> Result<ServerUnmaskFigures, BenchError> {
    let info = bench_info(clients, params, None, threat_model);
    let neighbourhood = info
        .neighbourhood(clients as u32)
        .map_err(ConfigError::from)?;
    let (mut server, ready, identities, key_stages_seconds) = run_to_uploads(&info, clients)?;

    let graph = NeighbourGraph::new(GraphSpec {
        seed: info.graph_seed,
        federation: info.federation,
        round: info.round,
        nodes: clients as u32,
        degree: neighbourhood.degree,
    })
    .map_err(ConfigError::from)?;
    let mut rng = StdRng::from_rng(OsRng).map_err(|_| BenchError::Stage)?;
    let target = ((clients as f64) * dropout.clamp(0.0, 1.0)).round() as usize;
    let dropped = choose_dropouts(&graph, neighbourhood.threshold, target, &mut rng);

    // One random vector, re-addressed to each uploader (see module docs).
    let mut payload = vec![0u32; params];
    for w in payload.iter_mut() {
        *w = rng.next_u32();
    }
    let mut bytes = MaskedUpload {
        federation: info.federation,
        round: info.round,
        device: DeviceId::from_bytes([0; 32]),
        masked: payload,
    }
    .encode();
    // Cohort order is DeviceId order; `ready` is in advertisement order.
    let mut cohort: Vec<DeviceId> = ready.iter().map(|(d, _)| *d).collect();
    cohort.sort();

    let mut upload_seconds = 0.0;
    let mut upload_bytes = 0u64;
    let mut survivors: Vec<(DeviceId, ClientAwaitingSurvivors)> = Vec::new();
    for (device, client) in ready {
        let position = cohort
            .binary_search(&device)
            .map_err(|_| BenchError::Stage)? as u32;
        if dropped.contains(&position) {
            continue;
        }
        if let Some(slot) = bytes.get_mut(32..64) {
            slot.copy_from_slice(device.as_bytes());
        }
        let t = Instant::now();
        server.receive_upload_bytes(&bytes)?;
        upload_seconds += t.elapsed().as_secs_f64();
        upload_bytes += bytes.len() as u64;
        survivors.push((device, client.skip_upload_for_bench()));
    }
    drop(bytes);

    let t = Instant::now();
    server = server.close_stage();
    let sets: Vec<_> = survivors
        .iter()
        .map(|(d, _)| server.message_for(d))
        .collect::<Result<_, _>>()?;
    let mut consistency_seconds = t.elapsed().as_secs_f64();
    if let AggregatorRound::Aborted(a) = &server {
        return Err(BenchError::Aborted(a.reason().clone()));
    }
    let signed: Vec<_> = survivors
        .into_par_iter()
        .zip(sets)
        .map(|((device, client), msg)| {
            let crate::wire::ServerMessage::SurvivorSet(msg) = msg else {
                return Err(BenchError::Stage);
            };
            let identity = identities.get(&device).ok_or(BenchError::Stage)?;
            let (signature, next) = client.sign_survivors(identity, &msg)?;
            Ok((device, signature, next))
        })
        .collect::<Result<_, BenchError>>()?;
    let t = Instant::now();
    let mut signers: Vec<(DeviceId, ClientAwaitingUnmask)> = Vec::with_capacity(signed.len());
    for (device, signature, next) in signed {
        server.receive(crate::wire::ClientMessage::ConsistencySignature(signature))?;
        signers.push((device, next));
    }
    server = server.close_stage();
    let requests: Vec<_> = signers
        .iter()
        .map(|(d, _)| server.message_for(d))
        .collect::<Result<_, _>>()?;
    consistency_seconds += t.elapsed().as_secs_f64();
    if let AggregatorRound::Aborted(a) = &server {
        return Err(BenchError::Aborted(a.reason().clone()));
    }
    let responses: Vec<_> = signers
        .into_par_iter()
        .zip(requests)
        .map(|((_, client), msg)| {
            let crate::wire::ServerMessage::UnmaskRequest(msg) = msg else {
                return Err(BenchError::Stage);
            };
            Ok(client.respond(&msg)?)
        })
        .collect::<Result<_, BenchError>>()?;
    let mut unmask_seconds = 0.0;
    let t = Instant::now();
    for response in responses {
        server.receive(crate::wire::ClientMessage::UnmaskResponse(response))?;
    }
    server = server.close_stage();
    unmask_seconds += t.elapsed().as_secs_f64();
    let done = match server {
        AggregatorRound::Done(done) => done,
        AggregatorRound::Aborted(a) => return Err(BenchError::Aborted(a.reason().clone())),
        _ => return Err(BenchError::Stage),
    };
    Ok(ServerUnmaskFigures {
        clients,
        params,
        dropped: dropped.len(),
        degree: neighbourhood.degree,
        threshold: neighbourhood.threshold,
        key_stages_seconds,
        upload_seconds,
        consistency_seconds,
        unmask_seconds,
        prg_expansions: done.masks_removed(),
        upload_bytes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn client_bench_runs_at_small_size() {
        let f = client_masking(1000, 4).unwrap();
        assert_eq!(f.params, 1000);
        assert!(f.masking_seconds > 0.0);
        assert_eq!(f.bytes.upload, 4068);
        assert!(f.to_string().contains("k = 4"));
    }

    #[test]
    fn server_bench_runs_at_small_size() {
        let f = server_unmask(20, 500, 0.1, None).unwrap();
        assert_eq!(f.clients, 20);
        assert_eq!((f.degree, f.threshold), (6, 4), "about log2 n");
        assert_eq!(f.dropped, 2);
        // Survivors' self masks plus pairwise masks with the dropped.
        assert!(f.prg_expansions >= 18);
        assert_eq!(f.upload_bytes, 18 * 2068);
        // Sized against a threat model, 20 devices get the complete graph.
        let model = ThreatModel {
            corrupt_fraction: 0.01,
            dropout_fraction: 0.05,
        };
        let f = server_unmask(20, 500, 0.1, Some(model)).unwrap();
        assert_eq!(f.degree, 19);
    }
}
