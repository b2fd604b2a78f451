//! Property tests: the stored-subtree log against a naive recursive
//! RFC 9162 reference, and the verifiers against every single-bit change
//! of their inputs.
//!
//! The reference here is written from the RFC's recursive definitions
//! (MTH, PATH, SUBPROOF), independently of both the log's unrolled
//! recursion and the verifier's bit-twiddling loops.

use hearth_ledger::merkle::{consistency_proof_len, inclusion_proof_len};
use hearth_ledger::{
    Hash, MemoryStore, MerkleLog, empty_root, leaf_hash, node_hash, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole { vec![] } else { vec![mth(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], whole);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// For each proof element, bottom up: is it a left sibling? This is all
/// an inclusion verifier's computation depends on besides the hashes.
fn inclusion_sides(i: u64, n: u64) -> Vec<bool> {
    if n <= 1 {
        return vec![];
    }
    let k = split64(n);
    let mut v = if i < k {
        inclusion_sides(i, k)
    } else {
        inclusion_sides(i - k, n - k)
    };
    v.push(i >= k);
    v
}

/// The shape of a consistency verification, from SUBPROOF: whether the
/// seed is the old root itself, and for each later element whether it is
/// a left sibling (both roots absorb it) or a right one (only the new).
fn consistency_shape(m: u64, n: u64, whole: bool) -> (bool, Vec<bool>) {
    if m == n {
        return (whole, vec![]);
    }
    let k = split64(n);
    let (seed, mut v) = if m <= k {
        consistency_shape(m, k, whole)
    } else {
        consistency_shape(m - k, n - k, false)
    };
    v.push(m > k);
    (seed, v)
}

fn split64(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

fn leaves(n: u64, salt: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| [salt.to_le_bytes(), i.to_le_bytes()].concat())
        .collect()
}

fn build(n: u64, salt: u64) -> (MerkleLog<MemoryStore>, Vec<Hash>) {
    let mut log = MerkleLog::new(MemoryStore::new());
    let mut hashes = Vec::new();
    for data in leaves(n, salt) {
        log.append(&data).expect("append");
        hashes.push(leaf_hash(&data));
    }
    (log, hashes)
}

/// Random sizes up to 300, weighted towards 0, 1, powers of two and their
/// neighbours, where off-by-one errors live.
fn size() -> impl Strategy<Value = u64> {
    let special: Vec<u64> = [0u64, 1]
        .into_iter()
        .chain((1..=8).flat_map(|e| {
            let p = 1u64 << e;
            [p - 1, p, p + 1]
        }))
        .collect();
    prop_oneof![0u64..=300, prop::sample::select(special)]
}

#[test]
fn every_root_up_to_300_matches_naive_mth() {
    let (log, hashes) = build(300, 1);
    for n in 0..=300usize {
        assert_eq!(
            log.root_at(n as u64).expect("root"),
            mth(&hashes[..n]),
            "size {n}"
        );
    }
}

#[test]
fn every_proof_up_to_40_matches_the_rfc_recursion() {
    let (log, hashes) = build(40, 2);
    for n in 1..=40usize {
        for m in 0..n {
            let got = log.inclusion_proof(m as u64, n as u64).expect("proof");
            assert_eq!(got, path(m, &hashes[..n]), "PATH({m}, D[{n}])");
        }
        for m in 1..n {
            let got = log.consistency_proof(m as u64, n as u64).expect("proof");
            assert_eq!(got, subproof(m, &hashes[..n], true), "PROOF({m}, D[{n}])");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn stored_roots_equal_naive_mth(n in size(), salt: u64, pick: u64) {
        let (log, hashes) = build(n, salt);
        let past = pick % (n + 1);
        prop_assert_eq!(log.root_at(past).expect("root"), mth(&hashes[..past as usize]));
        prop_assert_eq!(log.root().expect("root"), mth(&hashes));
        prop_assert!(log.root_at(n + 1).is_err());
    }

    #[test]
    fn inclusion_proofs_verify_and_every_bit_matters(
        n in size(), salt: u64, pick_size: u64, pick_index: u64, bit in 0usize..256,
    ) {
        prop_assume!(n > 0);
        let (log, hashes) = build(n, salt);
        let m = 1 + pick_size % n;
        let i = pick_index % m;
        let root = log.root_at(m).expect("root");
        let leaf = hashes[i as usize];
        let proof = log.inclusion_proof(i, m).expect("proof");
        prop_assert_eq!(&proof, &path(i as usize, &hashes[..m as usize]));
        prop_assert_eq!(inclusion_proof_len(i, m), Some(proof.len()));
        prop_assert_eq!(verify_inclusion(&leaf, i, m, &proof, &root), Ok(()));

        prop_assert!(verify_inclusion(&leaf.flip_bit(bit), i, m, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, i, m, &proof, &root.flip_bit(bit)).is_err());
        for e in 0..proof.len() {
            let mut bad = proof.clone();
            bad[e] = bad[e].flip_bit(bit);
            prop_assert!(verify_inclusion(&leaf, i, m, &bad, &root).is_err());
        }
        // A proof binds the leaf's position, so a changed index fails...
        let sides = inclusion_sides(i, m);
        for b in 0..64 {
            let i2 = i ^ (1 << b);
            let ok = verify_inclusion(&leaf, i2, m, &proof, &root).is_ok();
            prop_assert_eq!(ok, i2 < m && inclusion_sides(i2, m) == sides);
            prop_assert!(!ok);
        }
        // ...but it does not bind the size beyond the shape of the path:
        // (index 0, size 3) and (index 0, size 4) hash the same way. The
        // size is bound by the signed tree head, not the proof. So a
        // changed size must fail exactly when it changes that shape.
        for b in 0..64 {
            let m2 = m ^ (1 << b);
            let ok = verify_inclusion(&leaf, i, m2, &proof, &root).is_ok();
            prop_assert_eq!(ok, i < m2 && inclusion_sides(i, m2) == sides, "size {} -> {}", m, m2);
        }
    }

    #[test]
    fn consistency_proofs_verify_and_every_bit_matters(
        n in size(), salt: u64, pick_new: u64, pick_old: u64, bit in 0usize..256,
    ) {
        let (log, hashes) = build(n, salt);
        let new = pick_new % (n + 1);
        let old = pick_old % (new + 1);
        let (r1, r2) = (log.root_at(old).expect("root"), log.root_at(new).expect("root"));
        let proof = log.consistency_proof(old, new).expect("proof");
        if 0 < old && old < new {
            prop_assert_eq!(&proof, &subproof(old as usize, &hashes[..new as usize], true));
        } else {
            prop_assert!(proof.is_empty());
        }
        prop_assert_eq!(consistency_proof_len(old, new), Some(proof.len()));
        prop_assert_eq!(verify_consistency(old, new, &r1, &r2, &proof), Ok(()));

        prop_assert!(verify_consistency(old, new, &r1.flip_bit(bit), &r2, &proof).is_err());
        if old > 0 {
            // Any tree extends the empty one, whatever its root.
            prop_assert!(verify_consistency(old, new, &r1, &r2.flip_bit(bit), &proof).is_err());
        }
        for e in 0..proof.len() {
            let mut bad = proof.clone();
            bad[e] = bad[e].flip_bit(bit);
            prop_assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
        }
        let mut longer = proof.clone();
        longer.push(r2);
        prop_assert!(verify_consistency(old, new, &r1, &r2, &longer).is_err());

        // As for inclusion, the proof binds the sizes up to the shape of
        // the computation; any change of shape must fail.
        let shape = (0 < old && old < new).then(|| consistency_shape(old, new, true));
        let expected = |o: u64, nw: u64| -> bool {
            if o > nw {
                false
            } else if o == nw {
                proof.is_empty() && r1 == r2
            } else if o == 0 {
                proof.is_empty() && r1 == empty_root()
            } else {
                shape.as_ref() == Some(&consistency_shape(o, nw, true))
            }
        };
        for b in 0..64 {
            let o2 = old ^ (1 << b);
            let ok = verify_consistency(o2, new, &r1, &r2, &proof).is_ok();
            prop_assert_eq!(ok, expected(o2, new), "old {} -> {}", old, o2);
            let n2 = new ^ (1 << b);
            let ok = verify_consistency(old, n2, &r1, &r2, &proof).is_ok();
            prop_assert_eq!(ok, expected(old, n2), "new {} -> {}", new, n2);
        }
    }

    #[test]
    fn arbitrary_inputs_never_panic(
        index: u64, size: u64, old: u64, new: u64,
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..70),
        a: [u8; 32], b: [u8; 32],
    ) {
        let proof: Vec<Hash> = proof.into_iter().map(Hash::from_bytes).collect();
        let (a, b) = (Hash::from_bytes(a), Hash::from_bytes(b));
        prop_assert!(verify_inclusion(&a, index, size, &proof, &b).is_err());
        prop_assert!(verify_consistency(old, new, &a, &b, &proof).is_err() || proof.is_empty());
    }
}
