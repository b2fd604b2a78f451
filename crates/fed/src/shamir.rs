//! Shamir secret sharing over the prime field of order
//! l = 2^252 + 27742317777372353535851937790883648493 (curve25519-dalek's
//! [`Scalar`]), so the field arithmetic is a well-kept crate's, in constant
//! time.
//!
//! A secret `s` is hidden as `f(0)` of a random polynomial `f` of degree
//! `t - 1`; share `i` is `(x_i, f(x_i))` for a nonzero `x_i`. Any `t` shares
//! fix `f` and so `s` (Lagrange interpolation at 0); any `t - 1` shares are
//! consistent with every possible `s`, equally likely, so they say nothing
//! about it.
//!
//! In SecAgg+ the x-coordinate of a share is the holder's position in its
//! sorted cohort plus one; the secrets are the mask scalar `σ` and the
//! self-mask scalar `β` of each client.

use curve25519_dalek::Scalar;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::VartimeMultiscalarMul;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// One share: the point `(x, f(x))`. `x` is never 0 (that is the secret).
///
/// Fewer than `t` shares reveal nothing, so a share may be stored (the
/// server keeps revealed shares in its round state until it unmasks); it is
/// still zeroized on drop and its value is left out of `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The x-coordinate (nonzero).
    pub x: u32,
    /// The polynomial's value at `x`.
    #[serde(with = "crate::wire::encoding::scalar")]
    pub y: Scalar,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.y.zeroize();
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A share is secret material; show only where it sits.
        f.debug_struct("Share")
            .field("x", &self.x)
            .finish_non_exhaustive()
    }
}

/// What can go wrong splitting or reconstructing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShamirError {
    /// A threshold of zero would make the secret public.
    #[error("threshold must be at least 1")]
    ThresholdZero,
    /// More shares needed than will exist.
    #[error("threshold {threshold} exceeds the {shares} shares")]
    ThresholdAboveShares {
        /// The threshold asked for.
        threshold: usize,
        /// The number of shares.
        shares: usize,
    },
    /// x = 0 is where the secret lives; no share may sit there.
    #[error("a share has x = 0")]
    ZeroX,
    /// Two shares at one x: either a duplicate or a contradiction, and
    /// interpolation would divide by zero.
    #[error("two shares have x = {x}")]
    DuplicateX {
        /// The repeated coordinate.
        x: u32,
    },
    /// Fewer than the threshold.
    #[error("{have} shares, {need} needed")]
    TooFewShares {
        /// Shares given.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// No subset of the shares reconstructs a value that passes the check.
    #[error("no {threshold}-subset of the shares passes the check ({tried} tried)")]
    NoConsistentSubset {
        /// The threshold.
        threshold: usize,
        /// Subsets tried.
        tried: usize,
    },
}

/// Splits `secret` into one share per x in `xs`, any `threshold` of which
/// reconstruct it. The polynomial's coefficients are zeroized afterwards.
pub fn split<R: CryptoRngCore + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    xs: &[u32],
    rng: &mut R,
) -> Result<Vec<Share>, ShamirError> {
    let mut coefficients = polynomial(secret, threshold, xs, rng)?;
    let shares = evaluate_at(&coefficients, xs);
    coefficients.zeroize();
    Ok(shares)
}

/// A random polynomial of degree `threshold - 1` with `f(0) = secret`,
/// after checking the threshold and x-coordinates.
fn polynomial<R: CryptoRngCore + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    xs: &[u32],
    rng: &mut R,
) -> Result<Vec<Scalar>, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ThresholdZero);
    }
    if threshold > xs.len() {
        return Err(ShamirError::ThresholdAboveShares {
            threshold,
            shares: xs.len(),
        });
    }
    check_xs(xs.iter().copied())?;
    let mut coefficients = Vec::with_capacity(threshold);
    coefficients.push(*secret);
    for _ in 1..threshold {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        coefficients.push(Scalar::from_bytes_mod_order_wide(&wide));
        wide.zeroize();
    }
    Ok(coefficients)
}

fn evaluate_at(coefficients: &[Scalar], xs: &[u32]) -> Vec<Share> {
    xs.iter()
        .map(|&x| Share {
            x,
            y: evaluate(coefficients, Scalar::from(u64::from(x))),
        })
        .collect()
}

/// A point of a Feldman commitment: a compressed ristretto255 element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommittedPoint(#[serde(with = "crate::wire::encoding::hex_array")] pub [u8; 32]);

/// Feldman's commitments to a sharing polynomial (Feldman, FOCS 1987):
/// `a_j · B` for each coefficient `a_j` of `f`, on ristretto255 (whose
/// group order is the field's `l`, so the shares' arithmetic carries over).
/// Anyone holding them checks a share `(x, y)` with `y · B = Σ x^j (a_j ·
/// B)`: a wrong share is caught and its sender known, instead of being
/// found by trying subsets. The constant term's commitment `s · B` hides
/// `s` as well as the discrete logarithm is hard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Commitments(pub Vec<CommittedPoint>);

impl Commitments {
    /// The threshold the polynomial was made for (its coefficient count).
    pub fn threshold(&self) -> usize {
        self.0.len()
    }

    /// The points, if every one is a valid encoding.
    fn points(&self) -> Option<Vec<RistrettoPoint>> {
        self.0
            .iter()
            .map(|p| CompressedRistretto(p.0).decompress())
            .collect()
    }

    /// Whether every point is a valid group element.
    pub fn is_well_formed(&self) -> bool {
        !self.0.is_empty() && self.points().is_some()
    }

    /// Whether `share` lies on the committed polynomial.
    pub fn verify(&self, share: &Share) -> bool {
        self.verify_all(std::slice::from_ref(share), &mut rand_core::OsRng)
    }

    /// Whether every share lies on the committed polynomial, checked at
    /// once: with random weights `r_i`, `(Σ r_i y_i) · B = Σ_j (Σ_i r_i
    /// x_i^j) (a_j · B)`, one multiscalar product of `t + 1` points however
    /// many shares. A false share passes only with probability `1/l`.
    pub fn verify_all<R: CryptoRngCore + ?Sized>(&self, shares: &[Share], rng: &mut R) -> bool {
        let Some(points) = self.points() else {
            return false;
        };
        if points.is_empty() || shares.iter().any(|s| s.x == 0) {
            return false;
        }
        let mut weighted_y = Scalar::ZERO;
        let mut weights = vec![Scalar::ZERO; points.len()];
        for share in shares {
            let r = if shares.len() == 1 {
                Scalar::ONE
            } else {
                let mut wide = [0u8; 64];
                rng.fill_bytes(&mut wide);
                Scalar::from_bytes_mod_order_wide(&wide)
            };
            weighted_y += r * share.y;
            let x = Scalar::from(u64::from(share.x));
            let mut power = r;
            for weight in weights.iter_mut() {
                *weight += power;
                power *= x;
            }
        }
        let expected = RistrettoPoint::vartime_multiscalar_mul(&weights, &points);
        RistrettoPoint::mul_base(&weighted_y) == expected
    }
}

/// [`split`], with Feldman commitments to the polynomial.
pub fn split_verifiable<R: CryptoRngCore + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    xs: &[u32],
    rng: &mut R,
) -> Result<(Vec<Share>, Commitments), ShamirError> {
    let mut coefficients = polynomial(secret, threshold, xs, rng)?;
    let shares = evaluate_at(&coefficients, xs);
    let commitments = Commitments(
        coefficients
            .iter()
            .map(|c| CommittedPoint(RistrettoPoint::mul_base(c).compress().to_bytes()))
            .collect(),
    );
    coefficients.zeroize();
    Ok((shares, commitments))
}

/// [`split`] at x = 1..=n.
pub fn split_n<R: CryptoRngCore + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    n: u32,
    rng: &mut R,
) -> Result<Vec<Share>, ShamirError> {
    let xs: Vec<u32> = (1..=n).collect();
    split(secret, threshold, &xs, rng)
}

/// Horner's rule: `c_0 + x (c_1 + x (c_2 + ...))`.
fn evaluate(coefficients: &[Scalar], x: Scalar) -> Scalar {
    coefficients
        .iter()
        .rev()
        .fold(Scalar::ZERO, |acc, c| acc * x + c)
}

fn check_xs(xs: impl Iterator<Item = u32>) -> Result<(), ShamirError> {
    let mut seen = std::collections::BTreeSet::new();
    for x in xs {
        if x == 0 {
            return Err(ShamirError::ZeroX);
        }
        if !seen.insert(x) {
            return Err(ShamirError::DuplicateX { x });
        }
    }
    Ok(())
}

/// Reconstructs the secret from the first `threshold` of `shares` by
/// Lagrange interpolation at 0. All shares are validated (nonzero, distinct
/// x) even when more than `threshold` are given.
pub fn reconstruct(shares: &[Share], threshold: usize) -> Result<Scalar, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ThresholdZero);
    }
    check_xs(shares.iter().map(|s| s.x))?;
    let chosen = shares.get(..threshold).ok_or(ShamirError::TooFewShares {
        have: shares.len(),
        need: threshold,
    })?;
    Ok(interpolate_at_zero(chosen))
}

/// Reconstructs from some `threshold`-subset of `shares` whose result passes
/// `check` (a commitment or public-key comparison), trying subsets in
/// lexicographic order and at most `max_subsets` of them. With honest
/// shares the first subset passes; a neighbour that reveals a wrong share is
/// routed around when enough spare shares exist.
pub fn reconstruct_checked(
    shares: &[Share],
    threshold: usize,
    max_subsets: usize,
    check: impl Fn(&Scalar) -> bool,
) -> Result<Scalar, ShamirError> {
    if threshold == 0 {
        return Err(ShamirError::ThresholdZero);
    }
    check_xs(shares.iter().map(|s| s.x))?;
    if shares.len() < threshold {
        return Err(ShamirError::TooFewShares {
            have: shares.len(),
            need: threshold,
        });
    }
    let mut indices: Vec<usize> = (0..threshold).collect();
    let mut tried = 0;
    let mut subset = Vec::with_capacity(threshold);
    while tried < max_subsets {
        subset.clear();
        subset.extend(indices.iter().filter_map(|&i| shares.get(i).cloned()));
        tried += 1;
        let mut candidate = interpolate_at_zero(&subset);
        if check(&candidate) {
            return Ok(candidate);
        }
        candidate.zeroize();
        if !next_combination(&mut indices, shares.len()) {
            break;
        }
    }
    Err(ShamirError::NoConsistentSubset { threshold, tried })
}

/// Advances `indices` (strictly increasing, each < n) to the next
/// combination in lexicographic order; false after the last one.
fn next_combination(indices: &mut [usize], n: usize) -> bool {
    let k = indices.len();
    for pos in (0..k).rev() {
        let limit = n - (k - pos);
        let Some(current) = indices.get(pos).copied() else {
            return false;
        };
        if current < limit {
            for (offset, slot) in indices.iter_mut().skip(pos).enumerate() {
                *slot = current + 1 + offset;
            }
            return true;
        }
    }
    false
}

/// `f(0) = Σ y_i λ_i` with `λ_i = Π_{j≠i} x_j / (x_j − x_i)`.
///
/// Callers have checked the x's are nonzero and distinct, and they are below
/// 2^32 < l, so every numerator and denominator is a nonzero field element
/// and the batch inversion is well defined.
fn interpolate_at_zero(shares: &[Share]) -> Scalar {
    let xs: Vec<Scalar> = shares
        .iter()
        .map(|s| Scalar::from(u64::from(s.x)))
        .collect();
    let mut numerators = Vec::with_capacity(xs.len());
    let mut denominators = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= xj - xi;
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    if !denominators.is_empty() {
        Scalar::batch_invert(&mut denominators);
    }
    shares
        .iter()
        .zip(numerators.iter().zip(&denominators))
        .map(|(share, (num, inv_den))| share.y * num * inv_den)
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;

    fn secret(seed: u64) -> Scalar {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut wide = [0u8; 64];
        rand_core::RngCore::fill_bytes(&mut rng, &mut wide);
        Scalar::from_bytes_mod_order_wide(&wide)
    }

    #[test]
    fn committed_shares_verify_and_wrong_ones_do_not() {
        let mut rng = StdRng::seed_from_u64(77);
        let s = secret(5);
        let xs: Vec<u32> = (1..=7).collect();
        let (shares, commitments) = split_verifiable(&s, 4, &xs, &mut rng).unwrap();
        assert_eq!(commitments.threshold(), 4);
        assert!(commitments.is_well_formed());
        assert_eq!(reconstruct(&shares, 4).unwrap(), s);
        for share in &shares {
            assert!(commitments.verify(share));
        }
        assert!(commitments.verify_all(&shares, &mut rng));
        let mut wrong = shares.clone();
        wrong[3].y += Scalar::ONE;
        assert!(!commitments.verify(&wrong[3]));
        assert!(!commitments.verify_all(&wrong, &mut rng));
        // The right value at another x is wrong there.
        let moved = Share {
            x: 9,
            y: shares[0].y,
        };
        assert!(!commitments.verify(&moved));
        assert!(!commitments.verify(&Share { x: 0, y: s }));
        // Commitments to another polynomial reject these shares.
        let (_, other) = split_verifiable(&s, 4, &xs, &mut rng).unwrap();
        assert!(!other.verify(&shares[0]));
        let mut garbled = commitments.clone();
        garbled.0[1].0 = [0xff; 32];
        assert!(!garbled.is_well_formed());
        assert!(!garbled.verify(&shares[0]));
    }

    proptest! {
        #[test]
        fn any_committed_share_set_verifies_and_any_tampered_one_fails(
            seed in any::<u64>(),
            t in 1usize..6,
            extra in 0usize..4,
            victim in any::<prop::sample::Index>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let xs: Vec<u32> = (1..=(t + extra) as u32).map(|x| x * 3).collect();
            let (mut shares, commitments) = split_verifiable(&secret(seed), t, &xs, &mut rng).unwrap();
            prop_assert!(commitments.verify_all(&shares, &mut rng));
            let i = victim.index(shares.len());
            shares[i].y += Scalar::ONE;
            prop_assert!(!commitments.verify_all(&shares, &mut rng));
            prop_assert!(!commitments.verify(&shares[i]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_t_of_n_reconstruct(seed in any::<u64>(), n in 1u32..14, t_frac in 0.0f64..1.0) {
            let t = 1 + ((f64::from(n) - 1.0) * t_frac) as usize;
            let s = secret(seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut shares = split_n(&s, t, n, &mut rng).unwrap();
            shares.shuffle(&mut rng);
            prop_assert_eq!(reconstruct(&shares[..t], t).unwrap(), s);
            prop_assert_eq!(reconstruct(&shares, t).unwrap(), s);
        }

        #[test]
        fn fewer_than_t_say_nothing(seed in any::<u64>(), n in 2u32..14, t_frac in 0.0f64..1.0) {
            let t = 2 + ((f64::from(n) - 2.0) * t_frac) as usize;
            let s = secret(seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 0xfeed);
            let mut shares = split_n(&s, t, n, &mut rng).unwrap();
            shares.shuffle(&mut rng);
            let few = &shares[..t - 1];
            prop_assert_eq!(
                reconstruct(few, t),
                Err(ShamirError::TooFewShares { have: t - 1, need: t })
            );
            // Interpolating the t-1 points as if they were enough gives an
            // unrelated value (equal to s only with probability 1/l).
            prop_assert_ne!(reconstruct(few, t - 1).unwrap(), s);
        }

        #[test]
        fn duplicates_are_rejected(seed in any::<u64>(), n in 2u32..10) {
            let s = secret(seed);
            let mut rng = StdRng::seed_from_u64(seed);
            let mut shares = split_n(&s, 2, n, &mut rng).unwrap();
            let dup = shares[0].clone();
            shares.push(dup.clone());
            prop_assert_eq!(reconstruct(&shares, 2), Err(ShamirError::DuplicateX { x: dup.x }));
        }
    }

    #[test]
    fn split_validates_its_arguments() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = Scalar::from(5u64);
        assert_eq!(
            split(&s, 0, &[1, 2], &mut rng).err(),
            Some(ShamirError::ThresholdZero)
        );
        assert_eq!(
            split(&s, 3, &[1, 2], &mut rng).err(),
            Some(ShamirError::ThresholdAboveShares {
                threshold: 3,
                shares: 2
            })
        );
        assert_eq!(
            split(&s, 1, &[0, 2], &mut rng).err(),
            Some(ShamirError::ZeroX)
        );
        assert_eq!(
            split(&s, 1, &[2, 2], &mut rng).err(),
            Some(ShamirError::DuplicateX { x: 2 })
        );
    }

    #[test]
    fn checked_reconstruction_routes_around_a_lying_share() {
        let mut rng = StdRng::seed_from_u64(2);
        let s = secret(77);
        let mut shares = split_n(&s, 3, 5, &mut rng).unwrap();
        shares[1].y += Scalar::ONE;
        let got = reconstruct_checked(&shares, 3, 100, |c| *c == s).unwrap();
        assert_eq!(got, s);
        // Plain reconstruction from the first three is wrong.
        assert_ne!(reconstruct(&shares, 3).unwrap(), s);
        // With no way around the lie, it fails cleanly.
        let err = reconstruct_checked(&shares[..3], 3, 100, |c| *c == s).unwrap_err();
        assert_eq!(
            err,
            ShamirError::NoConsistentSubset {
                threshold: 3,
                tried: 1
            }
        );
    }

    #[test]
    fn combinations_are_enumerated_in_order() {
        let mut idx = vec![0, 1];
        let mut all = vec![idx.clone()];
        while next_combination(&mut idx, 4) {
            all.push(idx.clone());
        }
        assert_eq!(
            all,
            vec![
                vec![0, 1],
                vec![0, 2],
                vec![0, 3],
                vec![1, 2],
                vec![1, 3],
                vec![2, 3]
            ]
        );
    }

    #[test]
    fn share_debug_hides_the_value() {
        let share = Share {
            x: 3,
            y: Scalar::from(123456789u64),
        };
        let debug = format!("{share:?}");
        assert!(debug.contains("x: 3"));
        assert!(!debug.contains("y"));
    }
}
