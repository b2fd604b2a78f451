//! The server's stages driven with real clients' messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::crypto::DeviceIdentity;
use crate::crypto::round_keys::{RoundSecrets, sign_advertisement};
use crate::dp::DpConfig;
use crate::graph::GraphSeed;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn info() -> RoundInfo {
    RoundInfo {
        federation: FederationId::from_bytes([1; 16]),
        round: RoundId(3),
        vector_len: 8,
        min_clients: 3,
        max_clients: 3,
        min_survivors: 2,
        degree: None,
        threshold: None,
        graph_seed: GraphSeed([2; 32]),
        dp: DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
        },
        threat_model: None,
    }
}

#[test]
fn advertisements_reusing_keys_or_over_capacity_are_rejected() {
    let mut rng = StdRng::seed_from_u64(1);
    let info = info();
    let ctx = info.context();
    let mut stage = CollectingKeys::new(info).unwrap();
    let identities: Vec<DeviceIdentity> =
        (0..4).map(|_| DeviceIdentity::generate(&mut rng)).collect();
    let keys: Vec<_> = identities
        .iter()
        .map(|id| RoundSecrets::generate(&mut rng, &ctx, &id.device_id()).1)
        .collect();
    let advert = |i: usize, k: &crate::crypto::round_keys::RoundPublicKeys| {
        sign_advertisement(&identities[i], &ctx, k)
    };

    stage.receive_advertisement(advert(0, &keys[0])).unwrap();
    let b = identities[1].device_id();
    let mut copied = keys[1];
    copied.mask_key = keys[0].share_key;
    assert_eq!(
        stage.receive_advertisement(advert(1, &copied)),
        Err(ServerError::KeyReused { device: b })
    );
    let mut same = keys[1];
    same.mask_key = same.share_key;
    assert_eq!(
        stage.receive_advertisement(advert(1, &same)),
        Err(ServerError::KeyReused { device: b })
    );
    assert_eq!(
        stage.receive_advertisement(advert(0, &keys[0])),
        Err(ServerError::Duplicate {
            device: identities[0].device_id()
        })
    );
    stage.receive_advertisement(advert(1, &keys[1])).unwrap();
    stage.receive_advertisement(advert(2, &keys[2])).unwrap();
    assert_eq!(
        stage.receive_advertisement(advert(3, &keys[3])),
        Err(ServerError::CohortFull { max: 3 })
    );
    assert_eq!(stage.advertised(), 3);
}

#[test]
fn too_few_advertisements_abort_at_close() {
    let stage = CollectingKeys::new(info()).unwrap();
    let aborted = stage.close().unwrap_err();
    assert_eq!(
        aborted.reason(),
        &AbortReason::TooFewClients { have: 0, need: 3 }
    );
    assert_eq!(aborted.stage(), Stage::CollectingKeys);
}

#[test]
fn invalid_round_info_is_refused() {
    let mut bad = info();
    bad.min_survivors = 1;
    assert!(matches!(
        AggregatorRound::new(bad),
        Err(ConfigError::ClientBounds { .. })
    ));
    let mut bad = info();
    bad.vector_len = 0;
    assert!(matches!(
        AggregatorRound::new(bad),
        Err(ConfigError::VectorLen { .. })
    ));
    let mut bad = info();
    bad.threshold = Some(1); // 2t must exceed k = 2
    assert!(matches!(
        AggregatorRound::new(bad),
        Err(ConfigError::Neighbourhood(_))
    ));
    let mut bad = info();
    bad.dp.clip_norm = -1.0;
    assert!(matches!(AggregatorRound::new(bad), Err(ConfigError::Dp(_))));
}

#[test]
fn stages_serialize_under_their_wire_names_and_read_the_old_ones() {
    for stage in Stage::ALL {
        assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        let json = serde_json::to_string(&stage).expect("json");
        assert_eq!(json, format!("\"{}\"", stage.as_str()));
    }
    assert_eq!(Stage::parse("gathering"), None);
    let old: Stage = serde_json::from_str("\"collecting_uploads\"").expect("old name");
    assert_eq!(old, Stage::CollectingUploads);
    assert!(Stage::Unmasking.is_live() && !Stage::Done.is_live());
}
