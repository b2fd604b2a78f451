//! Measurements behind `hearth bench log`: how fast a log appends, and how
//! long proofs take to make and to check at a given size.
//!
//! They live in the library, not the CLI, so the same figures can be taken
//! over any [`NodeStore`] (the server's database as well as memory), and so
//! a test can run them small. The caller prints them; nothing here does
//! I/O. Times are wall clock; build with `--release` for meaningful ones.

use std::time::{Duration, Instant};

use crate::merkle::{
    Hash, LogError, MemoryStore, MerkleLog, NodeStore, ProofError, verify_consistency,
    verify_inclusion,
};

/// The entries a `hearth bench log` run appends by default.
pub const DEFAULT_ENTRIES: u64 = 1_000_000;

/// Figures from one [`log`] run. Per-operation times are means over
/// `samples` random indices and sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogBench {
    /// Entries appended.
    pub entries: u64,
    /// Random operations timed per kind.
    pub samples: u32,
    /// Time to append all entries (leaf hashing included).
    pub append_total: Duration,
    /// Entries appended per second.
    pub appends_per_sec: f64,
    /// Mean time to compute the root of a random past size.
    pub root_at: Duration,
    /// Mean time to build an inclusion proof at the final size.
    pub inclusion_proof: Duration,
    /// Mean time to verify one.
    pub inclusion_verify: Duration,
    /// Mean hashes per inclusion proof.
    pub inclusion_proof_len: f64,
    /// Mean time to build a consistency proof from a random older size.
    pub consistency_proof: Duration,
    /// Mean time to verify one.
    pub consistency_verify: Duration,
    /// Mean hashes per consistency proof.
    pub consistency_proof_len: f64,
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError<E: std::error::Error + 'static> {
    /// The log (its store) failed.
    #[error(transparent)]
    Log(#[from] LogError<E>),
    /// A proof the log made did not verify: the log is broken.
    #[error("a proof made by the log did not verify")]
    Proof(#[from] ProofError),
}

/// [`log`] over a fresh [`MemoryStore`].
pub fn log_in_memory(
    entries: u64,
    samples: u32,
) -> Result<LogBench, BenchError<std::convert::Infallible>> {
    let capacity = usize::try_from(entries).unwrap_or(usize::MAX);
    log(MemoryStore::with_capacity(capacity), entries, samples)
}

/// Appends `entries` synthetic 64-byte entries to a log over `store`
/// (which should be empty), then times `samples` roots, inclusion proofs
/// and consistency proofs at random indices and sizes (a fixed seed, so
/// runs are comparable), checking every proof.
pub fn log<S: NodeStore>(
    store: S,
    entries: u64,
    samples: u32,
) -> Result<LogBench, BenchError<S::Error>> {
    let mut log = MerkleLog::new(store);
    let start = Instant::now();
    let mut data = [0u8; 64];
    for i in 0..entries {
        data[..8].copy_from_slice(&i.to_le_bytes());
        log.append(&data)?;
    }
    let append_total = start.elapsed();
    let size = log.size()?;
    let root = log.root()?;

    let mut rng = SplitMix64(0x6865_6172_7468);
    let n = u64::from(samples.max(1));
    let mut figures = LogBench {
        entries,
        samples,
        append_total,
        appends_per_sec: entries as f64 / append_total.as_secs_f64().max(1e-9),
        root_at: Duration::ZERO,
        inclusion_proof: Duration::ZERO,
        inclusion_verify: Duration::ZERO,
        inclusion_proof_len: 0.0,
        consistency_proof: Duration::ZERO,
        consistency_verify: Duration::ZERO,
        consistency_proof_len: 0.0,
    };
    if size == 0 {
        return Ok(figures);
    }

    let (mut root_t, mut incl_t, mut incl_v, mut cons_t, mut cons_v) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (mut incl_len, mut cons_len) = (0usize, 0usize);
    for _ in 0..n {
        let old = 1 + rng.below(size);
        let t = Instant::now();
        let old_root = log.root_at(old)?;
        root_t += t.elapsed();

        let index = rng.below(size);
        let leaf: Hash = log.leaf(index)?;
        let t = Instant::now();
        let proof = log.inclusion_proof(index, size)?;
        incl_t += t.elapsed();
        let t = Instant::now();
        verify_inclusion(&leaf, index, size, &proof, &root)?;
        incl_v += t.elapsed();
        incl_len += proof.len();

        let t = Instant::now();
        let proof = log.consistency_proof(old, size)?;
        cons_t += t.elapsed();
        let t = Instant::now();
        verify_consistency(old, size, &old_root, &root, &proof)?;
        cons_v += t.elapsed();
        cons_len += proof.len();
    }
    let per = |total: Duration| total / samples.max(1);
    figures.root_at = per(root_t);
    figures.inclusion_proof = per(incl_t);
    figures.inclusion_verify = per(incl_v);
    figures.inclusion_proof_len = incl_len as f64 / n as f64;
    figures.consistency_proof = per(cons_t);
    figures.consistency_verify = per(cons_v);
    figures.consistency_proof_len = cons_len as f64 / n as f64;
    Ok(figures)
}

/// A tiny deterministic generator (SplitMix64), enough to pick indices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Roughly uniform in `0..bound` (`bound > 0`); the modulo bias is
    /// irrelevant for picking bench samples.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_sane_figures() {
        let b = log_in_memory(1000, 20).expect("bench");
        assert_eq!(b.entries, 1000);
        assert!(b.appends_per_sec > 0.0);
        assert!(b.inclusion_proof_len > 8.0 && b.inclusion_proof_len <= 10.0);
        assert!(b.consistency_proof_len <= 20.0);
        let empty = log_in_memory(0, 5).expect("bench");
        assert_eq!(empty.inclusion_proof, Duration::ZERO);
    }
}
