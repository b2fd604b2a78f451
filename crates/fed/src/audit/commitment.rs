//! A device's own signed word for what it uploaded: the upload commitment.
//!
//! The transparency log's `round_participation` entries are the *server's*
//! word: a server could log a participation a device never made (a sybil
//! upload attributed to a real device), log another upload hash than the
//! bytes a device sent, or leave a device's upload out, and nobody but
//! that device could tell. So after uploading, a device signs, with its
//! Ed25519 identity key (the key the log recorded in its `device_enrolled`
//! entry), a message binding
//!
//! - the federation, the round and its own device id,
//! - the SHA-256 of the exact upload bytes it sent,
//! - the round's parameter digest ([`crate::RoundInfo::digest`]) it was
//!   shown and bound every other signature of the round to,
//!
//! behind a domain separation tag ([`UPLOAD_COMMITMENT_DOMAIN`]) no other
//! Hearth signature starts with, so the signature cannot be replayed as a
//! request, an enrolment or a round message (and none of those as this).
//! Devices gossip these through the server
//! ([`super::wire::GossipPost::commitments`]), which logs each one it
//! keeps ([`SignedUploadCommitment::log_entry`], checked by the device
//! that posted it: [`super::logged`]), and every device compares them with
//! the log's participations ([`super::uploads`]).
//!
//! The signed bytes (`u32` lengths and `u64` numbers big-endian):
//!
//! ```text
//! "hearth-upload-commitment-v1\0"
//! len(federation) federation  round  len(device) device
//! upload_sha256 (32)  round_digest (32)
//! ```
//!
//! Verification is strict Ed25519 ([`IdentityKey::verify`]), so a
//! signature cannot be mauled into a second valid one.

use ed25519_dalek::Signature;
use hearth_ledger::{Hash, LogEntry};
use serde::{Deserialize, Serialize};

use crate::crypto::{DeviceIdentity, IdentityKey};

/// The first bytes of every signed upload commitment.
pub const UPLOAD_COMMITMENT_DOMAIN: &[u8] = b"hearth-upload-commitment-v1\0";

/// Longest federation or device id a commitment may name (bytes): ids are
/// short names, and a bound keeps gossip small.
pub const MAX_COMMITMENT_ID_LEN: usize = 128;

/// What a device commits to for one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadCommitment {
    /// The federation's id.
    pub federation: String,
    /// The round.
    pub round: u64,
    /// The device's id in the federation (as the log names it).
    pub device: String,
    /// SHA-256 of the masked upload bytes exactly as sent.
    pub upload_sha256: Hash,
    /// The digest of the round's parameters the device was shown.
    pub round_digest: Hash,
}

/// An [`UploadCommitment`] with the device's Ed25519 signature over
/// [`UploadCommitment::message`]. About 330 bytes as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUploadCommitment {
    /// What is committed to.
    pub commitment: UploadCommitment,
    /// The signature, base64.
    #[serde(with = "crate::wire::encoding::signature")]
    pub signature: Signature,
}

/// Why a commitment cannot be signed or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitmentError {
    /// An id is empty or longer than [`MAX_COMMITMENT_ID_LEN`].
    #[error("the commitment's {field} must be 1 to {MAX_COMMITMENT_ID_LEN} bytes, it is {len}")]
    BadId {
        /// Which id.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The key is not a usable Ed25519 public key.
    #[error("the device's public key is not a valid Ed25519 key")]
    BadKey,
    /// The signature does not verify under the key.
    #[error(
        "the upload commitment of device {device} for round {round} is not signed by that device's key"
    )]
    BadSignature {
        /// The device named.
        device: String,
        /// The round named.
        round: u64,
    },
}

impl UploadCommitment {
    /// The exact bytes signed (see the module docs).
    pub fn message(&self) -> Result<Vec<u8>, CommitmentError> {
        check_id("federation", &self.federation)?;
        check_id("device", &self.device)?;
        let mut out = Vec::with_capacity(
            UPLOAD_COMMITMENT_DOMAIN.len()
                + 4
                + self.federation.len()
                + 8
                + 4
                + self.device.len()
                + 64,
        );
        out.extend_from_slice(UPLOAD_COMMITMENT_DOMAIN);
        put_str(&mut out, &self.federation);
        out.extend_from_slice(&self.round.to_be_bytes());
        put_str(&mut out, &self.device);
        out.extend_from_slice(self.upload_sha256.as_bytes());
        out.extend_from_slice(self.round_digest.as_bytes());
        Ok(out)
    }

    /// Signs with the device's identity key.
    pub fn sign(
        self,
        identity: &DeviceIdentity,
    ) -> Result<SignedUploadCommitment, CommitmentError> {
        let signature = identity.sign(&self.message()?);
        Ok(SignedUploadCommitment {
            commitment: self,
            signature,
        })
    }
}

impl SignedUploadCommitment {
    /// The `upload_committed` entry the server logs for it
    /// ([`super::logged`]).
    pub fn log_entry(&self) -> LogEntry {
        let c = &self.commitment;
        LogEntry::UploadCommitted {
            federation: c.federation.clone(),
            round: c.round,
            device: c.device.clone(),
            upload_sha256: c.upload_sha256,
            round_digest: c.round_digest,
            signature: self.signature.to_bytes(),
        }
    }

    /// The commitment an `upload_committed` entry holds (`None` for any
    /// other entry). Not verified: check it under the device's key.
    pub fn from_log_entry(entry: &LogEntry) -> Option<Self> {
        let LogEntry::UploadCommitted {
            federation,
            round,
            device,
            upload_sha256,
            round_digest,
            signature,
        } = entry
        else {
            return None;
        };
        Some(Self {
            commitment: UploadCommitment {
                federation: federation.clone(),
                round: *round,
                device: device.clone(),
                upload_sha256: *upload_sha256,
                round_digest: *round_digest,
            },
            signature: Signature::from_bytes(signature),
        })
    }

    /// Checks the signature under `public_key`: the key the device enrolled
    /// with (the server's device record, or an auditor's `device_enrolled`
    /// log entry; never a key the commitment itself names).
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), CommitmentError> {
        let key = IdentityKey::from_bytes(public_key).map_err(|_| CommitmentError::BadKey)?;
        key.verify(&self.commitment.message()?, &self.signature)
            .map_err(|_| CommitmentError::BadSignature {
                device: self.commitment.device.clone(),
                round: self.commitment.round,
            })
    }
}

fn check_id(field: &'static str, id: &str) -> Result<(), CommitmentError> {
    if id.is_empty() || id.len() > MAX_COMMITMENT_ID_LEN {
        return Err(CommitmentError::BadId {
            field,
            len: id.len(),
        });
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Ids are at most MAX_COMMITMENT_ID_LEN bytes (checked first).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity(seed: u8) -> DeviceIdentity {
        DeviceIdentity::from_secret_bytes(&[seed; 32])
    }

    fn commitment() -> UploadCommitment {
        UploadCommitment {
            federation: "notes".into(),
            round: 7,
            device: "dev_a".into(),
            upload_sha256: Hash::sha256(b"upload"),
            round_digest: Hash::sha256(b"parameters"),
        }
    }

    #[test]
    fn a_signed_commitment_verifies_under_its_key_only() {
        let device = identity(1);
        let signed = commitment().sign(&device).unwrap();
        assert_eq!(signed.verify(&device.identity_key().to_bytes()), Ok(()));
        let other = identity(2).identity_key().to_bytes();
        assert!(matches!(
            signed.verify(&other),
            Err(CommitmentError::BadSignature { round: 7, .. })
        ));
        assert_eq!(signed.verify(&[0; 32]), Err(CommitmentError::BadKey));
    }

    #[test]
    fn the_message_is_domain_separated_and_length_prefixed() {
        let message = commitment().message().unwrap();
        assert!(message.starts_with(UPLOAD_COMMITMENT_DOMAIN));
        assert_eq!(
            message.len(),
            UPLOAD_COMMITMENT_DOMAIN.len() + 4 + 5 + 8 + 4 + 5 + 64
        );
        // Moving a byte between the two ids changes the message.
        let shifted = UploadCommitment {
            federation: "notesd".into(),
            device: "ev_a".into(),
            ..commitment()
        };
        assert_ne!(shifted.message().unwrap(), message);
        // A request signature's domain is not this one.
        assert!(!message.starts_with(crate::request_auth::REQUEST_DOMAIN.as_bytes()));
    }

    #[test]
    fn ids_are_bounded() {
        let long = UploadCommitment {
            device: "d".repeat(MAX_COMMITMENT_ID_LEN + 1),
            ..commitment()
        };
        assert!(matches!(
            long.sign(&identity(1)),
            Err(CommitmentError::BadId {
                field: "device",
                ..
            })
        ));
        let empty = UploadCommitment {
            federation: String::new(),
            ..commitment()
        };
        assert!(matches!(
            empty.message(),
            Err(CommitmentError::BadId {
                field: "federation",
                ..
            })
        ));
    }

    #[test]
    fn json_round_trips_and_is_small() {
        let signed = commitment().sign(&identity(1)).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedUploadCommitment = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
        // Two hashes in hex, a signature in base64, the ids and the round.
        assert!(json.len() < 400, "{} bytes: {json}", json.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any change to any signed field, or to the signature, is refused.
        #[test]
        fn tampering_with_any_field_is_refused(
            seed in 1u8..=255,
            round in any::<u64>(),
            upload in any::<[u8; 32]>(),
            digest in any::<[u8; 32]>(),
            field in 0usize..6,
            flip in 0usize..32,
        ) {
            let device = identity(seed);
            let key = device.identity_key().to_bytes();
            let original = UploadCommitment {
                federation: "notes".into(),
                round,
                device: "dev_x".into(),
                upload_sha256: Hash::from_bytes(upload),
                round_digest: Hash::from_bytes(digest),
            };
            let signed = original.clone().sign(&device).unwrap();
            prop_assert_eq!(signed.verify(&key), Ok(()));
            let mut tampered = signed.clone();
            let c = &mut tampered.commitment;
            match field {
                0 => c.federation.push('x'),
                1 => c.round ^= 1 << (flip % 64),
                2 => c.device = "dev_y".into(),
                3 => {
                    let mut b = *c.upload_sha256.as_bytes();
                    b[flip] ^= 1;
                    c.upload_sha256 = Hash::from_bytes(b);
                }
                4 => {
                    let mut b = *c.round_digest.as_bytes();
                    b[flip] ^= 1;
                    c.round_digest = Hash::from_bytes(b);
                }
                _ => {
                    let mut b = tampered.signature.to_bytes();
                    b[flip] ^= 1;
                    tampered.signature = Signature::from_bytes(&b);
                }
            }
            prop_assert!(tampered.verify(&key).is_err());
        }
    }
}
