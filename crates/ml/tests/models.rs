//! Real models load and say what they should: the tiny llama2.c story model
//! from the shared data, and SmolLM2-135M-Instruct from its GGUF package.

use std::path::PathBuf;

use candle_core::Device;
use hearth_ml::generate::{Sampling, generate};

fn stories() -> Option<PathBuf> {
    hearth_testdata::shared("models/stories260K/stories260K.bin")
}

fn smollm2() -> Option<PathBuf> {
    hearth_testdata::fetched_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn stories260k_tells_its_story() {
    let Some(path) = stories() else { return };
    let loaded = hearth_ml::load(&path, &Device::Cpu).expect("load stories260K");
    assert_eq!(loaded.info.format, "llama2c");
    let prompt = [loaded.tokenizer.bos().expect("bos")];
    let sampling = Sampling {
        max_new_tokens: 40,
        ..Sampling::default()
    };
    let mut streamed = String::new();
    let out = generate(&loaded, None, &prompt, &sampling, |piece| {
        streamed.push_str(piece)
    })
    .expect("generate");
    assert_eq!(streamed, out.text);
    assert!(
        out.text
            .starts_with("Once upon a time, there was a little girl named Lily."),
        "{:?}",
        out.text
    );
}

#[test]
fn smollm2_knows_the_capital_of_france() {
    let Some(path) = smollm2() else { return };
    let loaded = hearth_ml::load(&path, &Device::Cpu).expect("load SmolLM2 GGUF");
    let prompt = loaded
        .tokenizer
        .chat_prompt("What is the capital of France?")
        .expect("template")
        .expect("SmolLM2 has a chat template");
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt}");
    let ids = loaded.tokenizer.encode(&prompt, false).expect("encode");
    assert_eq!(ids[0], 1, "<|im_start|> is one special token");
    let sampling = Sampling {
        max_new_tokens: 24,
        ..Sampling::default()
    };
    let out = generate(&loaded, None, &ids, &sampling, |_| {}).expect("generate");
    assert!(out.text.contains("Paris"), "{:?}", out.text);
}

#[test]
fn truncated_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(stories) = stories() {
        let bytes = std::fs::read(&stories).expect("read");
        let cut = dir.path().join("stories260K.bin");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
        std::fs::copy(
            stories.with_file_name("tok512.bin"),
            dir.path().join("tok512.bin"),
        )
        .expect("copy");
        let err = hearth_ml::load(&cut, &Device::Cpu).expect_err("truncated llama2.c");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    if let Some(gguf) = smollm2() {
        let bytes = std::fs::read(&gguf).expect("read");
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).expect("write");
        let err = hearth_ml::load(&cut, &Device::Cpu).expect_err("truncated gguf");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    let model_dir = dir.path().join("hub");
    std::fs::create_dir(&model_dir).expect("mkdir");
    std::fs::write(
        model_dir.join("config.json"),
        r#"{"vocab_size": 64, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4}"#,
    )
    .expect("write");
    let mut header =
        br#"{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}"#.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file.extend_from_slice(&[0u8; 10]);
    std::fs::write(model_dir.join("model.safetensors"), file).expect("write");
    let err = hearth_ml::load(&model_dir, &Device::Cpu).expect_err("truncated safetensors");
    assert!(err.to_string().contains("truncated"), "{err}");
}
