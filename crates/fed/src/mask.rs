//! Masks: pseudorandom vectors in Z_2^32 that hide each client's upload and
//! cancel (or are removed) in the sum.
//!
//! The PRG is the ChaCha20 stream cipher (RustCrypto `chacha20`, IETF
//! variant) keyed by a 32-byte seed with the all-zero nonce; its keystream,
//! read as little-endian u32 words, is the mask. Each seed is an HKDF output
//! bound to its purpose and round, so no two masks share a key and the fixed
//! nonce is never reused under one key.
//!
//! Client `i` uploads `y_i = x_i + PRG(b_i) + Σ_{j ∈ N(i)} ±PRG(s_ij)`, where
//! for each neighbour pair the lower cohort position adds and the higher
//! subtracts, so pairwise masks cancel in `Σ y_i`. The server removes the
//! self masks `PRG(b_i)` of survivors and the pairwise masks of survivors
//! with neighbours that dropped after sharing, from reconstructed seeds.
//!
//! All arithmetic wraps mod 2^32. Applying many masks is done chunk by chunk
//! (one cache-sized block of the output at a time, each seed's keystream
//! sought to that block), in parallel over chunks with rayon, so the output
//! is written once per mask with no per-thread accumulators.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rayon::prelude::*;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{CryptoError, DeviceId, derive_key, labels};
use crate::ids::RoundContext;

/// u32 words per chunk: 64 KiB of output plus 64 KiB of keystream stay in
/// L2 while every mask is applied to the chunk.
const CHUNK_WORDS: usize = 16 * 1024;

/// The longest vector one seed can mask: the IETF ChaCha20 block counter is
/// 32 bits, so one key gives 2^32 blocks of 16 words.
pub const MAX_MASK_LEN: u64 = 1 << 36;

/// A 32-byte PRG seed. Zeroized on drop; not `Clone`, `Debug` or
/// serializable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MaskSeed([u8; 32]);

impl MaskSeed {
    /// A seed from 32 bytes (which should be a KDF output).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// Whether a mask is added to or subtracted from a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskSign {
    /// `v += PRG(seed)`
    Add,
    /// `v -= PRG(seed)`
    Subtract,
}

impl MaskSign {
    /// The sign that undoes this one.
    pub fn opposite(self) -> Self {
        match self {
            Self::Add => Self::Subtract,
            Self::Subtract => Self::Add,
        }
    }
}

/// What can go wrong applying masks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// The vector is longer than one ChaCha20 key can mask.
    #[error("vector of {len} words exceeds the PRG's {MAX_MASK_LEN}")]
    TooLong {
        /// Words asked for.
        len: usize,
    },
}

/// The sign client `own` gives its pairwise mask with `other`, by cohort
/// position: the lower adds, the higher subtracts.
pub fn pairwise_sign(own: u32, other: u32) -> MaskSign {
    if own < other {
        MaskSign::Add
    } else {
        MaskSign::Subtract
    }
}

/// The seed both ends of a neighbour pair derive from their mask keys:
/// HKDF over X25519(own, their) with info binding the round and the pair in
/// a fixed order (lower `DeviceId` first), so both compute the same bytes.
pub(crate) fn pairwise_seed(
    own_secret: &StaticSecret,
    their_public: &PublicKey,
    context: &RoundContext,
    a: &DeviceId,
    b: &DeviceId,
) -> Result<MaskSeed, CryptoError> {
    let shared = own_secret.diffie_hellman(their_public);
    if !shared.was_contributory() {
        return Err(CryptoError::NonContributory);
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let okm = derive_key(
        shared.as_bytes(),
        labels::PAIRWISE_MASK,
        context,
        &[lo.as_bytes(), hi.as_bytes()],
    );
    Ok(MaskSeed::from_bytes(*okm))
}

/// `PRG(seed)` as `len` words.
pub fn expand(seed: &MaskSeed, len: usize) -> Result<Vec<u32>, MaskError> {
    let mut out = vec![0u32; len];
    apply(&mut out, &[(seed, MaskSign::Add)])?;
    Ok(out)
}

/// `acc ±= PRG(seed)` for every `(seed, sign)` in `masks`, wrapping.
pub fn apply(acc: &mut [u32], masks: &[(&MaskSeed, MaskSign)]) -> Result<(), MaskError> {
    if acc.len() as u64 > MAX_MASK_LEN {
        return Err(MaskError::TooLong { len: acc.len() });
    }
    if masks.is_empty() {
        return Ok(());
    }
    let acc_len = acc.len();
    acc.par_chunks_mut(CHUNK_WORDS)
        .enumerate()
        .try_for_each(|(chunk_index, chunk)| {
            let mut keystream = vec![0u8; chunk.len() * 4];
            // Bytes into the keystream where this chunk starts; with the length
            // check above, offset + chunk length <= 4 * MAX_MASK_LEN, so the
            // seek and the keystream are within the cipher's range.
            let offset = (chunk_index * CHUNK_WORDS * 4) as u64;
            let len = acc_len;
            for (seed, sign) in masks {
                let mut cipher = ChaCha20::new(&seed.0.into(), &[0u8; 12].into());
                keystream.fill(0);
                cipher
                    .try_seek(offset)
                    .map_err(|_| MaskError::TooLong { len })?;
                cipher
                    .try_apply_keystream(&mut keystream)
                    .map_err(|_| MaskError::TooLong { len })?;
                let (words, _) = keystream.as_chunks::<4>();
                match sign {
                    MaskSign::Add => {
                        for (a, w) in chunk.iter_mut().zip(words) {
                            *a = a.wrapping_add(u32::from_le_bytes(*w));
                        }
                    }
                    MaskSign::Subtract => {
                        for (a, w) in chunk.iter_mut().zip(words) {
                            *a = a.wrapping_sub(u32::from_le_bytes(*w));
                        }
                    }
                }
            }
            keystream.zeroize();
            Ok(())
        })
}

/// `acc += v`, wrapping: the server's running sum of masked uploads.
pub fn add_into(acc: &mut [u32], v: &[u32]) {
    acc.par_chunks_mut(CHUNK_WORDS)
        .zip(v.par_chunks(CHUNK_WORDS))
        .for_each(|(a, b)| {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.wrapping_add(*y);
            }
        });
}

/// `acc += v` where `v` is given as little-endian bytes (a decoded upload's
/// payload), without materializing `v`.
pub fn add_le_bytes_into(acc: &mut [u32], bytes: &[u8]) {
    acc.par_chunks_mut(CHUNK_WORDS)
        .zip(bytes.par_chunks(CHUNK_WORDS * 4))
        .for_each(|(a, b)| {
            for (x, w) in a.iter_mut().zip(b.as_chunks::<4>().0) {
                *x = x.wrapping_add(u32::from_le_bytes(*w));
            }
        });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ids::{FederationId, RoundId};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn seed(n: u8) -> MaskSeed {
        MaskSeed::from_bytes([n; 32])
    }

    #[test]
    fn expansion_is_the_chacha20_keystream() {
        // The words are the ChaCha20 keystream (nonce 0, counter from 0)
        // read little-endian, across chunk boundaries.
        let len = CHUNK_WORDS * 2 + 5;
        let words = expand(&seed(7), len).unwrap();
        let mut bytes = vec![0u8; len * 4];
        let mut cipher = ChaCha20::new(&[7u8; 32].into(), &[0u8; 12].into());
        cipher.apply_keystream(&mut bytes);
        let expected: Vec<u32> = bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|w| u32::from_le_bytes(*w))
            .collect();
        assert_eq!(words, expected);
        assert_ne!(expand(&seed(8), 16).unwrap(), expand(&seed(7), 16).unwrap());
    }

    #[test]
    fn byte_and_word_sums_agree() {
        let mut rng = StdRng::seed_from_u64(3);
        let v: Vec<u32> = (0..CHUNK_WORDS * 3 + 7).map(|_| rng.r#gen()).collect();
        let bytes: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut a = vec![u32::MAX; v.len()];
        let mut b = a.clone();
        add_into(&mut a, &v);
        add_le_bytes_into(&mut b, &bytes);
        assert_eq!(a, b);
        assert_eq!(a[0], v[0].wrapping_sub(1));
    }

    #[test]
    fn masking_then_unmasking_round_trips() {
        let mut rng = StdRng::seed_from_u64(4);
        let x: Vec<u32> = (0..CHUNK_WORDS + 100).map(|_| rng.r#gen()).collect();
        let mut y = x.clone();
        apply(
            &mut y,
            &[(&seed(1), MaskSign::Add), (&seed(2), MaskSign::Subtract)],
        )
        .unwrap();
        let differs = x.iter().zip(&y).filter(|(a, b)| a != b).count();
        assert!(differs > x.len() * 99 / 100);
        apply(
            &mut y,
            &[(&seed(2), MaskSign::Add), (&seed(1), MaskSign::Subtract)],
        )
        .unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn pairwise_seed_is_symmetric_and_bound_to_the_round() {
        let mut rng = StdRng::seed_from_u64(6);
        let a_secret = StaticSecret::random_from_rng(&mut rng);
        let b_secret = StaticSecret::random_from_rng(&mut rng);
        let (a, b) = (DeviceId::from_bytes([1; 32]), DeviceId::from_bytes([2; 32]));
        let ctx = RoundContext::new(FederationId::from_bytes([0; 16]), RoundId(1));
        let ab = pairwise_seed(&a_secret, &PublicKey::from(&b_secret), &ctx, &a, &b).unwrap();
        let ba = pairwise_seed(&b_secret, &PublicKey::from(&a_secret), &ctx, &b, &a).unwrap();
        assert_eq!(ab.0, ba.0);
        let next = RoundContext::new(ctx.federation, RoundId(2));
        let later = pairwise_seed(&a_secret, &PublicKey::from(&b_secret), &next, &a, &b).unwrap();
        assert_ne!(ab.0, later.0);
        let low_order = PublicKey::from([0u8; 32]);
        assert_eq!(
            pairwise_seed(&a_secret, &low_order, &ctx, &a, &b).err(),
            Some(CryptoError::NonContributory)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Over a random graph, every client masks with every neighbour with
        /// sign by position; the masks cancel in the sum exactly.
        #[test]
        fn pairwise_masks_cancel_for_random_graphs(n in 2usize..9, edge_seed in any::<u64>(), len in 1usize..300) {
            let mut rng = StdRng::seed_from_u64(edge_seed);
            let edges: Vec<(usize, usize)> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .filter(|_| rng.gen_bool(0.5))
                .collect();
            let inputs: Vec<Vec<u32>> = (0..n).map(|_| (0..len).map(|_| rng.r#gen()).collect()).collect();
            let mut expected = vec![0u32; len];
            for x in &inputs {
                add_into(&mut expected, x);
            }
            let seeds: Vec<MaskSeed> = edges.iter().map(|_| MaskSeed::from_bytes(rng.r#gen())).collect();
            let mut total = vec![0u32; len];
            for (i, x) in inputs.iter().enumerate() {
                let mut y = x.clone();
                let masks: Vec<(&MaskSeed, MaskSign)> = edges
                    .iter()
                    .zip(&seeds)
                    .filter_map(|(&(a, b), s)| {
                        if a == i { Some((s, pairwise_sign(a as u32, b as u32))) }
                        else if b == i { Some((s, pairwise_sign(b as u32, a as u32))) }
                        else { None }
                    })
                    .collect();
                apply(&mut y, &masks).unwrap();
                add_into(&mut total, &y);
            }
            prop_assert_eq!(total, expected);
        }
    }
}
