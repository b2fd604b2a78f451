//! EfficientNet-Lite0 with its published weights (the legacy PyTorch
//! checkpoint in the Hearth model cache) classifies the shared photos as the
//! reference implementation does, with the same probabilities.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use hearth_ml::MlError;
use hearth_ml::vision::{self, EfficientNet, Prediction, load_efficientnet};

fn weights() -> Option<PathBuf> {
    hearth_testdata::fetched_model(&format!("{}/{}", vision::LITE0_DIR, vision::LITE0_FILE))
}

fn photos() -> Option<PathBuf> {
    hearth_testdata::shared("photos")
}

fn model() -> Option<EfficientNet> {
    let path = weights()?;
    let (model, sha256) = load_efficientnet(&path, &Device::Cpu).expect("load Lite0");
    assert_eq!(
        sha256,
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    );
    Some(model)
}

fn show(name: &str, top: &[Prediction]) -> String {
    let classes: Vec<String> = top
        .iter()
        .map(|p| format!("{} {:.3}", p.class, p.probability))
        .collect();
    format!("{name}: {}", classes.join(", "))
}

fn probability(top: &[Prediction], class: usize) -> f32 {
    top.iter()
        .find(|p| p.class == class)
        .map_or(0.0, |p| p.probability)
}

#[test]
fn legacy_checkpoint_holds_every_tensor() {
    let Some(path) = weights() else { return };
    let tensors = vision::load_legacy_pth(&path).expect("read");
    assert_eq!(tensors.len(), 296);
    let shape = |name: &str| tensors[name].dims().to_vec();
    assert_eq!(shape("_conv_stem.weight"), [32, 3, 3, 3]);
    assert_eq!(shape("_blocks.0._depthwise_conv.weight"), [32, 1, 3, 3]);
    assert_eq!(shape("_blocks.15._project_conv.weight"), [320, 1152, 1, 1]);
    assert_eq!(shape("_conv_head.weight"), [1280, 320, 1, 1]);
    assert_eq!(shape("_fc.weight"), [1000, 1280]);
    assert_eq!(tensors["_fc.weight"].dtype(), DType::F32);
    assert_eq!(tensors["_bn0.num_batches_tracked"].dtype(), DType::I64);
    // The file stores convolutions in TensorFlow's layout (strided views):
    // the stem's first output filter reads with stride 32 in the file.
    let first: Vec<f32> = tensors["_conv_stem.weight"]
        .get(0)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("values");
    assert_eq!(first.len(), 27);
    assert!(first.iter().all(|v| v.is_finite()));
}

/// A photo's reference classification (EfficientNet-Lite0, this
/// preprocessing).
struct Reference {
    photo: &'static str,
    top1: usize,
    /// `(class, probability)`.
    probabilities: &'static [(usize, f32)],
}

const REFERENCE: [Reference; 3] = [
    // 282 tiger cat, 285 Egyptian cat, 281 tabby.
    Reference {
        photo: "chelsea.png",
        top1: 282,
        probabilities: &[(282, 0.39), (285, 0.36), (281, 0.17)],
    },
    // 967 espresso.
    Reference {
        photo: "coffee.png",
        top1: 967,
        probabilities: &[(967, 0.95)],
    },
    // 657 missile, then 744 projectile.
    Reference {
        photo: "rocket.jpg",
        top1: 657,
        probabilities: &[(657, 0.30)],
    },
];

#[test]
fn lite0_classifies_the_shared_photos() {
    let Some(dir) = photos() else { return };
    let Some(model) = model() else { return };
    let paths: Vec<PathBuf> = REFERENCE.iter().map(|r| dir.join(r.photo)).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let batch = vision::load_batch(&refs, &Device::Cpu).expect("preprocess");
    assert_eq!(batch.dims(), &[3, 3, 224, 224]);
    let top = model.classify(&batch, 5).expect("classify");
    for (reference, top) in REFERENCE.iter().zip(&top) {
        let name = reference.photo;
        eprintln!("{}", show(name, top));
        assert_eq!(top[0].class, reference.top1, "{}", show(name, top));
        for &(class, p) in reference.probabilities {
            let got = probability(top, class);
            assert!(
                (got - p).abs() < 0.04,
                "{name}: class {class} has probability {got}, reference {p}; {}",
                show(name, top)
            );
        }
    }
    assert_eq!(top[2][1].class, 744, "rocket: projectile second");

    // One image at a time gives the batch's answer.
    let single = model
        .forward(&batch.narrow(0, 1, 1).expect("one"))
        .expect("forward");
    let batched = model.forward(&batch).expect("forward");
    let diff = (single - batched.narrow(0, 1, 1).expect("row"))
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff");
    assert!(diff < 1e-3, "batch of one differs by {diff}");

    // The embedding is the classifier's input.
    let embedding = model.embed(&batch).expect("embed");
    assert_eq!(embedding.dims(), &[3, 1280]);
    let logits = model.logits_from_embedding(&embedding).expect("logits");
    let again = vision::top_k(&logits, 1).expect("top");
    assert_eq!(again[1][0].class, 967);
}

/// A safetensors copy (same names) loads to the same model.
#[test]
fn safetensors_copy_gives_the_same_logits() {
    let Some(path) = weights() else { return };
    let Some(dir) = photos() else { return };
    let tensors = vision::load_legacy_pth(&path).expect("read");
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("lite0.safetensors");
    candle_core::safetensors::save(&tensors, &copy).expect("save");
    let (from_pth, _) = load_efficientnet(&path, &Device::Cpu).expect("pth");
    let (from_st, sha) = load_efficientnet(&copy, &Device::Cpu).expect("safetensors");
    assert_eq!(sha.len(), 64);
    let x = vision::load_image(&dir.join("coffee.png"), &Device::Cpu)
        .and_then(|t| Ok(t.unsqueeze(0)?))
        .expect("image");
    let a = from_pth.forward(&x).expect("a");
    let b = from_st.forward(&x).expect("b");
    let diff = (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff");
    assert_eq!(diff, 0.0);
}

/// Truncated and mangled checkpoints are clear errors, never panics.
#[test]
fn broken_checkpoints_are_clear_errors() {
    let Some(path) = weights() else { return };
    let bytes = std::fs::read(&path).expect("read");
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken.pth");
    for len in [
        0,
        10,
        100,
        5_000,
        42_000,
        47_180,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&broken, &bytes[..len]).expect("write");
        match load_efficientnet(&broken, &Device::Cpu) {
            Err(MlError::BadModel { reason, .. }) => {
                eprintln!("{len} bytes: {reason}");
            }
            other => panic!("{len} bytes: expected BadModel, got {other:?}"),
        }
    }
    // A valid checkpoint of something else.
    let tensors = vision::load_legacy_pth(&path).expect("read");
    let mut partial = tensors.clone();
    partial.remove("_blocks.7._bn1.running_var");
    let st = tmp.path().join("partial.safetensors");
    candle_core::safetensors::save(&partial, &st).expect("save");
    let err = load_efficientnet(&st, &Device::Cpu).expect_err("incomplete");
    assert!(matches!(err, MlError::BadModel { .. }), "{err}");
    assert!(
        err.to_string().contains("_blocks.7._bn1.running_var"),
        "{err}"
    );
}

/// The network computes what an independent PyTorch implementation of the
/// same architecture (written from the paper's description with
/// `torch.nn.functional`, unfolded BatchNorm) computes on the same input:
/// every one of the 1000 logits, when the PyTorch venv is there
/// (`hearth_testdata::torch_python`: under CI it must be).
#[test]
fn matches_an_independent_pytorch_implementation() {
    let Some(path) = weights() else { return };
    let Some(python) = hearth_testdata::torch_python() else {
        return;
    };
    let script = r#"
import sys, math, json, torch
import torch.nn.functional as F
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
stages = [(3,1,1,16,1), (3,2,6,24,2), (5,2,6,40,2), (3,2,6,80,3), (5,1,6,112,3), (5,2,6,192,4), (3,1,6,320,1)]
def same(x, w, s, groups=1):
    k = w.shape[-1]; ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
    return F.conv2d(x, w, None, s, 0, 1, groups)
def bn(x, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-3)
r6 = lambda x: x.clamp(0, 6)
x = torch.sin(torch.arange(3 * 224 * 224, dtype=torch.float64) * 0.001).float().reshape(1, 3, 224, 224)
with torch.no_grad():
    x = r6(bn(same(x, sd["_conv_stem.weight"], 2), "_bn0"))
    i, cin = 0, 32
    for k, s, e, o, n in stages:
        for j in range(n):
            st, p, h = (s if j == 0 else 1), f"_blocks.{i}", x
            if e != 1:
                h = r6(bn(same(h, sd[p + "._expand_conv.weight"], 1), p + "._bn0"))
            h = r6(bn(same(h, sd[p + "._depthwise_conv.weight"], st, h.shape[1]), p + "._bn1"))
            h = bn(same(h, sd[p + "._project_conv.weight"], 1), p + "._bn2")
            x = h + x if st == 1 and cin == o else h
            cin, i = o, i + 1
    x = r6(bn(same(x, sd["_conv_head.weight"], 1), "_bn1")).mean((2, 3))
    print(json.dumps(F.linear(x, sd["_fc.weight"], sd["_fc.bias"])[0].tolist()))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<f32> = serde_json::from_slice(&out.stdout).expect("json");
    let Some(model) = model() else { return };
    let n = 3 * 224 * 224;
    let input: Vec<f32> = (0..n).map(|i| ((i as f64) * 0.001).sin() as f32).collect();
    let x = Tensor::from_vec(input, (1, 3, 224, 224), &Device::Cpu).expect("input");
    let logits: Vec<f32> = model
        .forward(&x)
        .and_then(|l| Ok(l.flatten_all()?.to_vec1()?))
        .expect("forward");
    assert_eq!(logits.len(), expected.len());
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("largest logit difference from PyTorch: {worst:e}");
    assert!(worst < 1e-3, "logits differ from PyTorch by up to {worst}");
}
