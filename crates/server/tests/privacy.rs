//! Privacy at the server's edge: no device's plaintext update (its float
//! delta or its quantized vector) is ever written to the server's storage
//! or logs, and what the server stores of a lone upload is masked beyond
//! recognition. A test binary of its own, because it captures every trace
//! event of the process.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hearth_server::storage::event_kinds;
use support::{Gate, PARAMS, Server, TestTrainer, wait_until};

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn le_bytes<T: Copy>(values: &[T], to: fn(T) -> [u8; 4]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

/// Every form in which a vector could plausibly be written: raw
/// little-endian windows, their base64 (both alphabets, aligned as a
/// whole-vector encoding would be) and hex, and decimal runs.
fn patterns(bytes: &[u8], decimals: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for start in (0..bytes.len().saturating_sub(48)).step_by(96) {
        let window = &bytes[start..start + 48];
        out.push(window.to_vec());
        out.push(STANDARD.encode(window).into_bytes());
        out.push(URL_SAFE_NO_PAD.encode(window).into_bytes());
        out.push(hex::encode(window).into_bytes());
    }
    for run in decimals.chunks(3).take(8) {
        out.push(run.join(",").into_bytes());
    }
    out
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).expect("read"),
            ));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_individual_update_reaches_the_servers_storage_or_logs() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init()
        .expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &support::config(3, 4, 1.0, 60));
    let devices: Vec<_> = (0..4).map(|_| server.enrol("notes")).collect();
    let gate = Gate::default();
    let trainers: Vec<_> = (0..4)
        .map(|i| {
            let mut t = TestTrainer::new(500 + i);
            if i > 0 {
                t.gate = Some(gate.clone());
            }
            Arc::new(t)
        })
        .collect();
    let handles = support::participate_all(&devices, &trainers);

    // While only device 0 has uploaded, the stored running sum is exactly
    // its masked upload: compare it with its quantized update.
    wait_until("the first upload", Duration::from_secs(60), || {
        server
            .events()
            .iter()
            .any(|e| e.kind == event_kinds::UPLOAD_ACCEPTED)
    });
    let round = server.round("notes", 1).expect("round");
    let state: serde_json::Value = serde_json::from_slice(&round.state).expect("state json");
    assert_eq!(state["stage"], "collecting_uploads");
    let stored = STANDARD
        .decode(state["state"]["sum"].as_str().expect("sum"))
        .expect("base64");
    let stored: Vec<u32> = stored
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let quantized = trainers[0].encoded().expect("device 0 encoded");
    assert_eq!(stored.len(), quantized.len());
    let same = stored
        .iter()
        .zip(&quantized)
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same * 100 <= PARAMS,
        "{same} of {PARAMS} stored coordinates equal the device's quantized update"
    );

    gate.open();
    for handle in handles {
        handle.join().expect("thread").expect("participation");
    }
    server.stop();

    let logs = LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(
        contains(&logs, b"round published a global adapter"),
        "the capture saw the server's logs"
    );
    let mut haystacks = files_under(dir.path());
    assert!(haystacks.iter().any(|(name, _)| name.ends_with(".sqlite3")));
    haystacks.push(("captured logs".into(), logs));
    for (i, trainer) in trainers.iter().enumerate() {
        let quantized = trainer.encoded().expect("encoded");
        let update = trainer
            .update
            .lock()
            .expect("lock")
            .clone()
            .expect("update");
        let mut needles = patterns(
            &le_bytes(&quantized, u32::to_le_bytes),
            &quantized.iter().map(u32::to_string).collect::<Vec<_>>(),
        );
        needles.extend(patterns(
            &le_bytes(&quantized, |v| (v as i32).to_le_bytes()),
            &quantized
                .iter()
                .map(|&v| (v as i32).to_string())
                .collect::<Vec<_>>(),
        ));
        needles.extend(patterns(
            &le_bytes(&update, f32::to_le_bytes),
            &update.iter().map(f32::to_string).collect::<Vec<_>>(),
        ));
        for (name, haystack) in &haystacks {
            for needle in &needles {
                assert!(
                    !contains(haystack, needle),
                    "device {i}'s plaintext update found in {name}"
                );
            }
        }
    }
}
