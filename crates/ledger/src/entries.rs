//! What the federation server writes into its transparency log.
//!
//! Each [`LogEntry`] is a public, checkable statement: which configuration
//! a federation runs, which devices (with which keys) are enrolled or
//! revoked, with which parameters each round opened, which devices
//! committed to which (masked) uploads in a round, what each device itself
//! signed that it uploaded, how a round ended, and which adapter was
//! published with what privacy budget. A device checks
//! that its round's parameters, its own participation commitment and the
//! adapter it downloads are in the log the server signs; anyone can count
//! a federation's enrolled keys (sybils cost a log entry each) and read
//! every round's neighbourhood and noise parameters.
//!
//! # Encoding
//!
//! The bytes hashed into the log ([`LogEntry::leaf_data`]) are a small
//! hand-written binary encoding, not JSON. A leaf hash commits to exact
//! bytes, so the encoding must be canonical (one byte string per entry)
//! and stable forever; JSON leaves too much to the serializer (field
//! order, float formatting, escaping, whitespace), while this layout fits
//! in a paragraph and is easy to re-implement in another language:
//!
//! ```text
//! "hearth-log-entry-v1" || kind (u8) || fields in declaration order
//! string = length (u32 BE) || UTF-8 bytes
//! u64    = 8 bytes BE
//! hash   = 32 raw bytes
//! bool   = 0x00 or 0x01
//! f64    = IEEE 754 bits, 8 bytes BE
//! key    = 32 raw bytes (an Ed25519 public key)
//! bytes  = length (u32 BE) || raw bytes
//! ```
//!
//! [`LogEntry::from_leaf_data`] accepts exactly the bytes `leaf_data`
//! produces (no trailing bytes, booleans 0 or 1, an epsilon that is
//! `+∞` or finite, non-negative and not -0, a delta in `[0, 1]` that is
//! not -0, round parameters of at most [`MAX_ROUND_PARAMETERS_LEN`] bytes
//! whose SHA-256 is the logged digest), so decoding and re-encoding gives the same leaf. The serde
//! derive is for APIs and display, not for hashing (an infinite epsilon is
//! JSON `null` there, since JSON has no infinity).
//! [`LogEntry::is_canonical`] tells a writer beforehand whether an entry
//! will decode.

use serde::{Deserialize, Serialize};

use crate::merkle::{HASH_LEN, Hash, leaf_hash};

/// The domain tag in front of every encoded entry.
pub const ENTRY_DOMAIN: &[u8] = b"hearth-log-entry-v1";

const KIND_FEDERATION_CONFIG: u8 = 1;
const KIND_ROUND_PARTICIPATION: u8 = 2;
const KIND_ROUND_OUTCOME: u8 = 3;
const KIND_ADAPTER_PUBLISHED: u8 = 4;
const KIND_DEVICE_ENROLLED: u8 = 5;
const KIND_DEVICE_REVOKED: u8 = 6;
const KIND_ROUND_OPENED: u8 = 7;
const KIND_UPLOAD_COMMITTED: u8 = 8;

/// The most bytes of round parameters a [`LogEntry::RoundOpened`] may
/// carry (Hearth's encoding is about a hundred).
pub const MAX_ROUND_PARAMETERS_LEN: usize = 4096;

/// One statement in the federation transparency log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogEntry {
    /// A federation's configuration (model, rounds, privacy parameters) as
    /// of this entry; later entries of the same federation supersede it.
    FederationConfig {
        /// The federation's id.
        federation: String,
        /// SHA-256 of the configuration document.
        config_sha256: Hash,
    },
    /// A device's commitment to its masked upload in a round, made before
    /// unmasking, so the server cannot later swap or invent uploads.
    RoundParticipation {
        /// The federation's id.
        federation: String,
        /// The round number.
        round: u64,
        /// The device's id in the federation.
        device: String,
        /// SHA-256 of the device's masked upload.
        upload_sha256: Hash,
    },
    /// How a round ended.
    RoundOutcome {
        /// The federation's id.
        federation: String,
        /// The round number.
        round: u64,
        /// How many devices' updates are in the aggregate.
        contributors: u64,
        /// Whether the round was abandoned (too few survivors, say).
        aborted: bool,
    },
    /// A global adapter the server published.
    AdapterPublished {
        /// The federation's id.
        federation: String,
        /// The global version this adapter is (1 for the first publication,
        /// then +1): what devices download and ask the log about. Aborted
        /// rounds publish nothing, so it is not the round number.
        version: u64,
        /// The round whose aggregate this adapter is.
        round: u64,
        /// SHA-256 of the adapter file.
        adapter_sha256: Hash,
        /// How many devices contributed.
        contributors: u64,
        /// The differential-privacy epsilon the server's accountant states
        /// for this adapter's aggregate at `delta` (Hearth's server: what
        /// each contributor spent in `round`). [`NO_DP_BOUND`] (`+∞`) when
        /// the round added no noise: no finite stand-in, which could read as
        /// a guarantee. JSON `null` in the serde form.
        #[serde(with = "epsilon_json")]
        epsilon: f64,
        /// The delta that `epsilon` holds with: a DP guarantee is the pair
        /// (epsilon, delta), and an epsilon alone says nothing.
        delta: f64,
    },
    /// A device enrolled in a federation, with the key its requests and
    /// round messages are signed with: the federation's population is
    /// public, so a server cannot fill a round with devices nobody else
    /// can see (sybils) without logging each of them.
    DeviceEnrolled {
        /// The federation's id.
        federation: String,
        /// The device's id in the federation.
        device: String,
        /// Its Ed25519 public key (64 hex digits in serde).
        #[serde(with = "crate::serde_hex")]
        public_key: [u8; 32],
    },
    /// A device was revoked: from this entry on it takes part in no round.
    DeviceRevoked {
        /// The federation's id.
        federation: String,
        /// The device's id.
        device: String,
    },
    /// A round opened with these parameters, logged before any device is
    /// sent them: every device checks that the parameters it was shown
    /// (and bound its signatures to) are the logged ones, so two devices
    /// cannot be shown two sets of parameters for one round unnoticed.
    RoundOpened {
        /// The federation's id.
        federation: String,
        /// The round number.
        round: u64,
        /// The digest every signature of the round is bound to (Hearth:
        /// `hearth_fed::RoundInfo::digest`): the SHA-256 of `parameters`.
        parameters_sha256: Hash,
        /// The canonical encoding of the round's parameters (hex in
        /// serde), at most [`MAX_ROUND_PARAMETERS_LEN`] bytes.
        #[serde(with = "crate::serde_hex::bytes")]
        parameters: Vec<u8>,
    },
    /// A device's own signed commitment to what it uploaded in a round, as
    /// it gossiped it (Hearth: `hearth_fed::audit::commitment`). Logged by
    /// the server on receipt, so every device replaying the log holds the
    /// same set of the devices' words, and a device checks its own is in
    /// it: a server cannot show one device's commitment to some devices
    /// and hide it from others without showing them two histories.
    UploadCommitted {
        /// The federation's id.
        federation: String,
        /// The round number.
        round: u64,
        /// The device's id in the federation.
        device: String,
        /// SHA-256 of the masked upload bytes the device says it sent.
        upload_sha256: Hash,
        /// The digest of the round's parameters the device was shown.
        round_digest: Hash,
        /// The device's Ed25519 signature over its commitment (128 hex
        /// digits in serde), checked against its enrolled key by whoever
        /// relies on it.
        #[serde(with = "crate::serde_hex")]
        signature: [u8; 64],
    },
}

/// The epsilon an [`LogEntry::AdapterPublished`] records for a round that
/// added no noise: `+∞`, no differential-privacy bound at all.
pub const NO_DP_BOUND: f64 = f64::INFINITY;

/// JSON has no infinity, and serde_json would write `null` for it and then
/// refuse to read that back: say `null` for [`NO_DP_BOUND`] on purpose and
/// read it back as such.
mod epsilon_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::NO_DP_BOUND;

    pub(super) fn serialize<S: Serializer>(epsilon: &f64, s: S) -> Result<S::Ok, S::Error> {
        if *epsilon == NO_DP_BOUND {
            s.serialize_none()
        } else {
            s.serialize_some(epsilon)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(NO_DP_BOUND))
    }
}

/// Why bytes are not an encoded [`LogEntry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes do not start with [`ENTRY_DOMAIN`].
    #[error("not a Hearth log entry (wrong domain tag)")]
    WrongDomain,
    /// An unknown entry kind (written by a newer version, perhaps).
    #[error("unknown log entry kind {0}")]
    UnknownKind(u8),
    /// The bytes end inside a field.
    #[error("log entry is truncated")]
    Truncated,
    /// Bytes follow the last field.
    #[error("{0} stray bytes after the log entry")]
    TrailingBytes(usize),
    /// A string field is not UTF-8.
    #[error("a text field of the log entry is not UTF-8")]
    NotUtf8,
    /// A field holds a value its canonical encoding never produces (a
    /// boolean other than 0 or 1, a negative, NaN or `-∞` epsilon, round
    /// parameters too long or not hashing to their digest).
    #[error("non-canonical value in field {0}")]
    NonCanonical(&'static str),
}

impl LogEntry {
    /// The canonical bytes to append to the log (see the module docs).
    pub fn leaf_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_DOMAIN.len() + 96);
        out.extend_from_slice(ENTRY_DOMAIN);
        match self {
            Self::FederationConfig {
                federation,
                config_sha256,
            } => {
                out.push(KIND_FEDERATION_CONFIG);
                put_str(&mut out, federation);
                out.extend_from_slice(config_sha256.as_bytes());
            }
            Self::RoundParticipation {
                federation,
                round,
                device,
                upload_sha256,
            } => {
                out.push(KIND_ROUND_PARTICIPATION);
                put_str(&mut out, federation);
                out.extend_from_slice(&round.to_be_bytes());
                put_str(&mut out, device);
                out.extend_from_slice(upload_sha256.as_bytes());
            }
            Self::RoundOutcome {
                federation,
                round,
                contributors,
                aborted,
            } => {
                out.push(KIND_ROUND_OUTCOME);
                put_str(&mut out, federation);
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(&contributors.to_be_bytes());
                out.push(u8::from(*aborted));
            }
            Self::AdapterPublished {
                federation,
                version,
                round,
                adapter_sha256,
                contributors,
                epsilon,
                delta,
            } => {
                out.push(KIND_ADAPTER_PUBLISHED);
                put_str(&mut out, federation);
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(adapter_sha256.as_bytes());
                out.extend_from_slice(&contributors.to_be_bytes());
                out.extend_from_slice(&epsilon.to_bits().to_be_bytes());
                out.extend_from_slice(&delta.to_bits().to_be_bytes());
            }
            Self::DeviceEnrolled {
                federation,
                device,
                public_key,
            } => {
                out.push(KIND_DEVICE_ENROLLED);
                put_str(&mut out, federation);
                put_str(&mut out, device);
                out.extend_from_slice(public_key);
            }
            Self::DeviceRevoked { federation, device } => {
                out.push(KIND_DEVICE_REVOKED);
                put_str(&mut out, federation);
                put_str(&mut out, device);
            }
            Self::RoundOpened {
                federation,
                round,
                parameters_sha256,
                parameters,
            } => {
                out.push(KIND_ROUND_OPENED);
                put_str(&mut out, federation);
                out.extend_from_slice(&round.to_be_bytes());
                out.extend_from_slice(parameters_sha256.as_bytes());
                put_bytes(&mut out, parameters);
            }
            Self::UploadCommitted {
                federation,
                round,
                device,
                upload_sha256,
                round_digest,
                signature,
            } => {
                out.push(KIND_UPLOAD_COMMITTED);
                put_str(&mut out, federation);
                out.extend_from_slice(&round.to_be_bytes());
                put_str(&mut out, device);
                out.extend_from_slice(upload_sha256.as_bytes());
                out.extend_from_slice(round_digest.as_bytes());
                out.extend_from_slice(signature);
            }
        }
        out
    }

    /// The entry's leaf hash in the log.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf_data())
    }

    /// Whether [`Self::from_leaf_data`] will accept this entry's bytes:
    /// a log writer checks before appending, since an entry nobody can
    /// decode is a statement nobody can check.
    pub fn is_canonical(&self) -> bool {
        Self::from_leaf_data(&self.leaf_data()).is_ok()
    }

    /// The snake_case name of the entry's kind, as in its JSON `kind` tag.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::FederationConfig { .. } => "federation_config",
            Self::RoundParticipation { .. } => "round_participation",
            Self::RoundOutcome { .. } => "round_outcome",
            Self::AdapterPublished { .. } => "adapter_published",
            Self::DeviceEnrolled { .. } => "device_enrolled",
            Self::DeviceRevoked { .. } => "device_revoked",
            Self::RoundOpened { .. } => "round_opened",
            Self::UploadCommitted { .. } => "upload_committed",
        }
    }

    /// The federation the entry is about.
    pub fn federation(&self) -> &str {
        match self {
            Self::FederationConfig { federation, .. }
            | Self::RoundParticipation { federation, .. }
            | Self::RoundOutcome { federation, .. }
            | Self::AdapterPublished { federation, .. }
            | Self::DeviceEnrolled { federation, .. }
            | Self::DeviceRevoked { federation, .. }
            | Self::RoundOpened { federation, .. }
            | Self::UploadCommitted { federation, .. } => federation,
        }
    }

    /// Decodes bytes made by [`Self::leaf_data`], refusing anything else.
    pub fn from_leaf_data(bytes: &[u8]) -> Result<Self, EntryError> {
        let rest = bytes
            .strip_prefix(ENTRY_DOMAIN)
            .ok_or(EntryError::WrongDomain)?;
        let mut r = Reader(rest);
        let entry = match r.u8()? {
            KIND_FEDERATION_CONFIG => Self::FederationConfig {
                federation: r.string()?,
                config_sha256: r.hash()?,
            },
            KIND_ROUND_PARTICIPATION => Self::RoundParticipation {
                federation: r.string()?,
                round: r.u64()?,
                device: r.string()?,
                upload_sha256: r.hash()?,
            },
            KIND_ROUND_OUTCOME => Self::RoundOutcome {
                federation: r.string()?,
                round: r.u64()?,
                contributors: r.u64()?,
                aborted: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(EntryError::NonCanonical("aborted")),
                },
            },
            KIND_ADAPTER_PUBLISHED => Self::AdapterPublished {
                federation: r.string()?,
                version: r.u64()?,
                round: r.u64()?,
                adapter_sha256: r.hash()?,
                contributors: r.u64()?,
                epsilon: {
                    let eps = f64::from_bits(r.u64()?);
                    // NaN has many encodings and -0 equals 0: refuse them
                    // so one entry has one encoding. +∞ (one encoding) is
                    // NO_DP_BOUND, a round without noise.
                    if eps.is_nan() || eps.is_sign_negative() {
                        return Err(EntryError::NonCanonical("epsilon"));
                    }
                    eps
                },
                delta: {
                    let delta = f64::from_bits(r.u64()?);
                    // A probability; the same canonical rules as epsilon.
                    if !(0.0..=1.0).contains(&delta) || delta.is_sign_negative() {
                        return Err(EntryError::NonCanonical("delta"));
                    }
                    delta
                },
            },
            KIND_DEVICE_ENROLLED => Self::DeviceEnrolled {
                federation: r.string()?,
                device: r.string()?,
                public_key: r.array()?,
            },
            KIND_DEVICE_REVOKED => Self::DeviceRevoked {
                federation: r.string()?,
                device: r.string()?,
            },
            KIND_ROUND_OPENED => {
                let federation = r.string()?;
                let round = r.u64()?;
                let parameters_sha256 = r.hash()?;
                let parameters = r.bytes()?;
                if parameters.len() > MAX_ROUND_PARAMETERS_LEN {
                    return Err(EntryError::NonCanonical("parameters"));
                }
                if Hash::sha256(&parameters) != parameters_sha256 {
                    return Err(EntryError::NonCanonical("parameters_sha256"));
                }
                Self::RoundOpened {
                    federation,
                    round,
                    parameters_sha256,
                    parameters,
                }
            }
            KIND_UPLOAD_COMMITTED => Self::UploadCommitted {
                federation: r.string()?,
                round: r.u64()?,
                device: r.string()?,
                upload_sha256: r.hash()?,
                round_digest: r.hash()?,
                signature: r.array()?,
            },
            other => return Err(EntryError::UnknownKind(other)),
        };
        if !r.0.is_empty() {
            return Err(EntryError::TrailingBytes(r.0.len()));
        }
        Ok(entry)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than 4 GiB cannot be encoded; they are ids, so
    // saturate rather than panic (the decoder would then refuse the entry).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // As for strings: too long to encode means the decoder refuses it.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
}

/// A cursor over untrusted bytes; every read checks the length first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        if self.0.len() < n {
            return Err(EntryError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<Hash, EntryError> {
        Ok(Hash::from_bytes(self.array::<HASH_LEN>()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, EntryError> {
        let len = u32::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| EntryError::Truncated)?;
        Ok(self.take(len)?.to_vec())
    }

    fn string(&mut self) -> Result<String, EntryError> {
        String::from_utf8(self.bytes()?).map_err(|_| EntryError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<LogEntry> {
        let h = Hash::sha256(b"blob");
        vec![
            LogEntry::FederationConfig {
                federation: "photos-eu".into(),
                config_sha256: h,
            },
            LogEntry::RoundParticipation {
                federation: "photos-eu".into(),
                round: 12,
                device: "dev-Ω".into(),
                upload_sha256: h,
            },
            LogEntry::RoundOutcome {
                federation: "f".into(),
                round: 12,
                contributors: 97,
                aborted: false,
            },
            LogEntry::RoundOutcome {
                federation: String::new(),
                round: u64::MAX,
                contributors: 0,
                aborted: true,
            },
            LogEntry::AdapterPublished {
                federation: "f".into(),
                version: 9,
                round: 12,
                adapter_sha256: h,
                contributors: 97,
                epsilon: 2.5,
                delta: 1e-6,
            },
            LogEntry::DeviceEnrolled {
                federation: "f".into(),
                device: "dev_a".into(),
                public_key: [7; 32],
            },
            LogEntry::DeviceRevoked {
                federation: "f".into(),
                device: "dev_a".into(),
            },
            LogEntry::RoundOpened {
                federation: "f".into(),
                round: 12,
                parameters_sha256: Hash::sha256(b"params"),
                parameters: b"params".to_vec(),
            },
            LogEntry::UploadCommitted {
                federation: "f".into(),
                round: 14,
                device: "dev_a".into(),
                upload_sha256: h,
                round_digest: Hash::sha256(b"params"),
                signature: [9; 64],
            },
            LogEntry::AdapterPublished {
                federation: "f".into(),
                version: 10,
                round: 13,
                adapter_sha256: h,
                contributors: 3,
                epsilon: NO_DP_BOUND,
                delta: 1e-5,
            },
        ]
    }

    #[test]
    fn round_trip_every_kind() {
        for e in samples() {
            let bytes = e.leaf_data();
            assert_eq!(LogEntry::from_leaf_data(&bytes), Ok(e.clone()));
            let json = serde_json::to_string(&e).expect("serialize");
            assert_eq!(serde_json::from_str::<LogEntry>(&json).expect("parse"), e);
        }
    }

    #[test]
    fn no_dp_bound_is_json_null() {
        let e = samples().pop().expect("sample");
        let json = serde_json::to_value(&e).expect("serialize");
        assert!(json["epsilon"].is_null(), "{json}");
        assert_eq!(serde_json::from_value::<LogEntry>(json).expect("parse"), e);
    }

    #[test]
    fn kind_names_match_the_json_tag() {
        for e in samples() {
            let json = serde_json::to_value(&e).expect("serialize");
            assert_eq!(json["kind"], e.kind_name());
            assert_eq!(json["federation"], e.federation());
        }
    }

    #[test]
    fn known_encoding() {
        let e = LogEntry::RoundOutcome {
            federation: "ab".into(),
            round: 1,
            contributors: 2,
            aborted: true,
        };
        let mut want = b"hearth-log-entry-v1".to_vec();
        want.push(3);
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(&2u64.to_be_bytes());
        want.push(1);
        assert_eq!(e.leaf_data(), want);
    }

    #[test]
    fn distinct_entries_distinct_leaves() {
        let leaves: std::collections::HashSet<_> =
            samples().iter().map(LogEntry::leaf_hash).collect();
        assert_eq!(leaves.len(), samples().len());
    }

    #[test]
    fn refuses_non_canonical_or_hostile_bytes() {
        for e in samples() {
            let bytes = e.leaf_data();
            // Every strict prefix is truncated (or has the wrong domain).
            for cut in 0..bytes.len() {
                assert!(
                    LogEntry::from_leaf_data(&bytes[..cut]).is_err(),
                    "cut {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                LogEntry::from_leaf_data(&longer),
                Err(EntryError::TrailingBytes(1))
            );
        }
        let mut b = samples()[2].leaf_data();
        let last = b.len() - 1;
        b[last] = 2;
        assert_eq!(
            LogEntry::from_leaf_data(&b),
            Err(EntryError::NonCanonical("aborted"))
        );
        let mut b = ENTRY_DOMAIN.to_vec();
        b.push(99);
        assert_eq!(
            LogEntry::from_leaf_data(&b),
            Err(EntryError::UnknownKind(99))
        );
        // A length prefix far beyond the input must not allocate or panic.
        let mut b = ENTRY_DOMAIN.to_vec();
        b.push(1);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(LogEntry::from_leaf_data(&b), Err(EntryError::Truncated));
        let adapter = |epsilon, delta| LogEntry::AdapterPublished {
            federation: "f".into(),
            version: 1,
            round: 1,
            adapter_sha256: Hash::sha256(b""),
            contributors: 1,
            epsilon,
            delta,
        };
        for eps in [f64::NAN, f64::NEG_INFINITY, -1.0, -0.0] {
            let e = adapter(eps, 0.0);
            assert!(!e.is_canonical());
            assert_eq!(
                LogEntry::from_leaf_data(&e.leaf_data()),
                Err(EntryError::NonCanonical("epsilon"))
            );
        }
        for delta in [f64::NAN, f64::INFINITY, -1e-9, -0.0, 1.5] {
            let e = adapter(1.0, delta);
            assert!(!e.is_canonical());
            assert_eq!(
                LogEntry::from_leaf_data(&e.leaf_data()),
                Err(EntryError::NonCanonical("delta"))
            );
        }
        assert!(adapter(0.0, 0.0).is_canonical());
        assert!(adapter(8.0, 1.0).is_canonical());
        assert!(adapter(NO_DP_BOUND, 1e-5).is_canonical());
    }

    #[test]
    fn round_parameters_must_hash_to_their_digest_and_stay_small() {
        let opened = |parameters: Vec<u8>, parameters_sha256| LogEntry::RoundOpened {
            federation: "f".into(),
            round: 1,
            parameters_sha256,
            parameters,
        };
        let good = opened(b"p".to_vec(), Hash::sha256(b"p"));
        assert!(good.is_canonical());
        let lying = opened(b"p".to_vec(), Hash::sha256(b"q"));
        assert_eq!(
            LogEntry::from_leaf_data(&lying.leaf_data()),
            Err(EntryError::NonCanonical("parameters_sha256"))
        );
        let big = vec![0u8; MAX_ROUND_PARAMETERS_LEN + 1];
        let too_big = opened(big.clone(), Hash::sha256(&big));
        assert_eq!(
            LogEntry::from_leaf_data(&too_big.leaf_data()),
            Err(EntryError::NonCanonical("parameters"))
        );
        let json = serde_json::to_value(&good).expect("serialize");
        assert_eq!(json["parameters"], "70");
        assert_eq!(json["kind"], "round_opened");
    }

    #[test]
    fn known_encoding_of_an_enrolment() {
        let e = LogEntry::DeviceEnrolled {
            federation: "f".into(),
            device: "d".into(),
            public_key: [9; 32],
        };
        let mut want = b"hearth-log-entry-v1".to_vec();
        want.push(5);
        want.extend_from_slice(&[0, 0, 0, 1, b'f', 0, 0, 0, 1, b'd']);
        want.extend_from_slice(&[9; 32]);
        assert_eq!(e.leaf_data(), want);
        let json = serde_json::to_value(&e).expect("serialize");
        assert_eq!(json["public_key"], hex::encode([9u8; 32]));
    }
}
