//! A round's parameters in the transparency log.
//!
//! Every signature, key derivation and share box of a round is bound to
//! [`RoundInfo::digest`]. The server logs a `round_opened` entry holding
//! that digest and the bytes it is the SHA-256 of ([`encode`]) when the
//! round opens, before any device is sent the parameters; each device
//! checks, after the round, that the parameters it was shown are the
//! logged ones ([`round_opened_entry`] gives the exact entry to look for).
//! Two devices shown two sets of parameters for one round then need two
//! `round_opened` entries for one round, which the log refuses, or two
//! logs, which gossip of signed tree heads exposes.
//!
//! The encoding is the digest's preimage, fixed length, little-endian:
//!
//! ```text
//! len(label) (u8) || "round-info" || federation (16 bytes) || round (u64)
//! || vector_len || min_clients || max_clients || min_survivors (u32 each)
//! || degree || threshold (each: 0x00 and 4 zero bytes, or 0x01 and a u32)
//! || graph seed (32 bytes) || clip norm || noise multiplier (f64 bits, u64)
//! || threat model (0x00 and 16 zero bytes, or 0x01, corrupt fraction,
//!    dropout fraction as f64 bits)
//! ```
//!
//! so anyone reading the log can decode a round's neighbourhood, cohort
//! and noise parameters ([`decode`]) and check them against the digest.

use hearth_ledger::{Hash, LogEntry};

use crate::crypto::labels::ROUND_INFO;
use crate::graph::ThreatModel;
use crate::{DpConfig, FederationId, GraphSeed, RoundId, RoundInfo};

/// Length of [`encode`]'s output.
pub const ENCODED_LEN: usize = 1 + ROUND_INFO.len() + 16 + 8 + 4 * 4 + 5 + 5 + 32 + 8 + 8 + 17;

/// Why bytes are not [`encode`]d round parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParametersError {
    /// The length is not [`ENCODED_LEN`].
    #[error("round parameters are {0} bytes, not {ENCODED_LEN}")]
    Length(usize),
    /// The bytes do not start with the round-info label.
    #[error("round parameters do not start with the round-info label")]
    Label,
    /// An optional field's flag is neither 0 (absent) nor 1 (present), or
    /// an absent one carries a value.
    #[error("round parameters: non-canonical optional field")]
    NonCanonical,
}

/// The canonical bytes [`RoundInfo::digest`] is the SHA-256 of.
pub fn encode(info: &RoundInfo) -> Vec<u8> {
    let optional = |out: &mut Vec<u8>, v: Option<u32>| match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.extend_from_slice(&[0; 5]),
    };
    let mut out = Vec::with_capacity(ENCODED_LEN);
    // The label is a short constant; its length fits a byte.
    out.push(u8::try_from(ROUND_INFO.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(ROUND_INFO);
    out.extend_from_slice(info.federation.as_bytes());
    out.extend_from_slice(&info.round.0.to_le_bytes());
    out.extend_from_slice(&info.vector_len.to_le_bytes());
    out.extend_from_slice(&info.min_clients.to_le_bytes());
    out.extend_from_slice(&info.max_clients.to_le_bytes());
    out.extend_from_slice(&info.min_survivors.to_le_bytes());
    optional(&mut out, info.degree);
    optional(&mut out, info.threshold);
    out.extend_from_slice(&info.graph_seed.0);
    out.extend_from_slice(&info.dp.clip_norm.to_bits().to_le_bytes());
    out.extend_from_slice(&info.dp.noise_multiplier.to_bits().to_le_bytes());
    match info.threat_model {
        Some(model) => {
            out.push(1);
            out.extend_from_slice(&model.corrupt_fraction.to_bits().to_le_bytes());
            out.extend_from_slice(&model.dropout_fraction.to_bits().to_le_bytes());
        }
        None => out.extend_from_slice(&[0; 17]),
    }
    out
}

/// Reads [`encode`]'s bytes back (for auditors: a logged round's
/// parameters). Refuses anything `encode` does not produce.
pub fn decode(bytes: &[u8]) -> Result<RoundInfo, ParametersError> {
    if bytes.len() != ENCODED_LEN {
        return Err(ParametersError::Length(bytes.len()));
    }
    let (label, mut rest) = bytes.split_at(1 + ROUND_INFO.len());
    match label.split_first() {
        Some((&n, text)) if usize::from(n) == ROUND_INFO.len() && text == ROUND_INFO => {}
        _ => return Err(ParametersError::Label),
    }
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    let mut federation = [0u8; 16];
    federation.copy_from_slice(take(16));
    let u64_at = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    let u32_at = |b: &[u8]| {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        u32::from_le_bytes(a)
    };
    let round = u64_at(take(8));
    let vector_len = u32_at(take(4));
    let min_clients = u32_at(take(4));
    let max_clients = u32_at(take(4));
    let min_survivors = u32_at(take(4));
    let optional = |b: &[u8]| match b.split_first() {
        Some((0, v)) if v.iter().all(|&x| x == 0) => Ok(None),
        Some((1, v)) => Ok(Some(u32_at(v))),
        _ => Err(ParametersError::NonCanonical),
    };
    let degree = optional(take(5))?;
    let threshold = optional(take(5))?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(take(32));
    let clip_norm = f64::from_bits(u64_at(take(8)));
    let noise_multiplier = f64::from_bits(u64_at(take(8)));
    let threat_model = match take(17).split_first() {
        Some((0, v)) if v.iter().all(|&x| x == 0) => None,
        Some((1, v)) => {
            let (g, d) = v.split_at(8);
            Some(ThreatModel {
                corrupt_fraction: f64::from_bits(u64_at(g)),
                dropout_fraction: f64::from_bits(u64_at(d)),
            })
        }
        _ => return Err(ParametersError::NonCanonical),
    };
    Ok(RoundInfo {
        federation: FederationId::from_bytes(federation),
        round: RoundId(round),
        vector_len,
        min_clients,
        max_clients,
        min_survivors,
        degree,
        threshold,
        graph_seed: GraphSeed(seed),
        dp: DpConfig {
            clip_norm,
            noise_multiplier,
        },
        threat_model,
    })
}

/// The `round_opened` entry the log must hold for `info`, a round of the
/// federation named `federation`.
pub fn round_opened_entry(federation: &str, info: &RoundInfo) -> LogEntry {
    LogEntry::RoundOpened {
        federation: federation.to_owned(),
        round: info.round.0,
        parameters_sha256: Hash::from_bytes(info.digest()),
        parameters: encode(info),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn info(degree: Option<u32>, threshold: Option<u32>, seed: u8) -> RoundInfo {
        RoundInfo {
            federation: FederationId::from_name("notes"),
            round: RoundId(7),
            vector_len: 1234,
            min_clients: 3,
            max_clients: 10,
            min_survivors: 3,
            degree,
            threshold,
            graph_seed: GraphSeed([seed; 32]),
            dp: DpConfig {
                clip_norm: 1.5,
                noise_multiplier: 0.8,
            },
            threat_model: None,
        }
    }

    #[test]
    fn the_encoding_is_the_digest_preimage_and_decodes_back() {
        for i in [
            info(None, None, 1),
            info(Some(4), None, 2),
            info(None, Some(3), 3),
            info(Some(6), Some(4), 4),
        ] {
            let bytes = encode(&i);
            assert_eq!(bytes.len(), ENCODED_LEN);
            assert_eq!(Hash::sha256(&bytes).to_bytes(), i.digest());
            assert_eq!(decode(&bytes), Ok(i.clone()));
            let entry = round_opened_entry("notes", &i);
            assert!(entry.is_canonical());
            assert_eq!(
                LogEntry::from_leaf_data(&entry.leaf_data()).expect("decodes"),
                entry
            );
        }
        // Different parameters, different entries.
        assert_ne!(
            round_opened_entry("notes", &info(None, None, 1)).leaf_hash(),
            round_opened_entry("notes", &info(None, None, 2)).leaf_hash()
        );
    }

    #[test]
    fn decoding_refuses_other_bytes() {
        let bytes = encode(&info(None, Some(3), 1));
        assert_eq!(
            decode(&bytes[1..]),
            Err(ParametersError::Length(ENCODED_LEN - 1))
        );
        let mut bad = bytes.clone();
        bad[2] ^= 1;
        assert_eq!(decode(&bad), Err(ParametersError::Label));
        // The degree is absent: its flag 0 with a value, or a flag 2.
        let degree_at = 1 + ROUND_INFO.len() + 16 + 8 + 16;
        let mut bad = bytes.clone();
        bad[degree_at + 1] = 9;
        assert_eq!(decode(&bad), Err(ParametersError::NonCanonical));
        let mut bad = bytes;
        bad[degree_at] = 2;
        assert_eq!(decode(&bad), Err(ParametersError::NonCanonical));
    }
}
