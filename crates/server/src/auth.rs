//! Device request signing, as the server sees it: the one implementation
//! lives in [`hearth_fed::request_auth`] and is re-exported here whole, so
//! the device that signs and the server that verifies build the canonical
//! string with the same code.
//!
//! Every request after enrolment carries four headers: the device id, a
//! timestamp in milliseconds, the body's SHA-256 (hex), and an Ed25519
//! signature (base64url, no padding) over
//!
//! ```text
//! hearth-req-v1\n<device id>\n<METHOD>\n<path and query>\n<timestamp ms>\n<hex sha256(body)>
//! ```
//!
//! The server verifies the signature from the head alone
//! ([`verify_head`], with the hash from [`CONTENT_SHA256_HEADER`]) before
//! it reads the body, then checks the body against it ([`check_body`]):
//! see [`crate::SignedRequest`].
//!
//! Replays inside the clock-skew window are refused by
//! [`crate::replay`]; enrolment proves possession of the key once (see
//! [`sign_enrolment`]).

pub use hearth_fed::request_auth::*;
