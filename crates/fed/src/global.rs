//! The federation's global model: a LoRA adapter whose tensors (names and
//! shapes) the operator fixes in the federation's configuration, carried as
//! a PEFT-style safetensors file and, inside a round, as one flat `f32`
//! vector.
//!
//! Server and devices both turn files into vectors and back here, so the
//! flat order the protocol sums in (tensors in configuration order, each
//! row-major) is defined once. The file itself is ordinary safetensors
//! (`F32` tensors under their PEFT names, `{"format": "pt"}` metadata), so
//! a published adapter loads in the wider ecosystem as is.
//!
//! - [`AdapterLayout::initial`]: version 0, deterministic from the
//!   federation, initialised as PEFT initialises LoRA: every `lora_A`
//!   matrix uniform in `±1/√fan_in` (PyTorch's `kaiming_uniform_(a=√5)`
//!   bound), every `lora_B` matrix (and any other tensor) zero, so the
//!   adapter's delta `B·A` starts at exactly zero.
//! - [`apply_mean`]: the server's step, `global + lr · mean update`.
//! - [`GlobalStatement`]: what the server signs when it publishes a
//!   version, and what a device checks against the server key it pinned
//!   when it joined.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{CryptoError, IdentityKey};
use crate::ids::FederationId;
use crate::mask::{self, MaskSeed};
use crate::wire::MAX_VECTOR_LEN;

/// Tensor name used when a federation states only a parameter count.
pub const FLAT_TENSOR_NAME: &str = "adapter.flat";

/// Domain tag of the version-0 seed.
const INITIAL_DOMAIN: &[u8] = b"hearth-global-v0\0";
/// Domain tag of publication statements.
pub const STATEMENT_DOMAIN: &[u8] = b"hearth-global-v1\0";

/// Why an adapter layout, vector or file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A layout without tensors.
    #[error("an adapter needs at least one tensor")]
    Empty,
    /// A tensor with an empty or repeated name, or a zero dimension.
    #[error("tensor {name:?}: {reason}")]
    BadTensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// More parameters than a round can carry.
    #[error("{parameters} parameters exceed the round limit of {max}")]
    TooLarge {
        /// Parameters in the layout.
        parameters: u64,
        /// [`MAX_VECTOR_LEN`].
        max: u32,
    },
    /// A vector of the wrong length for the layout.
    #[error("vector has {got} entries, the adapter has {expected}")]
    Length {
        /// The layout's parameter count.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// The bytes are not a safetensors file.
    #[error("not a safetensors file: {0}")]
    Format(String),
    /// The file lacks a tensor of the layout.
    #[error("the adapter file has no tensor {0:?}")]
    MissingTensor(String),
    /// A tensor whose type or shape is not the layout's.
    #[error("tensor {name:?} in the file is {found}, the layout says F32 {expected:?}")]
    WrongTensor {
        /// The tensor.
        name: String,
        /// Layout shape.
        expected: Vec<usize>,
        /// What the file holds.
        found: String,
    },
    /// The file holds tensors the layout does not name.
    #[error("the adapter file has {found} tensors, the layout {expected}")]
    ExtraTensors {
        /// Layout tensors.
        expected: usize,
        /// File tensors.
        found: usize,
    },
}

/// One tensor of an adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorShape {
    /// PEFT name (`base_model.model.….lora_A.weight`).
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
}

impl TensorShape {
    fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// PEFT's `lora_A.weight` (`[r, in]`): initialised uniformly.
    fn is_lora_a(&self) -> bool {
        self.name.contains("lora_A")
    }

    /// `fan_in` as PyTorch computes it: every dimension but the first.
    fn fan_in(&self) -> usize {
        match self.shape.split_first() {
            Some((_, rest)) if !rest.is_empty() => rest.iter().product(),
            _ => self.len(),
        }
    }
}

/// An adapter's tensors in flattening order, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterLayout {
    tensors: Vec<TensorShape>,
    parameters: usize,
}

impl AdapterLayout {
    /// A layout of these tensors, flattened in this order. Names must be
    /// unique and non-empty, dimensions non-zero, and the total at most
    /// [`MAX_VECTOR_LEN`].
    pub fn new(tensors: Vec<TensorShape>) -> Result<Self, AdapterError> {
        if tensors.is_empty() {
            return Err(AdapterError::Empty);
        }
        let mut names = std::collections::HashSet::new();
        let mut total: u64 = 0;
        for t in &tensors {
            let bad = |reason| AdapterError::BadTensor {
                name: t.name.clone(),
                reason,
            };
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(bad("name is empty or repeated"));
            }
            if t.shape.is_empty() || t.shape.contains(&0) {
                return Err(bad("needs non-zero dimensions"));
            }
            let count = t
                .shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .ok_or_else(|| bad("parameter count overflows"))?;
            total = total.saturating_add(count);
        }
        if total > u64::from(MAX_VECTOR_LEN) {
            return Err(AdapterError::TooLarge {
                parameters: total,
                max: MAX_VECTOR_LEN,
            });
        }
        Ok(Self {
            tensors,
            parameters: total as usize,
        })
    }

    /// One flat tensor named [`FLAT_TENSOR_NAME`], for federations that
    /// state only a parameter count.
    pub fn flat(parameters: usize) -> Result<Self, AdapterError> {
        Self::new(vec![TensorShape {
            name: FLAT_TENSOR_NAME.to_owned(),
            shape: vec![parameters],
        }])
    }

    /// The tensors, in flattening order.
    pub fn tensors(&self) -> &[TensorShape] {
        &self.tensors
    }

    /// Total parameters: the length of the round's vector.
    pub fn parameter_count(&self) -> usize {
        self.parameters
    }

    /// Version 0 of `federation`'s adapter: `lora_A` tensors uniform in
    /// `[-1/√fan_in, 1/√fan_in)`, everything else zero. The randomness is
    /// the ChaCha20 keystream (the masks' PRG) under
    /// `SHA-256("hearth-global-v0\0" || federation)`, one 32-bit word per
    /// parameter in flat order, the top 24 bits read as a fraction in
    /// `[0, 1)`; anyone can recompute it from the federation's name.
    pub fn initial(&self, federation: &FederationId) -> Vec<f32> {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(INITIAL_DOMAIN)
            .chain_update(federation.as_bytes())
            .finalize()
            .into();
        // Within MAX_MASK_LEN by construction (layouts are at most
        // MAX_VECTOR_LEN); should it ever fail, zeros are still a valid
        // (if less useful) start.
        let words = mask::expand(&MaskSeed::from_bytes(seed), self.parameters)
            .unwrap_or_else(|_| vec![0; self.parameters]);
        let mut out = Vec::with_capacity(self.parameters);
        let mut words = words.into_iter();
        for t in &self.tensors {
            let n = t.len();
            if t.is_lora_a() {
                let bound = 1.0 / (t.fan_in() as f64).sqrt();
                out.extend(words.by_ref().take(n).map(|w| {
                    let u = f64::from(w >> 8) / f64::from(1u32 << 24);
                    ((2.0 * u - 1.0) * bound) as f32
                }));
            } else {
                words.by_ref().take(n).for_each(drop);
                out.extend(std::iter::repeat_n(0.0f32, n));
            }
        }
        out
    }

    /// The safetensors file of a flat vector in this layout.
    pub fn to_safetensors(&self, flat: &[f32]) -> Result<Vec<u8>, AdapterError> {
        if flat.len() != self.parameters {
            return Err(AdapterError::Length {
                expected: self.parameters,
                got: flat.len(),
            });
        }
        let mut buffers = Vec::with_capacity(self.tensors.len());
        let mut rest = flat;
        for t in &self.tensors {
            let (head, tail) = rest.split_at(t.len().min(rest.len()));
            rest = tail;
            buffers.push(
                head.iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<u8>>(),
            );
        }
        let views = self
            .tensors
            .iter()
            .zip(&buffers)
            .map(|(t, bytes)| {
                safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                    .map(|view| (t.name.as_str(), view))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AdapterError::Format(e.to_string()))?;
        // One metadata key: the header is then the same bytes on every
        // run (a `HashMap` of several keys would not be), so equal
        // adapters have equal sha256.
        let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| AdapterError::Format(e.to_string()))
    }

    /// The flat vector of a safetensors file, which must hold exactly this
    /// layout's tensors as `F32`.
    pub fn from_safetensors(&self, bytes: &[u8]) -> Result<Vec<f32>, AdapterError> {
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| AdapterError::Format(e.to_string()))?;
        if file.len() != self.tensors.len() {
            return Err(AdapterError::ExtraTensors {
                expected: self.tensors.len(),
                found: file.len(),
            });
        }
        let mut out = Vec::with_capacity(self.parameters);
        for t in &self.tensors {
            let view = file
                .tensor(&t.name)
                .map_err(|_| AdapterError::MissingTensor(t.name.clone()))?;
            if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
                return Err(AdapterError::WrongTensor {
                    name: t.name.clone(),
                    expected: t.shape.clone(),
                    found: format!("{:?} {:?}", view.dtype(), view.shape()),
                });
            }
            out.extend(
                view.data()
                    .as_chunks::<4>()
                    .0
                    .iter()
                    .map(|b| f32::from_le_bytes(*b)),
            );
        }
        Ok(out)
    }
}

/// The server's step: `global + lr · mean`, each coordinate computed in
/// `f64` and rounded once to `f32`.
pub fn apply_mean(
    global: &[f32],
    mean: &[f32],
    learning_rate: f64,
) -> Result<Vec<f32>, AdapterError> {
    if global.len() != mean.len() {
        return Err(AdapterError::Length {
            expected: global.len(),
            got: mean.len(),
        });
    }
    Ok(global
        .iter()
        .zip(mean)
        .map(|(&g, &m)| (f64::from(g) + learning_rate * f64::from(m)) as f32)
        .collect())
}

/// What the server signs when it publishes a global adapter version.
///
/// Signed bytes ([`GlobalStatement::signing_bytes`]), fixed width except
/// the length-prefixed name:
///
/// ```text
/// "hearth-global-v1\0" || len(federation) u32 BE || federation (UTF-8)
///   || version u64 BE || round u64 BE || adapter sha256 (32)
///   || contributors u64 BE || 0x00 (no ε) | 0x01 || ε as f64 bits BE
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalStatement {
    /// The federation's name.
    pub federation: String,
    /// The version: 0 for the initial adapter, then +1 per published round.
    pub version: u64,
    /// The round that produced it (0 for version 0).
    pub round: u64,
    /// SHA-256 of the safetensors bytes.
    #[serde(with = "crate::wire::encoding::hex_array")]
    pub adapter_sha256: [u8; 32],
    /// Devices whose updates are in it.
    pub contributors: u64,
    /// The round's ε at the federation's δ; `None` when the round added no
    /// noise (no finite guarantee) or for version 0. In JSON, the decimal
    /// text ([`format_epsilon`]), so it round-trips bit for bit whatever
    /// the JSON parser does with numbers.
    #[serde(with = "epsilon_text")]
    pub epsilon: Option<f64>,
}

/// ε as text: the shortest decimal that parses back to the same `f64`, or
/// `none`. (Rust formats and parses `f64` exactly.)
pub fn format_epsilon(epsilon: Option<f64>) -> String {
    epsilon.map_or_else(|| "none".to_owned(), |e| e.to_string())
}

/// The inverse of [`format_epsilon`].
pub fn parse_epsilon(text: &str) -> Option<Option<f64>> {
    match text {
        "none" => Some(None),
        t => t.parse::<f64>().ok().filter(|e| e.is_finite()).map(Some),
    }
}

mod epsilon_text {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(e: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_epsilon(*e))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_epsilon(&text).ok_or_else(|| D::Error::custom("epsilon is not a number"))
    }
}

impl GlobalStatement {
    /// The exact bytes signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let name = self.federation.as_bytes();
        let mut out = Vec::with_capacity(STATEMENT_DOMAIN.len() + 4 + name.len() + 8 * 4 + 41);
        out.extend_from_slice(STATEMENT_DOMAIN);
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.adapter_sha256);
        out.extend_from_slice(&self.contributors.to_be_bytes());
        match self.epsilon {
            None => out.push(0),
            Some(e) => {
                out.push(1);
                out.extend_from_slice(&e.to_bits().to_be_bytes());
            }
        }
        out
    }

    /// Signs the statement with the server's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(&self.signing_bytes())
    }

    /// Checks the server's signature (strict Ed25519).
    pub fn verify(
        &self,
        server_key: &IdentityKey,
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        server_key.verify(&self.signing_bytes(), signature)
    }
}

/// SHA-256 of adapter bytes.
pub fn adapter_sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn lora() -> AdapterLayout {
        AdapterLayout::new(vec![
            TensorShape {
                name: "base_model.model.layers.0.q_proj.lora_A.weight".into(),
                shape: vec![4, 64],
            },
            TensorShape {
                name: "base_model.model.layers.0.q_proj.lora_B.weight".into(),
                shape: vec![32, 4],
            },
        ])
        .unwrap()
    }

    #[test]
    fn version_zero_follows_peft_and_is_deterministic() {
        let layout = lora();
        let fed = FederationId::from_name("notes");
        let v0 = layout.initial(&fed);
        assert_eq!(v0.len(), 4 * 64 + 32 * 4);
        assert_eq!(v0, layout.initial(&fed));
        assert_ne!(v0, layout.initial(&FederationId::from_name("other")));
        let (a, b) = v0.split_at(4 * 64);
        let bound = 1.0 / 8.0;
        assert!(a.iter().all(|x| x.abs() <= bound));
        // Spread over the interval, not clustered.
        assert!(a.iter().any(|&x| x > bound * 0.8) && a.iter().any(|&x| x < -bound * 0.8));
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!(b.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn safetensors_round_trip_in_layout_order_and_are_stable() {
        let layout = lora();
        let flat: Vec<f32> = (0..layout.parameter_count())
            .map(|i| i as f32 * 0.5)
            .collect();
        let bytes = layout.to_safetensors(&flat).unwrap();
        assert_eq!(bytes, layout.to_safetensors(&flat).unwrap());
        assert_eq!(layout.from_safetensors(&bytes).unwrap(), flat);
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let b = file
            .tensor("base_model.model.layers.0.q_proj.lora_B.weight")
            .unwrap();
        assert_eq!(b.shape(), [32, 4]);
        assert_eq!(f32::from_le_bytes(b.data()[..4].try_into().unwrap()), 128.0);

        assert!(matches!(
            layout.to_safetensors(&flat[1..]),
            Err(AdapterError::Length { .. })
        ));
        let other = AdapterLayout::flat(layout.parameter_count()).unwrap();
        assert!(matches!(
            other.from_safetensors(&bytes),
            Err(AdapterError::ExtraTensors { .. })
        ));
        assert!(matches!(
            layout.from_safetensors(b"not a file"),
            Err(AdapterError::Format(_))
        ));
    }

    #[test]
    fn layouts_are_validated() {
        assert_eq!(AdapterLayout::new(vec![]), Err(AdapterError::Empty));
        let t = |name: &str, shape: Vec<usize>| TensorShape {
            name: name.into(),
            shape,
        };
        assert!(AdapterLayout::new(vec![t("a", vec![2]), t("a", vec![3])]).is_err());
        assert!(AdapterLayout::new(vec![t("a", vec![2, 0])]).is_err());
        assert!(matches!(
            AdapterLayout::new(vec![t("a", vec![1 << 20, 1 << 20])]),
            Err(AdapterError::TooLarge { .. })
        ));
    }

    #[test]
    fn statements_sign_every_field() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = IdentityKey::from_bytes(key.verifying_key().as_bytes()).unwrap();
        let statement = GlobalStatement {
            federation: "notes".into(),
            version: 2,
            round: 5,
            adapter_sha256: [7; 32],
            contributors: 9,
            epsilon: Some(1.5),
        };
        let sig = statement.sign(&key);
        statement.verify(&public, &sig).unwrap();
        let changed = [
            GlobalStatement {
                version: 3,
                ..statement.clone()
            },
            GlobalStatement {
                round: 4,
                ..statement.clone()
            },
            GlobalStatement {
                adapter_sha256: [8; 32],
                ..statement.clone()
            },
            GlobalStatement {
                contributors: 8,
                ..statement.clone()
            },
            GlobalStatement {
                epsilon: None,
                ..statement.clone()
            },
            GlobalStatement {
                epsilon: Some(1.25),
                ..statement.clone()
            },
            GlobalStatement {
                federation: "photos".into(),
                ..statement.clone()
            },
        ];
        for c in changed {
            assert!(c.verify(&public, &sig).is_err(), "{c:?}");
        }
    }

    #[test]
    fn statements_round_trip_through_json_exactly() {
        let statement = GlobalStatement {
            federation: "notes".into(),
            version: 1,
            round: 1,
            adapter_sha256: [1; 32],
            contributors: 3,
            epsilon: Some(0.1 + 0.2),
        };
        let json = serde_json::to_string(&statement).unwrap();
        let back: GlobalStatement = serde_json::from_str(&json).unwrap();
        assert_eq!(back.signing_bytes(), statement.signing_bytes());
        assert_eq!(parse_epsilon("none"), Some(None));
        assert_eq!(parse_epsilon("inf"), None);
    }

    #[test]
    fn the_server_step_is_global_plus_lr_times_mean() {
        let g = apply_mean(&[1.0, 2.0], &[0.5, -1.0], 0.5).unwrap();
        assert_eq!(g, [1.25, 1.5]);
        assert!(apply_mean(&[1.0], &[], 1.0).is_err());
    }
}
