//! Integer dot products of quantized weights with 16-bit activations.
//!
//! Widening every 4-bit weight to f32 made decoding compute-bound (two
//! conversions and a multiply-add per weight). Here each token's
//! activations are quantized once per block of 32 to `x ≈ d·q` with `q` an
//! i16 ([`QVector`]), and a block of weights times a block of activations
//! is an integer dot product, scaled once:
//!
//! - Q4_1 (`w = d_w·q_w + m_w`): `d_w·d_x·Σ q_w·q_x + m_w·d_x·Σ q_x`, the
//!   second term from the block's stored `d_x·Σ q_x`;
//! - Q8_0 (`w = d_w·q_w`): `d_w·d_x·Σ q_w·q_x`.
//!
//! llama.cpp quantizes activations to 8 bits (Q8_1) for its byte-wise
//! products; on SmolLM2-135M that moved the logits by up to 0.7 and
//! changed the greedy answer to "What is the capital of France?"
//! (`tests/quantized.rs`), so the activations here keep 16 bits: a
//! rounding of at most `d_x/2` with `d_x = max|x|/32767`, below f32's own
//! summation noise at these widths. A block is one `vpmaddwd` (16-bit
//! pairs to 32-bit sums) with AVX-512, two with AVX2, through pulp's safe
//! intrinsics;
//! elsewhere a portable loop does the same integer arithmetic, so both are
//! exact up to the f32 accumulation order.

use super::BLOCK;

/// Largest quantized magnitude: a block's largest value maps to it.
const QMAX: f32 = 32767.0;

/// A vector quantized to 16 bits per block of [`BLOCK`] values: value `j`
/// of block `b` is about `d[b]·qs[b·32 + j]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QVector {
    d: Vec<f32>,
    /// `d[b]·Σ_j q_bj`, Q4_1's offset term.
    sum: Vec<f32>,
    qs: Vec<i16>,
}

impl QVector {
    /// `x` (a whole number of blocks) quantized: per block the scale that
    /// maps the largest magnitude to [`QMAX`], values rounded to the nearest
    /// step (ties to even). A block holding a NaN or an infinity gets a NaN
    /// scale, so the products it enters are NaN, as the f32 product's
    /// would be.
    pub(crate) fn quantize(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut d = Vec::with_capacity(blocks);
        let mut sum = Vec::with_capacity(blocks);
        let mut qs = vec![0i16; blocks * BLOCK];
        // Vectorised: decoding quantizes ~100k activations a token for
        // SmolLM2, on the pass's own thread while the others wait.
        crate::fastmath::vectorized(
            #[inline(always)]
            || {
                for (block, q) in x.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)) {
                    if block.iter().any(|v| !v.is_finite()) {
                        d.push(f32::NAN);
                        sum.push(f32::NAN);
                        continue;
                    }
                    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = amax / QMAX;
                    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                    let mut total = 0i32;
                    for (q, &v) in q.iter_mut().zip(block) {
                        // |v·inverse| <= QMAX up to rounding, so the
                        // integer fits.
                        *q = crate::fastmath::round_small(v * inverse) as i16;
                        total += i32::from(*q);
                    }
                    d.push(scale);
                    sum.push(scale * total as f32);
                }
            },
        );
        QVector { d, sum, qs }
    }

    /// `d·Σq` per block.
    pub(crate) fn sums(&self) -> &[f32] {
        &self.sum
    }

    /// The scale `d` per block.
    pub(crate) fn scales(&self) -> &[f32] {
        &self.d
    }

    /// The values this vector stands for, `d·q`.
    #[cfg(test)]
    pub(crate) fn dequantized(&self) -> Vec<f32> {
        self.qs
            .chunks_exact(BLOCK)
            .zip(&self.d)
            .flat_map(|(q, &d)| q.iter().map(move |&q| d * f32::from(q)))
            .collect()
    }
}

/// The dot-product code this CPU runs, chosen once per product.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU has.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            return Kernel::Avx512(simd);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Kernel::Avx2(simd);
        }
        Kernel::Portable
    }

    /// Runs `f` compiled for this kernel's instruction set, so the dot
    /// products inlined into it use it. `f` must be `#[inline(always)]`.
    #[inline(always)]
    pub(crate) fn run<R>(self, f: impl FnOnce(Self) -> R) -> R {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => simd.vectorize(
                #[inline(always)]
                || f(self),
            ),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => simd.vectorize(
                #[inline(always)]
                || f(self),
            ),
            Kernel::Portable => crate::fastmath::vectorized(
                #[inline(always)]
                || f(self),
            ),
        }
    }

    /// `Σ_b d_b·d_x,b·Σ_j q_bj·q_x,bj` over one Q4_1 row for each of the
    /// `N` vectors `xs`: `qs` the row's nibbles (16 bytes a block, low
    /// nibbles first), `d` its scales. The offset term `Σ_b m_b·sum_b` is
    /// the caller's. Several vectors at once unpack each block once (a
    /// prompt's tokens); every vector has the row's number of blocks.
    #[inline(always)]
    pub(crate) fn dot_q4_1<const N: usize>(
        self,
        qs: &[u8],
        d: &[f32],
        xs: [&QVector; N],
    ) -> [f32; N] {
        let (qs, _) = qs.as_chunks::<16>();
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => avx512::dot(simd, qs, d, xs, avx512::unpack_q4_1),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => avx2::dot(simd, qs, d, xs, avx2::unpack_q4_1),
            Kernel::Portable => xs.map(
                #[inline(always)]
                |x| {
                    let (xq, _) = x.qs.as_chunks::<BLOCK>();
                    let mut total = 0f32;
                    for (((q, &dw), xq), &dx) in qs.iter().zip(d).zip(xq).zip(&x.d) {
                        let mut s = 0i32;
                        for j in 0..16 {
                            s += i32::from(q[j] & 15) * i32::from(xq[j])
                                + i32::from(q[j] >> 4) * i32::from(xq[j + 16]);
                        }
                        total += dw * dx * s as f32;
                    }
                    total
                },
            ),
        }
    }

    /// `Σ_b d_b·d_x,b·Σ_j q_bj·q_x,bj` over one Q8_0 row for each of `xs`.
    #[inline(always)]
    pub(crate) fn dot_q8_0<const N: usize>(
        self,
        qs: &[i8],
        d: &[f32],
        xs: [&QVector; N],
    ) -> [f32; N] {
        let (qs, _) = qs.as_chunks::<BLOCK>();
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => avx512::dot(simd, qs, d, xs, avx512::unpack_q8_0),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => avx2::dot(simd, qs, d, xs, avx2::unpack_q8_0),
            Kernel::Portable => xs.map(
                #[inline(always)]
                |x| {
                    let (xq, _) = x.qs.as_chunks::<BLOCK>();
                    let mut total = 0f32;
                    for (((q, &dw), xq), &dx) in qs.iter().zip(d).zip(xq).zip(&x.d) {
                        let s: i32 = q
                            .iter()
                            .zip(xq)
                            .map(|(&w, &x)| i32::from(w) * i32::from(x))
                            .sum();
                        total += dw * dx * s as f32;
                    }
                    total
                },
            ),
        }
    }
}

impl Kernel {
    /// `Σ_b s_b·Σ_j q_bj·q_x,bj` over one Q4_1 row and one vector `x`,
    /// with each block's two scales already multiplied into `s`
    /// (`d_b·d_x,b`): decoding's product, where the multiply per block
    /// would otherwise sit in the loop. The offset term is the caller's.
    #[inline(always)]
    pub(crate) fn dot_q4_1_scaled(self, qs: &[u8], s: &[f32], x: &QVector) -> f32 {
        let (qs, _) = qs.as_chunks::<16>();
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => avx512::dot_scaled(simd, qs, s, &x.qs, avx512::unpack_q4_1),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => avx2::dot_scaled(simd, qs, s, &x.qs, avx2::unpack_q4_1),
            Kernel::Portable => {
                let (xq, _) = x.qs.as_chunks::<BLOCK>();
                let mut total = 0f32;
                for ((q, &s), xq) in qs.iter().zip(s).zip(xq) {
                    let mut sum = 0i32;
                    for j in 0..16 {
                        sum += i32::from(q[j] & 15) * i32::from(xq[j])
                            + i32::from(q[j] >> 4) * i32::from(xq[j + 16]);
                    }
                    total += s * sum as f32;
                }
                total
            }
        }
    }

    /// [`Self::dot_q4_1_scaled`] for a Q8_0 row.
    #[inline(always)]
    pub(crate) fn dot_q8_0_scaled(self, qs: &[i8], s: &[f32], x: &QVector) -> f32 {
        let (qs, _) = qs.as_chunks::<BLOCK>();
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(simd) => avx512::dot_scaled(simd, qs, s, &x.qs, avx512::unpack_q8_0),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(simd) => avx2::dot_scaled(simd, qs, s, &x.qs, avx2::unpack_q8_0),
            Kernel::Portable => {
                let (xq, _) = x.qs.as_chunks::<BLOCK>();
                let mut total = 0f32;
                for ((q, &s), xq) in qs.iter().zip(s).zip(xq) {
                    let sum: i32 = q
                        .iter()
                        .zip(xq)
                        .map(|(&w, &x)| i32::from(w) * i32::from(x))
                        .sum();
                    total += s * sum as f32;
                }
                total
            }
        }
    }
}

/// The loop of a one-vector product with premultiplied block scales `s`,
/// for either instruction set's accumulator: `step` adds one block (its
/// weights, the vector's 32 values and the block's scale) to an
/// accumulator; even and odd blocks go to two, returned, so consecutive
/// multiply-adds do not wait on each other.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn scaled_pairs<W, A: Copy>(
    blocks: &[W],
    s: &[f32],
    xq: &[i16],
    zero: A,
    step: impl Fn(A, &W, &[i16; BLOCK], f32) -> A,
) -> (A, A) {
    let nb = blocks.len();
    let (xq, _) = xq.as_chunks::<BLOCK>();
    let (xq, s) = (&xq[..nb], &s[..nb]);
    let (mut even, mut odd) = (zero, zero);
    let (pairs, last) = blocks.as_chunks::<2>();
    let (scales, _) = s.as_chunks::<2>();
    let (xs, _) = xq.as_chunks::<2>();
    for (([w0, w1], [s0, s1]), [x0, x1]) in pairs.iter().zip(scales).zip(xs) {
        even = step(even, w0, x0, *s0);
        odd = step(odd, w1, x1, *s1);
    }
    if let [w] = last {
        let b = 2 * pairs.len();
        even = step(even, w, &xq[b], s[b]);
    }
    (even, odd)
}

/// The AVX2 dot products, in pulp's safe intrinsics (the token proves the
/// CPU has the instructions; loads are `pulp::cast`s of arrays). A block's
/// 32 products: weights widened to 16 bits, `vpmaddwd` against the
/// activations' two halves (pairs summed to 32 bits; the largest, 2·128·
/// 32767, fits), the halves added, eight 32-bit sums converted to f32 and
/// accumulated with the block's scale. Even and odd blocks accumulate
/// apart, so consecutive multiply-adds do not wait on each other.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{__m128i, __m256, __m256i};
    use pulp::x86::V3;

    use super::{BLOCK, QVector};

    /// A block's 32 weights as two halves of sixteen i16.
    type Widened = (__m256i, __m256i);

    #[inline(always)]
    pub(super) fn unpack_q4_1(simd: V3, q: &[u8; 16]) -> Widened {
        let nibble = simd.sse2._mm_set1_epi8(0x0f);
        let packed: __m128i = pulp::cast(*q);
        // Low nibbles are the block's values 0..16, high ones 16..32.
        let low = simd.sse2._mm_and_si128(packed, nibble);
        let high = simd
            .sse2
            ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(packed), nibble);
        (
            simd.avx2._mm256_cvtepu8_epi16(low),
            simd.avx2._mm256_cvtepu8_epi16(high),
        )
    }

    #[inline(always)]
    pub(super) fn unpack_q8_0(simd: V3, q: &[i8; BLOCK]) -> Widened {
        let halves: [__m128i; 2] = pulp::cast(*q);
        (
            simd.avx2._mm256_cvtepi8_epi16(halves[0]),
            simd.avx2._mm256_cvtepi8_epi16(halves[1]),
        )
    }

    /// `acc + scale·Σ w·x` of one block.
    #[inline(always)]
    fn block(
        simd: V3,
        acc: __m256,
        (w_low, w_high): Widened,
        x: &[i16; BLOCK],
        scale: f32,
    ) -> __m256 {
        let [x_low, x_high]: [__m256i; 2] = pulp::cast(*x);
        let low = simd.avx2._mm256_madd_epi16(w_low, x_low);
        let high = simd.avx2._mm256_madd_epi16(w_high, x_high);
        let sums = simd
            .avx
            ._mm256_cvtepi32_ps(simd.avx2._mm256_add_epi32(low, high));
        simd.fma
            ._mm256_fmadd_ps(sums, simd.avx._mm256_set1_ps(scale), acc)
    }

    /// `acc + scale·Σ w·x` of one block.
    #[inline(always)]
    fn one(simd: V3, acc: __m256, w: Widened, x: &[i16; BLOCK], scale: f32) -> __m256 {
        block(simd, acc, w, x, scale)
    }

    /// One row times one vector, each block's scales multiplied together
    /// beforehand in `s`.
    #[inline(always)]
    pub(super) fn dot_scaled<W>(
        simd: V3,
        blocks: &[W],
        s: &[f32],
        xq: &[i16],
        unpack: impl Fn(V3, &W) -> Widened,
    ) -> f32 {
        let (even, odd) = super::scaled_pairs(
            blocks,
            s,
            xq,
            simd.avx._mm256_setzero_ps(),
            #[inline(always)]
            |acc, w, x, scale| one(simd, acc, unpack(simd, w), x, scale),
        );
        let lanes: [f32; 8] = pulp::cast(simd.avx._mm256_add_ps(even, odd));
        lanes.iter().sum()
    }

    /// Adds block `b` (weights `w`, scale `dw`) times each vector to `acc`.
    #[inline(always)]
    fn accumulate<const N: usize>(
        simd: V3,
        acc: &mut [__m256; N],
        w: Widened,
        dw: f32,
        b: usize,
        xq: &[&[[i16; BLOCK]]; N],
        xd: &[&[f32]; N],
    ) {
        for t in 0..N {
            acc[t] = block(simd, acc[t], w, &xq[t][b], dw * xd[t][b]);
        }
    }

    #[inline(always)]
    pub(super) fn dot<W, const N: usize>(
        simd: V3,
        blocks: &[W],
        d: &[f32],
        xs: [&QVector; N],
        unpack: impl Fn(V3, &W) -> Widened,
    ) -> [f32; N] {
        // Every vector cut to the row's length up front, so the indexing
        // below needs no checks.
        let nb = blocks.len();
        let xq = xs.map(
            #[inline(always)]
            |x| &x.qs.as_chunks::<BLOCK>().0[..nb],
        );
        let xd = xs.map(
            #[inline(always)]
            |x| &x.d[..nb],
        );
        let zero = simd.avx._mm256_setzero_ps();
        let (mut even, mut odd) = ([zero; N], [zero; N]);
        let (pairs, last) = blocks.as_chunks::<2>();
        let (scales, _) = d.as_chunks::<2>();
        if N == 1 {
            // One vector (a few tokens' last one; decoding takes
            // `dot_scaled`): every slice walked in step, without
            // index checks.
            let (xq, _) = xq[0].as_chunks::<2>();
            let (xd, _) = xd[0].as_chunks::<2>();
            for ((([w0, w1], [d0, d1]), [x0, x1]), [e0, e1]) in
                pairs.iter().zip(scales).zip(xq).zip(xd)
            {
                even[0] = one(simd, even[0], unpack(simd, w0), x0, d0 * e0);
                odd[0] = one(simd, odd[0], unpack(simd, w1), x1, d1 * e1);
            }
        } else {
            for (p, ([w0, w1], [d0, d1])) in pairs.iter().zip(scales).enumerate() {
                let b = 2 * p;
                accumulate(simd, &mut even, unpack(simd, w0), *d0, b, &xq, &xd);
                accumulate(simd, &mut odd, unpack(simd, w1), *d1, b + 1, &xq, &xd);
            }
        }
        if let [w] = last {
            let b = 2 * pairs.len();
            accumulate(simd, &mut even, unpack(simd, w), d[b], b, &xq, &xd);
        }
        let mut dots = [0f32; N];
        for t in 0..N {
            let lanes: [f32; 8] = pulp::cast(simd.avx._mm256_add_ps(even[t], odd[t]));
            dots[t] = lanes.iter().sum();
        }
        dots
    }
}

/// The AVX-512 dot products: as [`avx2`]'s, a whole block per `vpmaddwd`.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    /// One row times one vector, each block's scales multiplied together
    /// beforehand in `s`: the loop's scale is a broadcast load folded into
    /// the multiply-add.
    #[inline(always)]
    pub(super) fn dot_scaled<W>(
        simd: V4,
        blocks: &[W],
        s: &[f32],
        xq: &[i16],
        unpack: impl Fn(V4, &W) -> __m512i,
    ) -> f32 {
        let (even, odd) = super::scaled_pairs(
            blocks,
            s,
            xq,
            simd.avx512f._mm512_setzero_ps(),
            #[inline(always)]
            |acc, w, x, scale| one(simd, acc, unpack(simd, w), x, scale),
        );
        simd.avx512f
            ._mm512_reduce_add_ps(simd.avx512f._mm512_add_ps(even, odd))
    }

    use core::arch::x86_64::{__m128i, __m256i, __m512, __m512i};
    use pulp::x86::V4;

    use super::{BLOCK, QVector};

    #[inline(always)]
    pub(super) fn unpack_q4_1(simd: V4, q: &[u8; 16]) -> __m512i {
        let nibble = simd.sse2._mm_set1_epi8(0x0f);
        let packed: __m128i = pulp::cast(*q);
        let low = simd.sse2._mm_and_si128(packed, nibble);
        let high = simd
            .sse2
            ._mm_and_si128(simd.sse2._mm_srli_epi16::<4>(packed), nibble);
        simd.avx512bw
            ._mm512_cvtepu8_epi16(simd.avx._mm256_set_m128i(high, low))
    }

    #[inline(always)]
    pub(super) fn unpack_q8_0(simd: V4, q: &[i8; BLOCK]) -> __m512i {
        let bytes: __m256i = pulp::cast(*q);
        simd.avx512bw._mm512_cvtepi8_epi16(bytes)
    }

    /// `acc + scale·Σ w·x` of one block.
    #[inline(always)]
    fn one(simd: V4, acc: __m512, w: __m512i, x: &[i16; BLOCK], scale: f32) -> __m512 {
        let x: __m512i = pulp::cast(*x);
        let sums = simd.avx512bw._mm512_madd_epi16(w, x);
        simd.avx512f._mm512_fmadd_ps(
            simd.avx512f._mm512_cvtepi32_ps(sums),
            simd.avx512f._mm512_set1_ps(scale),
            acc,
        )
    }

    /// Adds block `b` (weights `w`, scale `dw`) times each vector to `acc`.
    #[inline(always)]
    fn accumulate<const N: usize>(
        simd: V4,
        acc: &mut [__m512; N],
        w: __m512i,
        dw: f32,
        b: usize,
        xq: &[&[[i16; BLOCK]]; N],
        xd: &[&[f32]; N],
    ) {
        for t in 0..N {
            acc[t] = one(simd, acc[t], w, &xq[t][b], dw * xd[t][b]);
        }
    }

    #[inline(always)]
    pub(super) fn dot<W, const N: usize>(
        simd: V4,
        blocks: &[W],
        d: &[f32],
        xs: [&QVector; N],
        unpack: impl Fn(V4, &W) -> __m512i,
    ) -> [f32; N] {
        // Every vector cut to the row's length up front, so the indexing
        // below needs no checks.
        let nb = blocks.len();
        let xq = xs.map(
            #[inline(always)]
            |x| &x.qs.as_chunks::<BLOCK>().0[..nb],
        );
        let xd = xs.map(
            #[inline(always)]
            |x| &x.d[..nb],
        );
        let zero = simd.avx512f._mm512_setzero_ps();
        let (mut even, mut odd) = ([zero; N], [zero; N]);
        let (pairs, last) = blocks.as_chunks::<2>();
        let (scales, _) = d.as_chunks::<2>();
        if N == 1 {
            // One vector (a few tokens' last one; decoding takes
            // `dot_scaled`): every slice walked in step, without
            // index checks.
            let (xq, _) = xq[0].as_chunks::<2>();
            let (xd, _) = xd[0].as_chunks::<2>();
            for ((([w0, w1], [d0, d1]), [x0, x1]), [e0, e1]) in
                pairs.iter().zip(scales).zip(xq).zip(xd)
            {
                even[0] = one(simd, even[0], unpack(simd, w0), x0, d0 * e0);
                odd[0] = one(simd, odd[0], unpack(simd, w1), x1, d1 * e1);
            }
        } else {
            for (p, ([w0, w1], [d0, d1])) in pairs.iter().zip(scales).enumerate() {
                let b = 2 * p;
                accumulate(simd, &mut even, unpack(simd, w0), *d0, b, &xq, &xd);
                accumulate(simd, &mut odd, unpack(simd, w1), *d1, b + 1, &xq, &xd);
            }
        }
        if let [w] = last {
            let b = 2 * pairs.len();
            accumulate(simd, &mut even, unpack(simd, w), d[b], b, &xq, &xd);
        }
        let mut dots = [0f32; N];
        for t in 0..N {
            dots[t] = simd
                .avx512f
                ._mm512_reduce_add_ps(simd.avx512f._mm512_add_ps(even[t], odd[t]));
        }
        dots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU can run.
    fn kernels() -> Vec<Kernel> {
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            all.extend(pulp::x86::V4::try_new().map(Kernel::Avx512));
            all.extend(pulp::x86::V3::try_new().map(Kernel::Avx2));
        }
        all
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 2.5)
            .collect()
    }

    #[test]
    fn quantizing_rounds_each_value_to_within_half_a_step() {
        let x = values(576, 1);
        let q = QVector::quantize(&x);
        assert_eq!(q.d.len(), 18);
        let back = q.dequantized();
        for (b, (x, y)) in x.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!((q.d[b] - amax / QMAX).abs() < 1e-9);
            for (a, b) in x.iter().zip(y) {
                assert!((a - b).abs() <= amax / (2.0 * QMAX) * 1.0001, "{a} vs {b}");
            }
        }
        for (b, &s) in q.sums().iter().enumerate() {
            let want: f32 = back[b * BLOCK..][..BLOCK].iter().sum();
            assert!((s - want).abs() < 1e-3, "{s} vs {want}");
        }
    }

    #[test]
    fn zero_and_non_finite_blocks() {
        let mut x = vec![0f32; 64];
        x[40] = f32::INFINITY;
        let q = QVector::quantize(&x);
        assert_eq!(q.d[0], 0.0);
        assert!(q.dequantized()[..32].iter().all(|&v| v == 0.0));
        assert!(q.d[1].is_nan() && q.sums()[1].is_nan());
        let nibbles = vec![0x5au8; 32];
        let scales = [1.0f32, 1.0];
        for kernel in kernels() {
            let [dot] = kernel.run(|k| k.dot_q4_1(&nibbles, &scales, [&q]));
            assert!(dot.is_nan(), "{kernel:?}: {dot}");
        }
    }

    /// Every kernel this CPU has gives the portable kernel's sums, at the
    /// model's widths (576 and 1536), with extreme bytes included.
    #[test]
    fn kernels_agree_with_the_portable_loop() {
        for cols in [576, 1536] {
            let x = QVector::quantize(&values(cols, cols));
            let blocks = cols / BLOCK;
            let nibbles: Vec<u8> = (0..blocks * 16).map(|i| (i * 37 % 256) as u8).collect();
            let mut bytes: Vec<i8> = (0..cols).map(|i| (i * 53 % 256) as u8 as i8).collect();
            bytes[0] = -128;
            bytes[1] = 127;
            let d: Vec<f32> = (0..blocks).map(|b| 0.01 + b as f32 * 1e-3).collect();
            let portable = (
                Kernel::Portable.dot_q4_1(&nibbles, &d, [&x])[0],
                Kernel::Portable.dot_q8_0(&bytes, &d, [&x])[0],
            );
            // Decoding's form: the two scales multiplied beforehand.
            let scaled: Vec<f32> = d.iter().zip(x.scales()).map(|(a, b)| a * b).collect();
            for kernel in kernels() {
                // One vector, the same vector among four others, and one
                // with premultiplied scales.
                let other = QVector::quantize(&values(cols, 7));
                let four = [&other, &x, &other, &other];
                let (one, many, premultiplied) = kernel.run(
                    #[inline(always)]
                    |k| {
                        (
                            (
                                k.dot_q4_1(&nibbles, &d, [&x])[0],
                                k.dot_q8_0(&bytes, &d, [&x])[0],
                            ),
                            (
                                k.dot_q4_1(&nibbles, &d, four)[1],
                                k.dot_q8_0(&bytes, &d, four)[1],
                            ),
                            (
                                k.dot_q4_1_scaled(&nibbles, &scaled, &x),
                                k.dot_q8_0_scaled(&bytes, &scaled, &x),
                            ),
                        )
                    },
                );
                for fast in [one, many, premultiplied] {
                    for (a, b) in [(portable.0, fast.0), (portable.1, fast.1)] {
                        assert!(
                            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                            "{kernel:?}: {a} vs {b}"
                        );
                    }
                }
            }
            // And the portable loop is the exact product of the blocks.
            let back = x.dequantized();
            let want: f64 = (0..cols)
                .map(|i| {
                    let (b, j) = (i / BLOCK, i % BLOCK);
                    let q = if j < 16 {
                        nibbles[b * 16 + j] & 15
                    } else {
                        nibbles[b * 16 + j - 16] >> 4
                    };
                    f64::from(d[b]) * f64::from(q) * f64::from(back[i])
                })
                .sum();
            assert!((f64::from(portable.0) - want).abs() < 1e-4 * want.abs().max(1.0));
        }
    }
}
