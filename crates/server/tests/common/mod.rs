//! A real server on 127.0.0.1 (port 0) over HTTPS with its generated
//! self-signed certificate, and a client that trusts exactly that
//! certificate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use hearth_server::auth::{self, RequestToSign};
use hearth_server::config::Config;
use hearth_server::routes::{EnrolRequest, EnrolResponse};
use hearth_server::{RunningServer, SecAggRounds, now_ms, ops};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

/// Two small federations; rounds need two clients and open at once.
pub const TEST_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "."
request_timeout_secs = 10
max_concurrent_requests = 64

[[federation]]
id = "notes"
min_clients = 2
target_clients = 2
over_selection = 1.0
base_model = { id = "tiny", sha256 = "1111111111111111111111111111111111111111111111111111111111111111" }
adapter = { parameters = 64 }
dp = { clip_norm = 1.0, noise_multiplier = 0.5 }
checkin = { min_retry_secs = 5, max_retry_secs = 60 }

[[federation]]
id = "photos"
min_clients = 2
target_clients = 3
base_model = { id = "tiny-vision", sha256 = "2222222222222222222222222222222222222222222222222222222222222222" }
adapter = { tensors = [{ name = "head.weight", shape = [4, 8] }] }
dp = { clip_norm = 0.5, noise_multiplier = 1.1 }
"#;

pub struct TestServer {
    pub dir: PathBuf,
    pub config: Config,
    pub server: RunningServer,
    pub client: reqwest::Client,
    pub base: String,
}

impl TestServer {
    /// Starts a server on `dir`, writing the test configuration if absent.
    pub async fn start(dir: &Path) -> TestServer {
        let config_path = dir.join("hearth-server.toml");
        if !config_path.exists() {
            std::fs::write(&config_path, TEST_CONFIG).expect("write config");
        }
        let config = Config::load(&config_path).expect("config");
        let server = hearth_server::start(config.clone(), Arc::new(SecAggRounds))
            .await
            .expect("server starts");
        let client = trusting_client(&dir.join("tls").join("cert.pem"));
        let base = format!("https://127.0.0.1:{}", server.local_addr().port());
        TestServer {
            dir: dir.to_path_buf(),
            config,
            server,
            client,
            base,
        }
    }

    pub async fn stop(self) {
        self.server
            .shutdown(Duration::from_secs(5))
            .await
            .expect("clean shutdown");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn invite(&self, federation: &str) -> String {
        ops::invite(&self.config, federation, Duration::from_secs(3600))
            .await
            .expect("invite")
            .token
    }

    /// Enrols a fresh key with a new invite.
    pub async fn enrol(&self, federation: &str, seed: u8) -> Device {
        let token = self.invite(federation).await;
        let key = SigningKey::from_bytes(&[seed; 32]);
        let (status, body) = self.enrol_with(&token, &key).await;
        assert_eq!(status, 201, "{body}");
        let enrolled: EnrolResponse = serde_json::from_value(body).expect("enrol response");
        assert_eq!(enrolled.federation_id, federation);
        Device {
            id: enrolled.device_id,
            key,
        }
    }

    pub async fn enrol_with(&self, token: &str, key: &SigningKey) -> (u16, Value) {
        let raw = auth::decode(token, "invite").expect("token");
        let request = EnrolRequest {
            invite: token.to_owned(),
            public_key: auth::encode(key.verifying_key().as_bytes()),
            signature: auth::sign_enrolment(key, &raw),
        };
        let response = self
            .client
            .post(self.url("/v1/enrol"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&request).expect("json"))
            .send()
            .await
            .expect("enrol request");
        status_and_json(response).await
    }

    /// A signed POST from `device`, signed now.
    pub async fn signed_post(&self, device: &Device, path: &str, body: &[u8]) -> (u16, Value) {
        let request = self.signed_request(device, path, body, now_ms());
        status_and_json(request.send().await.expect("request")).await
    }

    /// A signed POST, not yet sent, with a chosen timestamp.
    pub fn signed_request(
        &self,
        device: &Device,
        path: &str,
        body: &[u8],
        timestamp_ms: u64,
    ) -> reqwest::RequestBuilder {
        let headers = auth::sign_request(
            &device.key,
            &RequestToSign {
                device_id: &device.id,
                method: "POST",
                path,
                timestamp_ms,
                body,
            },
        )
        .expect("sign");
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        request
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("get");
        status_and_json(response).await
    }
}

pub struct Device {
    pub id: String,
    pub key: SigningKey,
}

pub async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "status {status}: body is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// The error kind of an error body.
pub fn kind(body: &Value) -> &str {
    body["error"]["kind"].as_str().unwrap_or("<no error kind>")
}

/// A client whose only trust anchor is the certificate at `cert_pem`.
pub fn trusting_client(cert_pem: &Path) -> reqwest::Client {
    let cert = CertificateDer::from_pem_file(cert_pem).expect("server certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .https_only(true)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Copies a data folder (a stopped server's), keeping permissions: the
/// copy is a second server with the same keys and the same past.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // Keeps the permissions (the log key stays owner-only).
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
