//! The sentence embedder against the reference implementation: vectors
//! for fixed sentences computed once by sentence-transformers (PyTorch,
//! CPU) and stored in `fixtures/minilm_reference.json` (how: the script
//! beside it). Needs the fetched model (`scripts/fetch-models.sh`): skipped
//! with a message without it, a failure under CI.

use std::time::Instant;

use hearth_ml::candle::Device;
use hearth_ml::embed::{SentenceEmbedder, cosine};
use serde_json::Value;

const MODEL: &str = "all-minilm-l6-v2";

fn model_dir() -> Option<std::path::PathBuf> {
    hearth_testdata::fetched_model(&format!("{MODEL}/model.safetensors"))
        .and_then(|weights| weights.parent().map(|dir| dir.to_path_buf()))
}

struct Reference {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> (Value, Vec<Reference>) {
    let json: Value = serde_json::from_str(include_str!("fixtures/minilm_reference.json"))
        .expect("fixture parses");
    let sentences = json["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().expect("text").to_owned(),
            tokens: s["tokens"].as_u64().expect("tokens") as usize,
            vector: s["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect();
    (json, sentences)
}

#[test]
fn embeddings_match_the_reference_implementation() {
    let Some(dir) = model_dir() else { return };
    let embedder = SentenceEmbedder::load(&dir, &Device::Cpu).expect("load");
    let (json, sentences) = reference();
    assert_eq!(
        embedder.sha256(),
        json["weights_sha256"].as_str().expect("sha")
    );
    assert_eq!(embedder.dim(), 384);
    assert_eq!(
        embedder.max_tokens() as u64,
        json["max_seq_length"].as_u64().expect("max")
    );

    let texts: Vec<&str> = sentences.iter().map(|s| s.text.as_str()).collect();
    let vectors = embedder.embed(&texts).expect("embed");
    assert_eq!(vectors.len(), sentences.len());
    for (reference, vector) in sentences.iter().zip(&vectors) {
        let similarity = cosine(&reference.vector, vector);
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        let worst = reference
            .vector
            .iter()
            .zip(vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "cosine {similarity:.7}, largest difference {worst:.2e}, norm {norm:.6}: {:?}",
            reference.text.chars().take(40).collect::<String>()
        );
        assert!(
            similarity > 0.999,
            "cosine {similarity} for {:?}",
            reference.text
        );
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        let cut = reference.tokens.min(embedder.max_tokens());
        assert_eq!(
            embedder
                .token_count(&reference.text)
                .expect("count")
                .min(embedder.max_tokens()),
            cut,
            "tokens of {:?}",
            reference.text
        );
    }

    // One at a time gives the same vectors as the padded batch.
    for (text, batched) in texts.iter().zip(&vectors) {
        let alone = embedder.embed_one(text).expect("embed one");
        assert!(cosine(&alone, batched) > 0.99999, "{text:?}");
    }
}

#[test]
fn odd_input_is_embedded_or_refused_cleanly() {
    let Some(dir) = model_dir() else { return };
    let embedder = SentenceEmbedder::load(&dir, &Device::Cpu).expect("load");
    assert!(embedder.embed(&[]).expect("nothing").is_empty());
    let huge = "taxes ".repeat(20_000);
    let odd = ["", " \n\t ", "\u{0}\u{1}", &huge, "🍣🍣🍣"];
    let vectors = embedder.embed(&odd).expect("embed odd input");
    assert_eq!(vectors.len(), odd.len());
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        assert!(vector.iter().all(|v| v.is_finite()));
    }
    assert!(embedder.token_count(&huge).expect("count") > embedder.max_tokens());
}

#[test]
fn meaning_is_closer_than_wording() {
    let Some(dir) = model_dir() else { return };
    let embedder = SentenceEmbedder::load(&dir, &Device::Cpu).expect("load");
    let notes = [
        "Receipts for the 2023 tax return are in the blue folder.",
        "Rex ran along the beach at sunset, chasing the waves.",
        "Simmer the onions slowly, then add the tomatoes and basil.",
    ];
    let start = Instant::now();
    let vectors = embedder.embed(&notes).expect("embed");
    eprintln!(
        "{} notes in {:.1} ms",
        notes.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    for (query, expected) in [
        ("paying the government what I owe", 0),
        ("a day at the seaside with my dog", 1),
        ("a recipe for dinner", 2),
    ] {
        let q = embedder.embed_one(query).expect("query");
        let best = vectors
            .iter()
            .enumerate()
            .max_by(|a, b| cosine(&q, a.1).total_cmp(&cosine(&q, b.1)))
            .map(|(i, _)| i);
        assert_eq!(best, Some(expected), "{query:?}");
    }
}

/// The figure in docs/ask.md: milliseconds per note for a batch of real
/// notes (Shakespeare's speeches from the shared data), and per query.
#[test]
fn embedding_time_per_note() {
    let Some(dir) = model_dir() else { return };
    let Some(text) = hearth_testdata::shared("text/tinyshakespeare.txt") else {
        return;
    };
    let text = std::fs::read_to_string(text).expect("read");
    let notes: Vec<&str> = text.split("\n\n").take(64).collect();
    let embedder = SentenceEmbedder::load(&dir, &Device::Cpu).expect("load");
    embedder.embed(&notes[..4]).expect("warm up");
    let start = Instant::now();
    let vectors = embedder.embed(&notes).expect("embed");
    let batch_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(vectors.len(), notes.len());
    let start = Instant::now();
    for query in ["taxes", "a day at the seaside", "what to cook for dinner"] {
        embedder.embed_one(query).expect("query");
    }
    let query_ms = start.elapsed().as_secs_f64() * 1e3 / 3.0;
    let words: usize = notes.iter().map(|n| n.split_whitespace().count()).sum();
    eprintln!(
        "{} notes ({:.0} words each on average): {:.1} ms per note in batches; a short query {:.1} ms",
        notes.len(),
        words as f64 / notes.len() as f64,
        batch_ms / notes.len() as f64,
        query_ms
    );
}
