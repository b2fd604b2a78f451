//! Tests of the tagger, in a file of their own so the tagger reads
//! without them.

use super::*;

/// Two clusters in 16 dimensions: "rex" photos lean one way, "receipt"
/// photos another, a few are both.
fn toy(seed: u64, n: usize) -> (Vec<Vec<f32>>, Vec<Vec<Known>>) {
    let mut rng = SplitMix64::new(seed);
    let mut embeddings = Vec::new();
    let mut targets = Vec::new();
    for i in 0..n {
        let (rex, receipt) = (i % 3 != 1, i % 3 != 0);
        let row: Vec<f32> = (0..16)
            .map(|d| {
                let on = (d < 4 && rex) || ((4..8).contains(&d) && receipt);
                let signal = if on { 1.0 } else { 0.0 };
                signal + (rng.next_f32() - 0.5) * 0.6
            })
            .collect();
        embeddings.push(row);
        let known = |yes: bool| {
            if yes {
                Known::Positive
            } else {
                Known::Negative
            }
        };
        targets.push(vec![known(rex), known(receipt)]);
    }
    (embeddings, targets)
}

#[test]
fn learns_a_separable_toy_labelling() {
    let labels = vec!["rex".to_owned(), "receipt".to_owned()];
    let (embeddings, targets) = toy(1, 12);
    let tagger =
        Tagger::train(&labels, &embeddings, &targets, &TaggerConfig::default()).expect("train");
    let (test, truth) = toy(2, 30);
    let mut correct = 0;
    for (row, known) in test.iter().zip(&truth) {
        for suggestion in tagger.suggest(row).expect("suggest") {
            let index = labels
                .iter()
                .position(|l| *l == suggestion.label)
                .expect("label");
            correct += usize::from(suggestion.suggested == (known[index] == Known::Positive));
        }
    }
    assert!(correct >= 57, "{correct}/60 right");
    assert!(
        tagger
            .held_out_accuracy
            .iter()
            .all(|a| a.is_some_and(|a| a >= 0.75)),
        "{:?}",
        tagger.held_out_accuracy
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tagger.json");
    std::fs::write(&path, tagger.to_json().expect("json")).expect("write");
    let back = Tagger::load(&path).expect("load");
    assert_eq!(
        back.suggest(&test[0]).expect("suggest"),
        tagger.suggest(&test[0]).expect("suggest")
    );
}

#[test]
fn too_few_examples_is_a_clear_error() {
    let labels = vec!["rex".to_owned()];
    let err = Tagger::train(
        &labels,
        &[vec![1.0, 0.0], vec![0.0, 1.0]],
        &[vec![Known::Positive], vec![Known::Negative]],
        &TaggerConfig::default(),
    )
    .expect_err("one example");
    assert!(err.to_string().contains("has 1 example photo"), "{err}");
    assert!(Tagger::train(&labels, &[], &[], &TaggerConfig::default()).is_err());
}

#[test]
fn the_head_starts_at_the_label_prototypes_and_stays_near_with_few_examples() {
    let (embeddings, targets) = toy(3, 9);
    let features = FeatureMap::SqrtUnit
        .apply(&embeddings, 16)
        .expect("features");
    let untrained = TaggerConfig {
        steps: 0,
        ..TaggerConfig::default()
    };
    let (weights, _) = fit(&features, 16, &targets, 2, &untrained).expect("fit");
    let (prototype, _) = prototypes(&features, 16, &targets, 2);
    assert_eq!(weights, prototype);
    for label in 0..2 {
        let row = &prototype[label * 16..(label + 1) * 16];
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "label {label}: norm {norm}");
    }
    // Trained, the weights move, but a label with few positives keeps
    // most of its prototype.
    let (trained, _) = fit(&features, 16, &targets, 2, &TaggerConfig::default()).expect("fit");
    assert_ne!(trained, prototype);
    for label in 0..2 {
        let range = label * 16..(label + 1) * 16;
        assert!(cosine(&trained[range.clone()], &prototype[range]) > 0.8);
    }
}

/// Pooled-ReLU-like rows: every value positive, a shared baseline, and
/// `label`'s four dimensions raised (none when `None`).
fn exclusive(rng: &mut SplitMix64, label: Option<usize>) -> Vec<f32> {
    (0..16)
        .map(|d| {
            let on = label.is_some_and(|l| (l * 4..l * 4 + 4).contains(&d));
            0.5 + if on { 1.0 } else { 0.0 } + rng.next_f32() * 0.4
        })
        .collect()
}

#[test]
fn two_photos_per_label_tell_new_photos_apart() {
    // Every pair of rows is alike (cosine above 0.5): the decision
    // rests on each label's bias, which must sit between its photos
    // and the others, not at zero, where everything is everything.
    let labels = vec!["rex".to_owned(), "receipt".to_owned()];
    let mut rng = SplitMix64::new(5);
    let train: Vec<Vec<f32>> = [0, 0, 1, 1]
        .iter()
        .map(|&l| exclusive(&mut rng, Some(l)))
        .collect();
    let known = |l: usize| {
        (0..2)
            .map(|i| {
                if i == l {
                    Known::Positive
                } else {
                    Known::Negative
                }
            })
            .collect::<Vec<_>>()
    };
    let targets: Vec<Vec<Known>> = [0, 0, 1, 1].iter().map(|&l| known(l)).collect();
    let features = FeatureMap::SqrtUnit.apply(&train, 16).expect("features");
    let (weights, bias) = fit(&features, 16, &targets, 2, &TaggerConfig::default()).expect("fit");
    let tagger = Tagger::train(&labels, &train, &targets, &TaggerConfig::default()).expect("train");
    for i in 0..20 {
        let own = i % 2;
        let row = exclusive(&mut rng, Some(own));
        // The head's own scores: above zero for its label only.
        let z = logits_of(
            &weights,
            &bias,
            16,
            &FeatureMap::SqrtUnit
                .apply(std::slice::from_ref(&row), 16)
                .expect("features"),
        );
        assert!(z[own] > 0.0 && z[1 - own] < 0.0, "{z:?}");
        let suggestions = tagger.suggest(&row).expect("suggest");
        let marked: Vec<&str> = suggestions
            .iter()
            .filter(|s| s.suggested)
            .map(|s| s.label.as_str())
            .collect();
        assert_eq!(marked, [labels[own].as_str()], "{suggestions:?}");
    }
}

#[test]
fn a_head_that_learned_nothing_is_unsure() {
    // Labels that go with nothing in the rows: each photo leans its
    // own way. Held out, the head is no better than chance, and its
    // confidences say so instead of passing its raw scores off as
    // certainties.
    let labels = vec!["rex".to_owned(), "receipt".to_owned()];
    let mut rng = SplitMix64::new(6);
    let rows: Vec<Vec<f32>> = (0..4).map(|i| exclusive(&mut rng, Some(i))).collect();
    let targets = vec![
        vec![Known::Positive, Known::Negative],
        vec![Known::Positive, Known::Negative],
        vec![Known::Negative, Known::Positive],
        vec![Known::Negative, Known::Positive],
    ];
    let tagger = Tagger::train(&labels, &rows, &targets, &TaggerConfig::default()).expect("train");
    for row in rows.iter().cloned().chain([exclusive(&mut rng, None)]) {
        for s in tagger.suggest(&row).expect("suggest") {
            assert!(
                (0.35..=0.65).contains(&s.confidence),
                "{s:?} {:?}",
                tagger.calibration
            );
            assert!(!s.suggested, "a label not learned is never marked: {s:?}");
        }
    }
    assert!(
        tagger
            .held_out_accuracy
            .iter()
            .all(|a| a.is_some_and(|a| a <= 0.5)),
        "{:?}",
        tagger.held_out_accuracy
    );
}

#[test]
fn heads_saved_before_the_square_root_keep_their_features() {
    let labels = vec!["rex".to_owned(), "receipt".to_owned()];
    let (embeddings, targets) = toy(4, 12);
    let tagger =
        Tagger::train(&labels, &embeddings, &targets, &TaggerConfig::default()).expect("train");
    let mut json = serde_json::to_value(&tagger).expect("json");
    assert_eq!(json["features"], "sqrt-unit");
    json.as_object_mut().expect("object").remove("features");
    let old: Tagger = serde_json::from_value(json).expect("old format");
    assert_eq!(old.features, FeatureMap::Unit);
}
