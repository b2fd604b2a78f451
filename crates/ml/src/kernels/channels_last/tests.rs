//! The channels-last kernels against the NCHW kernels (themselves checked
//! against candle's convolutions): f64 for the plain loops, exactly; f32
//! for the SIMD rows, within f32 rounding. Shapes cover whole and partial
//! registers of channels, every group size of pixels, the edges, kernel
//! sizes 1, 3 and 5 and both strides.

use candle_core::{Device, Tensor};

use super::*;
use crate::kernels::{depthwise as planar_depthwise, patches, pointwise as planar_pointwise};
use crate::rng::SplitMix64;

fn random(n: usize, rng: &mut SplitMix64) -> Vec<f64> {
    (0..n)
        .map(|_| f64::from(rng.next_f32()) * 4.0 - 2.0)
        .collect()
}

fn f32s(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

fn to_f64(p: &Pixels<f32>) -> Pixels<f64> {
    Pixels {
        data: p.data.iter().map(|&v| f64::from(v)).collect(),
        h: p.h,
        w: p.w,
        channels: p.channels,
    }
}

fn planes_tensor(p: &Pixels<f64>) -> Tensor {
    Tensor::from_vec(p.to_planes(), (1, p.channels, p.h, p.w), &Device::Cpu).expect("tensor")
}

/// `ours` (f64) equals `reference` to 1e-12, and `ours32` (the same in
/// f32, sums of `terms` products) to f32 rounding.
fn close(ours: &Pixels<f64>, ours32: &Pixels<f32>, reference: &Tensor, terms: usize, what: &str) {
    let theirs = reference
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .expect("reference");
    for (name, ours, tolerance) in [
        ("f64", ours.clone(), 1e-12),
        ("f32", to_f64(ours32), 1e-6 * (terms as f64).sqrt() * 10.0),
    ] {
        assert_eq!(
            planes_tensor(&ours).dims(),
            reference.dims(),
            "{what} {name}"
        );
        for (a, b) in ours.to_planes().iter().zip(&theirs) {
            assert!(
                (a - b).abs() <= tolerance * (1.0 + b.abs()),
                "{what} {name}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn channels_last_kernels_agree_with_the_planar_ones() {
    let mut rng = SplitMix64::new(11);
    for (c, h, w) in [
        (3, 9, 8),
        (83, 7, 7),
        (16, 6, 11),
        (1, 1, 1),
        (144, 4, 3),
        (32, 5, 23),
        (48, 30, 29),
    ] {
        let x = Pixels::from_planes(&random(c * h * w, &mut rng), (c, h, w));
        assert_eq!(Pixels::from_planes(&x.to_planes(), (c, h, w)), x);
        let x32 = Pixels::from_planes(&f32s(&x.to_planes()), (c, h, w));
        let planes = planes_tensor(&x);
        for relu6 in [false, true] {
            for k in [1, 3, 5] {
                for stride in [1, 2] {
                    let wt = random(c * k * k, &mut rng);
                    let b = random(c, &mut rng);
                    let by_tap = transpose(&wt, c);
                    let ours = depthwise(&x, &by_tap, &b, k, stride, relu6, Vec::new())
                        .expect("depthwise");
                    let ours32 = depthwise(
                        &x32,
                        &f32s(&by_tap),
                        &f32s(&b),
                        k,
                        stride,
                        relu6,
                        Vec::new(),
                    )
                    .expect("depthwise f32");
                    let wt = Tensor::from_vec(wt, (c, 1, k, k), &Device::Cpu).expect("w");
                    let b = Tensor::from_vec(b, c, &Device::Cpu).expect("b");
                    let reference =
                        planar_depthwise::conv(&planes, &wt, &b, stride, relu6).expect("reference");
                    close(&ours, &ours32, &reference, k * k, "depthwise");

                    let outs = 20;
                    let wt = random(outs * c * k * k, &mut rng);
                    let b = random(outs, &mut rng);
                    let by_tap = transpose(&wt, outs);
                    let image = x.to_planes();
                    let ours = dense(
                        &image,
                        (c, h, w),
                        &by_tap,
                        &b,
                        (k, stride),
                        relu6,
                        Vec::new(),
                    )
                    .expect("dense");
                    let ours32 = dense(
                        &f32s(&image),
                        (c, h, w),
                        &f32s(&by_tap),
                        &f32s(&b),
                        (k, stride),
                        relu6,
                        Vec::new(),
                    )
                    .expect("dense f32");
                    let weight =
                        Tensor::from_vec(wt, (outs, c * k * k, 1, 1), &Device::Cpu).expect("w");
                    let b = Tensor::from_vec(b, outs, &Device::Cpu).expect("b");
                    let windows = patches::patches(&planes, k, stride)
                        .expect("patches")
                        .expect("cpu");
                    let reference =
                        planar_pointwise::conv(&windows, &weight, &b, relu6).expect("reference");
                    close(&ours, &ours32, &reference, c * k * k, "dense");
                }
            }
            let out = 20;
            let wt = random(out * c, &mut rng);
            let b = random(out, &mut rng);
            let residual = Pixels::from_planes(&random(out * h * w, &mut rng), (out, h, w));
            let residual32 = Pixels::from_planes(&f32s(&residual.to_planes()), (out, h, w));
            let by_input = transpose(&wt, out);
            let ours = pointwise(&x, &by_input, &b, Some(&residual), relu6, Vec::new())
                .expect("pointwise");
            let ours32 = pointwise(
                &x32,
                &f32s(&by_input),
                &f32s(&b),
                Some(&residual32),
                relu6,
                Vec::new(),
            )
            .expect("pointwise f32");
            let wt = Tensor::from_vec(wt, (out, c, 1, 1), &Device::Cpu).expect("w");
            let b = Tensor::from_vec(b, out, &Device::Cpu).expect("b");
            let reference = planar_pointwise::conv(&planes, &wt, &b, false)
                .and_then(|y| Ok((y + planes_tensor(&residual))?))
                .and_then(|y| Ok(if relu6 { y.clamp(0.0, 6.0)? } else { y }))
                .expect("reference");
            close(&ours, &ours32, &reference, c, "pointwise");
        }
    }
}

/// The kernels split a large image into blocks of pixels or rows, on
/// rayon's threads outside the pool and in order inside it; both agree
/// with the plain sums.
#[test]
fn kernels_agree_inside_and_outside_the_pool() {
    let mut rng = SplitMix64::new(12);
    let (c, h, w, out) = (24, 60, 50, 40);
    let x = Pixels::from_planes(&random(c * h * w, &mut rng), (c, h, w));
    let x32 = Pixels::from_planes(&f32s(&x.to_planes()), (c, h, w));
    let wt = random(out * c, &mut rng);
    let b = random(out, &mut rng);
    let dw = random(c * 9, &mut rng);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let outside = pointwise(&x, &wt, &b, None, true, Vec::new()).expect("outside");
    let inside = pool.install(|| pointwise(&x, &wt, &b, None, true, Vec::new()).expect("inside"));
    assert_eq!(outside, inside);
    let depthwise_outside =
        depthwise(&x32, &f32s(&dw), &f32s(&b[..c]), 3, 1, true, Vec::new()).expect("outside");
    let depthwise_inside = pool.install(|| {
        depthwise(&x32, &f32s(&dw), &f32s(&b[..c]), 3, 1, true, Vec::new()).expect("inside")
    });
    assert_eq!(depthwise_outside, depthwise_inside);
    let mut expected = vec![0f64; h * w * out];
    for p in 0..h * w {
        for o in 0..out {
            let dot: f64 = (0..c).map(|i| x.data[p * c + i] * wt[i * out + o]).sum();
            expected[p * out + o] = (dot + b[o]).clamp(0.0, 6.0);
        }
    }
    let worst = expected
        .iter()
        .zip(&inside.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn mismatched_sizes_are_errors() {
    let x = Pixels::from_planes(&[0.0f64; 12], (3, 2, 2));
    assert!(pointwise(&x, &[0.0; 5], &[0.0; 2], None, false, Vec::new()).is_err());
    assert!(depthwise(&x, &[0.0; 26], &[0.0; 3], 3, 1, false, Vec::new()).is_err());
    assert!(depthwise(&x, &[0.0; 27], &[0.0; 3], 3, 0, false, Vec::new()).is_err());
    assert!(
        dense(
            &[0.0f64; 11],
            (3, 2, 2),
            &[0.0; 54],
            &[0.0; 2],
            (3, 2),
            false,
            Vec::new()
        )
        .is_err()
    );
    assert!(
        dense(
            &[0.0f64; 12],
            (3, 2, 2),
            &[0.0; 53],
            &[0.0; 2],
            (3, 2),
            false,
            Vec::new()
        )
        .is_err()
    );
}

#[test]
fn mean_pools_every_pixel() {
    let x = Pixels::from_planes(&[1.0f64, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0], (2, 2, 2));
    assert_eq!(x.mean(), vec![2.5, 10.0]);
}

/// A recycled buffer's old contents (here NaN, longer or shorter than the
/// output) never reach an output.
#[test]
fn recycled_buffers_give_the_same_outputs() {
    let mut rng = SplitMix64::new(13);
    let (c, h, w, out) = (32, 9, 10, 16);
    let x = Pixels::from_planes(&f32s(&random(c * h * w, &mut rng)), (c, h, w));
    let (wt, b) = (
        f32s(&random(c * out, &mut rng)),
        f32s(&random(out, &mut rng)),
    );
    let dw = f32s(&random(c * 25, &mut rng));
    let image = f32s(&random(3 * h * w, &mut rng));
    let stem = f32s(&random(27 * out, &mut rng));
    for len in [0, 7, 100_000] {
        let garbage = || vec![f32::NAN; len];
        assert_eq!(
            pointwise(&x, &wt, &b, Some(&x_out(&x, out)), true, garbage()).expect("pointwise"),
            pointwise(&x, &wt, &b, Some(&x_out(&x, out)), true, Vec::new()).expect("pointwise"),
        );
        assert_eq!(
            depthwise(
                &x,
                &dw,
                &f32s(&random(c, &mut SplitMix64::new(1))),
                5,
                2,
                false,
                garbage()
            )
            .expect("depthwise"),
            depthwise(
                &x,
                &dw,
                &f32s(&random(c, &mut SplitMix64::new(1))),
                5,
                2,
                false,
                Vec::new()
            )
            .expect("depthwise"),
        );
        assert_eq!(
            dense(&image, (3, h, w), &stem, &b, (3, 2), true, garbage()).expect("dense"),
            dense(&image, (3, h, w), &stem, &b, (3, 2), true, Vec::new()).expect("dense"),
        );
    }
}

/// A residual of `out` channels the size of `x`.
fn x_out(x: &Pixels<f32>, out: usize) -> Pixels<f32> {
    Pixels {
        data: (0..x.h * x.w * out).map(|i| (i % 7) as f32 - 3.0).collect(),
        h: x.h,
        w: x.w,
        channels: out,
    }
}
