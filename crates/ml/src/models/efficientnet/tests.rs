//! EfficientNet's tests: configuration, split forwards, BatchNorm folding
//! and gradients against finite differences; apart so the model reads
//! without them.

use super::*;

#[test]
fn same_padding_matches_tensorflow() {
    assert_eq!(same_padding(224, 3, 2), (0, 1, 112));
    assert_eq!(same_padding(112, 3, 1), (1, 1, 112));
    assert_eq!(same_padding(56, 5, 2), (1, 2, 28));
    assert_eq!(same_padding(7, 5, 1), (2, 2, 7));
    assert_eq!(same_padding(7, 3, 2), (1, 1, 4));
    assert_eq!(same_padding(1, 5, 2), (2, 2, 1));
}

#[test]
fn lite0_has_sixteen_blocks_and_the_right_widths() {
    let cfg = Config::lite0();
    let blocks = cfg.blocks();
    assert_eq!(blocks.len(), 16);
    assert_eq!(blocks[0].in_channels, 32);
    assert_eq!(blocks[0].expand_ratio, 1);
    assert_eq!(blocks[15].out_channels, 320);
    assert_eq!(blocks.iter().filter(|b| b.residual()).count(), 9);
    assert_eq!(blocks.iter().filter(|b| b.stride == 2).count(), 4);
}

fn tiny_model(dtype: DType) -> EfficientNet {
    let cfg = Config::tiny();
    let weights = random_weights(&cfg, 7, &Device::Cpu).expect("weights");
    EfficientNet::new(&cfg, VarBuilder::from_tensors(weights, dtype, &Device::Cpu)).expect("model")
}

fn random_input(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| 2.0 * rng.next_f32() - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("input")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("values")
}

#[test]
fn shapes_and_split_forward_agree() {
    let model = tiny_model(DType::F32);
    let x = random_input(&[2, 3, 17, 12], 1, DType::F32);
    let logits = model.forward(&x).expect("forward");
    assert_eq!(logits.dims(), &[2, 5]);
    let embedding = model.embed(&x).expect("embed");
    assert_eq!(embedding.dims(), &[2, 24]);
    // The prefix runs channels last, the tail through the differentiable
    // layers: the same function, summed in another order.
    for k in 0..=model.num_blocks() {
        let h = model.features_until(&x, k).expect("features");
        let tail = model.forward_tail(&h, k).expect("tail");
        for (a, b) in values(&tail).iter().zip(values(&embedding)) {
            assert!(
                (a - b).abs() < 1e-5 * (1.0 + b.abs()),
                "split at {k}: {a} vs {b}"
            );
        }
    }
    assert!(model.features_until(&x, 5).is_err());
    assert!(
        model
            .forward(&random_input(&[1, 4, 8, 8], 1, DType::F32))
            .is_err()
    );
    let top = model.classify(&x, 3).expect("classify");
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].len(), 3);
    assert!(top[0][0].probability >= top[0][1].probability);
}

/// The channels-last pass (embeddings, fine-tuning's frozen prefix)
/// computes what the differentiable layers compute, at Lite0's real
/// shapes (224x224, every block kind and width) in f64, and in f32 as the
/// app runs it.
#[test]
fn the_channels_last_pass_matches_the_differentiable_one_at_lite0() {
    let cfg = Config::lite0();
    let weights = random_weights(&cfg, 3, &Device::Cpu).expect("weights");
    for (dtype, tolerance) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        let vb = VarBuilder::from_tensors(weights.clone(), dtype, &Device::Cpu);
        let model = EfficientNet::new(&cfg, vb).expect("model");
        let x = random_input(&[2, 3, 224, 224], 8, dtype);
        let fast = values(&model.embed(&x).expect("embed"));
        let reference = values(&model.embed_differentiably(&x).expect("reference"));
        assert_eq!(fast.len(), 2 * 1280);
        let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "degenerate embedding");
        for (a, b) in fast.iter().zip(&reference) {
            assert!((a - b).abs() <= tolerance * scale, "{dtype:?}: {a} vs {b}");
        }
        let k = 9;
        let features = model
            .channels_last(&x, Until::Block(k))
            .expect("features")
            .expect("applies");
        let reference = per_image(&x, |x| model.stem_and_blocks(x, k)).expect("reference");
        assert_eq!(features.dims(), reference.dims());
        let (fast, reference) = (values(&features), values(&reference));
        let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (a, b) in fast.iter().zip(&reference) {
            assert!(
                (a - b).abs() <= tolerance * scale,
                "{dtype:?} block {k}: {a} vs {b}"
            );
        }
    }
}

/// With a trainable weight or an input being differentiated, embeddings
/// go through the differentiable layers, so gradients reach them.
#[test]
fn gradients_still_flow_through_embed() {
    let mut model = tiny_model(DType::F32);
    let x = random_input(&[1, 3, 12, 12], 2, DType::F32);
    assert!(
        model
            .channels_last(&x, Until::Embedding)
            .expect("plain")
            .is_some()
    );
    let vars = model.make_trainable(3).expect("trainable");
    assert!(
        model
            .channels_last(&x, Until::Embedding)
            .expect("tail")
            .is_none()
    );
    let grads = model
        .embed(&x)
        .and_then(|e| Ok(e.sum_all()?.backward()?))
        .expect("backward");
    assert!(vars.iter().all(|(_, v)| grads.get(v.as_tensor()).is_some()));
    model.freeze();
    let input = Var::from_tensor(&x).expect("var");
    assert!(
        model
            .channels_last(&input, Until::Embedding)
            .expect("input")
            .is_none()
    );
}

/// Folding BatchNorm into the convolution computes what an unfolded
/// convolution and BatchNorm compute (checked on the stem).
#[test]
fn folded_batch_norm_matches_the_unfolded_layer() {
    let cfg = Config::tiny();
    let weights = random_weights(&cfg, 7, &Device::Cpu).expect("weights");
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F64, &Device::Cpu);
    let stem =
        ConvBn::load(&vb, "_conv_stem", "_bn0", 3, 8, 3, 2, ConvKind::Dense, 1e-3).expect("stem");
    let x = random_input(&[1, 3, 10, 10], 2, DType::F64);
    let ours = stem.forward(&x, false).expect("folded");
    let get = |n: &str| {
        weights[n]
            .to_dtype(DType::F64)
            .and_then(|t| t.reshape((1, (), 1, 1)))
            .expect(n)
    };
    let conv = x
        .pad_with_zeros(2, 0, 1)
        .and_then(|t| t.pad_with_zeros(3, 0, 1))
        .and_then(|t| {
            t.conv2d(
                &weights["_conv_stem.weight"].to_dtype(DType::F64)?,
                0,
                2,
                1,
                1,
            )
        })
        .expect("conv");
    let reference = conv
        .broadcast_sub(&get("_bn0.running_mean"))
        .and_then(|t| t.broadcast_div(&(get("_bn0.running_var") + 1e-3)?.sqrt()?))
        .and_then(|t| t.broadcast_mul(&get("_bn0.weight")))
        .and_then(|t| t.broadcast_add(&get("_bn0.bias")))
        .expect("bn");
    for (a, b) in values(&ours).iter().zip(values(&reference)) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

/// Backward through every layer kind (depthwise stride 1 and 2, kernel 3
/// and 5, residuals, ReLU6, pooling) matches central finite differences
/// in f64, for the input and for trainable weights of every kind.
#[test]
fn gradients_match_finite_differences() {
    let mut model = tiny_model(DType::F64);
    let vars = model.make_trainable(0).expect("trainable");
    let x = Var::from_tensor(&random_input(&[2, 3, 10, 9], 3, DType::F64)).expect("x");
    let probe = random_input(&[2, 5], 4, DType::F64);
    let loss = |model: &EfficientNet| {
        model
            .forward(&x)
            .and_then(|l| Ok((l * &probe)?.sum_all()?))
            .expect("loss")
    };
    let grads = loss(&model).backward().expect("backward");
    let scalar = |t: &Tensor| t.to_scalar::<f64>().expect("scalar");

    let mut checks: Vec<(String, &Var)> = vec![("input".into(), &x)];
    for (name, var) in &vars {
        if name.starts_with("_blocks.0.")
            || name.starts_with("_blocks.1._depthwise")
            || name.starts_with("_blocks.3.")
            || name.starts_with("_conv_head")
        {
            checks.push((name.clone(), var));
        }
    }
    assert!(checks.len() >= 12, "{}", checks.len());
    let eps = 1e-6;
    let mut rng = SplitMix64::new(5);
    for (name, var) in checks {
        let grad = values(grads.get(var.as_tensor()).expect("gradient"));
        assert!(grad.iter().any(|g| *g != 0.0), "{name}: all-zero gradient");
        let original = values(var.as_tensor());
        for _ in 0..4 {
            let index = rng.below(original.len());
            let at = |delta: f64| {
                let mut shifted = original.clone();
                shifted[index] += delta;
                var.set(&Tensor::from_vec(shifted, var.shape(), &Device::Cpu).expect("t"))
                    .expect("set");
                scalar(&loss(&model))
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let analytic = grad[index];
            let tolerance = 1e-7 + 1e-5 * analytic.abs().max(numeric.abs());
            assert!(
                (analytic - numeric).abs() <= tolerance,
                "{name}[{index}]: backward {analytic:e}, finite differences {numeric:e}"
            );
        }
        var.set(&Tensor::from_vec(original, var.shape(), &Device::Cpu).expect("t"))
            .expect("restore");
    }
}
