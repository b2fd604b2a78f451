//! Constrained decoding never writes an invalid query: whatever the logits
//! (here random, the worst a model could do), every finished output of a
//! real model's tokenizer held to [`hearth_ask::lark_grammar`] parses, and
//! checks against the library the grammar was made for.

use std::sync::OnceLock;

use chrono::NaiveDate;
use hearth_ask::{CheckError, LibraryFacts, check, lark_grammar, parse};
use hearth_ml::TextTokenizer;
use hearth_ml::constrain::ConstraintFactory;
use hearth_ml::rng::SplitMix64;
use proptest::prelude::*;

fn facts() -> LibraryFacts {
    LibraryFacts {
        labels: vec![
            "Rex".into(),
            "Grandma".into(),
            "beach day".into(),
            "Zoë \"the cat\"".into(),
        ],
        adapters: vec![(3, Some(7)), (5, None)],
        runs: vec![7, 8],
        taggers: vec![2],
    }
}

/// SmolLM2's tokenizer (byte-level BPE, the default model's).
fn smollm2() -> Option<&'static (TextTokenizer, ConstraintFactory)> {
    static LOADED: OnceLock<Option<(TextTokenizer, ConstraintFactory)>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = hearth_testdata::fetched_model(
                "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
            )?;
            let loaded =
                hearth_ml::load(&path, &hearth_ml::candle::Device::Cpu).expect("load SmolLM2");
            let factory = ConstraintFactory::new(&loaded.tokenizer).expect("vocabulary");
            Some((loaded.tokenizer, factory))
        })
        .as_ref()
}

/// llama2.c's stories260K tokenizer (sentencepiece pieces, byte fallback).
fn stories() -> Option<(TextTokenizer, ConstraintFactory)> {
    let path = hearth_testdata::shared("models/stories260K/stories260K.bin")?;
    let loaded = hearth_ml::load(&path, &hearth_ml::candle::Device::Cpu).expect("load stories");
    let factory = ConstraintFactory::new(&loaded.tokenizer).expect("vocabulary");
    Some((loaded.tokenizer, factory))
}

/// Decodes with random logits under the grammar; the end token gets a
/// bonus so that outputs finish. Returns the text and whether it finished
/// within `budget` tokens.
fn random_decode(
    tokenizer: &TextTokenizer,
    factory: &ConstraintFactory,
    grammar: &str,
    seed: u64,
    budget: usize,
) -> (String, bool) {
    let mut constraint = factory.constraint(grammar).expect("grammar compiles");
    let mut rng = SplitMix64::new(seed);
    let vocab = tokenizer.vocab_size();
    let stop = tokenizer.stop_tokens().to_vec();
    let mut ids = Vec::new();
    for _ in 0..budget {
        let mut logits: Vec<f32> = (0..vocab).map(|_| rng.next_f32() * 10.0).collect();
        for &id in &stop {
            logits[id as usize] += 4.0;
        }
        constraint.mask_logits(&mut logits).expect("mask");
        let next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(id, _)| id as u32)
            .expect("a token");
        assert!(logits[next as usize].is_finite(), "no token was allowed");
        constraint
            .consume(next)
            .expect("an allowed token is accepted");
        if stop.contains(&next) {
            return (tokenizer.decode(&ids).expect("decode"), true);
        }
        ids.push(next);
    }
    (tokenizer.decode(&ids).expect("decode"), false)
}

fn assert_valid(text: &str) {
    let text = text
        .trim_start_matches(' ')
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{text:?} does not end with a line break"));
    let today = NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
    let query = parse(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
    match check(query, &facts(), today) {
        Ok(checked) => assert_eq!(
            checked.canonical(),
            text,
            "the grammar writes canonical form"
        ),
        // The one thing the grammar cannot rule out: `between` with its
        // days in the wrong order.
        Err(CheckError::BackwardsRange { .. }) => assert!(text.contains("between"), "{text}"),
        Err(e) => panic!("{text:?} does not check: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_logits_under_the_grammar_write_valid_queries(seed in any::<u64>()) {
        let Some((tokenizer, factory)) = smollm2() else { return Ok(()) };
        let (text, finished) = random_decode(tokenizer, factory, &lark_grammar(&facts(), true), seed, 400);
        if finished {
            assert_valid(&text);
        }
    }
}

#[test]
fn most_random_walks_finish_and_all_finished_ones_are_valid() {
    let Some((tokenizer, factory)) = smollm2() else {
        return;
    };
    let grammar = lark_grammar(&facts(), true);
    let mut finished = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let (text, done) = random_decode(tokenizer, factory, &grammar, seed, 400);
        if done {
            assert_valid(&text);
            finished += 1;
            kinds.insert(text.split([' ', '(']).next().unwrap_or("").to_owned());
        }
    }
    assert!(finished >= 30, "only {finished} of 40 finished");
    // The walks explore the language, not one corner of it.
    assert!(kinds.len() >= 4, "{kinds:?}");
}

#[test]
fn a_sentencepiece_vocabulary_is_constrained_too() {
    let Some((tokenizer, factory)) = stories() else {
        return;
    };
    let grammar = lark_grammar(&facts(), true);
    for seed in 0..10 {
        let (text, done) = random_decode(&tokenizer, &factory, &grammar, seed, 600);
        if done {
            assert_valid(&text);
        }
    }
}
