//! Generation on the default GGUF with a library adapter, as the app's Try
//! screen and `hearth generate` run it: the quantized engine (the f32 model
//! is never built), a base and a personalized pass that differ, and an
//! adapter made for another base model refused with the reason. Skipped
//! with a message when the model is absent; a failure under CI=true.

use std::path::{Path, PathBuf};

use hearth_ml::candle::{Device, Tensor};
use hearth_ml::models::quantized;
use hearth_ml::{LoraAdapter, LoraConfig, ModelInfo, Target, peft};
use hearth_personalize::generate::{GenerateRequest, GenerationEvent, Pass, generate_text};
use hearth_personalize::import_adapter;
use hearth_progress::CancelToken;
use hearth_store::Library;

fn smollm2() -> Option<PathBuf> {
    hearth_testdata::fetched_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A PEFT folder in `dir` with an adapter on every projection whose `B`
/// is far from zero, recorded as made for `base`.
fn write_adapter(dir: &Path, config: &hearth_ml::Config, base: &ModelInfo) {
    let lora = LoraConfig {
        targets: Target::ALL.to_vec(),
        ..LoraConfig::default()
    };
    let adapter = LoraAdapter::new(&lora, config, 5, &Device::Cpu).expect("adapter");
    for (name, var) in adapter.named_vars() {
        if name.contains("lora_B") {
            let shape = var.as_tensor().shape().clone();
            let noise = Tensor::randn(0f32, 0.2, shape, &Device::Cpu).expect("noise");
            var.set(&noise).expect("set");
        }
    }
    peft::save(&adapter, dir, base, None).expect("save");
}

/// Each pass's text, in the order the passes began.
fn run(
    library: &Library,
    request: &GenerateRequest,
) -> hearth_personalize::Result<Vec<(Pass, String)>> {
    let mut passes: Vec<(Pass, String)> = Vec::new();
    generate_text(
        library,
        request,
        &Device::Cpu,
        &mut |event| match event {
            GenerationEvent::Begin { pass } => passes.push((pass, String::new())),
            GenerationEvent::Text { pass, text } => {
                let current = passes.last_mut().expect("a pass began");
                assert_eq!(current.0, pass);
                current.1.push_str(&text);
            }
            _ => {}
        },
        &CancelToken::new(),
    )?;
    Ok(passes)
}

#[test]
fn a_library_adapter_personalizes_the_quantized_model() {
    let Some(path) = smollm2() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut library = Library::open(dir.path().join("library")).expect("library");
    let (model, _) = quantized::load(&path).expect("load");
    let info = ModelInfo::of_gguf(&path).expect("info");

    write_adapter(&dir.path().join("fits"), model.config(), &info);
    let fits = import_adapter(&mut library, &dir.path().join("fits"), None, None).expect("import");
    let request = GenerateRequest {
        prompt: "What is the capital of France?".into(),
        model: Some(path.to_string_lossy().into_owned()),
        adapter_id: Some(fits),
        compare: true,
        max_tokens: 12,
        ..GenerateRequest::default()
    };
    let passes = run(&library, &request).expect("generate");
    let order: Vec<Pass> = passes.iter().map(|(pass, _)| *pass).collect();
    assert_eq!(order, [Pass::Base, Pass::Personalized]);
    let (base, personalized) = (&passes[0].1, &passes[1].1);
    assert!(!base.is_empty() && !personalized.is_empty(), "{passes:?}");
    assert_ne!(
        base, personalized,
        "the adapter changes what the model says"
    );

    let other = ModelInfo {
        sha256: "0".repeat(64),
        ..info.clone()
    };
    write_adapter(&dir.path().join("other"), model.config(), &other);
    let other =
        import_adapter(&mut library, &dir.path().join("other"), None, None).expect("import");
    let err = run(
        &library,
        &GenerateRequest {
            adapter_id: Some(other),
            ..request
        },
    )
    .expect_err("an adapter for another base");
    assert!(err.to_string().contains("trained on base model"), "{err}");
}
