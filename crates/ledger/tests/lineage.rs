//! Membership and non-membership proofs over committed item sets.

use hearth_ledger::{
    Hash, ItemProof, ItemSetCommitment, ItemSetRoot, LineageError, Membership, SetProof, empty_root,
};
use proptest::prelude::*;

fn item(n: u64) -> Hash {
    Hash::sha256(&n.to_le_bytes())
}

#[test]
fn empty_set() {
    let set = ItemSetCommitment::new([]);
    let root = set.root();
    assert_eq!(
        root,
        ItemSetRoot {
            root: empty_root(),
            count: 0
        }
    );
    let proof = set.prove(&item(1));
    assert_eq!(proof, SetProof::EmptySet);
    assert_eq!(proof.verify(&item(1), &root), Ok(Membership::Absent));
    // An "empty set" claim against a non-empty commitment fails.
    let one = ItemSetCommitment::new([item(1)]).root();
    assert_eq!(proof.verify(&item(1), &one), Err(LineageError::NotEmpty));
}

#[test]
fn single_element_set() {
    let x = item(7);
    let set = ItemSetCommitment::new([x, x, x]);
    assert_eq!(set.len(), 1);
    let root = set.root();
    assert_eq!(set.prove(&x).verify(&x, &root), Ok(Membership::Present));
    let (below, above) = (Hash::from_bytes([0; 32]), Hash::from_bytes([0xff; 32]));
    let p = set.prove(&below);
    assert!(matches!(p, SetProof::BeforeFirst { .. }));
    assert_eq!(p.verify(&below, &root), Ok(Membership::Absent));
    let p = set.prove(&above);
    assert!(matches!(p, SetProof::AfterLast { .. }));
    assert_eq!(p.verify(&above, &root), Ok(Membership::Absent));
}

#[test]
fn forged_absence_of_a_present_item_fails() {
    let items: Vec<Hash> = (0..50).map(item).collect();
    let set = ItemSetCommitment::new(items.clone());
    let root = set.root();
    let sorted = set.items().to_vec();
    for (i, present) in sorted.iter().enumerate() {
        // Neighbours that skip over the item: not adjacent.
        if i > 0 && i + 1 < sorted.len() {
            let forged = SetProof::Between {
                left: proof_at(&set, i - 1),
                right: proof_at(&set, i + 1),
            };
            assert_eq!(
                forged.verify(present, &root),
                Err(LineageError::WrongPosition)
            );
        }
        // Adjacent neighbours around the item's own slot do not enclose it.
        if i + 1 < sorted.len() {
            let forged = SetProof::Between {
                left: proof_at(&set, i),
                right: proof_at(&set, i + 1),
            };
            assert_eq!(
                forged.verify(present, &root),
                Err(LineageError::NotEnclosed)
            );
        }
        // Lying about a neighbour's index, with its real path, fails.
        if i > 0 && i + 1 < sorted.len() {
            let mut right = proof_at(&set, i + 1);
            right.index = i as u64;
            let forged = SetProof::Between {
                left: proof_at(&set, i - 1),
                right,
            };
            assert!(matches!(
                forged.verify(present, &root),
                Err(LineageError::Inclusion(_))
            ));
        }
        // Claiming it sorts before the first or after the last fails.
        let forged = SetProof::BeforeFirst {
            first: proof_at(&set, 0),
        };
        assert!(forged.verify(present, &root).is_err());
        let forged = SetProof::AfterLast {
            last: proof_at(&set, sorted.len() - 1),
        };
        assert!(forged.verify(present, &root).is_err());
        assert!(SetProof::EmptySet.verify(present, &root).is_err());
    }
    // A membership proof for one item does not prove another.
    let p = set.prove(&sorted[3]);
    assert_eq!(p.verify(&sorted[4], &root), Err(LineageError::WrongItem));
    // Neither does one with a fake item spliced into a real path.
    let mut fake = proof_at(&set, 3);
    fake.item = item(999);
    assert!(SetProof::Present(fake).verify(&item(999), &root).is_err());
}

fn proof_at(set: &ItemSetCommitment, index: usize) -> ItemProof {
    match set.prove(&set.items()[index]) {
        SetProof::Present(p) => p,
        other => panic!("item {index} not present: {other:?}"),
    }
}

#[test]
fn proofs_serialize() {
    let set = ItemSetCommitment::new((0..9).map(item));
    let p = set.prove(&item(1000));
    let json = serde_json::to_string(&p).expect("serialize");
    let back: SetProof = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, p);
    let root: ItemSetRoot =
        serde_json::from_str(&serde_json::to_string(&set.root()).expect("ser")).expect("parse");
    assert_eq!(back.verify(&item(1000), &root), Ok(Membership::Absent));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_item_and_every_gap_proves(
        raw in prop::collection::vec(any::<[u8; 32]>(), 0..80),
        probes in prop::collection::vec(any::<[u8; 32]>(), 1..10),
        dup in any::<bool>(),
    ) {
        let mut items: Vec<Hash> = raw.into_iter().map(Hash::from_bytes).collect();
        if dup && !items.is_empty() {
            items.push(items[0]);
        }
        let set = ItemSetCommitment::new(items.clone());
        let root = set.root();
        prop_assert!(set.len() <= items.len());
        prop_assert_eq!(root.count, set.len() as u64);
        for x in &items {
            let p = set.prove(x);
            prop_assert_eq!(p.verify(x, &root), Ok(Membership::Present));
            // A present item's proof does not verify under a changed root.
            let moved = ItemSetRoot { root: root.root.flip_bit(1), count: root.count };
            prop_assert!(p.verify(x, &moved).is_err());
        }
        for probe in probes.into_iter().map(Hash::from_bytes) {
            let p = set.prove(&probe);
            let want = if set.contains(&probe) { Membership::Present } else { Membership::Absent };
            prop_assert_eq!(p.verify(&probe, &root), Ok(want));
            // The same absence proof says nothing about a present item.
            if want == Membership::Absent {
                for x in &items {
                    prop_assert!(p.verify(x, &root).is_err());
                }
            }
        }
    }
}
