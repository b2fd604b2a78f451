//! Setting a simulation up: where the shared data and the model are, the
//! SecAgg+ neighbourhood the dropouts need, and the in-process server's
//! configuration.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{FEDERATION, SimError, SimRequest};

/// The project's shared data: `explicit`, else `$HEARTH_SHARED_DATA`, else
/// `../shared/data` beside the repository (where hearth-testdata looks).
pub(crate) fn shared_data(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HEARTH_SHARED_DATA").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

/// Reads a text file from the shared data, or says which is missing.
pub(crate) fn read_shared(path: &Path, what: &str) -> Result<String, SimError> {
    if !path.is_file() {
        return Err(SimError::Missing {
            what: what.into(),
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// What to load `model` from: the registry's copy when this machine has
/// one, else, for models the registry keeps in the shared test data (the
/// tiny stories260K), that file, checked against the registry's sha256.
pub(crate) fn model_location(model: &str, shared: &Path) -> Result<String, SimError> {
    if hearth_ml::registry::resolve(model).is_ok() {
        return Ok(model.to_owned());
    }
    let Some(entry) = hearth_ml::registry::entry(model)
        .ok()
        .and_then(|entry| entry.shared)
    else {
        return Ok(model.to_owned());
    };
    let path = shared.join(&entry.file);
    if !path.is_file() {
        return Err(SimError::Missing {
            what: format!("model {model}"),
            path,
        });
    }
    let bytes = std::fs::read(&path).map_err(|source| SimError::Io {
        path: path.clone(),
        source,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != entry.sha256 {
        return Err(SimError::Digest {
            path,
            actual,
            expected: entry.sha256,
        });
    }
    Ok(path.display().to_string())
}

/// SecAgg+ neighbours: the server's size for the cohort unless dropouts
/// need more. A dropped device's mask seed and every survivor's self-mask
/// are rebuilt from shares held by neighbours; with a majority threshold
/// `t = k/2 + 1`, `k - drops >= t` guarantees that even a device whose
/// every dropped peer is its neighbour keeps enough live ones.
pub(crate) fn neighbours_for(n: u32, drops: u32) -> Option<u32> {
    let auto = hearth_server::config::SecAggConfig::default()
        .for_cohort(n)
        .neighbours;
    (auto..n).find(|k| k.saturating_sub(drops) > k / 2)
}

/// The in-process server's configuration: one federation with the
/// request's privacy settings, every limit sized for devices that all
/// share 127.0.0.1.
pub(crate) fn server_config(
    request: &SimRequest,
    model_sha256: &str,
    layout: &[(String, Vec<usize>)],
    min_clients: u32,
    neighbours: u32,
) -> String {
    let tensors: Vec<String> = layout
        .iter()
        .map(|(name, shape)| format!("{{ name = {name:?}, shape = {shape:?} }}"))
        .collect();
    // Over-selection is 1: the simulated population is exactly the N
    // devices, so inviting more would only wait out the gather deadline;
    // the dropout margin is carried by min_clients (the fewest uploads
    // unmasked) instead.
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 60
max_concurrent_requests = 256
# Every simulated device shares 127.0.0.1.
max_connections_per_ip = 4096
max_requests_per_ip = 1024

[[federation]]
id = "{FEDERATION}"
min_clients = {min_clients}
target_clients = {n}
over_selection = 1.0
server_learning_rate = 1.0
base_model = {{ id = {model:?}, sha256 = "{model_sha256}" }}
adapter = {{ tensors = [ {tensors} ] }}
dp = {{ clip_norm = {clip:?}, noise_multiplier = {noise:?} }}
secagg = {{ neighbours = {neighbours} }}
deadlines = {{ gather_secs = 60, advertise_keys_secs = 20, share_keys_secs = 20, masked_input_secs = {upload}, unmasking_secs = 20 }}
checkin = {{ min_retry_secs = 1, max_retry_secs = 2 }}
"#,
        n = request.clients,
        model = request.model,
        tensors = tensors.join(", "),
        clip = request.clip,
        noise = request.noise,
        upload = request.upload_deadline,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_config_parses_with_the_requested_privacy_settings() {
        let request = SimRequest {
            clients: 5,
            noise: 0.7,
            clip: 2.0,
            ..SimRequest::default()
        };
        let text = server_config(
            &request,
            &"ab".repeat(32),
            &[("a.lora_A.weight".into(), vec![4, 8])],
            4,
            4,
        );
        let config = hearth_server::Config::parse(&text, &std::env::temp_dir()).expect("parses");
        let federation = &config.federations[0];
        assert_eq!(federation.id, FEDERATION);
        assert_eq!(federation.min_clients, 4);
        assert_eq!(federation.dp.protocol.noise_multiplier, 0.7);
        assert_eq!(federation.dp.protocol.clip_norm, 2.0);
    }

    #[test]
    fn a_shared_model_with_the_wrong_digest_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some(entry) = hearth_ml::registry::entry("stories260k")
            .ok()
            .and_then(|entry| entry.shared)
        else {
            panic!("the registry keeps stories260k in the shared data");
        };
        if hearth_ml::registry::resolve("stories260k").is_ok() {
            // This machine has the registry's copy, which wins.
            return;
        }
        let path = dir.path().join(&entry.file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"not the model").expect("write");
        assert!(matches!(
            model_location("stories260k", dir.path()),
            Err(SimError::Digest { .. })
        ));
    }
}
