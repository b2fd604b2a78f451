//! The device's states driven against each other and the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::crypto::round_keys::RoundSecrets;
use crate::dp::DpConfig;
use crate::graph::GraphSeed;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn info() -> RoundInfo {
    RoundInfo {
        federation: FederationId::from_bytes([5; 16]),
        round: RoundId(1),
        vector_len: 4,
        min_clients: 3,
        max_clients: 3,
        min_survivors: 2,
        degree: None,
        threshold: None,
        graph_seed: GraphSeed([6; 32]),
        dp: DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
        },
        threat_model: None,
    }
}

/// Client 0 and the neighbour keys it would get if neighbour 1
/// advertised `tweak`ed (but validly signed) keys. Three clients form a
/// complete graph.
fn scenario(
    tweak: impl Fn(&mut RoundPublicKeys, &AdvertiseKeys),
) -> (ClientAwaitingNeighbours, NeighbourKeys, DeviceId, StdRng) {
    let mut rng = StdRng::seed_from_u64(17);
    let info = info();
    let ctx = info.context();
    let ids: Vec<DeviceIdentity> = (0..3).map(|_| DeviceIdentity::generate(&mut rng)).collect();
    let (own_advert, client) = ClientRound::new(&ids[0], info, &mut rng).unwrap();
    let mut adverts = Vec::new();
    for id in &ids[1..] {
        let (_, mut keys) = RoundSecrets::generate(&mut rng, &ctx, &id.device_id());
        if adverts.is_empty() {
            tweak(&mut keys, &own_advert);
        }
        adverts.push(sign_advertisement(id, &ctx, &keys));
    }
    let mut cohort: Vec<DeviceId> = ids.iter().map(|i| i.device_id()).collect();
    cohort.sort();
    let target = ids[1].device_id();
    let message = NeighbourKeys {
        federation: ctx.federation,
        round: ctx.round,
        cohort,
        advertisements: adverts,
    };
    (client, message, target, rng)
}

#[test]
fn honest_neighbours_are_accepted() {
    let (client, message, _, mut rng) = scenario(|_, _| {});
    let (shares, _) = client.receive_neighbours(&message, &mut rng).unwrap();
    assert_eq!(shares.shares.len(), 2);
}

#[test]
fn a_neighbour_reusing_our_key_is_refused() {
    let (client, message, target, mut rng) = scenario(|keys, ours| keys.share_key = ours.mask_key);
    assert_eq!(
        client.receive_neighbours(&message, &mut rng).unwrap_err(),
        ClientError::KeyReused { device: target }
    );
}

#[test]
fn a_low_order_mask_key_is_refused() {
    let (client, message, target, mut rng) =
        scenario(|keys, _| keys.mask_key = PublicKey::from([0u8; 32]));
    assert_eq!(
        client.receive_neighbours(&message, &mut rng).unwrap_err(),
        ClientError::NonContributory { device: target }
    );
}

#[test]
fn cohort_problems_are_refused() {
    let (client, mut message, _, mut rng) = scenario(|_, _| {});
    message.cohort.reverse();
    assert_eq!(
        client.receive_neighbours(&message, &mut rng).unwrap_err(),
        ClientError::CohortNotSorted
    );

    let (client, mut message, target, mut rng) = scenario(|_, _| {});
    message.advertisements.retain(|a| a.device != target);
    assert_eq!(
        client.receive_neighbours(&message, &mut rng).unwrap_err(),
        ClientError::MissingAdvertisement { device: target }
    );

    let (client, mut message, target, mut rng) = scenario(|_, _| {});
    let again = message.advertisements[0].clone();
    message.advertisements.push(again);
    assert_eq!(
        client.receive_neighbours(&message, &mut rng).unwrap_err(),
        ClientError::UnexpectedAdvertisement { device: target }
    );

    let (client, mut message, target, mut rng) = scenario(|_, _| {});
    message.cohort.retain(|d| *d != target);
    assert!(matches!(
        client.receive_neighbours(&message, &mut rng),
        Err(ClientError::CohortSize { size: 2, .. })
    ));
}

#[test]
fn debug_output_names_the_device_only() {
    let (client, _, _, _) = scenario(|_, _| {});
    let text = format!("{client:?}");
    assert!(text.starts_with("ClientAwaitingNeighbours { device: DeviceId("));
    assert!(text.ends_with(".. }"));
}
