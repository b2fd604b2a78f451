//! A malicious server played against the real client state machines.
//!
//! The driver below is the server: it relays only what the public protocol
//! lets it relay, but it chooses every device's view of the round (round
//! parameters, graph seed, degree and threshold) and every device's unmask
//! request, and it grinds graph seeds until the views give it the
//! neighbourhoods it wants. Its goal is one honest device's (`J`'s) update:
//!
//! - `J` is shown a neighbourhood of two, `{A, B}`, with threshold 2;
//! - `A` and `B` are shown `{J, C1..C5}` (threshold 4), and each `Ci` is
//!   shown `{A, B} ∪ C \ {Ci}` (threshold 4);
//! - `A` and `B` are told everyone survived (so they reveal `J`'s self-mask
//!   shares); each `Ci` is told that `A` and `B` dropped (so it reveals
//!   their mask-key shares).
//!
//! With `β_J`, `σ_A` and `σ_B` the server removes every mask from `J`'s
//! upload. Each client's own check (never both shares of one neighbour)
//! holds, because no single client is asked for both: the attack lives in
//! the *difference* between the views. Run against the protocol before
//! round parameters were bound into every signature and the consistency
//! round existed (commit af3a608), it recovered `J`'s update exactly.
//! Now every device it tries refuses at step 2: its neighbours' signed
//! keys were made under other views of the round.
//!
//! With one view for everyone, what is left to the server is lying about
//! who survived: telling `J`'s neighbours that everyone survived and the
//! others that `J`'s neighbours dropped. [`one_view_survivor_lies`] plays
//! that, and a property test plays every mix of survivor sets, signature
//! forwarding and dropouts: the server never holds `β_J` together with the
//! mask secrets of all of `J`'s neighbours (or `σ_J`).
//!
//! The consistency round's signatures matter once some devices work for
//! the server: colluders sign any survivor set and hand over every share
//! they hold. [`colluders_below_the_bound_expose_nothing`] plays the
//! best split of the honest devices against `J` for each number of
//! colluders: with neighbourhoods of `k = 11` and `t = 6` (so `2t − k = 1`)
//! the device's refusal to reveal without `t` signatures over its own set
//! holds `J`'s update hidden against 1 and 2 colluders, and 3 break it,
//! which is why neighbourhoods are sized against a corrupt fraction
//! ([`crate::graph::ThreatModel`]). With the signature check removed
//! from the client (tried by hand, not kept), 1 colluder was enough.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::client::{ClientAwaitingSurvivors, ClientError, ClientRound};
use super::consistency::{SurvivorBitmap, cohort_digest, sign_survivors};
use super::server::AggregatorRound;
use crate::crypto::{DeviceId, DeviceIdentity};
use crate::dp::DpConfig;
use crate::graph::{GraphSeed, GraphSpec, NeighbourGraph, Neighbourhood};
use crate::ids::{FederationId, RoundId};
use crate::wire::{
    AdvertiseKeys, ClientMessage, NeighbourKeys, RoundInfo, ServerMessage, SurvivorSet,
    SurvivorSignature, UnmaskRequest,
};

const DEVICES: usize = 12;
const LEN: u32 = 64;
const FEDERATION: [u8; 16] = [0x42; 16];

/// The round as the server would announce it honestly; each view changes
/// the graph seed, degree and threshold.
fn honest_info() -> RoundInfo {
    RoundInfo {
        federation: FederationId::from_bytes(FEDERATION),
        round: RoundId(7),
        vector_len: LEN,
        min_clients: DEVICES as u32,
        max_clients: DEVICES as u32,
        min_survivors: 2,
        degree: None,
        threshold: None,
        graph_seed: GraphSeed([1; 32]),
        dp: DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 0.0,
        },
        threat_model: None,
    }
}

/// A view whose ring puts exactly `wanted` (cohort positions) around
/// `position`, found by trying seeds.
fn ground_view(position: u32, wanted: &BTreeSet<u32>, threshold: u32) -> RoundInfo {
    let base = honest_info();
    let degree = wanted.len() as u32;
    for attempt in 0u64..200_000 {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&attempt.to_le_bytes());
        seed[8..12].copy_from_slice(&position.to_le_bytes());
        let graph = NeighbourGraph::new(GraphSpec {
            seed: GraphSeed(seed),
            federation: base.federation,
            round: base.round,
            nodes: DEVICES as u32,
            degree,
        })
        .unwrap();
        if graph
            .neighbours(position)
            .into_iter()
            .collect::<BTreeSet<_>>()
            == *wanted
        {
            return RoundInfo {
                degree: Some(degree),
                threshold: Some(threshold),
                graph_seed: GraphSeed(seed),
                ..base
            };
        }
    }
    panic!("no seed found for position {position}");
}

/// The split-view attack: every device gets its own view (graph seed,
/// degree, threshold), ground so that `J`'s neighbourhood is `{A, B}` and
/// theirs are as the module docs say. Returns each targeted device's
/// answer to step 2.
fn split_view_attack(seed: u64) -> BTreeMap<u32, Result<(), ClientError>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let identities: BTreeMap<DeviceId, DeviceIdentity> = (0..DEVICES)
        .map(|_| {
            let identity = DeviceIdentity::generate(&mut rng);
            (identity.device_id(), identity)
        })
        .collect();
    let cohort: Vec<DeviceId> = identities.keys().copied().collect();
    let (j, a, b) = (0u32, 1u32, 2u32);
    let cs: BTreeSet<u32> = (3..8).collect();
    let mut neighbourhoods: BTreeMap<u32, (BTreeSet<u32>, u32)> = BTreeMap::new();
    neighbourhoods.insert(j, ([a, b].into(), 2));
    for owner in [a, b] {
        let mut set = cs.clone();
        set.insert(j);
        neighbourhoods.insert(owner, (set, 4));
    }
    for &c in &cs {
        let mut set: BTreeSet<u32> = cs.iter().copied().filter(|&o| o != c).collect();
        set.extend([a, b]);
        neighbourhoods.insert(c, (set, 4));
    }
    let mut adverts: BTreeMap<u32, AdvertiseKeys> = BTreeMap::new();
    let mut waiting = BTreeMap::new();
    for (&p, (wanted, t)) in &neighbourhoods {
        let view = ground_view(p, wanted, *t);
        let (advert, state) =
            ClientRound::new(&identities[&cohort[p as usize]], view, &mut rng).unwrap();
        adverts.insert(p, advert);
        waiting.insert(p, state);
    }
    waiting
        .into_iter()
        .map(|(p, state)| {
            let message = NeighbourKeys {
                federation: FederationId::from_bytes(FEDERATION),
                round: RoundId(7),
                cohort: cohort.clone(),
                advertisements: neighbourhoods[&p]
                    .0
                    .iter()
                    .map(|q| adverts[q].clone())
                    .collect(),
            };
            (p, state.receive_neighbours(&message, &mut rng).map(|_| ()))
        })
        .collect()
}

#[test]
fn split_views_are_refused_by_every_device() {
    let answers = split_view_attack(2025);
    assert_eq!(answers.len(), 8);
    for (position, answer) in answers {
        assert!(
            matches!(answer, Err(ClientError::BadAdvertisement { .. })),
            "device {position} answered {answer:?}"
        );
    }
}

/// Devices after their uploads, with what a server learns from them.
struct Uploaded {
    info: RoundInfo,
    cohort: Vec<DeviceId>,
    identities: BTreeMap<DeviceId, DeviceIdentity>,
    graph: NeighbourGraph,
    threshold: usize,
    clients: BTreeMap<u32, ClientAwaitingSurvivors>,
}

/// An honest round of `DEVICES` devices up to their uploads, through the
/// real server state machine (the attack starts after).
fn honest_until_uploads(seed: u64, degree: Option<u32>, threshold: Option<u32>) -> Uploaded {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut graph_seed = [0u8; 32];
    graph_seed[..8].copy_from_slice(&seed.to_le_bytes());
    let info = RoundInfo {
        degree,
        threshold,
        graph_seed: GraphSeed(graph_seed),
        ..honest_info()
    };
    let identities: BTreeMap<DeviceId, DeviceIdentity> = (0..DEVICES)
        .map(|_| {
            let identity = DeviceIdentity::generate(&mut rng);
            (identity.device_id(), identity)
        })
        .collect();
    let cohort: Vec<DeviceId> = identities.keys().copied().collect();
    let mut server = AggregatorRound::new(info.clone()).unwrap();
    let mut states = BTreeMap::new();
    for (p, identity) in identities.values().enumerate() {
        let (advert, state) = ClientRound::new(identity, info.clone(), &mut rng).unwrap();
        server
            .receive(ClientMessage::AdvertiseKeys(advert))
            .unwrap();
        states.insert(p as u32, state);
    }
    server = server.close_stage();
    let mut sharing = BTreeMap::new();
    for (p, state) in states {
        let ServerMessage::NeighbourKeys(keys) = server.message_for(&cohort[p as usize]).unwrap()
        else {
            panic!("no keys")
        };
        let (shares, next) = state.receive_neighbours(&keys, &mut rng).unwrap();
        server
            .receive(ClientMessage::EncryptedShares(shares))
            .unwrap();
        sharing.insert(p, next);
    }
    server = server.close_stage();
    let mut clients = BTreeMap::new();
    for (p, state) in sharing {
        let ServerMessage::SharesForDevice(shares) =
            server.message_for(&cohort[p as usize]).unwrap()
        else {
            panic!("no shares")
        };
        let ready = state.receive_shares(&shares).unwrap();
        let (_, next) = ready.upload(&vec![p; LEN as usize]).unwrap();
        clients.insert(p, next);
    }
    let neighbourhood = Neighbourhood::resolve(DEVICES as u32, degree, threshold).unwrap();
    let graph = NeighbourGraph::new(GraphSpec {
        seed: info.graph_seed,
        federation: info.federation,
        round: info.round,
        nodes: DEVICES as u32,
        degree: neighbourhood.degree,
    })
    .unwrap();
    Uploaded {
        info,
        cohort,
        identities,
        graph,
        threshold: neighbourhood.threshold as usize,
        clients,
    }
}

/// What a lying server collected: per owner, how many of its self-mask
/// (`β`) and mask-key (`σ`) shares were revealed.
#[derive(Debug, Default)]
struct Collected {
    beta: BTreeMap<DeviceId, usize>,
    sigma: BTreeMap<DeviceId, usize>,
    refusals: usize,
}

/// Plays the consistency round as a lying server: each device is shown
/// `sets[p]` (a bitmap of positions), devices in `silent` drop before
/// signing, and each signer is forwarded exactly the signatures of its
/// neighbours that signed the same set it did (any other signature would
/// only make it refuse).
fn lie_about_survivors(
    round: Uploaded,
    sets: &BTreeMap<u32, SurvivorBitmap>,
    silent: &BTreeSet<u32>,
) -> Collected {
    let Uploaded {
        info,
        cohort,
        identities,
        graph,
        clients,
        ..
    } = round;
    let mut collected = Collected::default();
    let mut signed = BTreeMap::new();
    let mut signatures: BTreeMap<u32, SurvivorSignature> = BTreeMap::new();
    for (p, client) in clients {
        if silent.contains(&p) {
            continue;
        }
        let device = cohort[p as usize];
        let message = SurvivorSet {
            federation: info.federation,
            round: info.round,
            recipient: device,
            survivors: sets[&p].as_bytes().to_vec(),
        };
        match client.sign_survivors(&identities[&device], &message) {
            Ok((signature, next)) => {
                signatures.insert(
                    p,
                    SurvivorSignature {
                        device,
                        signature: signature.signature,
                    },
                );
                signed.insert(p, next);
            }
            Err(_) => collected.refusals += 1,
        }
    }
    for (p, client) in signed {
        let forwarded = graph
            .neighbours(p)
            .into_iter()
            .filter(|q| signatures.contains_key(q) && sets[q] == sets[&p])
            .map(|q| signatures[&q].clone())
            .collect();
        let request = UnmaskRequest {
            federation: info.federation,
            round: info.round,
            recipient: cohort[p as usize],
            survivors: sets[&p].as_bytes().to_vec(),
            signatures: forwarded,
        };
        match client.respond(&request) {
            Ok(response) => {
                let mut owners = BTreeSet::new();
                for share in &response.self_mask_shares {
                    *collected.beta.entry(share.owner).or_default() += 1;
                    owners.insert(share.owner);
                }
                for share in &response.mask_key_shares {
                    // One device never reveals both shares of one owner.
                    assert!(owners.insert(share.owner), "both shares revealed");
                    *collected.sigma.entry(share.owner).or_default() += 1;
                }
            }
            Err(_) => collected.refusals += 1,
        }
    }
    collected
}

/// Positions whose update the server could read from what it collected:
/// it holds `β_J` and either `σ_J` or the `σ` of every neighbour of `J`.
fn exposed(
    collected: &Collected,
    graph: &NeighbourGraph,
    cohort: &[DeviceId],
    t: usize,
) -> Vec<u32> {
    let has = |book: &BTreeMap<DeviceId, usize>, p: u32| {
        book.get(&cohort[p as usize]).copied().unwrap_or(0) >= t
    };
    (0..cohort.len() as u32)
        .filter(|&j| {
            has(&collected.beta, j)
                && (has(&collected.sigma, j)
                    || graph
                        .neighbours(j)
                        .iter()
                        .all(|&n| has(&collected.sigma, n)))
        })
        .collect()
}

/// With one view, the server tells `J` and its neighbours that everyone
/// survived (so they would reveal `β_J`) and everyone else that `J`'s
/// neighbours dropped (so they would reveal those neighbours' `σ`).
#[test]
fn one_view_survivor_lies() {
    let round = honest_until_uploads(11, None, None);
    let (graph, cohort, t) = (round.graph.clone(), round.cohort.clone(), round.threshold);
    let j = 0u32;
    let around_j: BTreeSet<u32> = graph.neighbours(j).into_iter().chain([j]).collect();
    let everyone = SurvivorBitmap::from_positions(DEVICES, 0..DEVICES as u32);
    let without_neighbours = SurvivorBitmap::from_positions(
        DEVICES,
        (0..DEVICES as u32).filter(|p| *p == j || !around_j.contains(p)),
    );
    let sets = (0..DEVICES as u32)
        .map(|p| {
            let set = if around_j.contains(&p) {
                everyone.clone()
            } else {
                without_neighbours.clone()
            };
            (p, set)
        })
        .collect();
    let collected = lie_about_survivors(round, &sets, &BTreeSet::new());
    assert!(collected.refusals > 0, "{collected:?}");
    assert_eq!(exposed(&collected, &graph, &cohort, t), Vec::<u32>::new());
    // And no σ of J's neighbours reached the threshold at all.
    for n in graph.neighbours(j) {
        let got = collected
            .sigma
            .get(&cohort[n as usize])
            .copied()
            .unwrap_or(0);
        assert!(got < t, "σ of neighbour {n}: {got} shares");
    }
}

/// The server and `colluders` devices against `J` (position 0): the
/// honest devices but `J` are split into `G1`, shown everyone surviving
/// (so they reveal `β_J`), and `G2`, shown everyone but `J` (so they
/// reveal `σ_J`); `J` itself says nothing. Colluders sign both sets and
/// hand over both shares of every neighbour they hold. Returns whether any
/// split gave the server `t` shares of both `β_J` and `σ_J`.
fn colluders_expose_j(colluders: u32) -> bool {
    const T: u32 = 6;
    let round = honest_until_uploads(19, Some(DEVICES as u32 - 1), Some(T));
    assert_eq!(round.threshold, T as usize);
    let honest: Vec<u32> = (1 + colluders..DEVICES as u32).collect();
    let all = SurvivorBitmap::from_positions(DEVICES, 0..DEVICES as u32);
    let without_j = SurvivorBitmap::from_positions(DEVICES, 1..DEVICES as u32);
    (0..=honest.len()).any(|g1| {
        let round = honest_until_uploads(19, Some(DEVICES as u32 - 1), Some(T));
        let Uploaded {
            info,
            cohort,
            identities,
            graph,
            clients,
            ..
        } = round;
        let j = cohort[0];
        let context = info.context();
        let digest = cohort_digest(&cohort);
        let set_for = |p: u32| {
            if honest[..g1].contains(&p) {
                &all
            } else {
                &without_j
            }
        };
        // Colluders' signatures over both sets, for anyone to be forwarded.
        let forged = |p: u32, set: &SurvivorBitmap| SurvivorSignature {
            device: cohort[p as usize],
            signature: sign_survivors(&identities[&cohort[p as usize]], &context, &digest, set),
        };
        // Colluders hold one share of each kind of every neighbour, J's too.
        let held_by_colluders = (1..=colluders)
            .filter(|&c| graph.neighbours(c).contains(&0))
            .count();
        let (mut beta_j, mut sigma_j) = (held_by_colluders, held_by_colluders);
        let mut signed = BTreeMap::new();
        let mut honest_signatures = BTreeMap::new();
        for (p, client) in clients {
            if p == 0 || p <= colluders {
                continue;
            }
            let device = cohort[p as usize];
            let message = SurvivorSet {
                federation: info.federation,
                round: info.round,
                recipient: device,
                survivors: set_for(p).as_bytes().to_vec(),
            };
            if let Ok((signature, next)) = client.sign_survivors(&identities[&device], &message) {
                honest_signatures.insert(p, signature.signature);
                signed.insert(p, next);
            }
        }
        for (p, client) in signed {
            let set = set_for(p);
            let signatures = graph
                .neighbours(p)
                .into_iter()
                .filter_map(|q| {
                    if q != 0 && q <= colluders {
                        Some(forged(q, set))
                    } else {
                        honest_signatures
                            .get(&q)
                            .filter(|_| set_for(q) == set)
                            .map(|signature| SurvivorSignature {
                                device: cohort[q as usize],
                                signature: *signature,
                            })
                    }
                })
                .collect();
            let request = UnmaskRequest {
                federation: info.federation,
                round: info.round,
                recipient: cohort[p as usize],
                survivors: set.as_bytes().to_vec(),
                signatures,
            };
            if let Ok(response) = client.respond(&request) {
                beta_j += response
                    .self_mask_shares
                    .iter()
                    .filter(|s| s.owner == j)
                    .count();
                sigma_j += response
                    .mask_key_shares
                    .iter()
                    .filter(|s| s.owner == j)
                    .count();
            }
        }
        beta_j >= T as usize && sigma_j >= T as usize
    })
}

#[test]
fn colluders_below_the_bound_expose_nothing() {
    assert!(!colluders_expose_j(0));
    assert!(!colluders_expose_j(1));
    assert!(!colluders_expose_j(2));
    // At 2t − k + 2 colluders the honest devices' own signatures suffice
    // for both halves: the bound is real, and k and t must be sized for it.
    assert!(colluders_expose_j(3));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any mix of survivor sets (drawn from three), signature forwarding
    /// and dropouts before signing, at any degree: no device's update is
    /// exposed, and no device reveals both shares of one neighbour.
    #[test]
    fn no_mix_of_survivor_sets_exposes_an_update(
        seed in any::<u64>(),
        degree in prop::sample::select(vec![None, Some(2u32), Some(6), Some(11)]),
        candidates in prop::collection::vec(any::<u16>(), 3),
        choice in prop::collection::vec(0usize..3, DEVICES),
        silent in prop::collection::btree_set(0u32..DEVICES as u32, 0..3),
    ) {
        let round = honest_until_uploads(seed, degree, None);
        let (graph, cohort, t) = (round.graph.clone(), round.cohort.clone(), round.threshold);
        let bitmap = |mask: u16| {
            SurvivorBitmap::from_positions(DEVICES, (0..DEVICES as u32).filter(|p| mask & (1 << p) != 0))
        };
        // Each device is shown one of the candidates, with itself added so
        // that it signs (a set without it is simply refused).
        let sets = (0..DEVICES as u32)
            .map(|p| (p, bitmap(candidates[choice[p as usize]] | (1 << p))))
            .collect();
        let collected = lie_about_survivors(round, &sets, &silent);
        prop_assert_eq!(exposed(&collected, &graph, &cohort, t), Vec::<u32>::new());
    }
}
