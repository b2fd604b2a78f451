//! The convolution kernels against candle's own convolutions, forward and
//! backward, in f64; in a file of their own so the kernels read without
//! them.

use candle_core::{Device, Tensor, Var};

use super::depthwise::conv;
use super::geometry::same_padding;
use super::patches::patches;
use crate::rng::SplitMix64;

fn random(shape: &[usize], rng: &mut SplitMix64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| f64::from(rng.next_f32()) - 0.5).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("diff")
}

/// A dense convolution as a 1x1 convolution of [`patches`] agrees
/// with candle's, forward and backward, for every kernel size,
/// stride and parity.
#[test]
fn patches_make_a_dense_convolution() {
    let mut rng = SplitMix64::new(4);
    for (c, h, w) in [(3, 7, 7), (2, 8, 8), (3, 9, 6), (1, 1, 1), (3, 2, 3)] {
        for k in [1, 3, 5] {
            for stride in [1, 2] {
                let x = Var::from_tensor(&random(&[2, c, h, w], &mut rng)).expect("x");
                let wt = random(&[4, c, k, k], &mut rng);
                let probe = random(&[2, 4, h.div_ceil(stride), w.div_ceil(stride)], &mut rng);
                let ours = patches(&x, k, stride)
                    .and_then(|p| p.ok_or(crate::error::MlError::InvalidRequest("cpu".into())))
                    .and_then(|p| {
                        let (b, ck, oh, ow) = p.dims4()?;
                        let weight = wt.reshape((4, ck))?.broadcast_left(b)?;
                        Ok(weight
                            .matmul(&p.reshape((b, ck, oh * ow))?)?
                            .reshape((b, 4, oh, ow))?)
                    })
                    .expect("ours");
                let (top, bottom, _) = same_padding(h, k, stride);
                let (left, right, _) = same_padding(w, k, stride);
                let theirs = x
                    .pad_with_zeros(2, top, bottom)
                    .and_then(|t| t.pad_with_zeros(3, left, right))
                    .and_then(|t| t.conv2d(&wt, 0, stride, 1, 1))
                    .expect("candle");
                assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride}");
                assert!(max_diff(&ours, &theirs) < 1e-12, "{h}x{w} k{k} s{stride}");
                let grad = |y: &Tensor| {
                    (y * &probe)
                        .and_then(|t| t.sum_all())
                        .and_then(|t| t.backward())
                        .expect("bwd")
                        .get(&x)
                        .expect("grad")
                        .clone()
                };
                if h == w {
                    let diff = max_diff(&grad(&ours), &grad(&theirs));
                    assert!(diff < 1e-12, "{h}x{w} k{k} s{stride}");
                }
            }
        }
    }
}

/// The kernel and its backward agree with candle's grouped
/// convolution (on explicitly padded input) for every kernel size,
/// stride and parity, square or not.
#[test]
fn matches_candle_grouped_convolution() {
    let mut rng = SplitMix64::new(3);
    // The last is big enough to run on several threads.
    for (c, h, w) in [
        (3, 7, 7),
        (3, 8, 8),
        (3, 9, 6),
        (3, 1, 1),
        (3, 2, 3),
        (8, 40, 40),
    ] {
        for k in [1, 3, 5] {
            for stride in [1, 2] {
                let x = Var::from_tensor(&random(&[2, c, h, w], &mut rng)).expect("x");
                let wt = Var::from_tensor(&random(&[c, 1, k, k], &mut rng)).expect("w");
                let probe = random(&[2, c, h.div_ceil(stride), w.div_ceil(stride)], &mut rng);
                let zero = Tensor::zeros(c, x.dtype(), &Device::Cpu).expect("bias");
                let ours = conv(&x, &wt, &zero, stride, false).expect("ours");
                let (top, bottom, _) = same_padding(h, k, stride);
                let (left, right, _) = same_padding(w, k, stride);
                let theirs = x
                    .pad_with_zeros(2, top, bottom)
                    .and_then(|t| t.pad_with_zeros(3, left, right))
                    .and_then(|t| t.conv2d(&wt, 0, stride, 1, c))
                    .expect("candle");
                assert_eq!(ours.dims(), theirs.dims(), "{h}x{w} k{k} s{stride}");
                assert!(max_diff(&ours, &theirs) < 1e-12, "{h}x{w} k{k} s{stride}");
                let g_ours = (&ours * &probe)
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.backward())
                    .expect("bwd");
                // candle's conv2d backward assumes square inputs;
                // compare gradients where it applies.
                if h == w {
                    let g_theirs = (&theirs * &probe)
                        .and_then(|t| t.sum_all())
                        .and_then(|t| t.backward())
                        .expect("bwd");
                    for v in [&x, &wt] {
                        let a = g_ours.get(v).expect("ours");
                        let b = g_theirs.get(v).expect("theirs");
                        assert!(max_diff(a, b) < 1e-12, "{h}x{w} k{k} s{stride}");
                    }
                }
            }
        }
    }
}
