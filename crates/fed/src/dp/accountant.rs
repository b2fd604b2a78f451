//! Privacy accounting in zero-concentrated DP (Bun & Steinke 2016).
//!
//! zCDP suits this system: the Gaussian mechanism's cost is one number
//! `ρ = Δ²/(2σ²)`, rounds compose by adding their `ρ`s, and the total
//! converts to an `(ε, δ)` statement by `ε = ρ + 2√(ρ ln(1/δ))`
//! (Bun & Steinke 2016, Prop. 1.3). The accountant lives on the device:
//! the person's own budget, charged for each round they take part in,
//! whichever federation it belongs to.

use serde::{Deserialize, Serialize};

use super::DpError;
use crate::ids::{FederationId, RoundId};

/// `ρ` of the Gaussian mechanism with L2 sensitivity `Δ` and noise σ.
pub fn gaussian_rho(sensitivity: f64, sigma: f64) -> f64 {
    sensitivity * sensitivity / (2.0 * sigma * sigma)
}

/// `ρ` of the distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML
/// 2021, Thm. 1): `clients` parties each add `N_Z(0, client_sigma²)` to
/// every one of `dim` coordinates; the sum of their integer inputs has L2
/// sensitivity `sensitivity`. The sum of discrete Gaussians is not exactly a
/// discrete Gaussian; the theorem pays for the difference with
/// `τ = 10 Σ_{k=1}^{n−1} exp(−2π² σ_c² k/(k+1))`:
///
/// `ε = min( √(Δ²/(nσ_c²) + τd/2), Δ/(√n σ_c) + τ√d )`, and `ρ = ε²/2`.
///
/// For `σ_c >= 1`, `τ < 10 n e^{−π²}` is negligible and this is the
/// continuous Gaussian's `Δ²/(2nσ_c²)`.
pub fn distributed_discrete_gaussian_rho(
    sensitivity: f64,
    client_sigma: f64,
    clients: u32,
    dim: usize,
) -> f64 {
    let n = f64::from(clients.max(1));
    let s2 = client_sigma * client_sigma;
    let tau = 10.0
        * (1..clients.max(1))
            .map(|k| {
                let k = f64::from(k);
                (-2.0 * std::f64::consts::PI.powi(2) * s2 * k / (k + 1.0)).exp()
            })
            .sum::<f64>();
    let d = dim as f64;
    let first = (sensitivity * sensitivity / (n * s2) + tau * d / 2.0).sqrt();
    let second = sensitivity / (n.sqrt() * client_sigma) + tau * d.sqrt();
    let eps = first.min(second);
    eps * eps / 2.0
}

/// The `ε` that `ρ`-zCDP implies at `δ`: `ρ + 2√(ρ ln(1/δ))`.
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// One round a person took part in and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyCharge {
    /// The federation.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Its zCDP cost.
    pub rho: f64,
}

/// A person's privacy budget across the rounds they took part in, reported
/// as `(ε, δ)` at a fixed `δ`. Serializable so the device can keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAccountant {
    delta: f64,
    charges: Vec<PrivacyCharge>,
}

impl PrivacyAccountant {
    /// An empty ledger reporting at `δ ∈ (0, 1)`.
    pub fn new(delta: f64) -> Result<Self, DpError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(DpError::InvalidParameter {
                name: "delta",
                value: delta,
            });
        }
        Ok(Self {
            delta,
            charges: Vec::new(),
        })
    }

    /// The δ at which ε is reported.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Rounds recorded so far.
    pub fn charges(&self) -> &[PrivacyCharge] {
        &self.charges
    }

    /// Total `ρ` (zCDP composes additively).
    pub fn total_rho(&self) -> f64 {
        self.charges.iter().map(|c| c.rho).sum()
    }

    /// Cumulative ε at this ledger's δ.
    pub fn epsilon(&self) -> f64 {
        zcdp_epsilon(self.total_rho(), self.delta)
    }

    /// ε of one round costing `rho`, alone, at this ledger's δ.
    pub fn round_epsilon(&self, rho: f64) -> f64 {
        zcdp_epsilon(rho, self.delta)
    }

    /// Cumulative ε if a round costing `rho` were added.
    pub fn epsilon_after(&self, rho: f64) -> f64 {
        zcdp_epsilon(self.total_rho() + rho, self.delta)
    }

    /// Whether taking part in a round costing `rho` keeps cumulative ε at
    /// most `epsilon_max`.
    pub fn can_participate(&self, rho: f64, epsilon_max: f64) -> bool {
        rho.is_finite() && rho >= 0.0 && self.epsilon_after(rho) <= epsilon_max
    }

    /// Records a round. A round is charged once: recording the same
    /// (federation, round) again is an error, not a second charge.
    pub fn record(
        &mut self,
        federation: FederationId,
        round: RoundId,
        rho: f64,
    ) -> Result<(), DpError> {
        if !(rho.is_finite() && rho >= 0.0) {
            return Err(DpError::InvalidParameter {
                name: "rho",
                value: rho,
            });
        }
        if self
            .charges
            .iter()
            .any(|c| c.federation == federation && c.round == round)
        {
            return Err(DpError::AlreadyRecorded { round });
        }
        self.charges.push(PrivacyCharge {
            federation,
            round,
            rho,
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn gaussian_numbers_match_hand_computation() {
        // Δ = C, σ = z C with z = 1: ρ = 1/2.
        assert_eq!(gaussian_rho(3.0, 3.0), 0.5);
        // z = 2: ρ = 1/8.
        assert_eq!(gaussian_rho(1.0, 2.0), 0.125);
        // ρ = 0.5, δ = 1e-5: ln(1e5) = 11.512925465; √(0.5 · 11.5129) =
        // 2.399263; ε = 0.5 + 4.798526 = 5.298526.
        assert!(close(zcdp_epsilon(0.5, 1e-5), 5.298526, 1e-5));
    }

    #[test]
    fn accountant_composes_additively() {
        let fed = FederationId::from_bytes([1; 16]);
        let mut acc = PrivacyAccountant::new(1e-5).unwrap();
        assert_eq!(acc.epsilon(), 0.0);
        for r in 0..4 {
            acc.record(fed, RoundId(r), 0.5).unwrap();
        }
        // ρ = 2: ε = 2 + 2√(2 · 11.512925) = 2 + 9.597052 = 11.597052.
        assert!(close(acc.total_rho(), 2.0, 1e-12));
        assert!(close(acc.epsilon(), 11.597052, 1e-5));
        assert!(close(acc.round_epsilon(0.5), 5.298526, 1e-5));
        // A fifth round: ρ = 2.5, ε = 2.5 + 2√(28.782314) = 13.229838.
        assert!(close(acc.epsilon_after(0.5), 13.229838, 1e-5));
        assert!(acc.can_participate(0.5, 13.3));
        assert!(!acc.can_participate(0.5, 13.2));
        assert!(!acc.can_participate(f64::INFINITY, 1e9));
        assert_eq!(
            acc.record(fed, RoundId(2), 0.5),
            Err(DpError::AlreadyRecorded { round: RoundId(2) })
        );
        let json = serde_json::to_string(&acc).unwrap();
        assert_eq!(
            serde_json::from_str::<PrivacyAccountant>(&json).unwrap(),
            acc
        );
    }

    #[test]
    fn distributed_discrete_gaussian_reduces_to_gaussian() {
        // n = 100 clients each with σ_c = 10 sum to σ = 100; Δ = 100 → ρ = 1/2.
        let rho = distributed_discrete_gaussian_rho(100.0, 10.0, 100, 1_000_000);
        assert!(close(rho, 0.5, 1e-9), "{rho}");
        // Tiny per-client noise makes τ matter and ρ grow.
        let rough = distributed_discrete_gaussian_rho(1.0, 0.2, 100, 1000);
        assert!(rough > gaussian_rho(1.0, 0.2 * 10.0));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(PrivacyAccountant::new(0.0).is_err());
        assert!(PrivacyAccountant::new(1.0).is_err());
        let mut acc = PrivacyAccountant::new(1e-6).unwrap();
        assert!(
            acc.record(FederationId::from_bytes([0; 16]), RoundId(0), -1.0)
                .is_err()
        );
    }
}
