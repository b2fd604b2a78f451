//! Tests of the Llama model (shapes, caching, the fused and differentiable
//! paths agreeing, LoRA), in a file of their own so the model reads without
//! them.

use super::*;
use crate::lora::LoraConfig;

fn tiny_model(cfg: &Config) -> Llama {
    let device = Device::Cpu;
    let weights = random_weights(cfg, 3, &device).expect("weights");
    Llama::new(cfg, VarBuilder::from_tensors(weights, DType::F32, &device)).expect("model")
}

#[test]
fn cached_generation_matches_the_full_forward() {
    for bias in [false, true] {
        let cfg = Config {
            attention_bias: bias,
            ..Config::tiny()
        };
        let model = tiny_model(&cfg);
        let tokens = Tensor::new(&[[1u32, 5, 9, 2, 7, 3]], &Device::Cpu).expect("tokens");
        let full = model.forward(&tokens, Forward::BASE).expect("forward");
        let train = model
            .forward(
                &tokens,
                Forward {
                    mode: Mode::Train,
                    ..Forward::BASE
                },
            )
            .expect("forward");
        let mut cache = KvCache::default();
        let first = model
            .forward_cached(&tokens.narrow(1, 0, 4).expect("narrow"), &mut cache, None)
            .expect("prefill");
        let mut last = first.clone();
        for position in 4..6 {
            last = model
                .forward_cached(
                    &tokens.narrow(1, position, 1).expect("narrow"),
                    &mut cache,
                    None,
                )
                .expect("step");
        }
        let expect_last = full
            .narrow(1, 5, 1)
            .expect("narrow")
            .squeeze(1)
            .expect("squeeze");
        let expect_first = full
            .narrow(1, 3, 1)
            .expect("narrow")
            .squeeze(1)
            .expect("squeeze");
        for (a, b) in [(&last, &expect_last), (&first, &expect_first)] {
            let diff = (a - b)
                .expect("diff")
                .abs()
                .expect("abs")
                .max_all()
                .expect("max");
            assert!(diff.to_scalar::<f32>().expect("scalar") < 1e-4);
        }
        let diff = (&full - &train)
            .expect("diff")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max");
        assert!(
            diff.to_scalar::<f32>().expect("scalar") < 1e-4,
            "train and infer flavours agree"
        );
    }
}

#[test]
fn bf16_weights_compute_close_to_f32() {
    let cfg = Config::tiny();
    let model = tiny_model(&cfg);
    let narrow = model.clone().with_weight_dtype(DType::BF16).expect("bf16");
    assert_eq!(narrow.weight_dtype(), DType::BF16);
    let tokens = Tensor::new(&[[1u32, 5, 9, 2]], &Device::Cpu).expect("tokens");
    let full = model.forward(&tokens, Forward::BASE).expect("f32");
    let half = narrow.forward(&tokens, Forward::BASE).expect("bf16");
    assert_eq!(half.dtype(), DType::F32);
    let diff = (&full - &half)
        .expect("diff")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max");
    assert!(diff.to_scalar::<f32>().expect("scalar") < 0.1);
}

#[test]
fn context_overflow_is_an_error() {
    let model = tiny_model(&Config::tiny());
    let tokens = Tensor::zeros((1, 65), DType::U32, &Device::Cpu).expect("tokens");
    assert!(matches!(
        model.forward(&tokens, Forward::BASE),
        Err(MlError::InvalidRequest(_))
    ));
}

#[test]
fn zero_adapter_leaves_logits_unchanged() {
    let cfg = Config::tiny();
    let model = tiny_model(&cfg);
    let adapter = LoraAdapter::new(&LoraConfig::default(), &cfg, 9, &Device::Cpu).expect("adapter");
    let tokens = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).expect("tokens");
    let base = model.forward(&tokens, Forward::BASE).expect("base");
    let adapted = model
        .forward(&tokens, Forward::infer(Some(&adapter)))
        .expect("adapted");
    let diff = (&base - &adapted)
        .expect("diff")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max");
    assert_eq!(diff.to_scalar::<f32>().expect("scalar"), 0.0);
}
