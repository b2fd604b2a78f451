//! 1x1 convolutions, channels last: `gemm` products over blocks of
//! consecutive pixels, the bias (and a residual) written into a block
//! just before the product accumulates onto it, ReLU6 just after.

use rayon::prelude::*;

use super::Pixels;
use crate::error::{MlError, Result};
use crate::kernels::common::{Float, inside_pool, relu6_in_place, vectorized};
use crate::kernels::gemm::{self, Threads, View};

/// Bytes of output (or input) a block of pixels spans, so that it is
/// still in the core's L2 cache when it is clamped.
const BLOCK_BYTES: usize = 256 << 10;

/// `x` through the 1x1 convolution `weight` `(channels, out)`
/// ([`super::transpose`] of a PyTorch weight), plus `bias` `(out,)`, plus
/// `residual` (`out` channels, `x`'s size) if given, then ReLU6 if
/// `relu6`, into `buffer`.
pub(crate) fn pointwise<T: Float>(
    x: &Pixels<T>,
    weight: &[T],
    bias: &[T],
    residual: Option<&Pixels<T>>,
    relu6: bool,
    buffer: Vec<T>,
) -> Result<Pixels<T>> {
    let (c, out, pixels) = (x.channels, bias.len(), x.h * x.w);
    let residual_fits = residual
        .is_none_or(|r| (r.h, r.w, r.channels, r.data.len()) == (x.h, x.w, out, pixels * out));
    if weight.len() != out * c || x.data.len() != pixels * c || !residual_fits {
        return Err(MlError::InvalidRequest(format!(
            "1x1 convolution of {}x{}x{c} pixels with {} weights, {out} biases",
            x.h,
            x.w,
            weight.len()
        )));
    }
    if out == 0 || pixels == 0 {
        return Ok(Pixels {
            data: Vec::new(),
            h: x.h,
            w: x.w,
            channels: out,
        });
    }
    let block = (BLOCK_BYTES / size_of::<T>() / out.max(c).max(1)).max(16);
    // Each pixel's outputs start as the bias (and the residual): one row
    // written, then copied onto itself in doubling runs (a few long
    // copies of values in cache instead of one per pixel).
    let start_rows = |y: &mut Vec<T>, first: usize, rows: usize| match residual {
        Some(r) => {
            for pixel in r.data[first * out..(first + rows) * out].chunks_exact(out) {
                y.extend(pixel.iter().zip(bias).map(|(&r, &b)| r + b));
            }
        }
        None => {
            let at = y.len();
            y.extend_from_slice(bias);
            while y.len() < at + rows * out {
                let copy = (y.len() - at).min(at + rows * out - y.len());
                y.extend_from_within(at..at + copy);
            }
        }
    };
    // Adds the product to rows `first..` already in `y`, then clamps them.
    let product = |y: &mut [T], first: usize| -> Result<()> {
        let rows = y.len() / out.max(1);
        vectorized(
            #[inline(always)]
            || {
                gemm::product(
                    y,
                    out,
                    View::new(&x.data[first * c..(first + rows) * c], rows, c),
                    View::new(weight, c, out),
                    T::ONE,
                    true,
                    Threads::One,
                )?;
                if relu6 {
                    relu6_in_place(y);
                }
                Ok(())
            },
        )
    };
    let mut y = buffer;
    y.clear();
    y.reserve(pixels * out);
    if inside_pool() || pixels <= block {
        for first in (0..pixels).step_by(block) {
            let rows = block.min(pixels - first);
            let at = y.len();
            start_rows(&mut y, first, rows);
            product(&mut y[at..], first)?;
        }
    } else {
        start_rows(&mut y, 0, pixels);
        y.par_chunks_mut(block * out)
            .enumerate()
            .try_for_each(|(i, y)| product(y, i * block))?;
    }
    Ok(Pixels {
        data: y,
        h: x.h,
        w: x.w,
        channels: out,
    })
}
