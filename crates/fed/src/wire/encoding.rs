//! How byte fields look in JSON: fixed 16/32-byte names and public keys as
//! lowercase hex (readable in logs, easy to compare by eye), everything else
//! (signatures, ciphertexts, field elements, vectors) as standard padded
//! base64. Every decoder checks the exact length, and field elements must be
//! canonical, so one value has exactly one accepted encoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

fn decode_b64<E: serde::de::Error>(text: &str) -> Result<Vec<u8>, E> {
    STANDARD.decode(text).map_err(E::custom)
}

fn exact<const N: usize, E: serde::de::Error>(bytes: &[u8]) -> Result<[u8; N], E> {
    <[u8; N]>::try_from(bytes)
        .map_err(|_| E::custom(format_args!("expected {N} bytes, got {}", bytes.len())))
}

/// `[u8; N]` as hex.
pub(crate) mod hex_array {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// An X25519 public key as hex.
pub(crate) mod x25519_public {
    use super::*;
    use x25519_dalek::PublicKey;

    pub(crate) fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(key.as_bytes()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let bytes: [u8; 32] = super::hex_array::deserialize(d)?;
        Ok(PublicKey::from(bytes))
    }
}

/// `Vec<u8>` as base64.
pub(crate) mod base64_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        decode_b64(&String::deserialize(d)?)
    }
}

/// An Ed25519 signature (64 bytes) as base64.
pub(crate) mod signature {
    use super::*;
    use ed25519_dalek::Signature;

    pub(crate) fn serialize<S: Serializer>(sig: &Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(sig.to_bytes()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let bytes: Vec<u8> = decode_b64(&String::deserialize(d)?)?;
        Ok(Signature::from_bytes(&exact::<64, _>(&bytes)?))
    }
}

/// A field element of the Shamir field as base64 of its 32-byte canonical
/// little-endian encoding; non-canonical encodings are refused.
pub(crate) mod scalar {
    use super::*;
    use curve25519_dalek::Scalar;
    use zeroize::Zeroizing;

    pub(crate) fn serialize<S: Serializer>(value: &Scalar, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(value.as_bytes()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        let bytes = Zeroizing::new(decode_b64::<D::Error>(&text)?);
        let array = Zeroizing::new(exact::<32, D::Error>(&bytes)?);
        Option::from(Scalar::from_canonical_bytes(*array))
            .ok_or_else(|| D::Error::custom("field element is not canonical"))
    }
}

/// A `Vec<u32>` as base64 of its little-endian bytes (the JSON fallback for
/// the masked vector; the binary codec is the normal way).
pub(crate) mod u32_vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(values: &[u32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        let bytes = decode_b64::<D::Error>(&String::deserialize(d)?)?;
        let (words, rest) = bytes.as_chunks::<4>();
        if !rest.is_empty() {
            return Err(D::Error::custom(
                "vector byte length is not a multiple of 4",
            ));
        }
        Ok(words.iter().map(|w| u32::from_le_bytes(*w)).collect())
    }
}
