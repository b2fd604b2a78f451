//! Strided matrix products on the CPU (f32 or f64), straight to `gemm`:
//! the crate's one safe door to the `gemm` crate.
//!
//! candle's own CPU matmul is `gemm` too, but through tensors: every product
//! allocates and zero-fills a fresh output and needs contiguous (or simply
//! transposed) operands. Code that keeps its activations in buffers of its
//! own (the CPU training step, the quantized products, EfficientNet's 1x1
//! convolutions) wants products that read any strided view (a head's
//! columns inside a `(tokens, heads*dim)` matrix, a transposed weight),
//! write or accumulate into a buffer it already has (one holding the bias
//! already), and scale on the way. The `gemm` crate offers exactly that,
//! behind a raw-pointer interface.
//!
//! This module is the only place that calls it, and the only `unsafe` of
//! the kernels. The safety argument, in one place:
//!
//! - every operand is a slice, described by a [`View`] (rows, columns and
//!   strides); [`product`] checks, before the call, that the last element
//!   each view addresses lies inside its slice, and that the destination's
//!   rows do not overlap (`n <= dst_stride`), so distinct output elements
//!   are distinct memory;
//! - the destination is borrowed mutably and the inputs immutably for the
//!   whole call, so nothing else reads or writes them meanwhile (gemm's
//!   rayon workers, when it uses them, are joined before it returns);
//! - the element type is sealed to `f32` and `f64` ([`Element`]), the types
//!   gemm multiplies natively.

use crate::error::{MlError, Result};

/// The element types a product runs in: `f32` and `f64`, sealed so that
/// nothing else reaches `gemm` through this module.
pub(crate) trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// `0`.
    const ZERO: Self;
    /// `1`.
    const ONE: Self;
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

mod sealed {
    /// Keeps [`super::Element`] to the types implemented here.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A read-only `rows x cols` matrix inside a slice: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a, T: Element = f32> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T: Element> View<'a, T> {
    /// A row-major matrix at the start of `data`.
    pub(crate) fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A matrix whose rows are `row_stride` apart (columns contiguous),
    /// such as one head's slice of a `(tokens, heads*dim)` buffer.
    pub(crate) fn rows_apart(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        View {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub(crate) fn t(self) -> Self {
        View {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Whether a product may split its work over rayon's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// All of rayon's threads (a large product from the calling thread).
    All,
    /// This thread only (a small product, or one inside a parallel loop).
    One,
}

/// `dst = beta * lhs · rhs` (or `dst += beta * lhs · rhs` when
/// `accumulate`), where `dst` is row-major with rows `dst_stride` apart.
pub(crate) fn product<T: Element>(
    dst: &mut [T],
    dst_stride: usize,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
    beta: T,
    accumulate: bool,
    threads: Threads,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        return Err(MlError::InvalidRequest(format!(
            "matrix product of {m}x{k} and {}x{n}",
            rhs.rows
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_stride.max(1)).take(m) {
                row[..n].fill(T::ZERO);
            }
        }
        return Ok(());
    }
    if !lhs.fits() || !rhs.fits() || n > dst_stride || (m - 1) * dst_stride + n > dst.len() {
        return Err(MlError::InvalidRequest(format!(
            "a {m}x{k}x{n} matrix product does not fit its buffers"
        )));
    }
    let parallelism = match threads {
        Threads::All if rayon::current_num_threads() > 1 => {
            gemm::Parallelism::Rayon(rayon::current_num_threads())
        }
        _ => gemm::Parallelism::None,
    };
    gemm_checked(
        (m, n, k),
        dst,
        dst_stride,
        lhs,
        rhs,
        (beta, accumulate),
        parallelism,
    );
    Ok(())
}

/// The call itself, once [`product`] has checked every view.
// The `gemm` crate (candle's own matrix product, already built) has only a
// raw-pointer interface; strided, accumulating products are what it adds
// over candle's safe matmul.
#[allow(unsafe_code)]
fn gemm_checked<T: Element>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_stride: usize,
    lhs: View<'_, T>,
    rhs: View<'_, T>,
    (beta, accumulate): (T, bool),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: gemm reads lhs.data[i * lhs.row_stride + l * lhs.col_stride]
    // and rhs.data[l * rhs.row_stride + j * rhs.col_stride], and writes
    // (and, when accumulating, reads) dst[i * dst_stride + j], for i < m,
    // l < k, j < n. `product` checked that the largest of each index lies
    // inside its slice and that n <= dst_stride, so distinct (i, j) are
    // distinct elements of dst. `dst` is borrowed mutably and the inputs
    // immutably for the whole call, so nothing else touches them while
    // gemm (and its rayon workers, joined before it returns) runs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], (m, k): (usize, usize), b: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_views_multiply_like_copies() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32 * 0.11).cos()).collect();
        let expect = naive(&a, (m, k), &b, n);

        let mut out = vec![0f32; m * n];
        product(
            &mut out,
            n,
            View::new(&a, m, k),
            View::new(&b, k, n),
            1.0,
            false,
            Threads::All,
        )
        .expect("product");
        for (x, y) in out.iter().zip(&expect) {
            assert!((x - y).abs() < 1e-5);
        }

        // b stored transposed (n x k), read through a transposed view; the
        // result written into columns 2.. of a wider buffer, accumulated.
        let bt: Vec<f32> = (0..n * k).map(|v| b[(v % k) * n + v / k]).collect();
        let mut wide = vec![1f32; m * (n + 2)];
        product(
            &mut wide[2..],
            n + 2,
            View::new(&a, m, k),
            View::new(&bt, n, k).t(),
            2.0,
            true,
            Threads::One,
        )
        .expect("product");
        for i in 0..m {
            assert_eq!(&wide[i * (n + 2)..i * (n + 2) + 2], &[1.0, 1.0]);
            for j in 0..n {
                let got = wide[i * (n + 2) + 2 + j];
                assert!((got - (1.0 + 2.0 * expect[i * n + j])).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn views_outside_their_buffers_are_refused() {
        let a = vec![0f32; 6];
        let mut out = vec![0f32; 4];
        assert!(
            product(
                &mut out,
                2,
                View::new(&a, 2, 4),
                View::new(&a, 4, 2),
                1.0,
                false,
                Threads::One
            )
            .is_err()
        );
        assert!(
            product(
                &mut out,
                1,
                View::new(&a, 2, 3),
                View::new(&a, 3, 2),
                1.0,
                false,
                Threads::One
            )
            .is_err()
        );
    }
}
