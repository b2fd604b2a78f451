//! Products with GGUF-quantized weights, for inference on the CPU.
//!
//! candle's quantized kernels have vectorised dot products for Q4_0, Q8_0
//! and the k-quants only; SmolLM2's GGUF is Q4_1 (its 576-wide rows are not
//! a multiple of the k-quants' 256-value super-blocks), which candle
//! multiplies one scalar at a time. These kernels keep the weights in the
//! file's blocks (Q4_1 nibbles, Q8_0 bytes, f16 scales) and
//! multiply them in integers: each token's activations quantized to 16
//! bits per block, integer dot products per block ([`integer`]), rows
//! split over rayon's threads. A few tokens go through each row while its
//! blocks are in cache, so they read the weights once; a prompt (from
//! [`WIDENED_FROM_TOKENS`] tokens) widens tiles of rows to f32 instead and
//! multiplies them with `gemm`.
//! Plain f32 weights (other GGUF types, widened at load) use `gemm`.

mod integer;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use candle_core::quantized::gguf_file::TensorInfo;
use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

use crate::error::{MlError, Result};
use crate::fastmath;
use crate::kernels::gemm::{self, Threads, View};
use integer::{Kernel, QVector};

/// Values per quantization block (Q4_1 and Q8_0).
const BLOCK: usize = 32;

/// From this many tokens on, products with f32 weights use `gemm`.
const GEMM_FROM_TOKENS: usize = 4;

/// From this many tokens on (a prompt), quantized weights are widened to
/// f32 a tile of rows at a time and multiplied with `gemm`: once the
/// widening is shared by enough tokens, f32 multiply-adds at `gemm`'s
/// rate beat the integer products, which spend a conversion and a scaled
/// add per block and token.
pub(crate) const WIDENED_FROM_TOKENS: usize = 16;

/// Rows of a quantized weight widened at once for a prompt: 64 rows of
/// 1536 are 384 KiB of f32, small enough to stay in a core's L2 cache
/// while `gemm` runs over them.
const WIDENED_TILE_ROWS: usize = 64;

/// A prompt's tokens are padded to a multiple of this for `gemm` (zeros,
/// whose products are dropped): the SIMD width of its f32 microkernel on
/// AVX-512. With a column-major operand of such a length, `gemm` reads it
/// in place; otherwise it packs a copy into memory it allocates for every
/// product (see [`Workspace`]).
const WIDENED_TOKEN_MULTIPLE: usize = 16;

/// Room the products of a group of weights work in, kept by the caller
/// between calls and grown on the caller's thread ([`Self::reserve`]).
///
/// The products run on rayon's threads, and each thread allocates from its
/// own malloc arena: a prompt's widened tiles and `gemm`'s packed copies,
/// allocated and freed inside the tasks, left each pool thread's arena
/// holding several MiB of freed memory (SmolLM2's generation: 4.5 and 2.1
/// MiB resident, 2 MiB of it in use). Here a prompt's tokens are
/// transposed once, padded, into `columns`, which `gemm` reads as they
/// are, and each pool thread widens its tiles into its own `tiles` slot.
#[derive(Debug, Default)]
pub(crate) struct Workspace {
    /// The products of several tokens, `(rows, stride)` per weight, before
    /// they are transposed into the outputs.
    by_row: Vec<f32>,
    /// A prompt's activations transposed, `(cols, padded tokens)`.
    columns: Vec<f32>,
    /// One tile of widened weight rows per thread of rayon's pool, by
    /// thread index. A task holds its slot's lock for as long as it runs
    /// and never yields to other tasks meanwhile, so the lock is only ever
    /// taken uncontended; a task that finds it taken, or runs in another
    /// pool, widens into a tile of its own.
    tiles: Vec<Mutex<Vec<f32>>>,
}

/// A copy is a fresh workspace: its buffers are room, not state.
impl Clone for Workspace {
    fn clone(&self) -> Self {
        Workspace::default()
    }
}

impl Workspace {
    /// Room for the products of `tokens` tokens with a group of weights of
    /// `rows` rows in all and at most `cols` columns.
    pub(crate) fn reserve(&mut self, tokens: usize, rows: usize, cols: usize) {
        let stride = product_stride(tokens);
        self.by_row.clear();
        self.by_row.reserve(rows * stride);
        if tokens < WIDENED_FROM_TOKENS {
            return;
        }
        self.columns.clear();
        self.columns.reserve(cols * stride);
        let threads = rayon::current_num_threads();
        self.tiles.truncate(threads);
        self.tiles.resize_with(threads, || Mutex::new(Vec::new()));
        for tile in &mut self.tiles {
            if let Ok(tile) = tile.get_mut() {
                // Written now, so its pages are this thread's.
                tile.resize(WIDENED_TILE_ROWS * cols, 0.0);
            }
        }
    }
}

/// Products of `tokens` tokens are laid out `stride` apart: a prompt's
/// padded to [`WIDENED_TOKEN_MULTIPLE`].
fn product_stride(tokens: usize) -> usize {
    if tokens >= WIDENED_FROM_TOKENS {
        tokens.next_multiple_of(WIDENED_TOKEN_MULTIPLE)
    } else {
        tokens
    }
}

/// A `rows x cols` weight (`y = W·x`), in the blocks it was stored in.
///
/// Block scales stay in the file's f16: decoding reads every weight once a
/// token, so bytes are time, and f32 scales made Q4_1 24 bytes a block
/// instead of 20. Each product widens a row's scales once (exactly) before
/// its blocks.
#[derive(Debug, Clone)]
pub(crate) struct QWeight {
    rows: usize,
    cols: usize,
    data: QData,
}

#[derive(Debug, Clone)]
enum QData {
    /// `w = d·q + m`, `q` in 0..16: per block `d`, `m` (f16 bits) and 16
    /// bytes of nibbles (low nibbles are the block's first 16 values).
    Q4_1 {
        d: Vec<u16>,
        m: Vec<u16>,
        qs: Vec<u8>,
    },
    /// `w = d·q`, `q` an i8: per block `d` (f16 bits) and 32 bytes.
    Q8_0 { d: Vec<u16>, qs: Vec<i8> },
    /// Plain f32, row-major.
    F32(Vec<f32>),
}

/// An IEEE half-precision value (its bits), widened exactly.
///
/// Branch-free integer and float steps, so that widening a row of scales
/// vectorises (`half`'s conversion without `std` is a scalar loop, and
/// pulp's AVX2 level does not include F16C): the exponent and mantissa
/// shifted into f32's places and multiplied by 2¹¹² rebias the exponent,
/// which also scales subnormals right; infinities and NaNs (exponent 31)
/// are put back by hand.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let magnitude = (h & 0x7fff) << 13;
    let finite = (f32::from_bits(magnitude) * f32::from_bits(0x7780_0000)).to_bits();
    let special = 0x7f80_0000 | (magnitude & 0x007f_ffff);
    let bits = if h & 0x7c00 == 0x7c00 {
        special
    } else {
        finite
    };
    f32::from_bits(sign | bits)
}

/// Widens f16 values (bits: block scales, cached keys and values) into
/// `out`, one per input.
#[inline(always)]
pub(crate) fn widen_halves(halves: &[u16], out: &mut [f32]) {
    for (o, &h) in out.iter_mut().zip(halves) {
        *o = f16_to_f32(h);
    }
}

impl QWeight {
    /// The weight in `tensor` (a 2-d GGUF tensor of type Q4_1, Q8_0, F16 or
    /// F32; other types are widened to f32).
    pub(crate) fn from_qtensor(tensor: &QTensor) -> Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        let bad = |why: String| MlError::InvalidRequest(format!("quantized weight: {why}"));
        let blocked = matches!(tensor.dtype(), GgmlDType::Q4_1 | GgmlDType::Q8_0);
        if blocked && !cols.is_multiple_of(BLOCK) {
            return Err(bad(format!(
                "{cols} columns do not split into blocks of {BLOCK}"
            )));
        }
        let blocks = rows * cols / BLOCK;
        let data = match tensor.dtype() {
            GgmlDType::Q4_1 => {
                let bytes = tensor.data()?;
                if bytes.len() != blocks * 20 {
                    return Err(bad(format!(
                        "{} bytes for {blocks} Q4_1 blocks",
                        bytes.len()
                    )));
                }
                let (mut d, mut m, mut qs) = (
                    Vec::with_capacity(blocks),
                    Vec::with_capacity(blocks),
                    Vec::with_capacity(blocks * 16),
                );
                for block in bytes.chunks_exact(20) {
                    d.push(u16::from_le_bytes([block[0], block[1]]));
                    m.push(u16::from_le_bytes([block[2], block[3]]));
                    qs.extend_from_slice(&block[4..]);
                }
                QData::Q4_1 { d, m, qs }
            }
            GgmlDType::Q8_0 => {
                let bytes = tensor.data()?;
                if bytes.len() != blocks * 34 {
                    return Err(bad(format!(
                        "{} bytes for {blocks} Q8_0 blocks",
                        bytes.len()
                    )));
                }
                let (mut d, mut qs) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks * 32));
                for block in bytes.chunks_exact(34) {
                    d.push(u16::from_le_bytes([block[0], block[1]]));
                    qs.extend(block[2..].iter().map(|&b| b as i8));
                }
                QData::Q8_0 { d, qs }
            }
            _ => {
                let values = tensor
                    .dequantize(&candle_core::Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                QData::F32(values)
            }
        };
        Ok(QWeight { rows, cols, data })
    }

    /// The weight `name` of the GGUF file at `path`, read from `reader`
    /// (`info` and `data_offset` from its header), its rows put in `order`
    /// when one is given (row `k` is the file's row `order[k]`). Q4_1 and
    /// Q8_0 blocks go from the file straight into their place in this
    /// layout, a block at a time: going through candle's reader held each
    /// tensor three times over (the bytes, candle's blocks, these), and
    /// reordering a copy afterwards freed the first one. Freed buffers
    /// below glibc's (by then raised) mmap threshold stay stranded between
    /// the weights for the life of the process: ~10 MiB for SmolLM2's 30
    /// query projections. Other types go through candle and are widened to
    /// f32.
    pub(crate) fn read_gguf<R: Read + Seek>(
        path: &Path,
        reader: &mut R,
        name: &str,
        info: &TensorInfo,
        data_offset: u64,
        order: Option<&[usize]>,
    ) -> Result<Self> {
        let bad = |why: String| MlError::bad_model(path, format!("tensor {name}: {why}"));
        let (rows, cols) = info.shape.dims2().map_err(|e| bad(e.to_string()))?;
        // Where each of the file's rows goes.
        let destination: Vec<usize> = match order {
            None => (0..rows).collect(),
            Some(order) => {
                let mut destination = vec![usize::MAX; rows];
                if order.len() != rows {
                    return Err(bad(format!(
                        "a row order of {} for {rows} rows",
                        order.len()
                    )));
                }
                for (k, &r) in order.iter().enumerate() {
                    match destination.get_mut(r) {
                        Some(slot) if *slot == usize::MAX => *slot = k,
                        _ => return Err(bad("the row order is not a permutation".into())),
                    }
                }
                destination
            }
        };
        let block_bytes = match info.ggml_dtype {
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => {
                let tensor = info
                    .read(reader, data_offset, &candle_core::Device::Cpu)
                    .map_err(|e| bad(e.to_string()))?;
                let weight = Self::from_qtensor(&tensor)?;
                return match order {
                    Some(order) => weight.permute_rows(order),
                    None => Ok(weight),
                };
            }
        };
        if !cols.is_multiple_of(BLOCK) {
            return Err(bad(format!(
                "{cols} columns do not split into blocks of {BLOCK}"
            )));
        }
        let nb = cols / BLOCK;
        let blocks = rows
            .checked_mul(nb)
            .ok_or_else(|| bad(format!("{rows}x{cols} is too large")))?;
        let start = data_offset
            .checked_add(info.offset)
            .ok_or_else(|| bad("offset past the end of the file".into()))?;
        let file_len = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| MlError::io(path, e))?;
        let needed = (blocks as u64).saturating_mul(block_bytes);
        if start.saturating_add(needed) > file_len {
            return Err(bad(format!(
                "needs {needed} bytes at offset {start}; the file has {file_len}"
            )));
        }
        reader
            .seek(SeekFrom::Start(start))
            .map_err(|e| MlError::io(path, e))?;
        let mut block = [0u8; 34];
        let block = &mut block[..block_bytes as usize];
        let half = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
        let mut read =
            |block: &mut [u8]| reader.read_exact(block).map_err(|e| MlError::io(path, e));
        let data = if info.ggml_dtype == GgmlDType::Q4_1 {
            let (mut d, mut m, mut qs) = (vec![0; blocks], vec![0; blocks], vec![0; blocks * 16]);
            for &row in &destination {
                for i in row * nb..(row + 1) * nb {
                    read(block)?;
                    d[i] = half(&block[0..2]);
                    m[i] = half(&block[2..4]);
                    qs[i * 16..][..16].copy_from_slice(&block[4..]);
                }
            }
            QData::Q4_1 { d, m, qs }
        } else {
            let (mut d, mut qs) = (vec![0; blocks], vec![0i8; blocks * 32]);
            for &row in &destination {
                for i in row * nb..(row + 1) * nb {
                    read(block)?;
                    d[i] = half(&block[0..2]);
                    for (q, &b) in qs[i * 32..][..32].iter_mut().zip(&block[2..]) {
                        *q = b as i8;
                    }
                }
            }
            QData::Q8_0 { d, qs }
        };
        Ok(QWeight { rows, cols, data })
    }

    /// Output width.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Stored bytes (for memory figures).
    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            QData::Q4_1 { d, m, qs } => 2 * (d.len() + m.len()) + qs.len(),
            QData::Q8_0 { d, qs } => 2 * d.len() + qs.len(),
            QData::F32(v) => 4 * v.len(),
        }
    }

    /// The same weight with its rows reordered: row `i` of the result is
    /// row `order[i]` of this one.
    pub(crate) fn permute_rows(&self, order: &[usize]) -> Result<Self> {
        if order.len() != self.rows || order.iter().any(|&r| r >= self.rows) {
            return Err(MlError::InvalidRequest(
                "row order does not fit the weight".into(),
            ));
        }
        let nb = self.cols / BLOCK;
        fn gather<T: Copy>(v: &[T], order: &[usize], width: usize) -> Vec<T> {
            order
                .iter()
                .flat_map(|&r| v[r * width..(r + 1) * width].iter().copied())
                .collect()
        }
        let data = match &self.data {
            QData::Q4_1 { d, m, qs } => QData::Q4_1 {
                d: gather(d, order, nb),
                m: gather(m, order, nb),
                qs: gather(qs, order, nb * 16),
            },
            QData::Q8_0 { d, qs } => QData::Q8_0 {
                d: gather(d, order, nb),
                qs: gather(qs, order, nb * 32),
            },
            QData::F32(v) => QData::F32(gather(v, order, self.cols)),
        };
        Ok(QWeight { data, ..*self })
    }

    /// Row `row`, widened to f32, into `out` (`cols` long).
    #[inline(always)]
    pub(crate) fn row_into(&self, row: usize, out: &mut [f32]) {
        let (cols, nb) = (self.cols, self.cols / BLOCK);
        match &self.data {
            QData::Q4_1 { d, m, qs } => {
                for b in 0..nb {
                    let (scale, min) = (f16_to_f32(d[row * nb + b]), f16_to_f32(m[row * nb + b]));
                    let q = &qs[(row * nb + b) * 16..][..16];
                    let o = &mut out[b * BLOCK..][..BLOCK];
                    for j in 0..16 {
                        o[j] = scale * f32::from(q[j] & 15) + min;
                        o[j + 16] = scale * f32::from(q[j] >> 4) + min;
                    }
                }
            }
            QData::Q8_0 { d, qs } => {
                for b in 0..nb {
                    let scale = f16_to_f32(d[row * nb + b]);
                    let q = &qs[(row * nb + b) * 32..][..32];
                    for (o, &q) in out[b * BLOCK..][..BLOCK].iter_mut().zip(q) {
                        *o = scale * f32::from(q);
                    }
                }
            }
            QData::F32(v) => out[..cols].copy_from_slice(&v[row * cols..][..cols]),
        }
    }

    /// `y = x·Wᵀ` for `x` `(tokens, cols)` row-major; `y` is `(tokens, rows)`.
    #[cfg(test)]
    pub(crate) fn forward(&self, x: &[f32], tokens: usize) -> Result<Vec<f32>> {
        let [y] = Self::forward_group([self], x, tokens)?;
        Ok(y)
    }

    /// [`Self::forward`] of several weights with the same input width on
    /// the same `x` (a layer's q, k and v; its gate and up): the input is
    /// quantized once and all their rows share one parallel loop, so a
    /// decoding step pays for fewer hand-offs between threads.
    #[cfg(test)]
    pub(crate) fn forward_group<const N: usize>(
        weights: [&Self; N],
        x: &[f32],
        tokens: usize,
    ) -> Result<[Vec<f32>; N]> {
        let mut ys = weights.map(|w| vec![0f32; tokens * w.rows]);
        Self::forward_group_into(
            weights,
            x,
            tokens,
            ys.each_mut().map(|y| &mut y[..]),
            &mut Workspace::default(),
        )?;
        Ok(ys)
    }

    /// [`Self::forward_group`] into `ys`, one `(tokens, rows)` buffer per
    /// weight (overwritten), working in `work`. A caller that keeps `work`
    /// (and `ys`) between calls, reserved on its own thread, spares the
    /// pool's threads the allocations (see [`Workspace`]).
    pub(crate) fn forward_group_into<const N: usize>(
        weights: [&Self; N],
        x: &[f32],
        tokens: usize,
        mut ys: [&mut [f32]; N],
        work: &mut Workspace,
    ) -> Result<()> {
        let cols = weights.first().map_or(0, |w| w.cols);
        if let Some(w) = weights
            .iter()
            .find(|w| w.cols != cols)
            .or_else(|| weights.first().filter(|_| x.len() != tokens * cols))
        {
            return Err(MlError::InvalidRequest(format!(
                "{} inputs for {tokens} tokens of width {}",
                x.len(),
                w.cols
            )));
        }
        if let Some((w, y)) = weights
            .iter()
            .zip(&ys)
            .find(|(w, y)| y.len() != tokens * w.rows)
        {
            return Err(MlError::InvalidRequest(format!(
                "room for {} outputs, not {tokens} tokens of {} rows",
                y.len(),
                w.rows
            )));
        }
        if tokens == 0 {
            return Ok(());
        }
        if weights.iter().any(|w| w.blocks().is_none()) {
            // Plain f32 among them (a GGUF type widened at load): each on
            // its own.
            for (w, y) in weights.iter().zip(ys) {
                match w.blocks() {
                    None => w.forward_f32(x, tokens, y)?,
                    Some(_) => Self::forward_group_into([*w], x, tokens, [y], work)?,
                }
            }
            return Ok(());
        }
        // Products land in (rows, tokens) order, one token's row after
        // another's, and are transposed at the end (for one token the two
        // orders are the same).
        if tokens == 1 {
            let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut **y).collect();
            Self::products_integer(&weights, x, tokens, &mut outs);
            return Ok(());
        }
        let stride = product_stride(tokens);
        let Workspace {
            by_row,
            columns,
            tiles,
        } = work;
        by_row.resize(weights.iter().map(|w| w.rows).sum::<usize>() * stride, 0.0);
        let mut rest = &mut by_row[..];
        let mut outs: Vec<&mut [f32]> = Vec::with_capacity(N);
        for w in &weights {
            let (out, after) = std::mem::take(&mut rest).split_at_mut(w.rows * stride);
            rest = after;
            outs.push(out);
        }
        if tokens >= WIDENED_FROM_TOKENS {
            columns.clear();
            columns.resize(cols * stride, 0.0);
            for (t, token) in x.chunks_exact(cols).enumerate() {
                for (c, &v) in token.iter().enumerate() {
                    columns[c * stride + t] = v;
                }
            }
            Self::products_widened(&weights, columns, stride, &mut outs, tiles)?;
        } else {
            Self::products_integer(&weights, x, tokens, &mut outs);
        }
        from_rows(&outs, &mut ys, tokens, stride);
        Ok(())
    }

    /// The products of quantized `weights` and a few tokens `x`, in
    /// integers, into `outs` (`(rows, tokens)` each; `(tokens, rows)` is
    /// the same for one token).
    fn products_integer(weights: &[&Self], x: &[f32], tokens: usize, outs: &mut [&mut [f32]]) {
        let cols = weights.first().map_or(0, |w| w.cols);
        let xs: Vec<QVector> = x.chunks_exact(cols).map(QVector::quantize).collect();
        let chunk = rows_per_task(weights.iter().map(|w| w.rows).sum());
        let tasks: Vec<(Blocks<'_>, usize, &mut [f32])> = weights
            .iter()
            .zip(outs.iter_mut())
            .flat_map(|(w, out)| {
                let blocks = w.blocks();
                out.chunks_mut(chunk * tokens)
                    .enumerate()
                    .map(move |(c, o)| (blocks, c * chunk, o))
            })
            .filter_map(|(blocks, first, o)| blocks.map(|b| (b, first, o)))
            .collect();
        let (nb, kernel) = (cols / BLOCK, Kernel::detect());
        tasks.into_par_iter().for_each(|(blocks, first, outs)| {
            kernel.run(
                #[inline(always)]
                |k| {
                    let mut scales = vec![0f32; 2 * nb];
                    if let [x] = xs.as_slice() {
                        // Decoding: one token, its block scales multiplied
                        // into each row's as they are widened.
                        for (i, out) in outs.iter_mut().enumerate() {
                            let row =
                                blocks.widen_scales(first + i, nb, &mut scales, Some(x.scales()));
                            *out = row.scaled_dot(k, x);
                        }
                        return;
                    }
                    for (i, row_out) in outs.chunks_mut(tokens).enumerate() {
                        let row = blocks.widen_scales(first + i, nb, &mut scales, None);
                        let (fours, rest) = xs.as_chunks::<4>();
                        let (out_fours, out_rest) = row_out.as_chunks_mut::<4>();
                        for (o, x) in out_fours.iter_mut().zip(fours) {
                            *o = row.dots(k, [&x[0], &x[1], &x[2], &x[3]]);
                        }
                        for (o, x) in out_rest.iter_mut().zip(rest) {
                            [*o] = row.dots(k, [x]);
                        }
                    }
                },
            )
        });
    }

    /// The products of quantized `weights` and a prompt, given as
    /// `columns` `(cols, stride)` (its tokens transposed, padded with
    /// zeros), into `outs` (`(rows, stride)` each): each rayon task widens
    /// [`WIDENED_TILE_ROWS`] rows of one weight to f32, into its thread's
    /// slot of `tiles`, and multiplies them with every token in one `gemm`
    /// on its own thread. The activations stay f32, so this is the f32
    /// product of the dequantized weights, up to summation order.
    fn products_widened(
        weights: &[&Self],
        columns: &[f32],
        stride: usize,
        outs: &mut [&mut [f32]],
        tiles: &[Mutex<Vec<f32>>],
    ) -> Result<()> {
        let cols = weights.first().map_or(0, |w| w.cols);
        let tasks: Vec<(&Self, usize, &mut [f32])> = weights
            .iter()
            .zip(outs.iter_mut())
            .flat_map(|(w, out)| {
                out.chunks_mut(WIDENED_TILE_ROWS * stride)
                    .enumerate()
                    .map(move |(c, o)| (*w, c * WIDENED_TILE_ROWS, o))
            })
            .collect();
        tasks.into_par_iter().try_for_each(|(w, first, out)| {
            let rows = out.len() / stride;
            let mut multiply = |tile: &mut Vec<f32>| {
                if tile.len() < rows * cols {
                    tile.resize(rows * cols, 0f32);
                }
                let tile = &mut tile[..rows * cols];
                fastmath::vectorized(
                    #[inline(always)]
                    || {
                        for (i, row) in tile.chunks_exact_mut(cols).enumerate() {
                            w.row_into(first + i, row);
                        }
                    },
                );
                // `columns` is column-major for `gemm` (which computes the
                // transposed product of a row-major destination) and its
                // length a multiple of its SIMD width: read in place.
                gemm::product(
                    out,
                    stride,
                    View::new(tile, rows, cols),
                    View::new(columns, cols, stride),
                    1.0,
                    false,
                    Threads::One,
                )
            };
            let slot = rayon::current_thread_index().and_then(|i| tiles.get(i));
            match slot.map(Mutex::try_lock) {
                Some(Ok(mut tile)) => multiply(&mut tile),
                _ => multiply(&mut Vec::new()),
            }
        })
    }

    /// The blocks of a quantized weight; `None` for plain f32.
    fn blocks(&self) -> Option<Blocks<'_>> {
        match &self.data {
            QData::Q4_1 { d, m, qs } => Some(Blocks::Q4_1 { d, m, qs }),
            QData::Q8_0 { d, qs } => Some(Blocks::Q8_0 { d, qs }),
            QData::F32(_) => None,
        }
    }

    /// `y = x·Wᵀ` for plain f32 weights (`gemm` from a few tokens on);
    /// only called for them.
    fn forward_f32(&self, x: &[f32], tokens: usize, y: &mut [f32]) -> Result<()> {
        match &self.data {
            QData::F32(v) if tokens >= GEMM_FROM_TOKENS => gemm::product(
                y,
                self.rows,
                View::new(x, tokens, self.cols),
                View::new(v, self.rows, self.cols).t(),
                1.0,
                false,
                Threads::All,
            )?,
            QData::F32(v) => {
                for (t, y) in y.chunks_mut(self.rows).enumerate() {
                    matvec_f32(v, self.cols, &x[t * self.cols..][..self.cols], y);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A quantized weight's blocks, as [`QWeight::forward_group`] multiplies them.
#[derive(Clone, Copy)]
enum Blocks<'a> {
    Q4_1 {
        d: &'a [u16],
        m: &'a [u16],
        qs: &'a [u8],
    },
    Q8_0 {
        d: &'a [u16],
        qs: &'a [i8],
    },
}

impl<'a> Blocks<'a> {
    /// Row `row` (`nb` blocks), its scales widened into `scales` (`2·nb`
    /// long: `d` then Q4_1's `m`) once for all the tokens it meets; with
    /// `times`, each `d` multiplied by it (one token's block scales).
    #[inline(always)]
    fn widen_scales<'s>(
        self,
        row: usize,
        nb: usize,
        scales: &'s mut [f32],
        times: Option<&[f32]>,
    ) -> Row<'a, 's> {
        let (d_out, m_out) = scales.split_at_mut(nb);
        let widen_d = |d: &[u16], out: &mut [f32]| {
            widen_halves(&d[row * nb..][..nb], out);
            if let Some(times) = times {
                out.iter_mut().zip(times).for_each(|(o, t)| *o *= t);
            }
        };
        match self {
            Blocks::Q4_1 { d, m, qs } => {
                widen_d(d, d_out);
                widen_halves(&m[row * nb..][..nb], m_out);
                Row::Q4_1 {
                    d: d_out,
                    m: m_out,
                    qs: &qs[row * nb * 16..][..nb * 16],
                }
            }
            Blocks::Q8_0 { d, qs } => {
                widen_d(d, d_out);
                Row::Q8_0 {
                    d: d_out,
                    qs: &qs[row * nb * 32..][..nb * 32],
                }
            }
        }
    }
}

/// One row of a quantized weight with its scales widened to f32.
#[derive(Clone, Copy)]
enum Row<'a, 's> {
    Q4_1 {
        d: &'s [f32],
        m: &'s [f32],
        qs: &'a [u8],
    },
    Q8_0 {
        d: &'s [f32],
        qs: &'a [i8],
    },
}

impl Row<'_, '_> {
    /// This row times each of `xs`.
    #[inline(always)]
    fn dots<const N: usize>(self, k: Kernel, xs: [&QVector; N]) -> [f32; N] {
        match self {
            Row::Q4_1 { d, m, qs } => {
                let mut dots = k.dot_q4_1(qs, d, xs);
                for (dot, x) in dots.iter_mut().zip(xs) {
                    *dot += fastmath::dot(m, x.sums());
                }
                dots
            }
            Row::Q8_0 { d, qs } => k.dot_q8_0(qs, d, xs),
        }
    }

    /// This row times `x`, as [`Self::dots`] of one vector does, for a
    /// row whose `d` was widened with `x`'s scales multiplied in
    /// ([`Blocks::widen_scales`]), which takes that multiply out of the
    /// dot product's loop.
    #[inline(always)]
    fn scaled_dot(self, k: Kernel, x: &QVector) -> f32 {
        match self {
            Row::Q4_1 { d, m, qs } => k.dot_q4_1_scaled(qs, d, x) + fastmath::dot(m, x.sums()),
            Row::Q8_0 { d, qs } => k.dot_q8_0_scaled(qs, d, x),
        }
    }
}

/// Products computed in (rows, tokens) order, `stride` apart, each into
/// its `y` in (tokens, rows) order.
fn from_rows(by_row: &[&mut [f32]], ys: &mut [&mut [f32]], tokens: usize, stride: usize) {
    if tokens == 0 {
        return;
    }
    for (by_row, y) in by_row.iter().zip(ys) {
        let rows = by_row.len() / stride;
        for (row, values) in by_row.chunks_exact(stride).enumerate() {
            for (t, &v) in values[..tokens].iter().enumerate() {
                y[t * rows + row] = v;
            }
        }
    }
}

/// Rows per rayon task: enough work to pay for the hand-off, several
/// tasks per thread so uneven threads even out.
fn rows_per_task(rows: usize) -> usize {
    (rows / (4 * rayon::current_num_threads().max(1))).clamp(16, 1024)
}

/// `y = W·x` for one token and a row-major f32 `W` of width `cols`.
fn matvec_f32(w: &[f32], cols: usize, x: &[f32], y: &mut [f32]) {
    let chunk = rows_per_task(y.len());
    y.par_chunks_mut(chunk).enumerate().for_each(|(c, ys)| {
        fastmath::vectorized(
            #[inline(always)]
            || {
                for (i, out) in ys.iter_mut().enumerate() {
                    let row = c * chunk + i;
                    *out = fastmath::dot(&w[row * cols..][..cols], x);
                }
            },
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn weight(dtype: GgmlDType, rows: usize, cols: usize) -> (QWeight, Vec<f32>) {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
            .collect();
        let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("tensor");
        let q = QTensor::quantize(&t, dtype).expect("quantize");
        let exact = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("dequantize");
        (QWeight::from_qtensor(&q).expect("weight"), exact)
    }

    /// The activations a product with `dtype` weights multiplies: the
    /// 16-bit blocks for quantized weights, the values themselves for f32.
    fn as_multiplied(dtype: GgmlDType, x: &[f32]) -> Vec<f32> {
        match dtype {
            GgmlDType::F32 => x.to_vec(),
            _ => QVector::quantize(x).dequantized(),
        }
    }

    #[test]
    fn products_match_the_dequantized_weight() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::F32] {
            let (rows, cols) = (70, 96);
            let (w, exact) = weight(dtype, rows, cols);
            // From WIDENED_FROM_TOKENS on the activations are not rounded;
            // 70 rows make two tiles, the second partial.
            for tokens in [1, 2, 5, WIDENED_FROM_TOKENS + 3] {
                let x: Vec<f32> = (0..tokens * cols)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect();
                let y = w.forward(&x, tokens).expect("forward");
                for t in 0..tokens {
                    let xt = if tokens >= WIDENED_FROM_TOKENS {
                        x[t * cols..][..cols].to_vec()
                    } else {
                        as_multiplied(dtype, &x[t * cols..][..cols])
                    };
                    for r in 0..rows {
                        let want: f32 = (0..cols).map(|c| exact[r * cols + c] * xt[c]).sum();
                        let got = y[t * rows + r];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{dtype:?} {tokens}: {got} vs {want}"
                        );
                    }
                }
            }
            let mut row = vec![0f32; cols];
            w.row_into(3, &mut row);
            assert_eq!(row, exact[3 * cols..4 * cols]);
            let order: Vec<usize> = (0..rows).rev().collect();
            let p = w.permute_rows(&order).expect("permute");
            p.row_into(rows - 4, &mut row);
            assert_eq!(row, exact[3 * cols..4 * cols]);
        }
    }

    /// A group gives each weight's own product, whatever its storage, and
    /// refuses inputs of the wrong width.
    #[test]
    fn a_group_multiplies_each_weight_as_alone() {
        let cols = 64;
        let weights = [
            weight(GgmlDType::Q4_1, 40, cols).0,
            weight(GgmlDType::F32, 24, cols).0,
            weight(GgmlDType::Q8_0, 8, cols).0,
        ];
        for tokens in [0, 1, 6, WIDENED_FROM_TOKENS + 1] {
            let x: Vec<f32> = (0..tokens * cols)
                .map(|i| (i as f32 * 0.23).cos())
                .collect();
            let group = QWeight::forward_group([&weights[0], &weights[1], &weights[2]], &x, tokens)
                .expect("group");
            for (w, y) in weights.iter().zip(&group) {
                assert_eq!(y, &w.forward(&x, tokens).expect("alone"));
                assert_eq!(y.len(), tokens * w.rows());
            }
        }
        assert!(QWeight::forward_group([&weights[0]], &[0.0; 10], 1).is_err());
        let narrow = weight(GgmlDType::Q4_1, 8, 32).0;
        assert!(QWeight::forward_group([&weights[0], &narrow], &[0.0; 64], 1).is_err());
    }

    /// A workspace kept across calls of every shape (prompts padded or
    /// not, single tokens, other widths), its buffers left full of NaN,
    /// gives exactly the products a fresh one does, on a pool whose
    /// threads widen into their own tiles.
    #[test]
    fn a_kept_workspace_gives_the_products_of_a_fresh_one() {
        let q4 = weight(GgmlDType::Q4_1, 70, 96).0;
        let q8 = weight(GgmlDType::Q8_0, 40, 96).0;
        let narrow = weight(GgmlDType::Q4_1, 130, 64).0;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        pool.install(|| {
            let mut work = Workspace::default();
            work.reserve(40, 130, 96);
            assert_eq!(work.tiles.len(), 2);
            work.by_row.resize(work.by_row.capacity(), f32::NAN);
            work.columns.resize(work.columns.capacity(), f32::NAN);
            for tile in &mut work.tiles {
                tile.get_mut().expect("tile").fill(f32::NAN);
            }
            let calls: [(&[&QWeight], usize); 6] = [
                (&[&q4, &q8], 40),
                (&[&q4], 1),
                (&[&narrow], 17),
                (&[&q4, &q8], 19),
                (&[&q8, &q4], 5),
                (&[&narrow], 48),
            ];
            for (weights, tokens) in calls {
                let cols = weights[0].cols();
                let x: Vec<f32> = (0..tokens * cols)
                    .map(|i| (i as f32 * 0.41).sin())
                    .collect();
                let mut ys: Vec<Vec<f32>> = weights
                    .iter()
                    .map(|w| vec![f32::NAN; tokens * w.rows()])
                    .collect();
                match (weights, &mut ys[..]) {
                    ([a], [ya]) => QWeight::forward_group_into([*a], &x, tokens, [ya], &mut work),
                    ([a, b], [ya, yb]) => {
                        QWeight::forward_group_into([*a, *b], &x, tokens, [ya, yb], &mut work)
                    }
                    _ => unreachable!("one or two weights"),
                }
                .expect("kept workspace");
                for (w, y) in weights.iter().zip(&ys) {
                    assert_eq!(y, &w.forward(&x, tokens).expect("fresh"), "{tokens} tokens");
                }
            }
        });
    }

    /// At SmolLM2's shapes (576 -> 1536 and back, a prompt and one token),
    /// every product is within the bound the activations' rounding allows
    /// of the exact f32 product: `Σ_j |w_j|·d_x/2`, `d_x` the scale of the
    /// block holding `x_j`.
    #[test]
    fn quantized_products_stay_within_the_activation_rounding_bound() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for (rows, cols) in [(1536, 576), (576, 1536)] {
                let (w, exact) = weight(dtype, rows, cols);
                for tokens in [1, 9, WIDENED_FROM_TOKENS + 4] {
                    let x: Vec<f32> = (0..tokens * cols)
                        .map(|i| (i as f32 * 0.61).sin() * (1.0 + (i % 7) as f32))
                        .collect();
                    let y = w.forward(&x, tokens).expect("forward");
                    for t in 0..tokens {
                        let xt = &x[t * cols..][..cols];
                        let steps: Vec<f32> = xt
                            .chunks(BLOCK)
                            .map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs())) / 32767.0)
                            .collect();
                        for r in 0..rows {
                            let wr = &exact[r * cols..][..cols];
                            let want: f64 = wr
                                .iter()
                                .zip(xt)
                                .map(|(&w, &x)| f64::from(w) * f64::from(x))
                                .sum();
                            let bound: f64 = wr
                                .iter()
                                .enumerate()
                                .map(|(c, w)| f64::from(w.abs() * steps[c / BLOCK] / 2.0))
                                .sum();
                            let got = f64::from(y[t * rows + r]);
                            assert!(
                                (got - want).abs() <= bound * 1.001 + 1e-4,
                                "{dtype:?} {rows}x{cols} token {t} row {r}: {got} vs {want} (bound {bound})"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Weights read from a GGUF's blocks equal candle's reading of the same
    /// tensors; a file cut short is an error that names the tensor.
    #[test]
    fn weights_read_straight_from_a_gguf() {
        use candle_core::quantized::gguf_file::{self, Content};
        use std::io::Cursor;
        let tensors: Vec<(String, QTensor)> = [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::F32]
            .into_iter()
            .enumerate()
            .map(|(i, dtype)| {
                let values: Vec<f32> = (0..24 * 64)
                    .map(|j| ((j * 31 + i) % 97) as f32 / 50.0 - 1.0)
                    .collect();
                let t = Tensor::from_vec(values, (24, 64), &Device::Cpu).expect("tensor");
                (
                    format!("w{i}"),
                    QTensor::quantize(&t, dtype).expect("quantize"),
                )
            })
            .collect();
        let named: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut file = Cursor::new(Vec::new());
        gguf_file::write(&mut file, &[], &named).expect("write");
        let bytes = file.into_inner();
        let path = Path::new("test.gguf");
        let mut reader = Cursor::new(bytes.clone());
        let content = Content::read(&mut reader).expect("header");
        for (name, tensor) in &tensors {
            let info = &content.tensor_infos[name];
            let offset = content.tensor_data_offset;
            let read =
                QWeight::read_gguf(path, &mut reader, name, info, offset, None).expect("read");
            let through_candle = QWeight::from_qtensor(tensor).expect("candle");
            // A rotation of each head's rows, as the loader's unpermuting.
            let order: Vec<usize> = (0..24).map(|k| (k / 8) * 8 + (k * 3 + 1) % 8).collect();
            let reordered = QWeight::read_gguf(path, &mut reader, name, info, offset, Some(&order))
                .expect("read in order");
            let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 64]);
            for (row, &from) in order.iter().enumerate() {
                read.row_into(row, &mut a);
                through_candle.row_into(row, &mut b);
                assert_eq!(a, b, "{name} row {row}");
                reordered.row_into(row, &mut a);
                through_candle.row_into(from, &mut b);
                assert_eq!(a, b, "{name} row {row} in order");
            }
            for bad in [vec![0; 24], (0..23).collect(), (1..25).collect()] {
                let err = QWeight::read_gguf(path, &mut reader, name, info, offset, Some(&bad))
                    .expect_err("not a permutation of the rows");
                assert!(err.to_string().contains("order"), "{err}");
            }
        }
        let last = &content.tensor_infos["w1"];
        let cut = (content.tensor_data_offset + last.offset + 100) as usize;
        let mut short = Cursor::new(bytes[..cut].to_vec());
        let err = QWeight::read_gguf(
            path,
            &mut short,
            "w1",
            last,
            content.tensor_data_offset,
            None,
        )
        .expect_err("cut short");
        assert!(err.to_string().contains("w1"), "{err}");
    }

    #[test]
    fn halves_widen_exactly() {
        for (bits, value) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x3555, 0.333_251_95),
        ] {
            assert_eq!(f16_to_f32(bits), value);
        }
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn every_half_widens_as_the_reference_does() {
        for bits in 0..=u16::MAX {
            let (ours, reference) = (f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            if reference.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), reference.to_bits(), "{bits:#06x}");
            }
        }
    }
}
