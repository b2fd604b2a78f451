//! Whole rounds in process, through the real message types: every message
//! goes through JSON (or the binary codec for uploads) as it would over the
//! network, and the server's state is serialized and restored after every
//! step, as if it restarted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hearth_fed::protocol::ClientAwaitingShares;
use hearth_fed::wire::{CodecError, UPLOAD_MAGIC};
use hearth_fed::{
    AbortReason, AggregatorRound, ClientAwaitingNeighbours, ClientAwaitingSurvivors,
    ClientAwaitingUnmask, ClientError, ClientMessage, ClientRound, CryptoError, DeviceId,
    DeviceIdentity, DpConfig, FederationId, GraphSeed, MaskedUpload, RoundId, RoundInfo,
    ServerError, ServerMessage, Stage,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn info(vector_len: u32, clients: u32, min_survivors: u32, degree: Option<u32>) -> RoundInfo {
    RoundInfo {
        federation: FederationId::from_bytes([0x42; 16]),
        round: RoundId(7),
        vector_len,
        min_clients: clients,
        max_clients: clients,
        min_survivors,
        degree,
        threshold: None,
        graph_seed: GraphSeed([9; 32]),
        dp: DpConfig {
            clip_norm: 1.0,
            noise_multiplier: 0.7,
        },
        threat_model: None,
    }
}

fn client_wire(m: ClientMessage) -> ClientMessage {
    ClientMessage::from_json(&m.to_json().unwrap()).unwrap()
}

fn server_wire(m: ServerMessage) -> ServerMessage {
    ServerMessage::from_json(&m.to_json().unwrap()).unwrap()
}

/// The server's state survives being stored and loaded.
fn restart(server: AggregatorRound) -> AggregatorRound {
    let json = serde_json::to_vec(&server).unwrap();
    let back: AggregatorRound = serde_json::from_slice(&json).unwrap();
    assert_eq!(serde_json::to_vec(&back).unwrap(), json);
    back
}

/// A round driven step by step, so tests can interfere between steps.
struct Round {
    info: RoundInfo,
    server: AggregatorRound,
    rng: StdRng,
    identities: Vec<DeviceIdentity>,
}

impl Round {
    fn new(info: RoundInfo, clients: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let identities = (0..clients)
            .map(|_| DeviceIdentity::generate(&mut rng))
            .collect();
        let server = restart(AggregatorRound::new(info.clone()).unwrap());
        Self {
            info,
            server,
            rng,
            identities,
        }
    }

    fn message_for(&self, device: &DeviceId) -> ServerMessage {
        server_wire(self.server.message_for(device).unwrap())
    }

    fn send(&mut self, message: ClientMessage) -> Result<(), ServerError> {
        let result = self.server.receive(client_wire(message));
        self.server = restart(std::mem::replace(
            &mut self.server,
            AggregatorRound::new(self.info.clone()).unwrap(),
        ));
        result
    }

    fn close(&mut self) {
        let server = std::mem::replace(
            &mut self.server,
            AggregatorRound::new(self.info.clone()).unwrap(),
        );
        self.server = restart(restart(server).close_stage());
    }

    /// Step 1 for every client; closes the stage.
    fn advertise(&mut self) -> Vec<(DeviceId, ClientAwaitingNeighbours)> {
        let mut clients = Vec::new();
        for i in 0..self.identities.len() {
            let device = self.identities[i].device_id();
            let ServerMessage::RoundInfo(info) = self.message_for(&device) else {
                panic!("expected round info")
            };
            assert_eq!(info, self.info);
            let (advert, client) =
                ClientRound::new(&self.identities[i], info, &mut self.rng).unwrap();
            self.send(ClientMessage::AdvertiseKeys(advert)).unwrap();
            clients.push((device, client));
        }
        self.close();
        assert_eq!(self.server.stage(), Stage::SharingKeys);
        clients
    }

    /// Steps 2–3 for every client; closes the stage.
    fn share(
        &mut self,
        clients: Vec<(DeviceId, ClientAwaitingNeighbours)>,
    ) -> Vec<(DeviceId, ClientAwaitingShares)> {
        let mut next = Vec::new();
        for (device, client) in clients {
            let ServerMessage::NeighbourKeys(keys) = self.message_for(&device) else {
                panic!("expected keys")
            };
            let (shares, client) = client.receive_neighbours(&keys, &mut self.rng).unwrap();
            self.send(ClientMessage::EncryptedShares(shares)).unwrap();
            next.push((device, client));
        }
        self.close();
        assert_eq!(self.server.stage(), Stage::CollectingUploads);
        next
    }

    /// Steps 4–5 for every client not in `drop`: random updates, DP
    /// encoded, masked, sent as binary. Returns the survivors and the
    /// wrapping sum of their quantized updates.
    fn upload(
        &mut self,
        clients: Vec<(DeviceId, ClientAwaitingShares)>,
        drop: &[DeviceId],
    ) -> (Vec<(DeviceId, ClientAwaitingSurvivors)>, Vec<u32>) {
        let dp = self.info.distributed_dp().unwrap();
        let len = self.info.vector_len as usize;
        let mut expected = vec![0u32; len];
        let mut survivors = Vec::new();
        for (device, client) in clients {
            if drop.contains(&device) {
                continue;
            }
            let ServerMessage::SharesForDevice(shares) = self.message_for(&device) else {
                panic!("expected shares")
            };
            let ready = client.receive_shares(&shares).unwrap();
            let update: Vec<f32> = (0..len).map(|_| self.rng.gen_range(-0.5f32..0.5)).collect();
            let quantized = dp.encode(&update, &mut self.rng).unwrap();
            for (e, q) in expected.iter_mut().zip(&quantized) {
                *e = e.wrapping_add(*q);
            }
            let (upload, client) = ready.upload(&quantized).unwrap();
            let bytes = upload.encode();
            assert_eq!(
                MaskedUpload::decode(&bytes, self.info.vector_len).unwrap(),
                upload
            );
            assert_eq!(self.server.receive_upload_bytes(&bytes).unwrap(), device);
            survivors.push((device, client));
        }
        self.close();
        (survivors, expected)
    }

    fn identity(&self, device: &DeviceId) -> &DeviceIdentity {
        self.identities
            .iter()
            .find(|i| i.device_id() == *device)
            .unwrap()
    }

    /// Steps 6–7 (the consistency round) for every client given; closes
    /// the stage.
    fn sign(
        &mut self,
        clients: Vec<(DeviceId, ClientAwaitingSurvivors)>,
    ) -> Vec<(DeviceId, ClientAwaitingUnmask)> {
        let mut next = Vec::new();
        for (device, client) in clients {
            let ServerMessage::SurvivorSet(set) = self.message_for(&device) else {
                panic!("expected the survivor set")
            };
            let (signature, client) = client.sign_survivors(self.identity(&device), &set).unwrap();
            self.send(ClientMessage::ConsistencySignature(signature))
                .unwrap();
            next.push((device, client));
        }
        self.close();
        next
    }

    /// Steps 8–9 for every client given; closes the stage.
    fn reveal(&mut self, clients: Vec<(DeviceId, ClientAwaitingUnmask)>) {
        for (device, client) in clients {
            let ServerMessage::UnmaskRequest(request) = self.message_for(&device) else {
                panic!("expected request")
            };
            self.send(ClientMessage::UnmaskResponse(
                client.respond(&request).unwrap(),
            ))
            .unwrap();
        }
        self.close();
    }

    /// Steps 6–9 for every client given.
    fn unmask(&mut self, clients: Vec<(DeviceId, ClientAwaitingSurvivors)>) {
        let signed = self.sign(clients);
        assert_eq!(self.server.stage(), Stage::Unmasking);
        self.reveal(signed);
    }

    fn done(&self) -> &hearth_fed::Done {
        match &self.server {
            AggregatorRound::Done(done) => done,
            other => panic!("round not done: {:?}", other.stage()),
        }
    }
}

fn sorted(mut v: Vec<DeviceId>) -> Vec<DeviceId> {
    v.sort();
    v
}

#[test]
fn ten_clients_aggregate_exactly() {
    let mut round = Round::new(info(300, 10, 5, None), 10, 1);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, expected) = round.upload(clients, &[]);
    let everyone = sorted(survivors.iter().map(|(d, _)| *d).collect());
    round.unmask(survivors);
    let done = round.done();
    assert_eq!(done.sum(), expected.as_slice());
    assert_eq!(done.contributors(), everyone.as_slice());
    // Survivors' self masks only: nobody dropped.
    assert_eq!(done.masks_removed(), 10);
}

#[test]
fn decoded_mean_matches_the_clipped_float_mean_without_noise() {
    let mut info = info(64, 5, 3, None);
    info.dp.noise_multiplier = 0.0;
    let mut round = Round::new(info.clone(), 5, 2);
    let clients = round.advertise();
    let clients = round.share(clients);
    let dp = info.distributed_dp().unwrap();
    let update: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 100.0).collect(); // norm > 1: clipped
    let factor = hearth_fed::dp::clip_factor(&update, 1.0).unwrap();
    let mut survivors = Vec::new();
    for (device, client) in clients {
        let ServerMessage::SharesForDevice(shares) = round.message_for(&device) else {
            panic!()
        };
        let ready = client.receive_shares(&shares).unwrap();
        let (upload, client) = ready
            .upload(&dp.encode(&update, &mut round.rng).unwrap())
            .unwrap();
        round.server.receive_upload_bytes(&upload.encode()).unwrap();
        survivors.push((device, client));
    }
    round.close();
    round.unmask(survivors);
    let mean = round.done().decode_mean().unwrap();
    let step = 1.0 / dp.quantizer().scale();
    for (m, x) in mean.iter().zip(&update) {
        assert!((f64::from(*m) - f64::from(*x) * factor).abs() <= step + 1e-6);
    }
}

#[test]
fn thirty_percent_dropout_after_sharing_still_aggregates_exactly() {
    let mut round = Round::new(info(200, 10, 5, Some(8)), 10, 3);
    let clients = round.advertise();
    let clients = round.share(clients);
    let drop: Vec<DeviceId> = [1, 4, 8].iter().map(|&i| clients[i].0).collect();
    let (survivors, expected) = round.upload(clients, &drop);
    assert_eq!(survivors.len(), 7);
    let alive = sorted(survivors.iter().map(|(d, _)| *d).collect());
    round.unmask(survivors);
    let done = round.done();
    assert_eq!(done.sum(), expected.as_slice());
    assert_eq!(done.contributors(), alive.as_slice());
    assert!(
        done.masks_removed() > 7,
        "pairwise masks with the dropped were removed"
    );
}

#[test]
fn survivors_that_miss_the_unmask_stage_are_covered_by_their_neighbours() {
    let mut round = Round::new(info(100, 10, 5, Some(9)), 10, 4);
    let clients = round.advertise();
    let clients = round.share(clients);
    let drop = vec![clients[0].0, clients[5].0];
    let (mut survivors, expected) = round.upload(clients, &drop);
    // Two uploaders never answer the unmask request; t = 5 of the other 7
    // still hold shares of everyone.
    survivors.truncate(6);
    round.unmask(survivors);
    let done = round.done();
    assert_eq!(done.sum(), expected.as_slice());
    assert_eq!(done.contributors().len(), 8);
}

#[test]
fn dropout_below_the_minimum_aborts_and_publishes_nothing() {
    let mut round = Round::new(info(50, 10, 6, Some(8)), 10, 5);
    let clients = round.advertise();
    let clients = round.share(clients);
    let drop: Vec<DeviceId> = clients.iter().take(5).map(|(d, _)| *d).collect();
    let (survivors, _) = round.upload(clients, &drop);
    let AggregatorRound::Aborted(aborted) = &round.server else {
        panic!("expected abort")
    };
    assert_eq!(aborted.stage(), Stage::CollectingUploads);
    assert_eq!(
        aborted.reason(),
        &AbortReason::TooFewSurvivors {
            stage: Stage::CollectingUploads,
            have: 5,
            need: 6
        }
    );
    // Nothing more is asked of anyone, and the stored state holds no sum.
    let (device, _) = &survivors[0];
    assert!(matches!(
        round.server.message_for(device),
        Err(ServerError::NothingToSend { .. })
    ));
    assert!(
        !serde_json::to_string(&round.server)
            .unwrap()
            .contains("\"sum\"")
    );
    assert_eq!(round.server.clone().close_stage().stage(), Stage::Aborted);
}

#[test]
fn dropout_past_a_neighbourhood_threshold_aborts() {
    // k = 4, t = 3: six of ten gone leaves some survivor with fewer than
    // three live neighbours, although the global minimum (2) is met.
    let mut round = Round::new(info(50, 10, 2, None), 10, 6);
    let clients = round.advertise();
    let clients = round.share(clients);
    let drop: Vec<DeviceId> = clients.iter().take(6).map(|(d, _)| *d).collect();
    round.upload(clients, &drop);
    let AggregatorRound::Aborted(aborted) = &round.server else {
        panic!("expected abort")
    };
    assert!(
        matches!(
            aborted.reason(),
            AbortReason::NeighbourhoodTooSmall { need: 3, .. }
        ),
        "{:?}",
        aborted.reason()
    );
}

#[test]
fn a_client_signs_only_a_survivor_set_it_can_vouch_for() {
    let mut round = Round::new(info(40, 10, 5, Some(9)), 10, 12);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, _) = round.upload(clients, &[]);
    let cohort = sorted(round.identities.iter().map(|i| i.device_id()).collect());
    let mut survivors = survivors.into_iter();
    let mut next = |round: &Round| {
        let (device, client) = survivors.next().unwrap();
        let ServerMessage::SurvivorSet(set) = round.message_for(&device) else {
            panic!()
        };
        let position = cohort.binary_search(&device).unwrap();
        (device, client, set, position)
    };

    // Told it dropped although its upload is in: it will not vouch for it.
    let (device, client, mut set, p) = next(&round);
    set.survivors[p / 8] &= !(1 << (p % 8));
    assert_eq!(
        client
            .sign_survivors(round.identity(&device), &set)
            .unwrap_err(),
        ClientError::NotASurvivor
    );
    // Fewer survivors than the round promised (its noise share assumed 5).
    let (device, client, mut set, p) = next(&round);
    set.survivors = vec![0; 2];
    set.survivors[p / 8] |= 1 << (p % 8);
    assert_eq!(
        client
            .sign_survivors(round.identity(&device), &set)
            .unwrap_err(),
        ClientError::TooFewSurvivorsInRound { have: 1, need: 5 }
    );
    // A bitmap that does not fit the cohort.
    let (device, client, mut set, _) = next(&round);
    set.survivors.push(0);
    assert!(matches!(
        client.sign_survivors(round.identity(&device), &set),
        Err(ClientError::SurvivorSet(_))
    ));
    // Another device's identity.
    let (device, client, set, _) = next(&round);
    let other = round
        .identities
        .iter()
        .find(|i| i.device_id() != device)
        .unwrap();
    assert!(matches!(
        client.sign_survivors(other, &set),
        Err(ClientError::WrongIdentity { .. })
    ));
}

#[test]
fn a_client_reveals_only_against_the_set_t_neighbours_signed() {
    let mut round = Round::new(info(40, 10, 5, Some(9)), 10, 7);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, expected) = round.upload(clients, &[]);
    let signed = round.sign(survivors);
    assert_eq!(round.server.stage(), Stage::Unmasking);
    let mut signed = signed.into_iter();
    let mut request_for = |round: &Round| {
        let (device, client) = signed.next().unwrap();
        let ServerMessage::UnmaskRequest(request) = round.message_for(&device) else {
            panic!()
        };
        assert_eq!(request.signatures.len(), 9);
        (client, request)
    };

    // A different survivor set from the one it signed.
    let (client, mut request) = request_for(&round);
    request.survivors[0] ^= 1;
    assert_eq!(
        client.respond(&request).unwrap_err(),
        ClientError::SurvivorSetChanged
    );
    // Fewer than t = 5 neighbours' signatures.
    let (client, mut request) = request_for(&round);
    request.signatures.truncate(4);
    assert_eq!(
        client.respond(&request).unwrap_err(),
        ClientError::TooFewConsistencySignatures { have: 4, need: 5 }
    );
    // A signature moved to another neighbour's name, or one named twice.
    let (client, mut request) = request_for(&round);
    request.signatures[1].signature = request.signatures[0].signature;
    let moved = request.signatures[1].device;
    assert!(matches!(
        client.respond(&request),
        Err(ClientError::BadConsistencySignature { device, .. }) if device == moved
    ));
    let (client, mut request) = request_for(&round);
    let again = request.signatures[0].clone();
    request.signatures.push(again.clone());
    assert_eq!(
        client.respond(&request).unwrap_err(),
        ClientError::UnexpectedSigner {
            device: again.device
        }
    );

    // The six honest clients left still unmask the sum (t = 5).
    let rest: Vec<_> = signed.collect();
    assert_eq!(rest.len(), 6);
    round.reveal(rest);
    assert_eq!(round.done().sum(), expected.as_slice());
}

#[test]
fn the_server_refuses_a_consistency_signature_over_another_set() {
    let mut round = Round::new(info(16, 10, 2, Some(9)), 10, 13);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, _) = round.upload(clients, &[]);
    let (device, client) = survivors.into_iter().next().unwrap();
    let ServerMessage::SurvivorSet(mut set) = round.message_for(&device) else {
        panic!()
    };
    // The device is shown (and signs) a set the server does not hold.
    let position = sorted(round.identities.iter().map(|i| i.device_id()).collect())
        .binary_search(&device)
        .unwrap();
    let other = if position == 0 { 1 } else { 0 };
    set.survivors[0] &= !(1 << other);
    let (signature, _) = client
        .sign_survivors(round.identity(&device), &set)
        .unwrap();
    assert!(matches!(
        round.send(ClientMessage::ConsistencySignature(signature)),
        Err(ServerError::BadConsistencySignature { .. })
    ));
}

#[test]
fn forged_and_replayed_advertisements_are_rejected() {
    let mut round = Round::new(info(10, 4, 2, None), 4, 8);
    let mut rng = StdRng::seed_from_u64(80);
    let identity = &DeviceIdentity::from_secret_bytes(&round.identities[0].to_secret_bytes());
    let (advert, _) = ClientRound::new(identity, round.info.clone(), &mut rng).unwrap();

    let mut forged = advert.clone();
    forged.mask_key = random_x25519_public(&mut rng);
    let device = forged.device;
    assert_eq!(
        round.send(ClientMessage::AdvertiseKeys(forged)),
        Err(ServerError::BadAdvertisement {
            device,
            source: CryptoError::BadSignature
        })
    );

    // The same device's advertisement from another round, relabelled.
    let mut other = round.info.clone();
    other.round = RoundId(6);
    let (mut replayed, _) = ClientRound::new(identity, other, &mut rng).unwrap();
    assert!(matches!(
        round.send(ClientMessage::AdvertiseKeys(replayed.clone())),
        Err(ServerError::WrongRound {
            round: RoundId(6),
            ..
        })
    ));
    replayed.round = RoundId(7);
    assert!(matches!(
        round.send(ClientMessage::AdvertiseKeys(replayed)),
        Err(ServerError::BadAdvertisement {
            source: CryptoError::BadSignature,
            ..
        })
    ));
    // Nothing was admitted; the honest round carries on.
    let clients = round.advertise();
    assert_eq!(clients.len(), 4);

    // A server that swaps a neighbour's key in what it relays is caught by
    // the client.
    let (device, client) = clients.into_iter().next().unwrap();
    let ServerMessage::NeighbourKeys(mut keys) = round.message_for(&device) else {
        panic!()
    };
    let target = keys.advertisements[0].device;
    keys.advertisements[0].share_key = random_x25519_public(&mut rng);
    assert_eq!(
        client.receive_neighbours(&keys, &mut rng).unwrap_err(),
        ClientError::BadAdvertisement {
            device: target,
            source: CryptoError::BadSignature
        }
    );
}

/// Some other X25519 public key, as a meddling relay would substitute.
fn random_x25519_public(rng: &mut StdRng) -> x25519_dalek::PublicKey {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(rng))
}

#[test]
fn bad_uploads_are_rejected_while_the_round_carries_on() {
    let mut round = Round::new(info(32, 5, 3, None), 5, 9);
    let clients = round.advertise();

    // Uploads are refused before their stage.
    let early = MaskedUpload {
        federation: round.info.federation,
        round: round.info.round,
        device: clients[0].0,
        masked: vec![0; 32],
    };
    assert!(matches!(
        round.server.receive_upload_bytes(&early.encode()),
        Err(ServerError::UnexpectedMessage {
            stage: Stage::SharingKeys,
            ..
        })
    ));

    let clients = round.share(clients);
    let dp = round.info.distributed_dp().unwrap();
    let mut expected = vec![0u32; 32];
    let mut survivors = Vec::new();
    for (i, (device, client)) in clients.into_iter().enumerate() {
        let ServerMessage::SharesForDevice(shares) = round.message_for(&device) else {
            panic!()
        };
        let ready = client.receive_shares(&shares).unwrap();
        let quantized = dp.encode(&[0.1; 32], &mut round.rng).unwrap();
        let (upload, client) = ready.upload(&quantized).unwrap();
        if i == 0 {
            let good = upload.encode();
            let short = MaskedUpload {
                masked: upload.masked[..31].to_vec(),
                ..upload.clone()
            };
            assert_eq!(
                round.server.receive_upload_bytes(&short.encode()),
                Err(ServerError::WrongLength {
                    device,
                    expected: 32,
                    got: 31
                })
            );
            assert_eq!(
                round.server.receive(ClientMessage::MaskedUpload(short)),
                Err(ServerError::WrongLength {
                    device,
                    expected: 32,
                    got: 31
                })
            );
            let mut long = upload.clone();
            long.masked.push(1);
            assert_eq!(
                round.server.receive_upload_bytes(&long.encode()),
                Err(ServerError::Codec(CodecError::TooLarge {
                    declared: 33,
                    max: 32
                }))
            );
            assert!(matches!(
                round.server.receive_upload_bytes(&good[..good.len() - 3]),
                Err(ServerError::Codec(CodecError::LengthMismatch { .. }))
            ));
            assert!(matches!(
                round.server.receive_upload_bytes(b"GET / HTTP/1.1\r\n\r\n"),
                Err(ServerError::Codec(CodecError::TooShort { .. }))
            ));
            let mut garbage = good.clone();
            garbage[..4].copy_from_slice(b"HFMV");
            assert_ne!(&garbage[..4], &UPLOAD_MAGIC);
            assert!(matches!(
                round.server.receive_upload_bytes(&garbage),
                Err(ServerError::Codec(CodecError::BadMagic { .. }))
            ));
            let stranger = DeviceId::from_bytes([3; 32]);
            let foreign = MaskedUpload {
                device: stranger,
                ..upload.clone()
            };
            assert_eq!(
                round.server.receive_upload_bytes(&foreign.encode()),
                Err(ServerError::NotInCohort { device: stranger })
            );
            let wrong_round = MaskedUpload {
                round: RoundId(8),
                ..upload.clone()
            };
            assert!(matches!(
                round.server.receive_upload_bytes(&wrong_round.encode()),
                Err(ServerError::WrongRound { .. })
            ));
            // The good one goes in once, and only once.
            round.server.receive_upload_bytes(&good).unwrap();
            assert_eq!(
                round.server.receive_upload_bytes(&good),
                Err(ServerError::Duplicate { device })
            );
            // Shares are not taken in this stage.
            assert!(matches!(
                round.send(ClientMessage::UnmaskResponse(hearth_fed::UnmaskResponse {
                    federation: round.info.federation,
                    round: round.info.round,
                    sender: device,
                    self_mask_shares: vec![],
                    mask_key_shares: vec![],
                })),
                Err(ServerError::UnexpectedMessage {
                    stage: Stage::CollectingUploads,
                    ..
                })
            ));
        } else {
            round.server.receive_upload_bytes(&upload.encode()).unwrap();
        }
        for (e, q) in expected.iter_mut().zip(&quantized) {
            *e = e.wrapping_add(*q);
        }
        survivors.push((device, client));
    }
    round.close();
    round.unmask(survivors);
    assert_eq!(round.done().sum(), expected.as_slice());
}

#[test]
fn tampered_share_ciphertext_fails_to_decrypt() {
    let mut round = Round::new(info(8, 4, 2, None), 4, 10);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (device, client) = clients.into_iter().next().unwrap();
    let ServerMessage::SharesForDevice(mut shares) = round.message_for(&device) else {
        panic!()
    };
    let sender = shares.shares[0].sender;
    shares.shares[0].ciphertext[5] ^= 1;
    assert_eq!(
        client.receive_shares(&shares).unwrap_err(),
        ClientError::ShareDecryption {
            sender,
            source: CryptoError::Decryption
        }
    );
}

#[test]
fn misrouted_shares_and_messages_for_other_rounds_are_refused() {
    // Complete graph on four: everyone is everyone's neighbour.
    let mut round = Round::new(info(8, 4, 2, Some(3)), 4, 11);
    let clients = round.advertise();
    let clients = round.share(clients);
    let mut it = clients.into_iter();
    let (_, client_a) = it.next().unwrap();
    let (b, client_b) = it.next().unwrap();
    let (c, client_c) = it.next().unwrap();
    let ServerMessage::SharesForDevice(for_b) = round.message_for(&b) else {
        panic!()
    };

    // B's shares delivered to A as they are: addressed to someone else.
    assert_eq!(
        client_a.receive_shares(&for_b).unwrap_err(),
        ClientError::WrongRecipient { recipient: b }
    );

    // Readdressed to C (minus C's own): sealed to B's key and x, they do not open.
    let mut readdressed = for_b.clone();
    readdressed.recipient = c;
    readdressed.shares.retain(|s| s.sender != c);
    assert!(matches!(
        client_c.receive_shares(&readdressed),
        Err(ClientError::ShareDecryption {
            source: CryptoError::Decryption,
            ..
        })
    ));

    // For another round.
    let mut other_round = for_b;
    other_round.round = RoundId(99);
    assert!(matches!(
        client_b.receive_shares(&other_round),
        Err(ClientError::WrongRound {
            round: RoundId(99),
            ..
        })
    ));
}

#[test]
fn masked_uploads_look_nothing_like_the_update() {
    let mut round = Round::new(info(10_000, 4, 2, None), 4, 12);
    let clients = round.advertise();
    let clients = round.share(clients);
    let dp = round.info.distributed_dp().unwrap();
    for (device, client) in clients {
        let ServerMessage::SharesForDevice(shares) = round.message_for(&device) else {
            panic!()
        };
        let ready = client.receive_shares(&shares).unwrap();
        let quantized = dp.encode(&vec![0.0; 10_000], &mut round.rng).unwrap();
        let (upload, _) = ready.upload(&quantized).unwrap();
        let same = upload
            .masked
            .iter()
            .zip(&quantized)
            .filter(|(m, q)| m == q)
            .count();
        assert!(same < 100, "{same} of 10000 coordinates unmasked");
    }
}

#[test]
fn server_rejects_malformed_share_sets_and_unmask_responses() {
    let mut round = Round::new(info(16, 5, 3, Some(4)), 5, 13);
    let clients = round.advertise();
    let mut sharing = Vec::new();
    for (i, (device, client)) in clients.into_iter().enumerate() {
        let ServerMessage::NeighbourKeys(keys) = round.message_for(&device) else {
            panic!()
        };
        let (shares, client) = client.receive_neighbours(&keys, &mut round.rng).unwrap();
        if i == 0 {
            let mut missing = shares.clone();
            missing.shares.pop();
            assert_eq!(
                round.send(ClientMessage::EncryptedShares(missing)),
                Err(ServerError::ShareSetMismatch { device })
            );
            let mut doubled = shares.clone();
            let first = doubled.shares[0].clone();
            doubled.shares[1] = first;
            assert_eq!(
                round.send(ClientMessage::EncryptedShares(doubled)),
                Err(ServerError::ShareSetMismatch { device })
            );
            let mut short = shares.clone();
            short.shares[2].ciphertext.pop();
            let recipient = short.shares[2].recipient;
            assert_eq!(
                round.send(ClientMessage::EncryptedShares(short)),
                Err(ServerError::MalformedShare { device, recipient })
            );
            round
                .send(ClientMessage::EncryptedShares(shares.clone()))
                .unwrap();
            assert_eq!(
                round.send(ClientMessage::EncryptedShares(shares)),
                Err(ServerError::Duplicate { device })
            );
        } else {
            round.send(ClientMessage::EncryptedShares(shares)).unwrap();
        }
        sharing.push((device, client));
    }
    round.close();
    let dropped = sharing[4].0;
    let (survivors, expected) = round.upload(sharing, &[dropped]);
    assert!(matches!(
        round.server.message_for(&dropped),
        Err(ServerError::NotEligible {
            stage: Stage::CheckingConsistency,
            ..
        })
    ));
    let signed = round.sign(survivors);
    assert!(matches!(
        round.server.message_for(&dropped),
        Err(ServerError::NotEligible {
            stage: Stage::Unmasking,
            ..
        })
    ));

    for (i, (device, client)) in signed.into_iter().enumerate() {
        let ServerMessage::UnmaskRequest(request) = round.message_for(&device) else {
            panic!()
        };
        let response = client.respond(&request).unwrap();
        if i == 0 {
            let mut partial = response.clone();
            partial.self_mask_shares.pop();
            assert_eq!(
                round.send(ClientMessage::UnmaskResponse(partial)),
                Err(ServerError::UnmaskResponseMismatch { device })
            );
            // Answering for a survivor with its mask-key share instead.
            let mut swapped = response.clone();
            let moved = swapped.self_mask_shares.pop().unwrap();
            swapped.mask_key_shares.push(moved);
            assert_eq!(
                round.send(ClientMessage::UnmaskResponse(swapped)),
                Err(ServerError::UnmaskResponseMismatch { device })
            );
            let mut impostor = response.clone();
            impostor.sender = dropped;
            assert_eq!(
                round.send(ClientMessage::UnmaskResponse(impostor)),
                Err(ServerError::NotEligible {
                    device: dropped,
                    stage: Stage::Unmasking
                })
            );
            round
                .send(ClientMessage::UnmaskResponse(response.clone()))
                .unwrap();
            assert_eq!(
                round.send(ClientMessage::UnmaskResponse(response)),
                Err(ServerError::Duplicate { device })
            );
        } else {
            round.send(ClientMessage::UnmaskResponse(response)).unwrap();
        }
    }
    round.close();
    assert_eq!(round.done().sum(), expected.as_slice());
}

#[test]
fn a_neighbour_revealing_a_wrong_share_is_caught_and_named() {
    // Complete graph on six, t = 3: each secret has five holders. The
    // wrong share is off its owner's committed polynomial: it is dropped,
    // the sum comes out exact, and its sender is named.
    let mut round = Round::new(info(24, 6, 3, Some(5)), 6, 14);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, expected) = round.upload(clients, &[]);
    let signed = round.sign(survivors);
    let liar = signed[0].0;
    for (i, (device, client)) in signed.into_iter().enumerate() {
        let ServerMessage::UnmaskRequest(request) = round.message_for(&device) else {
            panic!()
        };
        let mut response = client.respond(&request).unwrap();
        if i == 0 {
            response.self_mask_shares[0].value += curve25519_dalek::Scalar::ONE;
        }
        round.send(ClientMessage::UnmaskResponse(response)).unwrap();
    }
    round.close();
    assert_eq!(round.done().sum(), expected.as_slice());
    assert_eq!(round.done().misbehaving(), &[liar]);
}

/// Attack 5 of the threat model, at scale: with 300 devices (k = 10,
/// t = 6), the first responder reveals a wrong share of every neighbour.
/// Each is caught against its owner's commitments on its own (no subsets
/// tried), the round publishes the exact sum, and the liar is named.
#[test]
fn a_wrong_share_from_the_first_responder_at_300_devices_is_caught_and_named() {
    let mut round = Round::new(info(16, 300, 150, None), 300, 15);
    let clients = round.advertise();
    let clients = round.share(clients);
    let (survivors, expected) = round.upload(clients, &[]);
    let signed = round.sign(survivors);
    let liar = signed[0].0;
    for (i, (device, client)) in signed.into_iter().enumerate() {
        let ServerMessage::UnmaskRequest(request) = round.message_for(&device) else {
            panic!()
        };
        let mut response = client.respond(&request).unwrap();
        if i == 0 {
            for share in &mut response.self_mask_shares {
                share.value += curve25519_dalek::Scalar::ONE;
            }
        }
        round.send(ClientMessage::UnmaskResponse(response)).unwrap();
    }
    round.close();
    let done = round.done();
    assert_eq!(done.sum(), expected.as_slice());
    assert_eq!(done.contributors().len(), 300);
    assert_eq!(done.misbehaving(), &[liar]);
    assert!(done.check_bounds().is_ok());
}

/// Attack 5's other half: a device that skips clipping and noise and
/// uploads 2^30 in every coordinate. Its upload is masked like any other,
/// so the server cannot see it alone; the unmasked sum, though, is far
/// beyond what honestly clipped updates can reach, and is not decoded.
#[test]
fn an_upload_of_huge_values_is_caught_by_the_bound() {
    let info = info(300, 10, 5, None);
    let mut round = Round::new(info.clone(), 10, 16);
    let clients = round.advertise();
    let clients = round.share(clients);
    let dp = info.distributed_dp().unwrap();
    let mut survivors = Vec::new();
    for (i, (device, client)) in clients.into_iter().enumerate() {
        let ServerMessage::SharesForDevice(shares) = round.message_for(&device) else {
            panic!()
        };
        let ready = client.receive_shares(&shares).unwrap();
        let quantized = if i == 0 {
            vec![1u32 << 30; 300]
        } else {
            dp.encode(&vec![0.01; 300], &mut round.rng).unwrap()
        };
        let (upload, client) = ready.upload(&quantized).unwrap();
        round.server.receive_upload_bytes(&upload.encode()).unwrap();
        survivors.push((device, client));
    }
    round.close();
    round.unmask(survivors);
    let done = round.done();
    assert!(
        matches!(done.check_bounds(), Err(AbortReason::SumOutOfBounds { norm, bound }) if norm > 4 * bound),
        "{:?}",
        done.check_bounds()
    );
    assert!(matches!(
        done.decode_mean(),
        Err(hearth_fed::protocol::SumError::OutOfBounds(_))
    ));
}

/// A neighbour that deals a share off the polynomial it committed to is
/// caught by the share's recipient on arrival.
#[test]
fn a_share_off_its_commitments_is_refused_on_arrival() {
    let mut round = Round::new(info(8, 4, 2, Some(3)), 4, 17);
    let clients = round.advertise();
    let mut dealt = Vec::new();
    for (device, client) in clients {
        let ServerMessage::NeighbourKeys(keys) = round.message_for(&device) else {
            panic!()
        };
        let (mut shares, client) = client.receive_neighbours(&keys, &mut round.rng).unwrap();
        if dealt.is_empty() {
            // The first dealer commits to another polynomial than the one
            // its shares lie on.
            shares.commitments.self_mask = shares.commitments.mask_scalar.clone();
        }
        round.send(ClientMessage::EncryptedShares(shares)).unwrap();
        dealt.push((device, client));
    }
    round.close();
    let cheat = dealt[0].0;
    let (device, client) = dealt.into_iter().nth(1).unwrap();
    let ServerMessage::SharesForDevice(shares) = round.message_for(&device) else {
        panic!()
    };
    assert_eq!(
        client.receive_shares(&shares).unwrap_err(),
        ClientError::UncommittedShare { sender: cheat }
    );
}

/// With a threat model and no explicit degree, every party sizes the
/// neighbourhood from Bell et al.'s bounds for the cohort that formed (here
/// 60 devices, 1% colluders, 5% dropouts: k = 40, t = 26, not log2 n = 6),
/// and the round still sums exactly with a few dropouts.
#[test]
fn neighbourhoods_sized_by_the_threat_model_aggregate_exactly() {
    let model = hearth_fed::graph::ThreatModel {
        corrupt_fraction: 0.01,
        dropout_fraction: 0.05,
    };
    let info = RoundInfo {
        threat_model: Some(model),
        ..info(32, 60, 30, None)
    };
    let mut round = Round::new(info, 60, 18);
    let clients = round.advertise();
    let AggregatorRound::SharingKeys(sharing) = &round.server else {
        panic!("expected sharing keys")
    };
    let sized = model.neighbourhood(60).unwrap();
    assert_eq!(sharing.neighbourhood(), sized);
    assert_eq!((sized.degree, sized.threshold), (40, 26));
    let clients = round.share(clients);
    let drop: Vec<DeviceId> = clients.iter().take(3).map(|(d, _)| *d).collect();
    let (survivors, expected) = round.upload(clients, &drop);
    round.unmask(survivors);
    assert_eq!(round.done().sum(), expected.as_slice());
    assert_eq!(round.done().contributors().len(), 57);
}
