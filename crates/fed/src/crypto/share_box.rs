//! Authenticated encryption of one client's Shamir shares to one neighbour,
//! relayed (and so readable) by the server.
//!
//! key = HKDF-SHA256(X25519(c_sender, C_recipient),
//!                   info = "share-box-key" || federation || round || round-info digest
//!                          || cohort digest || sender || recipient || x)
//! ciphertext = ChaCha20-Poly1305(key, nonce = 0, aad = "share-box-aad" || same fields,
//!                                plaintext = σ-share || β-share)
//!
//! The all-zero nonce is safe because every key encrypts exactly one
//! message: both X25519 keys are fresh for the round, the HKDF info fixes the
//! direction (sender, recipient) and the recipient's x-coordinate, and a
//! client's state machine sends its shares once.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::Scalar;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{CryptoError, DeviceId, derive_key, labels, transcript};
use crate::ids::RoundContext;

/// Bytes of a sealed share pair: two 32-byte field elements plus the
/// 16-byte Poly1305 tag.
pub const SEALED_SHARE_LEN: usize = 64 + 16;

/// The two shares a client hands one neighbour, evaluated at that
/// neighbour's x-coordinate. Zeroized on drop.
pub(crate) struct SharePair {
    pub(crate) mask_scalar_share: Scalar,
    pub(crate) self_mask_share: Scalar,
}

impl Drop for SharePair {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.mask_scalar_share.zeroize();
        self.self_mask_share.zeroize();
    }
}

/// Who is sending to whom: the fields every share box is bound to.
#[derive(Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) context: &'a RoundContext,
    /// Digest of the cohort list the sealing (or opening) device was shown:
    /// a share sealed under one view of the cohort opens under no other.
    pub(crate) cohort: &'a [u8; 32],
    pub(crate) sender: &'a DeviceId,
    pub(crate) recipient: &'a DeviceId,
    /// The recipient's Shamir x-coordinate.
    pub(crate) x: u32,
}

impl Envelope<'_> {
    fn parts(&self) -> [Vec<u8>; 4] {
        [
            self.cohort.to_vec(),
            self.sender.as_bytes().to_vec(),
            self.recipient.as_bytes().to_vec(),
            self.x.to_le_bytes().to_vec(),
        ]
    }

    fn cipher(
        &self,
        own: &StaticSecret,
        peer: &PublicKey,
    ) -> Result<ChaCha20Poly1305, CryptoError> {
        let shared = own.diffie_hellman(peer);
        if !shared.was_contributory() {
            return Err(CryptoError::NonContributory);
        }
        let [c, s, r, x] = self.parts();
        let key = derive_key(
            shared.as_bytes(),
            labels::SHARE_BOX_KEY,
            self.context,
            &[&c, &s, &r, &x],
        );
        Ok(ChaCha20Poly1305::new(Key::from_slice(key.as_ref())))
    }

    fn aad(&self) -> Vec<u8> {
        let [c, s, r, x] = self.parts();
        transcript(labels::SHARE_BOX_AAD, self.context, &[&c, &s, &r, &x])
    }
}

/// Seals `shares` from `envelope.sender` (holding `own`) to
/// `envelope.recipient` (whose advertised share key is `peer`).
pub(crate) fn seal(
    own: &StaticSecret,
    peer: &PublicKey,
    envelope: Envelope<'_>,
    shares: &SharePair,
) -> Result<Vec<u8>, CryptoError> {
    let cipher = envelope.cipher(own, peer)?;
    let mut plaintext = Zeroizing::new([0u8; 64]);
    let (a, b) = plaintext.split_at_mut(32);
    a.copy_from_slice(shares.mask_scalar_share.as_bytes());
    b.copy_from_slice(shares.self_mask_share.as_bytes());
    let aad = envelope.aad();
    cipher
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: plaintext.as_ref(),
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Decryption)
}

/// Opens a share box addressed to `envelope.recipient` (holding `own`) from
/// `envelope.sender` (whose advertised share key is `peer`).
pub(crate) fn open(
    own: &StaticSecret,
    peer: &PublicKey,
    envelope: Envelope<'_>,
    ciphertext: &[u8],
) -> Result<SharePair, CryptoError> {
    if ciphertext.len() != SEALED_SHARE_LEN {
        return Err(CryptoError::Decryption);
    }
    let cipher = envelope.cipher(own, peer)?;
    let aad = envelope.aad();
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decryption)?,
    );
    let (a, b) = plaintext
        .split_at_checked(32)
        .ok_or(CryptoError::MalformedPlaintext)?;
    let parse = |half: &[u8]| -> Result<Scalar, CryptoError> {
        let bytes = Zeroizing::new(
            <[u8; 32]>::try_from(half).map_err(|_| CryptoError::MalformedPlaintext)?,
        );
        Option::from(Scalar::from_canonical_bytes(*bytes)).ok_or(CryptoError::MalformedPlaintext)
    };
    Ok(SharePair {
        mask_scalar_share: parse(a)?,
        self_mask_share: parse(b)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ids::{FederationId, RoundId};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    struct Fixture {
        ctx: RoundContext,
        cohort: [u8; 32],
        a: DeviceId,
        b: DeviceId,
        a_secret: StaticSecret,
        b_secret: StaticSecret,
    }

    fn fixture() -> Fixture {
        let mut rng = StdRng::seed_from_u64(5);
        Fixture {
            ctx: RoundContext::new(FederationId::from_bytes([2; 16]), RoundId(8)),
            cohort: [7; 32],
            a: DeviceId::from_bytes([1; 32]),
            b: DeviceId::from_bytes([2; 32]),
            a_secret: StaticSecret::random_from_rng(&mut rng),
            b_secret: StaticSecret::random_from_rng(&mut rng),
        }
    }

    fn pair() -> SharePair {
        SharePair {
            mask_scalar_share: Scalar::from(11u64),
            self_mask_share: Scalar::from(22u64),
        }
    }

    #[test]
    fn seal_then_open_round_trips() {
        let f = fixture();
        let to_b = Envelope {
            context: &f.ctx,
            cohort: &f.cohort,
            sender: &f.a,
            recipient: &f.b,
            x: 2,
        };
        let ct = seal(&f.a_secret, &PublicKey::from(&f.b_secret), to_b, &pair()).unwrap();
        assert_eq!(ct.len(), SEALED_SHARE_LEN);
        let opened = open(&f.b_secret, &PublicKey::from(&f.a_secret), to_b, &ct).unwrap();
        assert_eq!(opened.mask_scalar_share, Scalar::from(11u64));
        assert_eq!(opened.self_mask_share, Scalar::from(22u64));
    }

    #[test]
    fn tampering_or_rebinding_fails() {
        let f = fixture();
        let a_pub = PublicKey::from(&f.a_secret);
        let b_pub = PublicKey::from(&f.b_secret);
        let to_b = Envelope {
            context: &f.ctx,
            cohort: &f.cohort,
            sender: &f.a,
            recipient: &f.b,
            x: 2,
        };
        let ct = seal(&f.a_secret, &b_pub, to_b, &pair()).unwrap();

        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                open(&f.b_secret, &a_pub, to_b, &bad).err(),
                Some(CryptoError::Decryption)
            );
        }
        assert!(open(&f.b_secret, &a_pub, to_b, &ct[..ct.len() - 1]).is_err());

        // Reflected back to the sender as if it came the other way.
        let reflected = Envelope {
            context: &f.ctx,
            cohort: &f.cohort,
            sender: &f.b,
            recipient: &f.a,
            x: 2,
        };
        assert!(open(&f.a_secret, &b_pub, reflected, &ct).is_err());
        // Another x-coordinate or another round.
        let other_x = Envelope { x: 3, ..to_b };
        assert!(open(&f.b_secret, &a_pub, other_x, &ct).is_err());
        let next = RoundContext::new(f.ctx.federation, RoundId(9));
        let other_round = Envelope {
            context: &next,
            ..to_b
        };
        assert!(open(&f.b_secret, &a_pub, other_round, &ct).is_err());
        // Another view of the round's parameters, or of its cohort.
        let other_params = RoundContext::bound(f.ctx.federation, f.ctx.round, [1; 32]);
        let other_view = Envelope {
            context: &other_params,
            ..to_b
        };
        assert!(open(&f.b_secret, &a_pub, other_view, &ct).is_err());
        let padded = [8; 32];
        let other_cohort = Envelope {
            cohort: &padded,
            ..to_b
        };
        assert!(open(&f.b_secret, &a_pub, other_cohort, &ct).is_err());
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let f = fixture();
        let to_b = Envelope {
            context: &f.ctx,
            cohort: &f.cohort,
            sender: &f.a,
            recipient: &f.b,
            x: 2,
        };
        let zero = PublicKey::from([0u8; 32]);
        assert_eq!(
            seal(&f.a_secret, &zero, to_b, &pair()).err(),
            Some(CryptoError::NonContributory)
        );
    }
}
