//! A client's keys for one round (Bell et al. 2020, round "advertise keys").
//!
//! Each client makes, per round:
//!
//! - a share-encryption X25519 key `c`, used to open the Shamir shares its
//!   neighbours send it;
//! - a mask scalar `σ` (a field element, Shamir-shared), from which the
//!   X25519 mask-agreement secret is *derived* with HKDF;
//! - a self-mask scalar `β` (Shamir-shared), from which the self-mask PRG
//!   seed and a public commitment are derived with HKDF.
//!
//! Sharing field elements and deriving keys from them (rather than sharing
//! the 32-byte keys) keeps Shamir over a prime field exact: the value that is
//! reconstructed is the value that was shared, and the keys follow from it
//! deterministically on the server's side too.
//!
//! X25519 secrets here are `StaticSecret`s because they live across several
//! protocol steps; they never leave the client state that owns them, which is
//! neither `Clone` nor `Serialize`, and they zeroize on drop.

use curve25519_dalek::Scalar;
use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::{CryptoError, DeviceId, DeviceIdentity, derive_key, labels, transcript};
use crate::ids::RoundContext;
use crate::mask::MaskSeed;
use crate::wire::{AdvertiseKeys, RoundInfo};

/// A secret field element: zeroized on drop, never cloned or printed.
pub(crate) struct SecretScalar(Scalar);

impl SecretScalar {
    /// A uniform field element: 64 random bytes reduced mod l (the bias of
    /// the wide reduction is below 2^-250).
    pub(crate) fn random<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut wide = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(wide.as_mut());
        Self(Scalar::from_bytes_mod_order_wide(&wide))
    }

    pub(crate) fn from_scalar(value: Scalar) -> Self {
        Self(value)
    }

    pub(crate) fn expose(&self) -> &Scalar {
        &self.0
    }
}

impl Drop for SecretScalar {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The secret half of a client's round keys.
pub(crate) struct RoundSecrets {
    pub(crate) share_secret: StaticSecret,
    pub(crate) mask_scalar: SecretScalar,
    pub(crate) self_mask_scalar: SecretScalar,
}

/// The public half, as advertised.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoundPublicKeys {
    pub(crate) share_key: PublicKey,
    pub(crate) mask_key: PublicKey,
    pub(crate) self_mask_commitment: [u8; 32],
}

impl RoundSecrets {
    pub(crate) fn generate<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        context: &RoundContext,
        device: &DeviceId,
    ) -> (Self, RoundPublicKeys) {
        let share_secret = StaticSecret::random_from_rng(&mut *rng);
        let mask_scalar = SecretScalar::random(rng);
        let self_mask_scalar = SecretScalar::random(rng);
        let mask_secret = mask_agreement_secret(mask_scalar.expose(), context, device);
        let public = RoundPublicKeys {
            share_key: PublicKey::from(&share_secret),
            mask_key: PublicKey::from(&mask_secret),
            self_mask_commitment: self_mask_commitment(self_mask_scalar.expose(), context, device),
        };
        let secrets = Self {
            share_secret,
            mask_scalar,
            self_mask_scalar,
        };
        (secrets, public)
    }
}

/// The X25519 mask-agreement secret derived from the shared scalar `σ`.
/// The server calls this on a reconstructed `σ` of a dropped client.
pub(crate) fn mask_agreement_secret(
    mask_scalar: &Scalar,
    context: &RoundContext,
    device: &DeviceId,
) -> StaticSecret {
    let okm = derive_key(
        mask_scalar.as_bytes(),
        labels::MASK_AGREEMENT_KEY,
        context,
        &[device.as_bytes()],
    );
    StaticSecret::from(*okm)
}

/// The self-mask PRG seed derived from the shared scalar `β`.
pub(crate) fn self_mask_seed(
    self_mask_scalar: &Scalar,
    context: &RoundContext,
    device: &DeviceId,
) -> MaskSeed {
    let okm = derive_key(
        self_mask_scalar.as_bytes(),
        labels::SELF_MASK_SEED,
        context,
        &[device.as_bytes()],
    );
    MaskSeed::from_bytes(*okm)
}

/// The public commitment to `β`: an HKDF output under a different label from
/// the seed, so it is independent of the seed yet fixed by `β`.
pub(crate) fn self_mask_commitment(
    self_mask_scalar: &Scalar,
    context: &RoundContext,
    device: &DeviceId,
) -> [u8; 32] {
    *derive_key(
        self_mask_scalar.as_bytes(),
        labels::SELF_MASK_COMMITMENT,
        context,
        &[device.as_bytes()],
    )
}

/// Whether a reconstructed `σ` is the one behind the advertised mask key.
pub(crate) fn mask_scalar_matches(
    mask_scalar: &Scalar,
    context: &RoundContext,
    device: &DeviceId,
    advertised: &PublicKey,
) -> bool {
    let secret = mask_agreement_secret(mask_scalar, context, device);
    bool::from(
        PublicKey::from(&secret)
            .as_bytes()
            .ct_eq(advertised.as_bytes()),
    )
}

/// Whether a reconstructed `β` is the one behind the advertised commitment.
pub(crate) fn self_mask_scalar_matches(
    self_mask_scalar: &Scalar,
    context: &RoundContext,
    device: &DeviceId,
    advertised: &[u8; 32],
) -> bool {
    bool::from(self_mask_commitment(self_mask_scalar, context, device).ct_eq(advertised))
}

/// The signed transcript of an advertisement: label, federation, round,
/// device, share key, mask key, self-mask commitment (all fixed width).
fn advertisement_transcript(
    context: &RoundContext,
    device: &DeviceId,
    keys: &RoundPublicKeys,
) -> Vec<u8> {
    transcript(
        labels::ADVERTISE,
        context,
        &[
            device.as_bytes(),
            keys.share_key.as_bytes(),
            keys.mask_key.as_bytes(),
            &keys.self_mask_commitment,
        ],
    )
}

/// The signed advertisement of a client's round keys.
pub(crate) fn sign_advertisement(
    identity: &DeviceIdentity,
    context: &RoundContext,
    keys: &RoundPublicKeys,
) -> AdvertiseKeys {
    let device = identity.device_id();
    let signature = identity.sign(&advertisement_transcript(context, &device, keys));
    AdvertiseKeys {
        federation: context.federation,
        round: context.round,
        device,
        share_key: keys.share_key,
        mask_key: keys.mask_key,
        self_mask_commitment: keys.self_mask_commitment,
        signature,
    }
}

/// Proof, minted only by [`AdvertiseKeys::verify`], that an advertisement's
/// signature verified under its device's identity key for the round as the
/// verifier sees it.
#[derive(Debug)]
pub struct AdvertisementVerified(());

impl AdvertiseKeys {
    /// Checks the signature over this advertisement's transcript with the
    /// identity key its `device` names, for the round `info` describes (its
    /// parameter digest included). Any change to the round, its parameters,
    /// the device or the keys (a replay into another round, a key swapped
    /// by a relay, an advertisement made under another device's view of the
    /// round) fails.
    pub fn verify(&self, info: &RoundInfo) -> Result<AdvertisementVerified, CryptoError> {
        if !info.is_this_round(self.federation, self.round) {
            return Err(CryptoError::BadSignature);
        }
        let key = self.device.identity_key()?;
        let context = info.context();
        let keys = RoundPublicKeys {
            share_key: self.share_key,
            mask_key: self.mask_key,
            self_mask_commitment: self.self_mask_commitment,
        };
        key.verify(
            &advertisement_transcript(&context, &self.device, &keys),
            &self.signature,
        )?;
        Ok(AdvertisementVerified(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ids::{FederationId, RoundId};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn info() -> RoundInfo {
        RoundInfo {
            federation: FederationId::from_bytes([4; 16]),
            round: RoundId(12),
            vector_len: 8,
            min_clients: 3,
            max_clients: 3,
            min_survivors: 2,
            degree: None,
            threshold: None,
            graph_seed: crate::graph::GraphSeed([1; 32]),
            dp: crate::dp::DpConfig {
                clip_norm: 1.0,
                noise_multiplier: 1.0,
            },
            threat_model: None,
        }
    }

    fn setup() -> (DeviceIdentity, RoundContext, RoundSecrets, AdvertiseKeys) {
        let mut rng = StdRng::seed_from_u64(9);
        let identity = DeviceIdentity::generate(&mut rng);
        let ctx = info().context();
        let (secrets, public) = RoundSecrets::generate(&mut rng, &ctx, &identity.device_id());
        let advert = sign_advertisement(&identity, &ctx, &public);
        (identity, ctx, secrets, advert)
    }

    #[test]
    fn advertisement_verifies_and_binds_every_field() {
        let (_, _, _, advert) = setup();
        let info = info();
        assert!(advert.verify(&info).is_ok());

        // The same round with another graph seed (or any other parameter)
        // is another view: the advertisement does not verify in it.
        let other_view = RoundInfo {
            graph_seed: crate::graph::GraphSeed([2; 32]),
            ..info.clone()
        };
        assert_eq!(
            advert.verify(&other_view).unwrap_err(),
            CryptoError::BadSignature
        );
        let noisier = RoundInfo {
            min_survivors: 3,
            ..info.clone()
        };
        assert_eq!(
            advert.verify(&noisier).unwrap_err(),
            CryptoError::BadSignature
        );

        let mut replay = advert.clone();
        replay.round = RoundId(13);
        assert_eq!(replay.verify(&info).unwrap_err(), CryptoError::BadSignature);

        let mut other_fed = advert.clone();
        other_fed.federation = FederationId::from_bytes([5; 16]);
        assert_eq!(
            other_fed.verify(&info).unwrap_err(),
            CryptoError::BadSignature
        );

        let mut swapped = advert.clone();
        swapped.mask_key = advert.share_key;
        assert_eq!(
            swapped.verify(&info).unwrap_err(),
            CryptoError::BadSignature
        );

        let mut commitment = advert.clone();
        commitment.self_mask_commitment[0] ^= 1;
        assert_eq!(
            commitment.verify(&info).unwrap_err(),
            CryptoError::BadSignature
        );

        let mut impostor = advert.clone();
        let mut rng = StdRng::seed_from_u64(10);
        impostor.device = DeviceIdentity::generate(&mut rng).device_id();
        assert_eq!(
            impostor.verify(&info).unwrap_err(),
            CryptoError::BadSignature
        );
    }

    #[test]
    fn reconstructed_scalars_are_checked_against_the_advertisement() {
        let (identity, ctx, secrets, advert) = setup();
        let device = identity.device_id();
        assert!(mask_scalar_matches(
            secrets.mask_scalar.expose(),
            &ctx,
            &device,
            &advert.mask_key
        ));
        assert!(self_mask_scalar_matches(
            secrets.self_mask_scalar.expose(),
            &ctx,
            &device,
            &advert.self_mask_commitment
        ));
        let wrong = secrets.mask_scalar.expose() + Scalar::ONE;
        assert!(!mask_scalar_matches(
            &wrong,
            &ctx,
            &device,
            &advert.mask_key
        ));
        assert!(!self_mask_scalar_matches(
            &wrong,
            &ctx,
            &device,
            &advert.self_mask_commitment
        ));
    }
}
