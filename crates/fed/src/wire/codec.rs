//! The binary form of [`MaskedUpload`], the one message whose size matters
//! (4 bytes per parameter):
//!
//! ```text
//! offset size field
//!      0    4 magic "HFMU" (Hearth Fed Masked Upload)
//!      4    2 version, u16 LE (1)
//!      6    2 reserved, must be 0
//!      8   16 federation id
//!     24    8 round id, u64 LE
//!     32   32 device id (Ed25519 public key)
//!     64    4 length n (u32 words), u32 LE
//!     68   4n payload, u32 LE each
//! ```
//!
//! Decoding checks, in order and before touching the payload: enough bytes
//! for a header, the magic, the version, the reserved field, `n` against the
//! caller's maximum, and that the input is exactly `68 + 4n` bytes (neither
//! truncated nor trailed). Every failure is a typed [`CodecError`]; no input
//! makes it panic or allocate more than the input's own size.

use super::MaskedUpload;
use crate::crypto::DeviceId;
use crate::ids::{FederationId, RoundId};

/// The four magic bytes.
pub const UPLOAD_MAGIC: [u8; 4] = *b"HFMU";
/// The only version this build reads and writes.
pub const UPLOAD_VERSION: u16 = 1;
/// Header bytes before the payload.
pub const UPLOAD_HEADER_LEN: usize = 68;

/// Why bytes are not a masked upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than the {UPLOAD_HEADER_LEN}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// Not a masked upload at all.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A version this build does not know.
    #[error("unsupported version {found}")]
    UnsupportedVersion {
        /// The version field.
        found: u16,
    },
    /// Reserved bits set (a future extension this build cannot honour).
    #[error("reserved field is {found:#06x}, not 0")]
    Reserved {
        /// The reserved field.
        found: u16,
    },
    /// A declared length above the caller's limit.
    #[error("declared {declared} words exceeds the limit of {max}")]
    TooLarge {
        /// Words declared.
        declared: u32,
        /// The limit.
        max: u32,
    },
    /// Input not exactly header + 4 × declared words (truncated or
    /// trailing bytes).
    #[error("expected {expected} bytes for the declared length, got {actual}")]
    LengthMismatch {
        /// `68 + 4n`.
        expected: u64,
        /// Bytes given.
        actual: usize,
    },
}

/// The fixed-size part of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadHeader {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// The uploading device.
    pub device: DeviceId,
    /// Payload length in u32 words.
    pub len: u32,
}

impl UploadHeader {
    fn to_bytes(self) -> [u8; UPLOAD_HEADER_LEN] {
        let mut out = [0u8; UPLOAD_HEADER_LEN];
        let fields: [&[u8]; 7] = [
            &UPLOAD_MAGIC,
            &UPLOAD_VERSION.to_le_bytes(),
            &0u16.to_le_bytes(),
            self.federation.as_bytes(),
            &self.round.0.to_le_bytes(),
            self.device.as_bytes(),
            &self.len.to_le_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(slot) = out.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
            at += field.len();
        }
        out
    }
}

/// Splits off the first `N` bytes as an array.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Checks the header and total length; returns the header and the payload
/// bytes (exactly `4 · len`). `max_len` bounds the declared length.
pub fn decode_header(bytes: &[u8], max_len: u32) -> Result<(UploadHeader, &[u8]), CodecError> {
    let too_short = CodecError::TooShort { len: bytes.len() };
    if bytes.len() < UPLOAD_HEADER_LEN {
        return Err(too_short);
    }
    let mut rest = bytes;
    let magic = take::<4>(&mut rest).ok_or(too_short.clone())?;
    if magic != UPLOAD_MAGIC {
        return Err(CodecError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes(take::<2>(&mut rest).ok_or(too_short.clone())?);
    if version != UPLOAD_VERSION {
        return Err(CodecError::UnsupportedVersion { found: version });
    }
    let reserved = u16::from_le_bytes(take::<2>(&mut rest).ok_or(too_short.clone())?);
    if reserved != 0 {
        return Err(CodecError::Reserved { found: reserved });
    }
    let federation = FederationId::from_bytes(take::<16>(&mut rest).ok_or(too_short.clone())?);
    let round = RoundId(u64::from_le_bytes(
        take::<8>(&mut rest).ok_or(too_short.clone())?,
    ));
    let device = DeviceId::from_bytes(take::<32>(&mut rest).ok_or(too_short.clone())?);
    let len = u32::from_le_bytes(take::<4>(&mut rest).ok_or(too_short)?);
    if len > max_len {
        return Err(CodecError::TooLarge {
            declared: len,
            max: max_len,
        });
    }
    let expected = UPLOAD_HEADER_LEN as u64 + 4 * u64::from(len);
    if rest.len() as u64 != 4 * u64::from(len) {
        return Err(CodecError::LengthMismatch {
            expected,
            actual: bytes.len(),
        });
    }
    Ok((
        UploadHeader {
            federation,
            round,
            device,
            len,
        },
        rest,
    ))
}

/// The payload's words; `payload` must be a multiple of 4 bytes (as
/// [`decode_header`] guarantees).
pub fn payload_words(payload: &[u8]) -> impl Iterator<Item = u32> + '_ {
    payload
        .as_chunks::<4>()
        .0
        .iter()
        .map(|w| u32::from_le_bytes(*w))
}

impl MaskedUpload {
    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let header = UploadHeader {
            federation: self.federation,
            round: self.round,
            device: self.device,
            len: u32::try_from(self.masked.len()).unwrap_or(u32::MAX),
        };
        let mut out = Vec::with_capacity(UPLOAD_HEADER_LEN + 4 * self.masked.len());
        out.extend_from_slice(&header.to_bytes());
        for w in &self.masked {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Bytes of the binary encoding of a `len`-word upload.
    pub const fn encoded_len(len: usize) -> usize {
        UPLOAD_HEADER_LEN + 4 * len
    }

    /// Decodes and validates (see the module docs); at most `max_len` words.
    pub fn decode(bytes: &[u8], max_len: u32) -> Result<Self, CodecError> {
        let (header, payload) = decode_header(bytes, max_len)?;
        Ok(Self {
            federation: header.federation,
            round: header.round,
            device: header.device,
            masked: payload_words(payload).collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn upload(masked: Vec<u32>) -> MaskedUpload {
        MaskedUpload {
            federation: FederationId::from_bytes([0x11; 16]),
            round: RoundId(0x0102_0304_0506_0708),
            device: DeviceId::from_bytes([0x22; 32]),
            masked,
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = upload(vec![1, 0xdead_beef]).encode();
        assert_eq!(bytes.len(), UPLOAD_HEADER_LEN + 8);
        assert_eq!(&bytes[..4], b"HFMU");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(&bytes[8..24], &[0x11; 16]);
        assert_eq!(&bytes[24..32], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&bytes[32..64], &[0x22; 32]);
        assert_eq!(&bytes[64..68], &[2, 0, 0, 0]);
        assert_eq!(&bytes[68..], &[1, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
    }

    #[test]
    fn each_header_fault_has_its_error() {
        let good = upload(vec![5; 3]).encode();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            MaskedUpload::decode(&bad, 10),
            Err(CodecError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(
            MaskedUpload::decode(&bad, 10),
            Err(CodecError::UnsupportedVersion { found: 2 })
        );
        let mut bad = good.clone();
        bad[7] = 1;
        assert_eq!(
            MaskedUpload::decode(&bad, 10),
            Err(CodecError::Reserved { found: 0x100 })
        );
        assert_eq!(
            MaskedUpload::decode(&good, 2),
            Err(CodecError::TooLarge {
                declared: 3,
                max: 2
            })
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            MaskedUpload::decode(&long, 10),
            Err(CodecError::LengthMismatch {
                expected: 80,
                actual: 81
            })
        );
        assert_eq!(
            MaskedUpload::decode(&good[..10], 10),
            Err(CodecError::TooShort { len: 10 })
        );
        // A huge declared length is refused by the limit before anything
        // is allocated.
        let mut huge = good.clone();
        huge[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            MaskedUpload::decode(&huge, 1 << 28),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            MaskedUpload::decode(&huge, u32::MAX),
            Err(CodecError::LengthMismatch { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trips(words in proptest::collection::vec(any::<u32>(), 0..500), round in any::<u64>(), dev in any::<[u8; 32]>()) {
            let mut u = upload(words);
            u.round = RoundId(round);
            u.device = DeviceId::from_bytes(dev);
            let bytes = u.encode();
            prop_assert_eq!(bytes.len(), MaskedUpload::encoded_len(u.masked.len()));
            prop_assert_eq!(MaskedUpload::decode(&bytes, 500).unwrap(), u);
        }

        #[test]
        fn every_truncation_is_rejected(words in proptest::collection::vec(any::<u32>(), 0..64), cut_frac in 0.0f64..1.0) {
            let bytes = upload(words).encode();
            let cut = ((bytes.len() as f64) * cut_frac) as usize;
            prop_assert!(cut < bytes.len());
            prop_assert!(MaskedUpload::decode(&bytes[..cut], 1 << 20).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in any::<u32>()) {
            // Whatever it returns, it returns; and it only accepts inputs
            // that re-encode to themselves.
            if let Ok(u) = MaskedUpload::decode(&bytes, max) {
                prop_assert_eq!(u.encode(), bytes);
            }
        }

        #[test]
        fn single_byte_corruption_is_caught_or_harmless(words in proptest::collection::vec(any::<u32>(), 1..32), at_frac in 0.0f64..1.0, flip in 1u8..=255) {
            let good = upload(words);
            let mut bytes = good.encode();
            let at = ((bytes.len() as f64) * at_frac) as usize;
            bytes[at] ^= flip;
            match MaskedUpload::decode(&bytes, 1 << 20) {
                // Header corruption in a checked field is an error; in the
                // ids or the payload it decodes to a different upload (the
                // protocol layer then rejects the wrong round or device).
                Ok(u) => prop_assert!(u != good && at >= 8),
                Err(_) => prop_assert!(at < 8 || (64..68).contains(&at)),
            }
        }

        #[test]
        fn garbage_after_a_valid_header_is_rejected(words in proptest::collection::vec(any::<u32>(), 1..32), extra in proptest::collection::vec(any::<u8>(), 1..9)) {
            let mut bytes = upload(words).encode();
            bytes.extend_from_slice(&extra);
            let is_length_mismatch = matches!(MaskedUpload::decode(&bytes, 1 << 20), Err(CodecError::LengthMismatch { .. }));
            prop_assert!(is_length_mismatch);
        }
    }
}
