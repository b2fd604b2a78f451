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
//! the *difference* between the views, which is what binding every message
//! to one round transcript and the consistency round close.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::client::{ClientAwaitingUnmask, ClientError, ClientRound};
use crate::crypto::round_keys::{mask_agreement_secret, self_mask_seed};
use crate::crypto::{DeviceId, DeviceIdentity};
use crate::dp::DpConfig;
use crate::graph::{GraphSeed, GraphSpec, NeighbourGraph};
use crate::ids::{FederationId, RoundContext, RoundId};
use crate::mask::{self, MaskSign, pairwise_seed, pairwise_sign};
use crate::shamir::{self, Share};
use crate::wire::{
    AdvertiseKeys, EncryptedShares, NeighbourKeys, RoundInfo, ShareFromSender, SharesForDevice,
    UnmaskRequest, UnmaskResponse,
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

/// What the attack got: `J`'s update, or the first refusal from an honest
/// device.
struct Outcome {
    target_update: Vec<u32>,
    recovered: Result<Vec<u32>, ClientError>,
}

fn run_split_view_attack(seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let identities: Vec<DeviceIdentity> = (0..DEVICES)
        .map(|_| DeviceIdentity::generate(&mut rng))
        .collect();
    let mut by_id: BTreeMap<DeviceId, &DeviceIdentity> = BTreeMap::new();
    for identity in &identities {
        by_id.insert(identity.device_id(), identity);
    }
    let cohort: Vec<DeviceId> = by_id.keys().copied().collect();
    // Roles by cohort position: J, A, B, then five Cs; the rest stay idle.
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

    let target_update: Vec<u32> = (0..LEN).map(|_| rng.r#gen()).collect();
    let recovered = (|| -> Result<Vec<u32>, ClientError> {
        // Step 1: every device advertises, each under its own view.
        let mut views = BTreeMap::new();
        let mut adverts: BTreeMap<u32, AdvertiseKeys> = BTreeMap::new();
        let mut waiting = BTreeMap::new();
        for (&p, (wanted, t)) in &neighbourhoods {
            let view = ground_view(p, wanted, *t);
            let identity = by_id[&cohort[p as usize]];
            let (advert, state) = ClientRound::new(identity, view.clone(), &mut rng)?;
            adverts.insert(p, advert);
            waiting.insert(p, state);
            views.insert(p, view);
        }
        // Steps 2–3: each gets its chosen neighbours' adverts.
        let mut sealed: BTreeMap<(u32, DeviceId), Vec<u8>> = BTreeMap::new();
        let mut sharing = BTreeMap::new();
        for (p, state) in waiting {
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
            let (shares, next): (EncryptedShares, _) =
                state.receive_neighbours(&message, &mut rng)?;
            for share in shares.shares {
                sealed.insert((p, share.recipient), share.ciphertext);
            }
            sharing.insert(p, next);
        }
        // Step 4: the shares sealed to each; step 5: uploads.
        let mut uploads = BTreeMap::new();
        let mut unmasking: BTreeMap<u32, ClientAwaitingUnmask> = BTreeMap::new();
        for (p, state) in sharing {
            let me = cohort[p as usize];
            let shares = neighbourhoods[&p]
                .0
                .iter()
                .filter_map(|&q| {
                    sealed.get(&(q, me)).map(|c| ShareFromSender {
                        sender: cohort[q as usize],
                        ciphertext: c.clone(),
                    })
                })
                .collect();
            let ready = state.receive_shares(&SharesForDevice {
                federation: FederationId::from_bytes(FEDERATION),
                round: RoundId(7),
                recipient: me,
                shares,
            })?;
            let update = if p == j {
                target_update.clone()
            } else {
                vec![0; LEN as usize]
            };
            let (upload, next) = ready.upload(&update)?;
            uploads.insert(p, upload.masked);
            unmasking.insert(p, next);
        }
        // Steps 6–7: A and B hear that everyone survived; each C hears
        // that A and B dropped.
        let mut responses: BTreeMap<u32, UnmaskResponse> = BTreeMap::new();
        for (p, state) in unmasking {
            if p == j {
                continue;
            }
            let held = &neighbourhoods[&p].0;
            let dropped: Vec<u32> = if cs.contains(&p) {
                vec![a, b]
            } else {
                Vec::new()
            };
            let request = UnmaskRequest {
                federation: FederationId::from_bytes(FEDERATION),
                round: RoundId(7),
                recipient: cohort[p as usize],
                survivors: held
                    .iter()
                    .filter(|q| !dropped.contains(q))
                    .map(|&q| cohort[q as usize])
                    .collect(),
                dropped: dropped.iter().map(|&q| cohort[q as usize]).collect(),
            };
            responses.insert(p, state.respond(&request)?);
        }

        // The server's arithmetic: β_J from A and B, σ_A and σ_B from the Cs.
        let collect = |owner: u32, pick: fn(&UnmaskResponse) -> &[crate::wire::RevealedShare]| {
            responses
                .iter()
                .flat_map(|(&p, r)| {
                    pick(r)
                        .iter()
                        .filter(|s| s.owner == cohort[owner as usize])
                        .map(move |s| Share {
                            x: p + 1,
                            y: s.value,
                        })
                })
                .collect::<Vec<_>>()
        };
        let context_of = |p: u32| -> RoundContext { views[&p].context() };
        let beta = shamir::reconstruct(&collect(j, |r| &r.self_mask_shares), 2).unwrap();
        let device_j = cohort[j as usize];
        let mut masks = vec![(
            self_mask_seed(&beta, &context_of(j), &device_j),
            MaskSign::Subtract,
        )];
        for owner in [a, b] {
            let sigma = shamir::reconstruct(&collect(owner, |r| &r.mask_key_shares), 4).unwrap();
            let device = cohort[owner as usize];
            let secret = mask_agreement_secret(&sigma, &context_of(owner), &device);
            let seed = pairwise_seed(
                &secret,
                &adverts[&j].mask_key,
                &context_of(owner),
                &device,
                &device_j,
            )
            .unwrap();
            masks.push((seed, pairwise_sign(j, owner).opposite()));
        }
        let mut unmasked = uploads[&j].clone();
        let refs: Vec<_> = masks.iter().map(|(s, sign)| (s, *sign)).collect();
        mask::apply(&mut unmasked, &refs).unwrap();
        Ok(unmasked)
    })();
    Outcome {
        target_update,
        recovered,
    }
}

#[test]
fn split_views_with_honest_devices_only_unmask_one_device() {
    let outcome = run_split_view_attack(2025);
    assert_eq!(outcome.recovered, Ok(outcome.target_update));
}
