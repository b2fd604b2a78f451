//! Blocking HTTPS to one server whose certificate is pinned: the only trust
//! anchor is the certificate the device was given when it joined (no
//! system roots, no proxies from the environment, no redirects), on
//! rustls with the `ring` provider.
//!
//! Each call is one logical request. Failures that say nothing about the
//! request itself (connection refused or reset, timeouts, 5xx, 408, 429,
//! and a signature refused as replayed or pre-restart, which only a
//! transport-level resend can cause) are retried with backoff inside a
//! bounded budget, re-signing every attempt;
//! anything the server refused (other 4xx) is returned at once as
//! [`FedClientError::Rejected`] with the server's error kind and message.

use std::cell::Cell;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_progress::CancelToken;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::{ClientOptions, FedClientError};
use crate::clock::now_ms;
use crate::crypto::DeviceIdentity;
use crate::request_auth::{self, RequestToSign};

/// Largest error body read from a refusal.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// First backoff after a transient failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Slice in which sleeps notice cancellation.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// Bytes of request and response bodies, counted over every attempt.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) sent: Cell<u64>,
    pub(crate) received: Cell<u64>,
}

impl Traffic {
    fn add(cell: &Cell<u64>, n: usize) {
        cell.set(cell.get().saturating_add(n as u64));
    }
}

/// One request to make.
pub(crate) struct Call<'a> {
    pub(crate) method: &'static str,
    pub(crate) path: &'a str,
    pub(crate) body: &'a [u8],
    pub(crate) content_type: Option<&'static str>,
    /// Sign as this device.
    pub(crate) signer: Option<(&'a str, &'a DeviceIdentity)>,
    /// Most response body bytes accepted.
    pub(crate) limit: usize,
}

/// A successful (2xx) answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, FedClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FedClientError::BadResponse(format!("status {}: invalid JSON: {e}", self.status))
        })
    }
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// Final.
    Fatal(FedClientError),
}

/// The server's error body, `{"error": {"kind", "message"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    kind: String,
    message: String,
}

/// A pinned HTTPS connection pool to one server.
pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
    retry_for: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A rustls client configuration trusting exactly the certificates in
/// `pem` (at least one).
fn pinned_tls(pem: &str) -> Result<Arc<rustls::ClientConfig>, FedClientError> {
    let bad = |m: String| FedClientError::Certificate(m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in the PEM text".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `https://host[:port]` without a trailing slash or path.
fn base_url(url: &str) -> Result<String, FedClientError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .ok_or_else(|| FedClientError::InvalidUrl(format!("{url:?} is not an https:// URL")))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(FedClientError::InvalidUrl(format!(
            "{url:?} must be https://host[:port] with no path"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Sleeps `duration`, returning early with [`FedClientError::Cancelled`].
pub(crate) fn sleep(
    duration: Duration,
    cancel: Option<&CancelToken>,
) -> Result<(), FedClientError> {
    let end = Instant::now() + duration;
    loop {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(FedClientError::Cancelled);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep(SLEEP_SLICE.min(end - now));
    }
}

impl Http {
    pub(crate) fn new(
        server_url: &str,
        certificate_pem: &str,
        options: &ClientOptions,
    ) -> Result<Self, FedClientError> {
        let base = base_url(server_url)?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(pinned_tls(certificate_pem)?)
            .https_only(true)
            .redirects(0)
            .timeout_connect(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(concat!("hearth-fed/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent,
            base,
            retry_for: options.retry_for,
        })
    }

    /// Makes `call`, retrying transient failures for the retry budget.
    pub(crate) fn send(
        &self,
        call: &Call<'_>,
        traffic: &Traffic,
        cancel: Option<&CancelToken>,
    ) -> Result<Reply, FedClientError> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(FedClientError::Cancelled);
            }
            match self.attempt(call, traffic) {
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(why)) => {
                    if started.elapsed() + backoff > self.retry_for {
                        return Err(FedClientError::Transport(format!(
                            "{} {}: {why} (gave up after {:.1} s)",
                            call.method,
                            call.path,
                            started.elapsed().as_secs_f64()
                        )));
                    }
                    sleep(backoff, cancel)?;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn attempt(&self, call: &Call<'_>, traffic: &Traffic) -> Result<Reply, Failure> {
        let url = format!("{}{}", self.base, call.path);
        let mut request = self.agent.request(call.method, &url);
        if let Some(content_type) = call.content_type {
            request = request.set("content-type", content_type);
        }
        if let Some((device_id, identity)) = call.signer {
            // Signed afresh on every attempt: a new timestamp, so a retry
            // is a new request to the replay guard. The headers include
            // the body's hash, so the server checks the signature before
            // it reads the body.
            let headers = request_auth::sign_request(
                identity,
                &RequestToSign {
                    device_id,
                    method: call.method,
                    path: call.path,
                    timestamp_ms: now_ms(),
                    body: call.body,
                },
            )
            .map_err(|e| Failure::Fatal(FedClientError::Auth(e)))?;
            for (name, value) in headers.pairs() {
                request = request.set(name, &value);
            }
        }
        Traffic::add(&traffic.sent, call.body.len());
        let result = if call.method == "GET" {
            request.call()
        } else {
            request.send_bytes(call.body)
        };
        match result {
            Ok(response) => {
                let status = response.status();
                let headers = response
                    .headers_names()
                    .into_iter()
                    .filter_map(|name| {
                        let value = response.header(&name)?.to_owned();
                        Some((name, value))
                    })
                    .collect();
                let body = read_limited(response, call.limit)?;
                Traffic::add(&traffic.received, body.len());
                Ok(Reply {
                    status,
                    headers,
                    body,
                })
            }
            Err(ureq::Error::Status(status, response)) => {
                let body = read_limited(response, ERROR_BODY_LIMIT).unwrap_or_default();
                Traffic::add(&traffic.received, body.len());
                let (kind, message) = match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(b) => (b.error.kind, b.error.message),
                    Err(_) => (
                        "unknown".to_owned(),
                        String::from_utf8_lossy(&body).chars().take(200).collect(),
                    ),
                };
                // A signed request refused as a replay, or as signed before
                // the server (re)started, is one this layer never sent
                // twice: ureq resends an idempotent request by itself when a
                // pooled connection closes under it, headers and all. Every
                // attempt here is signed afresh, so trying again is safe.
                let resigned = status == 401
                    && matches!(kind.as_str(), "replayed_request" | "stale_timestamp");
                if status >= 500 || status == 408 || status == 429 || resigned {
                    Err(Failure::Transient(format!("{status} {kind}: {message}")))
                } else {
                    Err(Failure::Fatal(FedClientError::Rejected {
                        status,
                        kind,
                        message,
                    }))
                }
            }
            Err(ureq::Error::Transport(t)) => Err(Failure::Transient(t.to_string())),
        }
    }
}

fn read_limited(response: ureq::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Failure::Transient(format!("reading the response: {e}")))?;
    if body.len() > limit {
        return Err(Failure::Fatal(FedClientError::BadResponse(format!(
            "response body exceeds {limit} bytes"
        ))));
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_https_urls_are_servers() {
        assert_eq!(base_url("https://h:8443/").unwrap(), "https://h:8443");
        assert!(base_url("http://h").is_err());
        assert!(base_url("https://h/v1").is_err());
        assert!(base_url("https://").is_err());
        assert!(base_url("https://u@h").is_err());
    }

    #[test]
    fn a_pin_needs_a_certificate() {
        assert!(matches!(
            pinned_tls("not pem"),
            Err(FedClientError::Certificate(_))
        ));
    }
}
