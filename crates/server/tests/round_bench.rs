//! What the server's round path costs per message, measured (ignored by
//! default: `HEARTH_BENCH_DEVICES=100 HEARTH_BENCH_PARAMS=1000000 cargo
//! test -p hearth-server --test round_bench -- --ignored --nocapture`).
//!
//! A real SecAgg+ round of `n` devices is run to its uploads (keys and
//! sealed shares from real clients), stored in a SQLite file, and then
//! every device's masked upload and a poll per device go through the
//! server's path: [`LiveRounds`] (decoded once, uploads journaled, work on
//! the blocking pool). For comparison, the same uploads and polls go
//! through what the server did per message before it kept rounds live:
//! load the round, decode its whole JSON state, apply, encode the whole
//! state and save it with the upload's commitment. The masked vectors are
//! one random vector re-addressed to each device, as in `hearth bench
//! secagg` (the server's work does not depend on their contents).
use hearth_server::storage::prelude::*;

use std::sync::Arc;
use std::time::Instant;

use hearth_fed::{AggregatorRound, ClientMessage, DeviceIdentity, MaskedUpload, ServerMessage};
use hearth_fed::{ClientRound, DeviceId};
use hearth_server::config::Config;
use hearth_server::live::LiveRounds;
use hearth_server::rounds::{Incoming, RoundInput, Stage};
use hearth_server::storage::{
    Enrolment, FederationSync, NewInvite, NewRound, RoundUpdate, SqliteStorage, UploadCommitment,
};
use hearth_server::{SecAggRounds, secagg};
use rand::RngCore;
use rand::rngs::OsRng;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(params: usize, devices: usize) -> Config {
    Config::parse(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."

[[federation]]
id = "bench"
min_clients = 2
target_clients = {devices}
base_model = {{ id = "tiny", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }}
adapter = {{ parameters = {params} }}
dp = {{ clip_norm = 1.0, noise_multiplier = 1.0 }}
secagg = {{ neighbours = 16 }}
"#
        ),
        std::path::Path::new("."),
    )
    .expect("config")
}

/// A round in `storage` with `n` enrolled devices, at its uploads.
async fn round_at_uploads(
    storage: &SqliteStorage,
    config: &Config,
    n: usize,
) -> (Vec<(String, DeviceId)>, u32) {
    let fed = &config.federations[0];
    storage
        .sync_federation(FederationSync {
            id: fed.id.clone(),
            config_json: "{}".into(),
            at_ms: 1,
        })
        .await
        .expect("sync");
    let identities: Vec<DeviceIdentity> = (0..n)
        .map(|_| DeviceIdentity::generate(&mut OsRng))
        .collect();
    let mut devices = Vec::new();
    for (i, id) in identities.iter().enumerate() {
        let token = [i as u8, (i >> 8) as u8, 7, 7].repeat(8);
        let token: [u8; 32] = token.try_into().expect("32");
        storage
            .create_invite(NewInvite {
                federation_id: fed.id.clone(),
                token_sha256: token,
                created_at_ms: 1,
                expires_at_ms: u64::MAX / 2,
            })
            .await
            .expect("invite");
        let d = storage
            .enrol(Enrolment {
                token_sha256: token,
                device_id: format!("dev-{i:04}"),
                public_key: *id.device_id().as_bytes(),
                at_ms: 1,
            })
            .await
            .expect("enrol");
        devices.push((d.id, id.device_id()));
    }
    let info = secagg::round_info(fed, 1, n as u32).expect("info");
    let mut server = AggregatorRound::new(info.clone()).expect("round");
    let mut waiting = Vec::new();
    for id in &identities {
        let (advert, next) = ClientRound::new(id, info.clone(), &mut OsRng).expect("client");
        server
            .receive(ClientMessage::AdvertiseKeys(advert))
            .expect("advert");
        waiting.push((id.device_id(), next));
    }
    server = server.close_stage();
    let mut awaiting = Vec::new();
    for (device, client) in waiting {
        let ServerMessage::NeighbourKeys(keys) = server.message_for(&device).expect("keys") else {
            panic!("neighbour keys expected");
        };
        let (shares, _next) = client
            .receive_neighbours(&keys, &mut OsRng)
            .expect("shares");
        server
            .receive(ClientMessage::EncryptedShares(shares))
            .expect("shares");
        awaiting.push(device);
    }
    server = server.close_stage();
    assert_eq!(server.stage(), hearth_fed::Stage::CollectingUploads);
    let state = serde_json::to_vec(&server).expect("state");
    println!(
        "state at uploads: {:.1} MB of JSON",
        state.len() as f64 / 1e6
    );
    storage
        .open_round(NewRound {
            federation_id: fed.id.clone(),
            round: 1,
            cohort: devices.iter().map(|(d, _)| d.clone()).collect(),
            stage: Stage::CollectingUploads,
            state,
            opened_at_ms: 1,
            stage_deadline_ms: u64::MAX / 4,
            parameters: None,
        })
        .await
        .expect("open");
    (devices, info.vector_len)
}

fn upload_bytes(vector_len: u32, device: DeviceId, round: u64) -> Vec<u8> {
    let fed = hearth_fed::FederationId::from_name("bench");
    let mut masked = vec![0u32; vector_len as usize];
    for w in masked.iter_mut() {
        *w = OsRng.next_u32();
    }
    MaskedUpload {
        federation: fed,
        round: hearth_fed::RoundId(round),
        device,
        masked,
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn round_path_costs() {
    let n = env("HEARTH_BENCH_DEVICES", 20);
    let params = env("HEARTH_BENCH_PARAMS", 100_000);
    let config = config(params, n);
    let fed = config.federations[0].clone();
    println!("round path: {n} devices, {params} parameters");

    for live_path in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SqliteStorage::open(dir.path()).expect("db");
        let (devices, vector_len) = round_at_uploads(&storage, &config, n).await;
        let mut bytes = upload_bytes(vector_len, devices[0].1, 1);
        let live = LiveRounds::new(Arc::new(SecAggRounds));
        let (mut upload_s, mut poll_s) = (0.0, 0.0);
        for (device_id, device) in &devices {
            if let Some(slot) = bytes.get_mut(32..64) {
                slot.copy_from_slice(device.as_bytes());
            }
            let body = bytes.clone();
            let t = Instant::now();
            if live_path {
                let device_id = device_id.clone();
                let device = *device;
                live.step(&storage, &fed, 1, 2, None, move |round, ctx, _| {
                    round.receive(
                        ctx,
                        &RoundInput {
                            device_id: &device_id,
                            sender: device,
                            message: Incoming::Upload(&body),
                        },
                    )
                })
                .await
                .expect("step")
                .expect("accepted");
            } else {
                let record = storage
                    .load_round(fed.id.clone(), 1)
                    .await
                    .expect("load")
                    .expect("round");
                let version = record.summary.version;
                let state = record.state;
                let (blob, sha) = tokio::task::block_in_place(|| {
                    let mut state: AggregatorRound = serde_json::from_slice(&state).expect("dec");
                    state.receive_upload_bytes(&body).expect("upload");
                    let blob = serde_json::to_vec(&state).expect("enc");
                    (blob, hearth_fed::global::adapter_sha256(&body))
                });
                storage
                    .record_upload_commitment(
                        UploadCommitment {
                            federation_id: fed.id.clone(),
                            round: 1,
                            device_id: device_id.clone(),
                            upload_sha256: sha,
                            at_ms: 2,
                        },
                        Some(RoundUpdate {
                            federation_id: fed.id.clone(),
                            round: 1,
                            expected_version: version,
                            stage: Stage::CollectingUploads,
                            state: blob,
                            stage_deadline_ms: u64::MAX / 4,
                            at_ms: 2,
                        }),
                    )
                    .await
                    .expect("saved");
            }
            upload_s += t.elapsed().as_secs_f64();

            // One poll per upload, from the next device.
            let t = Instant::now();
            if live_path {
                live.poll(&storage, &fed.id, 1, device)
                    .await
                    .expect("poll")
                    .expect("in flight");
            } else {
                let record = storage
                    .load_round(fed.id.clone(), 1)
                    .await
                    .expect("load")
                    .expect("round");
                let state: AggregatorRound =
                    tokio::task::block_in_place(|| serde_json::from_slice(&record.state))
                        .expect("dec");
                let _ = state.device_status(device);
            }
            poll_s += t.elapsed().as_secs_f64();
        }
        let db = std::fs::metadata(dir.path().join(hearth_server::storage::DATABASE_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "{}: {n} uploads {upload_s:.2} s ({:.1} ms each), {n} polls {poll_s:.3} s ({:.2} ms each), database {:.0} MB",
            if live_path {
                "live rounds (this build)"
            } else {
                "decode/encode per message (before)"
            },
            upload_s * 1e3 / n as f64,
            poll_s * 1e3 / n as f64,
            db as f64 / 1e6
        );
    }
}
