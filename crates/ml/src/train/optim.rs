//! AdamW (Loshchilov & Hutter 2019) whose state can be saved and restored.
//!
//! candle-nn's AdamW keeps its moments private, so a run using it could not
//! be paused and resumed exactly; this one exposes them as named tensors
//! that go into the checkpoint.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// AdamW's hyper-parameters (the learning rate comes per step from the
/// schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW over a fixed, ordered list of named parameters.
#[derive(Debug)]
pub struct AdamW {
    params: AdamWParams,
    step: u64,
    names: Vec<String>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

impl AdamW {
    /// Zero moments for `vars`.
    pub fn new(params: AdamWParams, vars: &[(String, Var)]) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            params,
            step: 0,
            names: vars.iter().map(|(n, _)| n.clone()).collect(),
            first: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            second: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// Updates finished so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One update of every parameter from its gradient, at rate `lr`.
    pub fn step(&mut self, vars: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        self.step += 1;
        let t = self.step as i32;
        let first_correction = 1.0 / (1.0 - beta1.powi(t));
        let second_correction = 1.0 / (1.0 - beta2.powi(t));
        for (i, ((_, var), grad)) in vars.iter().zip(grads).enumerate() {
            // candle detaches the gradients it propagates, but a variable's
            // own gradient still records how it was computed, from the
            // step's activations; moments built from it would keep every
            // step's graph alive (memory growing by a forward pass a step).
            let grad = grad.detach();
            let grad = &grad;
            let m = ((&self.first[i] * beta1)? + (grad * (1.0 - beta1))?)?;
            let v = ((&self.second[i] * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m * first_correction)? / ((&v * second_correction)?.sqrt()? + eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first[i] = m;
            self.second[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors, for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::new();
        for (i, name) in self.names.iter().enumerate() {
            state.insert(
                format!("m.{name}"),
                self.first[i].to_device(&candle_core::Device::Cpu)?,
            );
            state.insert(
                format!("v.{name}"),
                self.second[i].to_device(&candle_core::Device::Cpu)?,
            );
        }
        Ok(state)
    }

    /// Restores moments and step count saved by [`AdamW::state`].
    pub fn restore(
        params: AdamWParams,
        vars: &[(String, Var)],
        state: &HashMap<String, Tensor>,
        step: u64,
    ) -> Result<Self> {
        let mut optimizer = AdamW::new(params, vars)?;
        optimizer.step = step;
        for (i, (name, var)) in vars.iter().enumerate() {
            let get = |key: String| -> Result<Tensor> {
                let tensor = state.get(&key).ok_or_else(|| {
                    MlError::InvalidRequest(format!("optimizer state has no {key}"))
                })?;
                if tensor.dims() != var.dims() {
                    return Err(MlError::InvalidRequest(format!(
                        "optimizer state {key} has the wrong shape"
                    )));
                }
                Ok(tensor.to_device(var.device())?)
            };
            optimizer.first[i] = get(format!("m.{name}"))?;
            optimizer.second[i] = get(format!("v.{name}"))?;
        }
        Ok(optimizer)
    }
}

/// Learning rate at `step` (0-based): linear warm-up to `peak`, then cosine
/// decay to `peak * min_ratio` at `total`.
pub fn learning_rate(step: u64, total: u64, warmup: u64, peak: f64, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay_steps as f64).min(1.0);
    let floor = peak * min_ratio;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic_like_the_textbook() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).expect("var");
        let vars = vec![("x".to_owned(), x.clone())];
        let mut adam = AdamW::new(AdamWParams::default(), &vars).expect("adam");
        // First step moves each coordinate by lr against the gradient sign.
        let grads = vec![(x.as_tensor() * 2.0).expect("grad")];
        adam.step(&vars, &grads, 0.1).expect("step");
        let after: Vec<f32> = x.as_tensor().to_vec1().expect("vec");
        assert!(
            (after[0] - 2.9).abs() < 1e-5 && (after[1] + 1.9).abs() < 1e-5,
            "{after:?}"
        );
        for _ in 0..500 {
            let grads = vec![(x.as_tensor() * 2.0).expect("grad")];
            adam.step(&vars, &grads, 0.05).expect("step");
        }
        let after: Vec<f32> = x.as_tensor().to_vec1().expect("vec");
        assert!(after.iter().all(|v| v.abs() < 0.05), "{after:?}");

        let saved = adam.state().expect("state");
        let restored = AdamW::restore(AdamWParams::default(), &vars, &saved, adam.steps_taken())
            .expect("restore");
        assert_eq!(restored.steps_taken(), 501);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((learning_rate(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!(learning_rate(55, 100, 10, 1.0, 0.1) < 0.6);
    }
}
