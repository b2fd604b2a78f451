//! Device request signing: one canonical string, built by this one module
//! on the device that signs and on the server that verifies, so the two can
//! never drift apart.
//!
//! Every request after enrolment carries four headers: the device id, a
//! timestamp in milliseconds, the SHA-256 of the body (hex), and an
//! Ed25519 signature (base64url, no padding) over
//!
//! ```text
//! hearth-req-v1\n<device id>\n<METHOD>\n<path and query>\n<timestamp ms>\n<hex sha256(body)>
//! ```
//!
//! The device id is part of the string so a signature cannot be presented
//! under another device's name; the body enters as its hash so bodies of
//! any size sign in constant memory. The hash also travels in its own
//! header ([`CONTENT_SHA256_HEADER`]) so that a verifier can check the
//! signature from the request head alone, before it reads a byte of the
//! body ([`verify_head`]), and then check the body against the signed hash
//! ([`check_body`]): a request without a valid signature costs the server
//! no body bytes. No field may contain a newline or whitespace, which makes
//! the string unambiguous. The timestamp bounds how long a captured request
//! stays usable (±[`MAX_CLOCK_SKEW_MS`]); replays inside that window are
//! the server's to refuse (it remembers signatures).
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
//!
//! // The verifier: the head first (the body's hash as the header says) ...
//! let head = request_auth::RequestHead {
//!     body_sha256: request_auth::parse_body_sha256(&headers.content_sha256).unwrap(),
//!     ..request.head()
//! };
//! request_auth::verify_head(&key.verifying_key(), &head, &headers.signature, 1_700_000_000_500)
//!     .unwrap();
//! // ... then, once it is read, the body.
//! request_auth::check_body(&head.body_sha256, b"{}").unwrap();
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
/// Header carrying the SHA-256 of the body, 64 lower-case hex digits: the
/// value the signature covers, sent so it can be checked before the body
/// is read.
pub const CONTENT_SHA256_HEADER: &str = "x-hearth-content-sha256";
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

impl<'a> RequestToSign<'a> {
    /// The request as its signature covers it: the body as its hash.
    pub fn head(&self) -> RequestHead<'a> {
        RequestHead {
            device_id: self.device_id,
            method: self.method,
            path: self.path,
            timestamp_ms: self.timestamp_ms,
            body_sha256: body_sha256(self.body),
        }
    }
}

/// What a request signature covers: everything a verifier knows from the
/// request head, before reading the body, whose hash the device states in
/// [`CONTENT_SHA256_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The device id the server assigned at enrolment.
    pub device_id: &'a str,
    /// HTTP method, upper case (`POST`).
    pub method: &'a str,
    /// Path with query string as sent on the wire.
    pub path: &'a str,
    /// Milliseconds since the Unix epoch when the device signed.
    pub timestamp_ms: u64,
    /// SHA-256 of the exact body bytes.
    pub body_sha256: [u8; 32],
}

/// The four header values a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value of [`DEVICE_HEADER`].
    pub device_id: String,
    /// Value of [`TIMESTAMP_HEADER`].
    pub timestamp_ms: u64,
    /// Value of [`CONTENT_SHA256_HEADER`]: lower-case hex.
    pub content_sha256: String,
    /// Value of [`SIGNATURE_HEADER`]: base64url, no padding.
    pub signature: String,
}

impl SignedHeaders {
    /// Header name/value pairs, ready to attach to a request.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (DEVICE_HEADER, self.device_id.clone()),
            (TIMESTAMP_HEADER, self.timestamp_ms.to_string()),
            (CONTENT_SHA256_HEADER, self.content_sha256.clone()),
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
    /// The body is not the one whose hash was signed.
    #[error("the body does not match the signed {CONTENT_SHA256_HEADER}")]
    BodyMismatch,
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

/// SHA-256 of a body, as signed and as sent in [`CONTENT_SHA256_HEADER`].
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Parses a [`CONTENT_SHA256_HEADER`] value: exactly 64 lower-case hex
/// digits, the form [`sign_request`] writes (one form, so the header and
/// the signed string cannot disagree on spelling).
pub fn parse_body_sha256(text: &str) -> Result<[u8; 32], AuthError> {
    let malformed = || AuthError::Malformed("body hash");
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(malformed());
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).map_err(|_| malformed())?;
    Ok(hash)
}

/// Checks a body, once read, against the hash its signature covers.
pub fn check_body(signed_sha256: &[u8; 32], body: &[u8]) -> Result<(), AuthError> {
    use subtle::ConstantTimeEq;
    if bool::from(body_sha256(body).ct_eq(signed_sha256)) {
        Ok(())
    } else {
        Err(AuthError::BodyMismatch)
    }
}

/// The exact string a request signature covers: the one definition of the
/// signed transcript, for signer and verifier alike.
pub fn canonical_head(head: &RequestHead<'_>) -> Result<String, AuthError> {
    check_device_id(head.device_id)?;
    if !signable(head.method) || head.method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(AuthError::InvalidField("method"));
    }
    if !head.path.starts_with('/') || !signable(head.path) {
        return Err(AuthError::InvalidField("path"));
    }
    Ok(format!(
        "{REQUEST_DOMAIN}\n{}\n{}\n{}\n{}\n{}",
        head.device_id,
        head.method,
        head.path,
        head.timestamp_ms,
        hex::encode(head.body_sha256)
    ))
}

/// The exact string a request signature covers ([`canonical_head`] of the
/// request with its body hashed).
pub fn canonical_request(request: &RequestToSign<'_>) -> Result<String, AuthError> {
    canonical_head(&request.head())
}

/// Signs a request with the device's key: the four headers to send.
pub fn sign_request(
    key: &impl RequestSigner,
    request: &RequestToSign<'_>,
) -> Result<SignedHeaders, AuthError> {
    let head = request.head();
    let message = canonical_head(&head)?;
    let signature = key.sign_message(message.as_bytes());
    Ok(SignedHeaders {
        device_id: request.device_id.to_owned(),
        timestamp_ms: request.timestamp_ms,
        content_sha256: hex::encode(head.body_sha256),
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

/// Verifies a request's head: timestamp within the window, then the
/// signature over [`canonical_head`] (strict Ed25519: no small-order keys
/// or malleable encodings, so one message has one acceptable signature
/// encoding per nonce). Needs no body byte: the body is checked against
/// `head.body_sha256` once read ([`check_body`]). Returns the signature
/// bytes for the caller's replay check.
pub fn verify_head(
    key: &VerifyingKey,
    head: &RequestHead<'_>,
    signature: &str,
    now_ms: u64,
) -> Result<[u8; 64], AuthError> {
    check_clock(head.timestamp_ms, now_ms)?;
    let message = canonical_head(head)?;
    let bytes = decode_signature(signature)?;
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
        .map_err(|_| AuthError::BadSignature)?;
    Ok(bytes)
}

/// Verifies a whole signed request, body in hand ([`verify_head`] with
/// the body hashed).
pub fn verify_request(
    key: &VerifyingKey,
    request: &RequestToSign<'_>,
    signature: &str,
    now_ms: u64,
) -> Result<[u8; 64], AuthError> {
    verify_head(key, &request.head(), signature, now_ms)
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
    fn the_head_verifies_before_the_body_and_the_body_is_checked_after() {
        let k = key(7);
        let body = br#"{"a":1}"#;
        let r = request(body);
        let signed = sign_request(&k, &r).expect("sign");
        let now = r.timestamp_ms + 1_000;
        assert_eq!(
            signed.content_sha256,
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
        let [_, _, (name, value), _] = signed.pairs();
        assert_eq!(
            (name, value.as_str()),
            (CONTENT_SHA256_HEADER, signed.content_sha256.as_str())
        );

        // The verifier knows the hash only from the header.
        let declared = parse_body_sha256(&signed.content_sha256).expect("hash");
        let head = RequestHead {
            body_sha256: declared,
            ..r.head()
        };
        verify_head(&k.verifying_key(), &head, &signed.signature, now).expect("head verifies");
        check_body(&declared, body).expect("the signed body");
        assert_eq!(
            check_body(&declared, br#"{"a":2}"#),
            Err(AuthError::BodyMismatch)
        );

        // A hash header other than the signed one fails the signature,
        // before any body is looked at.
        let other = RequestHead {
            body_sha256: body_sha256(b"something else"),
            ..r.head()
        };
        assert_eq!(
            verify_head(&k.verifying_key(), &other, &signed.signature, now),
            Err(AuthError::BadSignature)
        );
        // Only the one spelling of the hash is accepted.
        let upper = signed.content_sha256.to_ascii_uppercase();
        assert_eq!(
            parse_body_sha256(&upper),
            Err(AuthError::Malformed("body hash"))
        );
        assert!(parse_body_sha256(&signed.content_sha256[1..]).is_err());
        assert!(parse_body_sha256(&"g".repeat(64)).is_err());
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
