//! EfficientNet's forward pass when nothing needs a gradient (embedding
//! photos, the frozen prefix of fine-tuning), channels last on the CPU.
//!
//! The differentiable pass in `mod.rs` keeps candle tensors in NCHW and
//! kernels with backward passes; this one borrows the same folded weights
//! and runs each image through `crate::kernels::channels_last`, where the
//! depthwise convolutions vectorise across channels instead of along
//! 7-pixel rows (see that module for the numbers). Both compute the same
//! function; `tests.rs` checks them against each other at Lite0's shapes.

use candle_core::{DType, Layout, Storage, Tensor};
use rayon::prelude::*;

use super::{ConvBn, EfficientNet};
use crate::error::{MlError, Result};
use crate::kernels::channels_last::{Element, Pixels, dense, depthwise, pointwise, transpose};
use crate::kernels::common::Float;

/// What the pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// The pooled `(batch, head_channels)` embedding.
    Embedding,
    /// The `(batch, c, h, w)` input of block `k`.
    Block(usize),
}

/// A convolution's folded weight and bias, borrowed from its tensors.
#[derive(Clone, Copy)]
struct Conv<'a, T> {
    weight: &'a [T],
    bias: &'a [T],
    k: usize,
    stride: usize,
}

impl EfficientNet {
    /// The pass for `x` `(batch, c, h, w)`, or `None` where it does not
    /// apply: off the CPU, outside f32/f64, or when `x` or a weight is
    /// being differentiated (fine-tuning's trainable tail).
    pub(super) fn channels_last(&self, x: &Tensor, until: Until) -> Result<Option<Tensor>> {
        let convs = self.convs();
        let same_kind = |t: &Tensor| t.dtype() == x.dtype() && t.device().is_cpu();
        let applies = x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && !x.track_op()
            && convs
                .iter()
                .all(|c| same_kind(&c.weight) && same_kind(&c.bias))
            && convs
                .iter()
                .all(|c| !c.weight.track_op() && !c.bias.track_op());
        if !applies {
            return Ok(None);
        }
        Ok(Some(match x.dtype() {
            DType::F64 => self.run::<f64>(x, &convs, until)?,
            _ => self.run::<f32>(x, &convs, until)?,
        }))
    }

    /// Every convolution in the order the pass reads them.
    fn convs(&self) -> Vec<&ConvBn> {
        let mut convs = vec![&self.stem];
        for block in &self.blocks {
            convs.extend(&block.expand);
            convs.push(&block.depthwise);
            convs.push(&block.project);
        }
        convs.push(&self.head);
        convs
    }

    fn run<T: Element>(&self, x: &Tensor, convs: &[&ConvBn], until: Until) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (batch, c, h, w) = x.dims4()?;
        let guards: Vec<_> = convs
            .iter()
            .flat_map(|c| [c.weight.storage_and_layout(), c.bias.storage_and_layout()])
            .collect();
        let slices = guards
            .iter()
            .map(|(storage, layout)| cpu_slice::<T>(storage, layout))
            .collect::<Result<Vec<_>>>()?;
        // Every weight `(out, ...)` transposed to the layout the kernels
        // read (`(in, out)`, or `(taps, channels)` for a depthwise one),
        // once for the batch.
        let transposed: Vec<Vec<T>> = slices
            .chunks_exact(2)
            .map(|pair| transpose(pair[0], pair[1].len()))
            .collect();
        let layers = convs
            .iter()
            .zip(slices.chunks_exact(2))
            .zip(&transposed)
            .map(|((conv, pair), weight)| {
                Ok(Conv {
                    weight,
                    bias: pair[1],
                    k: conv.weight.dim(3)?,
                    stride: conv.stride,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (input, input_layout) = x.storage_and_layout();
        let input = cpu_slice::<T>(&input, input_layout)?;
        let per_image = c * h * w;
        // The output is reduced on the thread that made it, so that only
        // the small result leaves it and the activations go back to its
        // buffers.
        let outputs = input
            .par_chunks(per_image.max(1))
            .take(batch)
            .map_init(Buffers::default, |buffers, image| {
                let out = self.image(&layers, image, (c, h, w), until, buffers)?;
                let values = match until {
                    Until::Embedding => out.mean(),
                    Until::Block(_) => out.to_planes(),
                };
                let shape = (out.channels, out.h, out.w);
                buffers.give(out);
                Ok((values, shape))
            })
            .collect::<Result<Vec<_>>>()?;
        let shape: Vec<usize> = match (until, outputs.first()) {
            (Until::Embedding, _) => vec![batch, self.cfg.head_channels],
            (Until::Block(_), Some((_, (c, h, w)))) => vec![batch, *c, *h, *w],
            (Until::Block(_), None) => vec![0, 0, 0, 0],
        };
        let values: Vec<T> = outputs.into_iter().flat_map(|(v, _)| v).collect();
        Ok(Tensor::from_vec(values, shape, x.device())?)
    }

    /// One `(c, h, w)` image through the stem and the blocks (and the
    /// head, for an embedding).
    fn image<T: Element>(
        &self,
        layers: &[Conv<'_, T>],
        image: &[T],
        size: (usize, usize, usize),
        until: Until,
        buffers: &mut Buffers<T>,
    ) -> Result<Pixels<T>> {
        let mut layers = layers.iter();
        let mut next = || {
            layers
                .next()
                .copied()
                .ok_or_else(|| MlError::InvalidRequest("a convolution is missing".into()))
        };
        let stem = next()?;
        let mut h = dense(
            image,
            size,
            stem.weight,
            stem.bias,
            (stem.k, stem.stride),
            true,
            buffers.take(),
        )?;
        let last = match until {
            Until::Embedding => self.blocks.len(),
            Until::Block(k) => k,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let expand = block.expand.as_ref().map(|_| next()).transpose()?;
            let (dw, project) = (next()?, next()?);
            if i >= last {
                continue;
            }
            let expanded = match expand {
                Some(e) => Some(pointwise(&h, e.weight, e.bias, None, true, buffers.take())?),
                None => None,
            };
            let mid = depthwise(
                expanded.as_ref().unwrap_or(&h),
                dw.weight,
                dw.bias,
                dw.k,
                dw.stride,
                true,
                buffers.take(),
            )?;
            if let Some(expanded) = expanded {
                buffers.give(expanded);
            }
            let residual = block.residual.then_some(&h);
            let out = pointwise(
                &mid,
                project.weight,
                project.bias,
                residual,
                false,
                buffers.take(),
            )?;
            buffers.give(mid);
            buffers.give(std::mem::replace(&mut h, out));
        }
        if until == Until::Embedding {
            let head = next()?;
            let out = pointwise(&h, head.weight, head.bias, None, true, buffers.take())?;
            buffers.give(std::mem::replace(&mut h, out));
        }
        Ok(h)
    }
}

/// Allocations of activations a thread no longer needs, for its next
/// layers and images: the kernels write into a given buffer, so that a
/// thread's few multi-megabyte buffers are mapped once, not once a layer.
struct Buffers<T>(Vec<Vec<T>>);

impl<T> Default for Buffers<T> {
    fn default() -> Self {
        Buffers(Vec::new())
    }
}

impl<T> Buffers<T> {
    /// The largest buffer kept (or a new one).
    fn take(&mut self) -> Vec<T> {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps `pixels`' allocation, the largest last.
    fn give(&mut self, pixels: Pixels<T>) {
        self.0.push(pixels.data);
        self.0.sort_by_key(Vec::capacity);
    }
}

/// A CPU tensor's values, borrowed.
fn cpu_slice<'g, T: Float>(storage: &'g Storage, layout: &Layout) -> Result<&'g [T]> {
    let (Storage::Cpu(cpu), Some((start, end))) = (storage, layout.contiguous_offsets()) else {
        return Err(MlError::InvalidRequest(
            "the channels-last pass needs contiguous CPU tensors".into(),
        ));
    };
    Ok(&cpu.as_slice::<T>()?[start..end])
}
