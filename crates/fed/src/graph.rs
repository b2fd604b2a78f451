//! Who masks with whom: the SecAgg+ neighbour graph (Bell et al. 2020).
//!
//! Full SecAgg has every pair of clients share masks, costing O(n) work and
//! shares per client. SecAgg+ connects each client to only `k = O(log n)`
//! neighbours, chosen at random so that an adversary controlling a fraction
//! of clients is unlikely to surround an honest one. We use Bell et al.'s
//! random Harary graph: clients are placed on a ring in a random order, and
//! each is connected to the `k/2` nearest on either side.
//!
//! The order is a Fisher–Yates shuffle driven by ChaCha20 keyed (via HKDF)
//! by a 32-byte seed the server announces in the round info, before any
//! client joins. So the graph is a pure function of (seed, cohort size,
//! degree): every client re-derives and checks its own neighbourhood, and an
//! auditor can re-derive the whole graph afterwards.
//!
//! Each client's secrets are Shamir-shared among its neighbours with
//! threshold `t`. Correctness needs `t` surviving neighbours; security needs
//! `2t > k`, so that the server can never collect `t` self-mask shares *and*
//! `t` mask-key shares of the same client from disjoint honest neighbours
//! (each honest neighbour reveals only one kind; see
//! [`crate::protocol::client`]).

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{derive_key, labels};
use crate::ids::{FederationId, RoundContext, RoundId};

/// The server's graph seed for a round: 32 random bytes, as hex.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GraphSeed(#[serde(with = "crate::wire::encoding::hex_array")] pub [u8; 32]);

impl GraphSeed {
    /// A fresh random seed.
    pub fn random<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

/// What can go wrong choosing a neighbourhood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum GraphError {
    /// Secure aggregation of fewer than two clients hides nothing.
    #[error("a cohort of {nodes} clients is too small to aggregate securely")]
    TooFewNodes {
        /// Cohort size.
        nodes: u32,
    },
    /// A degree below 1 or above `n - 1`, or an odd degree below `n - 1`
    /// (a ring connects `k/2` on each side).
    #[error("degree {degree} is not possible for {nodes} clients")]
    BadDegree {
        /// Degree asked for.
        degree: u32,
        /// Cohort size.
        nodes: u32,
    },
    /// Threat-model fractions outside `γ, δ ≥ 0, γ + δ < 1/2`.
    #[error(
        "threat model: the corrupt and dropout fractions must be non-negative and sum below 1/2"
    )]
    BadThreatModel,
    /// A threshold outside `k/2 < t <= k`.
    #[error("threshold {threshold} must satisfy {degree}/2 < t <= {degree}")]
    BadThreshold {
        /// The neighbourhood size.
        degree: u32,
        /// The threshold asked for.
        threshold: u32,
    },
}

/// Security parameter of [`ThreatModel`]: the chance that some device in
/// the cohort has enough colluding neighbours to expose it is at most
/// `2^-40`.
pub const SECURITY_BITS: i32 = 40;
/// Correctness parameter of [`ThreatModel`]: the chance that some surviving
/// device has fewer than `t` honest surviving neighbours (and the round
/// aborts) is at most `2^-20`.
pub const CORRECTNESS_BITS: i32 = 20;

/// The adversary a federation sizes its neighbourhoods against (Bell,
/// Bonawitz, Gascón, Lepoint, Raykova, CCS 2020, §4): a fraction `γ` of the
/// cohort may be the server's (sybils, or corrupted devices) and a fraction
/// `δ` may drop out.
///
/// With the consistency round, a device's secrets stay hidden while its
/// colluding neighbours number fewer than `2t − k` (each honest neighbour
/// reveals at most one of its two shares); the round completes while every
/// survivor keeps `t` honest surviving neighbours. Neighbourhoods are a
/// random `k`-regular graph, so each neighbour is roughly an independent
/// draw; with a union bound over the `n` devices, `(k, t)` must satisfy
///
/// - security: `n · P[Bin(k, γ) ≥ 2t − k] ≤ 2^-40`, and
/// - correctness: `n · P[Bin(k, 1 − γ − δ) < t] ≤ 2^-20`.
///
/// [`ThreatModel::neighbourhood`] picks the smallest such `k`. A cohort too
/// small for any `k` to meet both gets the complete graph with a strict
/// majority threshold, the most any round of that size can do.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatModel {
    /// `γ`: the fraction of the cohort that may collude with the server.
    pub corrupt_fraction: f64,
    /// `δ`: the fraction of the cohort that may drop out.
    pub dropout_fraction: f64,
}

impl ThreatModel {
    /// Checks the fractions are usable: `γ, δ ≥ 0` and `γ + δ < 1/2`.
    pub fn validate(&self) -> Result<(), GraphError> {
        let (g, d) = (self.corrupt_fraction, self.dropout_fraction);
        if g.is_finite() && d.is_finite() && g >= 0.0 && d >= 0.0 && g + d < 0.5 {
            Ok(())
        } else {
            Err(GraphError::BadThreatModel)
        }
    }

    /// Whether `(k, t)` keeps every one of `nodes` devices hidden from the
    /// server and its colluders, except with probability `2^-40`.
    pub fn is_secure(&self, nodes: u32, degree: u32, threshold: u32) -> bool {
        let margin = (2 * i64::from(threshold) - i64::from(degree)).max(0);
        f64::from(nodes) * binomial_at_least(degree, self.corrupt_fraction, margin)
            <= 2f64.powi(-SECURITY_BITS)
    }

    /// Whether `(k, t)` lets every surviving device of `nodes` keep `t`
    /// honest surviving neighbours, except with probability `2^-20`.
    pub fn is_correct(&self, nodes: u32, degree: u32, threshold: u32) -> bool {
        let live = 1.0 - self.corrupt_fraction - self.dropout_fraction;
        let short = 1.0 - binomial_at_least(degree, live, i64::from(threshold));
        f64::from(nodes) * short.max(0.0) <= 2f64.powi(-CORRECTNESS_BITS)
    }

    /// The smallest neighbourhood meeting both bounds for a cohort of
    /// `nodes`, or the complete graph when none does.
    pub fn neighbourhood(&self, nodes: u32) -> Result<Neighbourhood, GraphError> {
        self.validate()?;
        if nodes < 2 {
            return Err(GraphError::TooFewNodes { nodes });
        }
        // Beyond this the cost is unreasonable and the bounds are met long
        // before for any valid fractions and cohorts up to 2^24.
        let largest = (nodes - 1).min(1024);
        let degrees = (2..=largest).step_by(2).chain(std::iter::once(nodes - 1));
        for degree in degrees.filter(|&k| k < nodes) {
            for threshold in default_threshold(degree)..=degree {
                if self.is_secure(nodes, degree, threshold)
                    && self.is_correct(nodes, degree, threshold)
                {
                    return Ok(Neighbourhood { degree, threshold });
                }
            }
        }
        let degree = nodes - 1;
        Ok(Neighbourhood {
            degree,
            threshold: default_threshold(degree),
        })
    }
}

/// `P[X ≥ m]` for `X ~ Bin(k, p)`, summed in the log domain so tiny tails
/// do not underflow before they are added.
fn binomial_at_least(k: u32, p: f64, m: i64) -> f64 {
    if m <= 0 {
        return 1.0;
    }
    if m > i64::from(k) || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    // ln C(k, i), built up from i = 0.
    let mut ln_choose = 0.0;
    let mut total = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += f64::from(k - i + 1).ln() - f64::from(i).ln();
        }
        if i64::from(i) >= m {
            total += (ln_choose + f64::from(i) * ln_p + f64::from(k - i) * ln_q).exp();
        }
    }
    total.min(1.0)
}

/// A neighbourhood size and Shamir threshold, resolved for a cohort size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbourhood {
    /// Neighbours per client, `k`.
    pub degree: u32,
    /// Shares needed to reconstruct, `t`, with `k/2 < t <= k`.
    pub threshold: u32,
}

/// `ceil(log2 n)` rounded up to even, at least 2, capped at `n - 1`.
pub fn default_degree(nodes: u32) -> u32 {
    if nodes < 2 {
        return 0;
    }
    let log = u32::BITS - (nodes - 1).leading_zeros(); // ceil(log2 n) for n >= 2
    let even = log.div_ceil(2) * 2;
    even.max(2).min(nodes - 1)
}

/// The smallest threshold that is secure for `degree`: `floor(k/2) + 1`.
pub fn default_threshold(degree: u32) -> u32 {
    degree / 2 + 1
}

impl Neighbourhood {
    /// Resolves the configured degree and threshold (`None` = default) for a
    /// cohort of `nodes`. An even degree of `n - 1` or more becomes the
    /// complete graph (`n - 1`); an odd degree below `n - 1` is rounded up.
    pub fn resolve(
        nodes: u32,
        degree: Option<u32>,
        threshold: Option<u32>,
    ) -> Result<Self, GraphError> {
        if nodes < 2 {
            return Err(GraphError::TooFewNodes { nodes });
        }
        let asked = degree.unwrap_or_else(|| default_degree(nodes));
        if asked == 0 {
            return Err(GraphError::BadDegree {
                degree: asked,
                nodes,
            });
        }
        let rounded = if asked % 2 == 1 {
            asked.saturating_add(1)
        } else {
            asked
        };
        let degree = rounded.min(nodes - 1);
        let threshold = threshold.unwrap_or_else(|| default_threshold(degree));
        if threshold == 0 || threshold > degree || 2 * u64::from(threshold) <= u64::from(degree) {
            return Err(GraphError::BadThreshold { degree, threshold });
        }
        Ok(Self { degree, threshold })
    }
}

/// The random Harary graph over cohort positions `0..n`.
///
/// Serialized as its spec (seed, n, degree, round), from which the
/// permutation is re-derived on load, so stored state cannot disagree with
/// what clients derive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GraphSpec", into = "GraphSpec")]
pub struct NeighbourGraph {
    spec: GraphSpec,
    /// `ring[p]` = the client at ring position `p`.
    ring: Vec<u32>,
    /// `place[i]` = ring position of client `i`.
    place: Vec<u32>,
}

/// The inputs that determine a [`NeighbourGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSpec {
    /// The server's seed.
    pub seed: GraphSeed,
    /// The federation the round belongs to.
    pub federation: FederationId,
    /// The round.
    pub round: RoundId,
    /// Cohort size.
    pub nodes: u32,
    /// Neighbours per client.
    pub degree: u32,
}

impl TryFrom<GraphSpec> for NeighbourGraph {
    type Error = GraphError;
    fn try_from(spec: GraphSpec) -> Result<Self, GraphError> {
        Self::new(spec)
    }
}

impl From<NeighbourGraph> for GraphSpec {
    fn from(graph: NeighbourGraph) -> Self {
        graph.spec
    }
}

impl NeighbourGraph {
    /// Derives the graph for `spec`.
    pub fn new(spec: GraphSpec) -> Result<Self, GraphError> {
        let GraphSpec { nodes, degree, .. } = spec;
        if nodes < 2 {
            return Err(GraphError::TooFewNodes { nodes });
        }
        if degree == 0 || degree > nodes - 1 || (degree % 2 == 1 && degree != nodes - 1) {
            return Err(GraphError::BadDegree { degree, nodes });
        }
        let context = RoundContext::new(spec.federation, spec.round);
        let key = derive_key(
            &spec.seed.0,
            labels::GRAPH,
            &context,
            &[&nodes.to_le_bytes(), &degree.to_le_bytes()],
        );
        let mut stream = WordStream::new(&key);
        let mut ring: Vec<u32> = (0..nodes).collect();
        // Fisher–Yates: for p from n-1 down to 1, swap p with uniform [0, p].
        for p in (1..nodes).rev() {
            let q = stream.below(p + 1);
            ring.swap(p as usize, q as usize);
        }
        let mut place = vec![0u32; nodes as usize];
        for (position, &client) in ring.iter().enumerate() {
            if let Some(slot) = place.get_mut(client as usize) {
                *slot = position as u32;
            }
        }
        Ok(Self { spec, ring, place })
    }

    /// The spec this graph was derived from.
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    /// Cohort size.
    pub fn nodes(&self) -> u32 {
        self.spec.nodes
    }

    /// Neighbours per client.
    pub fn degree(&self) -> u32 {
        self.spec.degree
    }

    /// The neighbours of cohort position `client`, ascending; empty for a
    /// position outside the cohort.
    pub fn neighbours(&self, client: u32) -> Vec<u32> {
        let n = self.spec.nodes;
        let Some(&position) = self.place.get(client as usize) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = if self.spec.degree >= n - 1 {
            (0..n).filter(|&j| j != client).collect()
        } else {
            let half = self.spec.degree / 2;
            (1..=half)
                .flat_map(|d| [(position + d) % n, (position + n - d) % n])
                .filter_map(|p| self.ring.get(p as usize).copied())
                .collect()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `a` and `b` are neighbours.
    pub fn are_neighbours(&self, a: u32, b: u32) -> bool {
        let n = self.spec.nodes;
        let (Some(&pa), Some(&pb)) = (self.place.get(a as usize), self.place.get(b as usize))
        else {
            return false;
        };
        if a == b {
            return false;
        }
        if self.spec.degree >= n - 1 {
            return true;
        }
        let d = pa.abs_diff(pb);
        d.min(n - d) <= self.spec.degree / 2
    }
}

/// ChaCha20 keystream as a source of uniform u32s, for the shuffle.
struct WordStream {
    cipher: ChaCha20,
}

impl WordStream {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20::new(key.into(), &[0u8; 12].into()),
        }
    }

    fn next(&mut self) -> u32 {
        let mut word = [0u8; 4];
        self.cipher.apply_keystream(&mut word);
        u32::from_le_bytes(word)
    }

    /// Uniform in `[0, bound)` by rejection (no modulo bias); `bound >= 1`.
    fn below(&mut self, bound: u32) -> u32 {
        let bound = bound.max(1);
        // Largest multiple of `bound` that fits: accept words below it.
        let zone = u32::MAX - (u32::MAX - bound + 1) % bound;
        loop {
            let w = self.next();
            if w <= zone {
                return w % bound;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn threat_model_neighbourhoods_follow_the_bounds() {
        let light = ThreatModel {
            corrupt_fraction: 0.01,
            dropout_fraction: 0.05,
        };
        let heavy = ThreatModel {
            corrupt_fraction: 0.05,
            dropout_fraction: 0.1,
        };
        // The figures docs/threat-model.md tabulates.
        let at = |m: &ThreatModel, n| {
            let h = m.neighbourhood(n).unwrap();
            (h.degree, h.threshold)
        };
        assert_eq!(at(&light, 1000), (46, 30));
        assert_eq!(at(&light, 300), (44, 29));
        assert_eq!(at(&heavy, 1000), (126, 80));
        // Too small for the bounds: the complete graph, strict majority.
        assert_eq!(at(&heavy, 50), (49, 25));
        assert_eq!(at(&light, 2), (1, 1));
        assert_eq!(at(&light, 10), (9, 5));
        // log2 n, today's default, is far from secure against 5% sybils.
        assert!(!heavy.is_secure(1000, 10, 6));
        assert!(heavy.is_secure(1000, 126, 80) && heavy.is_correct(1000, 126, 80));
        assert!(
            !heavy.is_correct(1000, 126, 126),
            "t = k aborts on any dropout"
        );
        for bad in [(-0.1, 0.1), (0.3, 0.3), (f64::NAN, 0.0)] {
            let model = ThreatModel {
                corrupt_fraction: bad.0,
                dropout_fraction: bad.1,
            };
            assert_eq!(model.neighbourhood(100), Err(GraphError::BadThreatModel));
        }
    }

    #[test]
    fn binomial_tails_are_exact_at_small_sizes() {
        assert_eq!(binomial_at_least(4, 0.5, 0), 1.0);
        assert!((binomial_at_least(4, 0.5, 3) - 5.0 / 16.0).abs() < 1e-12);
        assert!((binomial_at_least(4, 0.5, 4) - 1.0 / 16.0).abs() < 1e-12);
        assert_eq!(binomial_at_least(4, 0.5, 5), 0.0);
        assert_eq!(binomial_at_least(4, 0.0, 1), 0.0);
        assert!(binomial_at_least(200, 0.01, 60) < 1e-60);
    }

    fn spec(nodes: u32, degree: u32, seed: u8) -> GraphSpec {
        GraphSpec {
            seed: GraphSeed([seed; 32]),
            federation: FederationId::from_bytes([1; 16]),
            round: RoundId(1),
            nodes,
            degree,
        }
    }

    #[test]
    fn default_degree_follows_log2() {
        assert_eq!(default_degree(1), 0);
        assert_eq!(default_degree(2), 1);
        assert_eq!(default_degree(3), 2);
        assert_eq!(default_degree(10), 4);
        assert_eq!(default_degree(100), 8);
        assert_eq!(default_degree(1000), 10);
        assert_eq!(default_degree(1024), 10);
        assert_eq!(default_degree(1025), 12);
    }

    #[test]
    fn resolve_checks_the_threshold() {
        assert_eq!(
            Neighbourhood::resolve(10, None, None).unwrap(),
            Neighbourhood {
                degree: 4,
                threshold: 3
            }
        );
        assert_eq!(Neighbourhood::resolve(10, Some(7), None).unwrap().degree, 8);
        assert_eq!(Neighbourhood::resolve(5, Some(16), None).unwrap().degree, 4);
        assert_eq!(
            Neighbourhood::resolve(10, Some(8), Some(4)),
            Err(GraphError::BadThreshold {
                degree: 8,
                threshold: 4
            })
        );
        assert!(Neighbourhood::resolve(10, Some(8), Some(9)).is_err());
        assert!(Neighbourhood::resolve(1, None, None).is_err());
    }

    #[test]
    fn graph_is_regular_symmetric_and_deterministic() {
        for (n, k) in [(2, 1), (5, 4), (10, 4), (31, 6), (100, 8), (64, 63)] {
            let g = NeighbourGraph::new(spec(n, k, 3)).unwrap();
            for i in 0..n {
                let nb = g.neighbours(i);
                assert_eq!(nb.len() as u32, k, "n={n} k={k} i={i}");
                assert!(!nb.contains(&i));
                for &j in &nb {
                    assert!(g.neighbours(j).contains(&i));
                    assert!(g.are_neighbours(i, j));
                }
                let non = (0..n).filter(|j| !nb.contains(j) && *j != i).count() as u32;
                assert_eq!(non, n - 1 - k);
            }
            assert_eq!(NeighbourGraph::new(spec(n, k, 3)).unwrap(), g);
        }
        let a = NeighbourGraph::new(spec(50, 6, 1)).unwrap();
        let b = NeighbourGraph::new(spec(50, 6, 2)).unwrap();
        assert_ne!(a.neighbours(0), b.neighbours(0));
    }

    #[test]
    fn graph_serializes_as_its_spec() {
        let g = NeighbourGraph::new(spec(20, 4, 9)).unwrap();
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains("\"degree\":4"));
        assert!(!json.contains("ring"));
        let back: NeighbourGraph = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
        let bad = json.replace("\"degree\":4", "\"degree\":3");
        assert!(serde_json::from_str::<NeighbourGraph>(&bad).is_err());
    }

    #[test]
    fn bad_degrees_are_refused() {
        assert!(NeighbourGraph::new(spec(10, 3, 0)).is_err());
        assert!(NeighbourGraph::new(spec(10, 10, 0)).is_err());
        assert!(NeighbourGraph::new(spec(10, 0, 0)).is_err());
        assert!(NeighbourGraph::new(spec(1, 0, 0)).is_err());
        assert!(NeighbourGraph::new(spec(10, 9, 0)).is_ok());
    }

    #[test]
    fn rejection_sampling_is_in_range() {
        let mut s = WordStream::new(&[5; 32]);
        for bound in [1u32, 2, 3, 7, 1000, u32::MAX] {
            for _ in 0..100 {
                assert!(s.below(bound) < bound);
            }
        }
    }
}
