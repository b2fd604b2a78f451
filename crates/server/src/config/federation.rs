//! A federation's configuration: its model and adapter, cohort sizes, and
//! the checks that every value is usable before the server starts. The
//! settings each round runs with (deadlines, SecAgg+, DP, pacing) are in
//! [`super::round`].

use std::collections::HashSet;

use hearth_fed::global::{AdapterError, AdapterLayout, TensorShape};
use serde::{Deserialize, Serialize};

use super::{CheckinPacing, ConfigError, Deadlines, FederationDp, SecAggConfig, invalid};

/// One `[[federation]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Stable identifier used in URLs (`[a-z0-9][a-z0-9._-]*`, at most 64).
    pub id: String,
    /// The frozen model every client trains adapters for.
    pub base_model: BaseModel,
    /// Shape of the adapter being averaged.
    pub adapter: AdapterShape,
    /// Fewest clients a round may start with (after the gather deadline).
    pub min_clients: u32,
    /// Clients a round aims to finish with.
    pub target_clients: u32,
    /// Over-selection factor absorbing dropouts: a round invites
    /// `ceil(target_clients * over_selection)` clients.
    #[serde(default = "default_over_selection")]
    pub over_selection: f64,
    /// How long each stage may take.
    #[serde(default)]
    pub deadlines: Deadlines,
    /// Secure aggregation neighbourhood settings.
    #[serde(default)]
    pub secagg: SecAggConfig,
    /// Differential privacy settings every client applies.
    pub dp: FederationDp,
    /// Step size applied to the decoded average update.
    #[serde(default = "default_server_learning_rate")]
    pub server_learning_rate: f64,
    /// Check-in pacing.
    #[serde(default)]
    pub checkin: CheckinPacing,
}

/// The base model a federation trains against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// Registry name of the model.
    pub id: String,
    /// SHA-256 of the model's weights (lower-case hex).
    pub sha256: String,
}

/// The adapter's tensors, or just its size, or both (then they must agree).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterShape {
    /// Named tensors with their shapes, in the order they are flattened.
    #[serde(default)]
    pub tensors: Vec<TensorSpec>,
    /// Total number of parameters.
    pub parameters: Option<u64>,
}

/// One adapter tensor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name as in the adapter file.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<u64>,
}

/// Whether `id` is a usable federation id.
pub fn valid_federation_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.len() <= 64
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl FederationConfig {
    /// Devices invited to a round: `ceil(target_clients * over_selection)`.
    pub fn cohort_target(&self) -> u32 {
        // Validated: target <= 100_000 and over_selection <= 3, so this fits.
        (f64::from(self.target_clients) * self.over_selection).ceil() as u32
    }

    /// Total adapter parameters, from the tensors or the stated count.
    pub fn parameter_count(&self) -> u64 {
        match self.adapter.parameters {
            Some(n) => n,
            None => tensor_parameters(&self.adapter.tensors).unwrap_or(0),
        }
    }

    /// The adapter's tensors in flattening order: the configured tensors,
    /// or one flat tensor when only a count is given.
    pub fn adapter_layout(&self) -> Result<AdapterLayout, AdapterError> {
        if self.adapter.tensors.is_empty() {
            return AdapterLayout::flat(
                usize::try_from(self.parameter_count()).unwrap_or(usize::MAX),
            );
        }
        AdapterLayout::new(
            self.adapter
                .tensors
                .iter()
                .map(|t| TensorShape {
                    name: t.name.clone(),
                    shape: t
                        .shape
                        .iter()
                        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                        .collect(),
                })
                .collect(),
        )
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let place = |field: &str| format!("federation {:?}: {field}", self.id);
        if !valid_federation_id(&self.id) {
            return Err(invalid(
                format!("federation {:?}", self.id),
                "id must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        if self.base_model.id.trim().is_empty() {
            return Err(invalid(place("base_model.id"), "must not be empty"));
        }
        let sha = &self.base_model.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(
                place("base_model.sha256"),
                "must be 64 lower-case hex digits",
            ));
        }
        self.validate_adapter(&place)?;
        if self.min_clients < 2 {
            return Err(invalid(
                place("min_clients"),
                "secure aggregation needs at least 2 clients",
            ));
        }
        if self.target_clients < self.min_clients {
            return Err(invalid(
                place("target_clients"),
                format!("must be at least min_clients ({})", self.min_clients),
            ));
        }
        if self.target_clients > 100_000 {
            return Err(invalid(place("target_clients"), "must be at most 100000"));
        }
        if !(1.0..=3.0).contains(&self.over_selection) {
            return Err(invalid(
                place("over_selection"),
                "must be between 1.0 and 3.0",
            ));
        }
        let d = &self.deadlines;
        for (field, secs) in [
            ("deadlines.gather_secs", d.gather_secs),
            ("deadlines.advertise_keys_secs", d.advertise_keys_secs),
            ("deadlines.share_keys_secs", d.share_keys_secs),
            ("deadlines.masked_input_secs", d.masked_input_secs),
            ("deadlines.consistency_check_secs", d.consistency_check_secs),
            ("deadlines.unmasking_secs", d.unmasking_secs),
        ] {
            if secs == 0 || secs > 7 * 24 * 3600 {
                return Err(invalid(
                    place(field),
                    "must be between 1 and 604800 seconds",
                ));
            }
        }
        self.validate_secagg(&place)?;
        if !(self.dp.protocol.clip_norm.is_finite() && self.dp.protocol.clip_norm > 0.0) {
            return Err(invalid(place("dp.clip_norm"), "must be a positive number"));
        }
        if !(self.dp.protocol.noise_multiplier.is_finite()
            && self.dp.protocol.noise_multiplier >= 0.0)
        {
            return Err(invalid(
                place("dp.noise_multiplier"),
                "must be zero or a positive number",
            ));
        }
        if !(self.dp.delta > 0.0 && self.dp.delta < 1.0) {
            return Err(invalid(place("dp.delta"), "must be between 0 and 1"));
        }
        if !(self.server_learning_rate.is_finite() && self.server_learning_rate > 0.0) {
            return Err(invalid(
                place("server_learning_rate"),
                "must be a positive number",
            ));
        }
        let c = &self.checkin;
        if c.min_retry_secs == 0 {
            return Err(invalid(
                place("checkin.min_retry_secs"),
                "must be at least 1",
            ));
        }
        if c.max_retry_secs < c.min_retry_secs || c.max_retry_secs > 86_400 {
            return Err(invalid(
                place("checkin.max_retry_secs"),
                format!(
                    "must be between min_retry_secs ({}) and 86400",
                    c.min_retry_secs
                ),
            ));
        }
        if !(c.target_rate_per_sec.is_finite() && c.target_rate_per_sec > 0.0) {
            return Err(invalid(
                place("checkin.target_rate_per_sec"),
                "must be a positive number",
            ));
        }
        Ok(())
    }

    fn validate_adapter(&self, place: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let adapter = &self.adapter;
        if adapter.tensors.is_empty() && adapter.parameters.is_none() {
            return Err(invalid(
                place("adapter"),
                "give the tensors (name and shape) or the total parameter count",
            ));
        }
        let mut names = HashSet::new();
        for tensor in &adapter.tensors {
            if tensor.name.is_empty() || !names.insert(tensor.name.as_str()) {
                return Err(invalid(
                    place("adapter.tensors"),
                    format!("tensor name {:?} is empty or repeated", tensor.name),
                ));
            }
            if tensor.shape.is_empty() || tensor.shape.contains(&0) {
                return Err(invalid(
                    place("adapter.tensors"),
                    format!(
                        "tensor {:?} needs a shape of non-zero dimensions",
                        tensor.name
                    ),
                ));
            }
        }
        let from_tensors =
            if adapter.tensors.is_empty() {
                None
            } else {
                Some(tensor_parameters(&adapter.tensors).ok_or_else(|| {
                    invalid(place("adapter.tensors"), "parameter count overflows")
                })?)
            };
        match (from_tensors, adapter.parameters) {
            (_, Some(0)) => Err(invalid(place("adapter.parameters"), "must be at least 1")),
            (Some(sum), Some(stated)) if sum != stated => Err(invalid(
                place("adapter.parameters"),
                format!("is {stated} but the tensors hold {sum}"),
            )),
            _ => self
                .adapter_layout()
                .map(drop)
                .map_err(|e| invalid(place("adapter"), e.to_string())),
        }
    }

    fn validate_secagg(&self, place: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let s = &self.secagg;
        if let Err(e) = s.threat_model().validate() {
            return Err(invalid(place("secagg.corrupt_fraction"), e.to_string()));
        }
        if let Some(k) = s.neighbours
            && k < 2
        {
            return Err(invalid(place("secagg.neighbours"), "must be at least 2"));
        }
        // k grows with the cohort, so t must fit the smallest cohort's k and
        // still be a majority of the largest's.
        let smallest = s.for_cohort(self.min_clients);
        let largest = s.for_cohort(self.cohort_target().max(self.min_clients));
        if let Some(t) = s.threshold {
            if t == 0 || t > smallest.neighbours {
                return Err(invalid(
                    place("secagg.threshold"),
                    format!(
                        "must be between 1 and the neighbourhood size of the smallest cohort ({})",
                        smallest.neighbours
                    ),
                ));
            }
            if 2 * t <= largest.neighbours {
                return Err(invalid(
                    place("secagg.threshold"),
                    format!(
                        "must be more than half the neighbourhood size of the largest cohort ({})",
                        largest.neighbours
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn tensor_parameters(tensors: &[TensorSpec]) -> Option<u64> {
    tensors.iter().try_fold(0u64, |sum, t| {
        let count = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))?;
        sum.checked_add(count)
    })
}

fn default_over_selection() -> f64 {
    1.3
}

fn default_server_learning_rate() -> f64 {
    1.0
}
