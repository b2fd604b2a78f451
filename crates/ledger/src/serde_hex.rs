//! Fixed-length byte arrays as hex strings in serde formats.
//!
//! Hashes, signatures and public keys travel in JSON (the federation wire,
//! persisted watcher state, the UI) where hex is what people and other
//! tools expect; one helper keeps them all spelled the same way.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Serializes `N` bytes as `2N` lowercase hex digits.
pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

/// Deserializes exactly `2N` hex digits into `N` bytes.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    deserializer.deserialize_str(HexVisitor::<N>)
}

struct HexVisitor<const N: usize>;

impl<const N: usize> Visitor<'_> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hex digits", N * 2)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = [0u8; N];
        hex::decode_to_slice(v, &mut out)
            .map_err(|e| E::custom(format!("{e} (want {} hex digits)", N * 2)))?;
        Ok(out)
    }
}

/// `#[serde(with = "...")]` for an Ed25519 signature.
pub(crate) mod signature {
    use ed25519_dalek::Signature;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        super::serialize(&sig.to_bytes(), s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        super::deserialize::<D, 64>(d).map(|b| Signature::from_bytes(&b))
    }
}

/// `#[serde(with = "...")]` for an Ed25519 public key. Deserializing
/// rejects byte strings that are not a valid curve point.
pub(crate) mod verifying_key {
    use ed25519_dalek::VerifyingKey;
    use serde::de::Error as _;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(key: &VerifyingKey, s: S) -> Result<S::Ok, S::Error> {
        super::serialize(key.as_bytes(), s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VerifyingKey, D::Error> {
        let bytes = super::deserialize::<D, 32>(d)?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| D::Error::custom("not a valid Ed25519 public key"))
    }
}

/// `#[serde(with = "...")]` for a byte string of any length, as hex.
pub(crate) mod bytes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_ref()).map_err(D::Error::custom)
    }
}
