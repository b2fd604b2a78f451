//! A device's long-lived identity: an Ed25519 key pair. Its public half is
//! also the device's name in every protocol message ([`DeviceId`]), so a
//! signature can be checked against the sender's name alone, with no
//! directory that a server could tamper with.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::CryptoError;

/// A device's secret signing key. Zeroized on drop (ed25519-dalek's
/// `SigningKey` is `ZeroizeOnDrop`); not `Clone`, not `Serialize`; `Debug`
/// prints only the public [`DeviceId`].
pub struct DeviceIdentity {
    signing: SigningKey,
}

impl DeviceIdentity {
    /// A fresh identity from a cryptographically secure generator.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// The identity whose 32-byte Ed25519 secret seed is `secret` (as
    /// returned by [`DeviceIdentity::to_secret_bytes`], for the device's own
    /// key store).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret seed, for the device's own key store. Zeroized
    /// when the returned value is dropped.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// This device's name: its public key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.signing.verifying_key().to_bytes())
    }

    /// This device's public key.
    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey(self.signing.verifying_key())
    }

    /// Pure Ed25519 signature over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

/// A device's name: the 32 bytes of its Ed25519 public key, as 64 lowercase
/// hex digits on the wire. Cheap to copy, compare and sort; it is turned
/// into a checked [`IdentityKey`] only where a signature is verified.
///
/// Cohorts are sorted by `DeviceId`, and a device's position in its sorted
/// cohort is its Shamir x-coordinate (position + 1) and decides the sign of
/// its pairwise masks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(#[serde(with = "crate::wire::encoding::hex_array")] [u8; 32]);

impl DeviceId {
    /// The device named by these public-key bytes (not checked to be a
    /// valid key until [`DeviceId::identity_key`]).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The public-key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The checked public key this name stands for.
    pub fn identity_key(&self) -> Result<IdentityKey, CryptoError> {
        IdentityKey::from_bytes(&self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.0.get(..6).map(hex::encode).unwrap_or_default();
        write!(f, "DeviceId({head}…)")
    }
}

/// A checked Ed25519 public key: it decompresses and is not of small order.
/// Serialized as 64 hex digits; deserializing checks it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DeviceId", into = "DeviceId")]
pub struct IdentityKey(VerifyingKey);

impl IdentityKey {
    /// Checks and wraps 32 public-key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidIdentityKey)?;
        if key.is_weak() {
            return Err(CryptoError::WeakIdentityKey);
        }
        Ok(Self(key))
    }

    /// The 32 public-key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The name of the device holding this key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.to_bytes())
    }

    /// Checks `signature` over `message` with strict Ed25519 verification
    /// (canonical `s`, no small-order `R`), so a signature cannot be mauled
    /// into a second valid one.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        self.0
            .verify_strict(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({:?})", self.device_id())
    }
}

impl TryFrom<DeviceId> for IdentityKey {
    type Error = CryptoError;
    fn try_from(id: DeviceId) -> Result<Self, CryptoError> {
        id.identity_key()
    }
}

impl From<IdentityKey> for DeviceId {
    fn from(key: IdentityKey) -> Self {
        key.device_id()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn signs_and_verifies_and_round_trips_secret() {
        let mut rng = StdRng::seed_from_u64(1);
        let id = DeviceIdentity::generate(&mut rng);
        let sig = id.sign(b"hello");
        let key = id.device_id().identity_key().unwrap();
        assert_eq!(key.verify(b"hello", &sig), Ok(()));
        assert_eq!(key.verify(b"hellO", &sig), Err(CryptoError::BadSignature));

        let again = DeviceIdentity::from_secret_bytes(&id.to_secret_bytes());
        assert_eq!(again.device_id(), id.device_id());
    }

    #[test]
    fn debug_omits_the_secret() {
        let mut rng = StdRng::seed_from_u64(2);
        let id = DeviceIdentity::generate(&mut rng);
        let secret_hex = hex::encode(*id.to_secret_bytes());
        let debug = format!("{id:?}");
        assert!(debug.contains("DeviceIdentity"));
        assert!(!debug.contains(&secret_hex));
        assert!(!debug.contains(&secret_hex[..12]));
    }

    #[test]
    fn identity_key_serde_checks_the_key() {
        let mut rng = StdRng::seed_from_u64(3);
        let key = DeviceIdentity::generate(&mut rng).identity_key();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json.len(), 64 + 2);
        assert_eq!(serde_json::from_str::<IdentityKey>(&json).unwrap(), key);
        // The identity point (small order) is refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("\"{}\"", hex::encode(identity));
        assert!(serde_json::from_str::<IdentityKey>(&weak).is_err());
        assert_eq!(
            IdentityKey::from_bytes(&identity),
            Err(CryptoError::WeakIdentityKey)
        );
    }
}
