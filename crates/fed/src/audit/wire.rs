//! The transparency log's HTTP API as serde types, shared by the server
//! (which answers with them) and the client driver (which parses them), so
//! the two cannot drift apart.
//!
//! Every endpoint is public and under `/v1/log`: `GET`s with the `*Query`
//! structs here as query parameters, and one `POST` ([`ENROLMENTS_PATH`],
//! whose question is too long for a query string) with a JSON body; answers
//! are the `*Response` structs. Hashes are
//! 64 hex digits, the log key 64 hex digits, leaf data standard base64
//! (as RFC 6962's JSON API carries it). Errors use the server's one error
//! shape, `{"error": {"kind", "message"}}`; an unknown index, a size beyond
//! the log, `old > new` or a range over [`MAX_ENTRIES_PER_REQUEST`] is a
//! `400 bad_request`, an unknown leaf hash or adapter version a
//! `404 not_found`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hearth_ledger::{Hash, LogEntry, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize};

use crate::crypto::DeviceId;

/// `GET`: the log's public key ([`LogKeyResponse`]); a device pins it at
/// join.
pub const KEY_PATH: &str = "/v1/log/key";
/// `GET`: the latest signed tree head ([`SthResponse`]).
pub const STH_PATH: &str = "/v1/log/sth";
/// `GET` with [`InclusionQuery`]: an inclusion proof
/// ([`InclusionProofResponse`]).
pub const INCLUSION_PATH: &str = "/v1/log/proof/inclusion";
/// `GET` with [`ConsistencyQuery`]: a consistency proof
/// ([`ConsistencyProofResponse`]).
pub const CONSISTENCY_PATH: &str = "/v1/log/proof/consistency";
/// `GET` with [`EntriesQuery`]: a range of entries ([`EntriesResponse`]).
pub const ENTRIES_PATH: &str = "/v1/log/entries";
/// `GET` with [`AdapterQuery`]: the entry that published a global adapter
/// version, with its inclusion proof ([`AdapterEntryResponse`]).
pub const ADAPTER_PATH: &str = "/v1/log/adapter";
/// `POST` with an [`EnrolmentsQuery`] body: the `device_enrolled` entries
/// of some devices' public keys, each with its inclusion proof
/// ([`EnrolmentsResponse`]). A device checks a round's cohort with it
/// before it seals a share to anyone.
pub const ENROLMENTS_PATH: &str = "/v1/log/enrolments";

/// Most public keys one [`ENROLMENTS_PATH`] request may ask about; a
/// larger cohort is asked about in several requests.
pub const MAX_ENROLMENTS_PER_REQUEST: usize = 1024;

/// Largest [`ENROLMENTS_PATH`] body accepted: [`MAX_ENROLMENTS_PER_REQUEST`]
/// keys of 64 hex digits, quoted, with room for the rest.
pub const ENROLMENTS_BODY_LIMIT: usize = 96 * 1024;

/// `POST` (signed by an enrolled device of `{id}`, body [`GossipPost`]):
/// the latest signed tree head the device verified; `GET` (public):
/// the heads devices of the federation posted ([`GossipResponse`]). See
/// [`gossip_path`].
pub const GOSSIP_PATH_TEMPLATE: &str = "/v1/federations/{id}/gossip";

/// The gossip endpoint of federation `id` (a plain name).
pub fn gossip_path(federation: &str) -> String {
    format!("/v1/federations/{federation}/gossip")
}

/// Most heads one gossip answer lists (the most recently posted, one per
/// distinct tree).
pub const MAX_GOSSIP_HEADS: usize = 64;

/// Largest gossip `POST` body accepted (a head is about 300 bytes).
pub const GOSSIP_BODY_LIMIT: usize = 4 * 1024;

/// Body of a gossip `POST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipPost {
    /// The latest head the device verified, as the log signed it.
    pub sth: hearth_ledger::SignedTreeHead,
    /// The device's own signed upload commitments
    /// ([`super::commitment`]), at most [`MAX_COMMITMENTS_PER_POST`]:
    /// each must name the federation and the posting device, a round the
    /// federation had, and verify under the device's enrolled key. The
    /// server keeps the first per device and round. Absent from posts of
    /// devices from before commitments were gossiped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commitments: Vec<super::commitment::SignedUploadCommitment>,
}

/// Most commitments one gossip `POST` may carry (a device posts its own,
/// one per round, after each round; these fit [`GOSSIP_BODY_LIMIT`] with
/// the head).
pub const MAX_COMMITMENTS_PER_POST: usize = 4;

/// Answer of a gossip `POST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipAccepted {
    /// Whether the head is one of the server's own log (same root at that
    /// size). A server says so for its operator's sake; devices never
    /// rely on it.
    pub matches_log: bool,
    /// How many of the posted commitments were new (a commitment already
    /// held for that device and round is not replaced).
    #[serde(default)]
    pub commitments_stored: u32,
}

/// `GET` (public) with [`GossipCommitmentsQuery`]: the signed upload
/// commitments devices of `{id}` posted ([`GossipCommitmentsResponse`]).
/// See [`gossip_commitments_path`].
pub const GOSSIP_COMMITMENTS_PATH_TEMPLATE: &str = "/v1/federations/{id}/gossip/commitments";

/// The commitments endpoint of federation `id` (a plain name).
pub fn gossip_commitments_path(federation: &str) -> String {
    format!("/v1/federations/{federation}/gossip/commitments")
}

/// Most commitments one [`GOSSIP_COMMITMENTS_PATH_TEMPLATE`] answer lists.
pub const MAX_GOSSIP_COMMITMENTS: usize = 256;

/// Query of the commitments endpoint: a page of commitments ordered by
/// round, then device id, starting after the cursor (from the start when
/// absent): ask again with the last one's round and device while
/// [`GossipCommitmentsResponse::more`] says so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipCommitmentsQuery {
    /// The round of the last commitment seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_round: Option<u64>,
    /// The device of the last commitment seen (with `after_round`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_device: Option<String>,
}

/// Answer of the commitments endpoint: at most [`MAX_GOSSIP_COMMITMENTS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipCommitmentsResponse {
    /// The federation.
    pub federation: String,
    /// The commitments, by round, then device.
    pub commitments: Vec<super::commitment::SignedUploadCommitment>,
    /// Whether more follow the last one.
    pub more: bool,
}

/// Answer of a gossip `GET`: heads that devices of the federation posted,
/// newest first, at most [`MAX_GOSSIP_HEADS`]. Each verifies under the
/// log key (the server refuses others), and a device checks again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipResponse {
    /// The federation.
    pub federation: String,
    /// The heads.
    pub heads: Vec<hearth_ledger::SignedTreeHead>,
}

/// Most entries one [`ENTRIES_PATH`] request may ask for.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// The only signature algorithm the log uses.
pub const LOG_KEY_ALGORITHM: &str = "ed25519";

/// Why a response's content is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The log key is not an Ed25519 public key in hex.
    #[error("the log key is not a 64-hex-digit Ed25519 public key: {0}")]
    BadKey(String),
    /// Leaf data is not base64.
    #[error("leaf data of entry {index} is not base64")]
    BadLeafData {
        /// The entry's index.
        index: u64,
    },
}

/// Answer of [`KEY_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKeyResponse {
    /// Always [`LOG_KEY_ALGORITHM`].
    pub algorithm: String,
    /// The Ed25519 public key, 64 hex digits.
    pub public_key: String,
}

impl LogKeyResponse {
    /// The answer for `key`.
    pub fn new(key: &VerifyingKey) -> Self {
        Self {
            algorithm: LOG_KEY_ALGORITHM.into(),
            public_key: hex::encode(key.as_bytes()),
        }
    }

    /// The key, checked to be a valid Ed25519 point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, WireError> {
        if self.algorithm != LOG_KEY_ALGORITHM {
            return Err(WireError::BadKey(format!(
                "algorithm {:?}, not {LOG_KEY_ALGORITHM}",
                self.algorithm
            )));
        }
        parse_log_key(&self.public_key)
    }
}

/// Parses a log key as printed by `hearth-server` and served by
/// [`KEY_PATH`]: 64 hex digits.
pub fn parse_log_key(hex_digits: &str) -> Result<VerifyingKey, WireError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digits.trim(), &mut bytes)
        .map_err(|e| WireError::BadKey(e.to_string()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| WireError::BadKey(e.to_string()))
}

/// Answer of [`STH_PATH`]: `{"head": {"size", "root", "timestamp_ms"},
/// "signature"}`.
pub type SthResponse = hearth_ledger::SignedTreeHead;

/// Query of [`INCLUSION_PATH`]: exactly one of `index` and `hash`, and the
/// tree size the proof is for (the size of the head the client verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionQuery {
    /// The leaf's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The leaf's hash (RFC 9162 leaf hash, not the entry's SHA-256): the
    /// server finds the first entry below `size` with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    /// The tree size.
    pub size: u64,
}

/// Answer of [`INCLUSION_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProofResponse {
    /// The leaf's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The leaf's hash, as the log stores it.
    pub leaf_hash: Hash,
    /// The audit path, nearest sibling first (RFC 9162 §2.1.3.1).
    pub path: Vec<Hash>,
}

/// Query of [`CONSISTENCY_PATH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyQuery {
    /// The older tree size (the client's last verified size).
    pub old: u64,
    /// The newer tree size (`old <= new <=` the log's size).
    pub new: u64,
}

/// Answer of [`CONSISTENCY_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProofResponse {
    /// The older size.
    pub old: u64,
    /// The newer size.
    pub new: u64,
    /// The proof (RFC 9162 §2.1.4.1); empty when `old` is 0 or `new`.
    pub path: Vec<Hash>,
}

impl ConsistencyProofResponse {
    /// The trivial proof from a size to itself (or from the empty tree),
    /// which a client may use instead of asking.
    pub fn trivial(old: u64, new: u64) -> Self {
        Self {
            old,
            new,
            path: Vec::new(),
        }
    }
}

/// Query of [`ENTRIES_PATH`]: entries `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesQuery {
    /// First index.
    pub start: u64,
    /// One past the last index; at most [`MAX_ENTRIES_PER_REQUEST`] after
    /// `start`, and at most the log's size.
    pub end: u64,
}

/// One log entry as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryResponse {
    /// Its index.
    pub index: u64,
    /// The exact bytes hashed into the log, standard base64: what a client
    /// checks.
    pub leaf_data: String,
    /// The entry decoded, for people and tools; `null` if this client does
    /// not know the entry's kind. Never trusted for verification.
    #[serde(default, deserialize_with = "lenient_entry")]
    pub entry: Option<LogEntry>,
}

impl EntryResponse {
    /// The answer for the entry at `index` with bytes `leaf_data`.
    pub fn new(index: u64, leaf_data: &[u8]) -> Self {
        Self {
            index,
            leaf_data: STANDARD.encode(leaf_data),
            entry: LogEntry::from_leaf_data(leaf_data).ok(),
        }
    }

    /// The leaf bytes.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, WireError> {
        STANDARD
            .decode(&self.leaf_data)
            .map_err(|_| WireError::BadLeafData { index: self.index })
    }
}

/// A decoded entry of a kind this build does not know (from a newer
/// server) must not make the whole answer unreadable.
fn lenient_entry<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LogEntry>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// Answer of [`ENTRIES_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntriesResponse {
    /// First index.
    pub start: u64,
    /// One past the last index.
    pub end: u64,
    /// Entries `start..end`, in order.
    pub entries: Vec<EntryResponse>,
}

/// Query of [`ADAPTER_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterQuery {
    /// The federation.
    pub federation: String,
    /// The global adapter version.
    pub version: u64,
    /// The tree size the proof is for.
    pub size: u64,
}

/// One entry with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenEntry {
    /// The entry.
    pub entry: EntryResponse,
    /// Its inclusion proof.
    pub proof: InclusionProofResponse,
}

/// Answer of [`ADAPTER_PATH`]: the `adapter_published` entry and its
/// inclusion proof.
pub type AdapterEntryResponse = ProvenEntry;

/// Body of an [`ENROLMENTS_PATH`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentsQuery {
    /// The federation.
    pub federation: String,
    /// The tree size the proofs are for (the size of the head the client
    /// verified).
    pub size: u64,
    /// The devices' Ed25519 public keys (a round's [`DeviceId`]s), at most
    /// [`MAX_ENROLMENTS_PER_REQUEST`].
    pub devices: Vec<DeviceId>,
}

/// Answer of [`ENROLMENTS_PATH`]: one `device_enrolled` entry with its
/// proof per asked key the log holds among its first `size` entries (keys
/// it does not hold are left out; the client judges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentsResponse {
    /// The tree size the proofs are for.
    pub size: u64,
    /// The entries found.
    pub enrolments: Vec<ProvenEntry>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_unknown_kinds_read_as_null() {
        let entry = LogEntry::FederationConfig {
            federation: "notes".into(),
            config_sha256: Hash::sha256(b"c"),
        };
        let response = EntryResponse::new(3, &entry.leaf_data());
        assert_eq!(response.entry.as_ref(), Some(&entry));
        assert_eq!(response.leaf_bytes(), Ok(entry.leaf_data()));
        let json = serde_json::to_value(&response).expect("serialize");
        assert_eq!(json["entry"]["kind"], "federation_config");
        let back: EntryResponse = serde_json::from_value(json).expect("parse");
        assert_eq!(back, response);

        let newer = serde_json::json!({
            "index": 4, "leaf_data": "AAAA", "entry": { "kind": "from_the_future" }
        });
        let back: EntryResponse = serde_json::from_value(newer).expect("parse");
        assert_eq!(back.entry, None);
        let bad = EntryResponse {
            leaf_data: "not base64!".into(),
            ..back
        };
        assert_eq!(bad.leaf_bytes(), Err(WireError::BadLeafData { index: 4 }));
    }

    #[test]
    fn log_keys_parse_and_refuse_junk() {
        let key = hearth_ledger::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let response = LogKeyResponse::new(&key);
        assert_eq!(response.public_key.len(), 64);
        assert_eq!(response.verifying_key(), Ok(key));
        assert!(parse_log_key("zz").is_err());
        let other_algorithm = LogKeyResponse {
            algorithm: "rsa".into(),
            ..response
        };
        assert!(other_algorithm.verifying_key().is_err());
    }

    #[test]
    fn inclusion_query_omits_absent_fields() {
        let q = InclusionQuery {
            index: None,
            hash: Some(Hash::sha256(b"x")),
            size: 9,
        };
        let json = serde_json::to_value(&q).expect("serialize");
        assert!(json.get("index").is_none());
        let back: InclusionQuery = serde_json::from_value(json).expect("parse");
        assert_eq!(back, q);
    }
}
