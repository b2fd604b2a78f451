//! Cross-entropy over a large vocabulary, fused.
//!
//! Composed from candle ops, `log_softmax` + `gather` keeps about four
//! `(tokens, vocab)` tensors alive until the backward pass ends, and builds
//! as many gradients of that size (for SmolLM2, 1024 tokens x 49152 is
//! 200 MB each). Here the forward pass reads the logits once per row and
//! keeps only one loss per row; the backward pass recomputes the softmax
//! from the logits and writes `softmax - onehot` straight into the one
//! gradient it must return. CPU only; other devices use candle's ops.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::error::{MlError, Result};
use crate::ops::{cpu_rows, float_forward};

/// Mean cross-entropy of `logits` `(tokens, vocab)` against `targets`
/// `(tokens,)`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if !logits.device().is_cpu() || !matches!(logits.dtype(), DType::F32 | DType::F64) {
        return Ok(candle_nn::loss::cross_entropy(logits, targets)?);
    }
    let (_, vocab) = logits.dims2()?;
    let targets: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(MlError::InvalidRequest(format!(
            "target token {bad} is outside the vocabulary of {vocab}"
        )));
    }
    let per_token = logits.contiguous()?.apply_op1(RowCrossEntropy {
        targets: Arc::new(targets),
    })?;
    Ok(per_token.mean_all()?)
}

/// `log(sum(exp(row)))`, stably.
fn log_sum_exp(row: &[f64]) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// The logits as `(values, tokens, vocab)`.
fn rows<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(&'a [T], usize, usize)> {
    let (values, vocab) = cpu_rows::<T>(storage, layout)?;
    Ok((values, values.len() / vocab, vocab))
}

struct RowCrossEntropy {
    targets: Arc<Vec<u32>>,
}

impl RowCrossEntropy {
    fn forward<T: WithDType>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (logits, tokens, vocab) = rows::<T>(storage, layout)?;
        let losses: Vec<T> = logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &target)| {
                let row: Vec<f64> = row.iter().map(|x| x.to_f64()).collect();
                T::from_f64(log_sum_exp(&row) - row[target as usize])
            })
            .collect();
        Ok((T::to_cpu_storage_owned(losses), Shape::from(tokens)))
    }
}

impl CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_forward!(self, storage, layout)
    }

    fn bwd(
        &self,
        logits: &Tensor,
        _losses: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad: Vec<f64> = grad.to_dtype(DType::F64)?.to_vec1()?;
        Ok(Some(logits.apply_op1_no_bwd(&CrossEntropyGrad {
            targets: self.targets.clone(),
            row_grads: Arc::new(grad),
        })?))
    }
}

/// `row_grad * (softmax(row) - onehot(target))` for every row.
struct CrossEntropyGrad {
    targets: Arc<Vec<u32>>,
    row_grads: Arc<Vec<f64>>,
}

impl CrossEntropyGrad {
    fn forward<T: WithDType>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (logits, tokens, vocab) = rows::<T>(storage, layout)?;
        let mut out = vec![T::zero(); tokens * vocab];
        out.par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(self.targets.par_iter().zip(self.row_grads.par_iter()))
            .for_each(|((out, row), (&target, &g))| {
                let row: Vec<f64> = row.iter().map(|x| x.to_f64()).collect();
                let lse = log_sum_exp(&row);
                for (j, (o, x)) in out.iter_mut().zip(&row).enumerate() {
                    let onehot = if j == target as usize { 1.0 } else { 0.0 };
                    *o = T::from_f64(g * ((x - lse).exp() - onehot));
                }
            });
        Ok((T::to_cpu_storage_owned(out), Shape::from((tokens, vocab))))
    }
}

impl CustomOp1 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        float_forward!(self, storage, layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_in_value_and_gradient() {
        let device = Device::Cpu;
        let logits = Var::from_tensor(&Tensor::randn(0f64, 3.0, (5, 11), &device).expect("randn"))
            .expect("var");
        let targets = Tensor::new(&[0u32, 10, 3, 3, 7], &device).expect("targets");
        let ours = cross_entropy(logits.as_tensor(), &targets).expect("ours");
        let theirs = candle_nn::loss::cross_entropy(logits.as_tensor(), &targets).expect("candle");
        let (a, b) = (
            ours.to_scalar::<f64>().expect("a"),
            theirs.to_scalar::<f64>().expect("b"),
        );
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        let ours = ours.backward().expect("backward");
        let theirs = theirs.backward().expect("backward");
        let diff = (ours.get(logits.as_tensor()).expect("grad")
            - theirs.get(logits.as_tensor()).expect("grad"))
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f64>())
        .expect("diff");
        assert!(diff < 1e-12, "{diff}");
        assert!(
            cross_entropy(
                logits.as_tensor(),
                &Tensor::new(&[11u32, 0, 0, 0, 0], &device).expect("t")
            )
            .is_err()
        );
    }
}
