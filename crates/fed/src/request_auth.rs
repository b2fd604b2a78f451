//! Device request signing: one canonical string, built by this one module
//! on the device that signs and on the server that verifies, so the two can
//! never drift apart.
//!
//! Every request after enrolment carries three headers: the device id, a
//! timestamp in milliseconds, and an Ed25519 signature (base64url, no
//! padding) over
//!
//! ```text
//! hearth-req-v1\n<device id>\n<METHOD>\n<path and query>\n<timestamp ms>\n<hex sha256(body)>
//! ```
//!
//! The device id is part of the string so a signature cannot be presented
//! under another device's name; the body enters as its hash so bodies of
//! any size sign in constant memory. No field may contain a newline or
//! whitespace, which makes the string unambiguous. The timestamp bounds how
//! long a captured request stays usable (±[`MAX_CLOCK_SKEW_MS`]); replays
//! inside that window are the server's to refuse (it remembers signatures).
//!
//! Enrolment proves possession of the key once, by signing
//! `hearth-enrol-v1\0 || sha256(invite token) || public key`.
//!
//! Pure computation (ed25519-dalek, sha2, hex, base64): no network, so the
//! protocol core can carry it without the `client` feature.
//!
//! ```
//! use hearth_fed::request_auth::{self, RequestToSign};
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let request = RequestToSign {
//!     device_id: "dev_example",
//!     method: "POST",
//!     path: "/v1/federations/notes/checkin",
//!     timestamp_ms: 1_700_000_000_000,
//!     body: b"{}",
//! };
//! let headers = request_auth::sign_request(&key, &request).unwrap();
//! request_auth::verify_request(&key.verifying_key(), &request, &headers.signature, 1_700_000_000_500)
//!     .unwrap();
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::crypto::DeviceIdentity;

/// Domain tag of request signatures; a new scheme gets a new tag.
pub const REQUEST_DOMAIN: &str = "hearth-req-v1";
/// Domain tag of the enrolment proof, distinct so neither kind of signature
/// can be replayed as the other.
pub const ENROL_DOMAIN: &str = "hearth-enrol-v1";
/// Header naming the signing device.
pub const DEVICE_HEADER: &str = "x-hearth-device";
/// Header carrying the signing time, milliseconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-hearth-timestamp";
/// Header carrying the base64url Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-hearth-signature";
/// How far a request's timestamp may be from the verifier's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Longest device id accepted.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// The parts of a request that its signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    /// The device id the server assigned at enrolment.
    pub device_id: &'a str,
    /// HTTP method, upper case (`POST`).
    pub method: &'a str,
    /// Path with query string as sent on the wire (`/v1/federations/x/checkin`).
    pub path: &'a str,
    /// Milliseconds since the Unix epoch when the device signed.
    pub timestamp_ms: u64,
    /// The exact body bytes sent (empty for none).
    pub body: &'a [u8],
}

/// The three header values a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value of [`DEVICE_HEADER`].
    pub device_id: String,
    /// Value of [`TIMESTAMP_HEADER`].
    pub timestamp_ms: u64,
    /// Value of [`SIGNATURE_HEADER`]: base64url, no padding.
    pub signature: String,
}

impl SignedHeaders {
    /// Header name/value pairs, ready to attach to a request.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (DEVICE_HEADER, self.device_id.clone()),
            (TIMESTAMP_HEADER, self.timestamp_ms.to_string()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// Why a request or enrolment proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A field cannot appear in the canonical string (empty, too long,
    /// whitespace or control characters).
    #[error("the {0} cannot be signed")]
    InvalidField(&'static str),
    /// A signature or key is not valid base64url of the right length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The timestamp is outside the allowed window around the verifier's clock.
    #[error(
        "request timestamp {timestamp_ms} is more than {} s from server time {now_ms}",
        MAX_CLOCK_SKEW_MS / 1000
    )]
    ClockSkew {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// The signature does not verify under the device's key.
    #[error("signature does not verify")]
    BadSignature,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for ed25519_dalek::SigningKey {}
    impl Sealed for crate::crypto::DeviceIdentity {}
}

/// A key that can sign requests and enrolment proofs: a raw
/// [`SigningKey`] (servers' tests, tools) or a device's
/// [`DeviceIdentity`]. Sealed: the signatures this module makes are only
/// ever over its own domain-separated strings.
pub trait RequestSigner: sealed::Sealed {
    /// The Ed25519 public key bytes.
    fn public_key_bytes(&self) -> [u8; 32];
    /// Pure Ed25519 over `message`.
    #[doc(hidden)]
    fn sign_message(&self, message: &[u8]) -> Signature;
}

impl RequestSigner for SigningKey {
    fn public_key_bytes(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }

    fn sign_message(&self, message: &[u8]) -> Signature {
        self.sign(message)
    }
}

impl RequestSigner for DeviceIdentity {
    fn public_key_bytes(&self) -> [u8; 32] {
        self.identity_key().to_bytes()
    }

    fn sign_message(&self, message: &[u8]) -> Signature {
        self.sign(message)
    }
}

/// A field is signable if it is non-empty printable ASCII without spaces.
fn signable(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks that a device id can be signed (and so can name a device at all).
pub fn check_device_id(device_id: &str) -> Result<(), AuthError> {
    if device_id.len() > MAX_DEVICE_ID_LEN || !signable(device_id) {
        return Err(AuthError::InvalidField("device id"));
    }
    Ok(())
}

/// The exact string a request signature covers.
pub fn canonical_request(request: &RequestToSign<'_>) -> Result<String, AuthError> {
    check_device_id(request.device_id)?;
    if !signable(request.method) || request.method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(AuthError::InvalidField("method"));
    }
    if !request.path.starts_with('/') || !signable(request.path) {
        return Err(AuthError::InvalidField("path"));
    }
    let body_hash = hex::encode(Sha256::digest(request.body));
    Ok(format!(
        "{REQUEST_DOMAIN}\n{}\n{}\n{}\n{}\n{body_hash}",
        request.device_id, request.method, request.path, request.timestamp_ms
    ))
}

/// Signs a request with the device's key.
pub fn sign_request(
    key: &impl RequestSigner,
    request: &RequestToSign<'_>,
) -> Result<SignedHeaders, AuthError> {
    let message = canonical_request(request)?;
    let signature = key.sign_message(message.as_bytes());
    Ok(SignedHeaders {
        device_id: request.device_id.to_owned(),
        timestamp_ms: request.timestamp_ms,
        signature: encode(&signature.to_bytes()),
    })
}

/// Checks that `timestamp_ms` is within [`MAX_CLOCK_SKEW_MS`] of `now_ms`.
pub fn check_clock(timestamp_ms: u64, now_ms: u64) -> Result<(), AuthError> {
    if timestamp_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
        return Err(AuthError::ClockSkew {
            timestamp_ms,
            now_ms,
        });
    }
    Ok(())
}

/// Verifies a signed request: timestamp within the window, then the
/// signature (strict Ed25519: no small-order keys or malleable encodings,
/// so one message has one acceptable signature encoding per nonce).
/// Returns the signature bytes for the caller's replay check.
pub fn verify_request(
    key: &VerifyingKey,
    request: &RequestToSign<'_>,
    signature: &str,
    now_ms: u64,
) -> Result<[u8; 64], AuthError> {
    check_clock(request.timestamp_ms, now_ms)?;
    let message = canonical_request(request)?;
    let bytes = decode_signature(signature)?;
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
        .map_err(|_| AuthError::BadSignature)?;
    Ok(bytes)
}

/// SHA-256 of an invite token: what the server stores and what the
/// enrolment proof signs.
pub fn invite_token_hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn enrolment_bytes(token_hash: &[u8; 32], public_key: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ENROL_DOMAIN.len() + 1 + 64);
    message.extend_from_slice(ENROL_DOMAIN.as_bytes());
    message.push(0);
    message.extend_from_slice(token_hash);
    message.extend_from_slice(public_key);
    message
}

/// The bytes an enrolment proof signs.
pub fn enrolment_message(token_hash: &[u8; 32], public_key: &VerifyingKey) -> Vec<u8> {
    enrolment_bytes(token_hash, public_key.as_bytes())
}

/// Proves possession of `key` for enrolment with the invite `token`;
/// returns the base64url signature.
pub fn sign_enrolment(key: &impl RequestSigner, token: &[u8]) -> String {
    let message = enrolment_bytes(&invite_token_hash(token), &key.public_key_bytes());
    encode(&key.sign_message(&message).to_bytes())
}

/// Verifies an enrolment proof.
pub fn verify_enrolment(
    public_key: &VerifyingKey,
    token_hash: &[u8; 32],
    signature: &str,
) -> Result<(), AuthError> {
    let bytes = decode_signature(signature)?;
    public_key
        .verify_strict(
            &enrolment_message(token_hash, public_key),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| AuthError::BadSignature)
}

/// base64url without padding, the encoding of every binary value on the wire.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (no padding).
pub fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| AuthError::Malformed(what))
}

fn decode_signature(text: &str) -> Result<[u8; 64], AuthError> {
    decode(text, "signature")?
        .try_into()
        .map_err(|_| AuthError::Malformed("signature"))
}

/// Decodes a base64url Ed25519 public key, refusing weak (small-order) keys.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, AuthError> {
    let bytes: [u8; 32] = decode(text, "public key")?
        .try_into()
        .map_err(|_| AuthError::Malformed("public key"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| AuthError::Malformed("public key"))?;
    if key.is_weak() {
        return Err(AuthError::Malformed("public key"));
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn request(body: &[u8]) -> RequestToSign<'_> {
        RequestToSign {
            device_id: "dev-1",
            method: "POST",
            path: "/v1/federations/f/checkin",
            timestamp_ms: 1_700_000_000_000,
            body,
        }
    }

    #[test]
    fn canonical_string_is_exactly_the_documented_layout() {
        let s = canonical_request(&request(b"")).expect("canonical");
        assert_eq!(
            s,
            "hearth-req-v1\ndev-1\nPOST\n/v1/federations/f/checkin\n1700000000000\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn fields_that_could_make_the_string_ambiguous_are_refused() {
        let mut r = request(b"");
        r.path = "/v1/a\n/b";
        assert_eq!(canonical_request(&r), Err(AuthError::InvalidField("path")));
        let mut r = request(b"");
        r.device_id = "dev 1";
        assert!(canonical_request(&r).is_err());
        let mut r = request(b"");
        r.method = "post";
        assert!(canonical_request(&r).is_err());
        let mut r = request(b"");
        r.path = "v1/no-leading-slash";
        assert!(canonical_request(&r).is_err());
        let long = "d".repeat(MAX_DEVICE_ID_LEN + 1);
        let mut r = request(b"");
        r.device_id = &long;
        assert!(canonical_request(&r).is_err());
    }

    #[test]
    fn signed_requests_verify_and_any_change_breaks_them() {
        let k = key(7);
        let body = br#"{"a":1}"#;
        let r = request(body);
        let signed = sign_request(&k, &r).expect("sign");
        let now = r.timestamp_ms + 1_000;
        verify_request(&k.verifying_key(), &r, &signed.signature, now).expect("verifies");

        let tampered_body = request(br#"{"a":2}"#);
        assert_eq!(
            verify_request(&k.verifying_key(), &tampered_body, &signed.signature, now),
            Err(AuthError::BadSignature)
        );
        let mut other_path = r;
        other_path.path = "/v1/federations/g/checkin";
        assert_eq!(
            verify_request(&k.verifying_key(), &other_path, &signed.signature, now),
            Err(AuthError::BadSignature)
        );
        let mut other_device = r;
        other_device.device_id = "dev-2";
        assert_eq!(
            verify_request(&k.verifying_key(), &other_device, &signed.signature, now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&key(8).verifying_key(), &r, &signed.signature, now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&k.verifying_key(), &r, "not base64!", now),
            Err(AuthError::Malformed("signature"))
        );
    }

    #[test]
    fn a_device_identity_signs_exactly_as_its_raw_key_does() {
        let secret = [11u8; 32];
        let identity = DeviceIdentity::from_secret_bytes(&secret);
        let raw = SigningKey::from_bytes(&secret);
        let r = request(b"body");
        assert_eq!(
            sign_request(&identity, &r).unwrap(),
            sign_request(&raw, &r).unwrap()
        );
        assert_eq!(sign_enrolment(&identity, b"t"), sign_enrolment(&raw, b"t"));
        let hash = invite_token_hash(b"t");
        verify_enrolment(
            &raw.verifying_key(),
            &hash,
            &sign_enrolment(&identity, b"t"),
        )
        .expect("identity's proof verifies");
    }

    #[test]
    fn clock_skew_window_is_inclusive_and_symmetric() {
        let k = key(1);
        let r = request(b"");
        let signed = sign_request(&k, &r).expect("sign");
        let ts = r.timestamp_ms;
        for now in [ts - MAX_CLOCK_SKEW_MS, ts, ts + MAX_CLOCK_SKEW_MS] {
            verify_request(&k.verifying_key(), &r, &signed.signature, now).expect("in window");
        }
        for now in [ts - MAX_CLOCK_SKEW_MS - 1, ts + MAX_CLOCK_SKEW_MS + 1] {
            assert!(matches!(
                verify_request(&k.verifying_key(), &r, &signed.signature, now),
                Err(AuthError::ClockSkew { .. })
            ));
        }
    }

    #[test]
    fn enrolment_proof_binds_token_and_key() {
        let k = key(3);
        let token = [9u8; 32];
        let proof = sign_enrolment(&k, &token);
        let hash = invite_token_hash(&token);
        verify_enrolment(&k.verifying_key(), &hash, &proof).expect("verifies");
        assert_eq!(
            verify_enrolment(&k.verifying_key(), &invite_token_hash(&[1u8; 32]), &proof),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_enrolment(&key(4).verifying_key(), &hash, &proof),
            Err(AuthError::BadSignature)
        );
        // A request signature is never an enrolment proof, and back.
        let r = request(b"");
        let signed = sign_request(&k, &r).expect("sign");
        assert!(verify_enrolment(&k.verifying_key(), &hash, &signed.signature).is_err());
    }

    #[test]
    fn public_keys_round_trip_and_weak_keys_are_refused() {
        let k = key(5).verifying_key();
        assert_eq!(decode_public_key(&encode(k.as_bytes())).expect("decode"), k);
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(decode_public_key(&encode(&identity)).is_err());
        assert!(decode_public_key(&encode(&[1u8; 31])).is_err());
    }
}
