//! A tiny, seedable, serialisable random number generator (SplitMix64).
//!
//! Training must resume bit for bit, so every random choice (adapter
//! initialisation, data order, dropout masks, sampling) comes from a
//! generator whose whole state is one `u64` that goes into the checkpoint.
//! candle's own CPU random ops draw from a thread-local generator that cannot
//! be saved, so they are not used for anything that must be reproducible.

use serde::{Deserialize, Serialize};

/// SplitMix64's increment: the state after `n` draws is `state + n * GAMMA`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 (Steele, Lea and Flood 2014): passes BigCrush, one word of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The generator `n` draws ahead. SplitMix64's state is a counter, so
    /// this costs one multiplication, and a long stream can be drawn in
    /// parallel pieces that match a sequential draw exactly.
    pub fn skipped(self, n: u64) -> Self {
        SplitMix64 {
            state: self.state.wrapping_add(GAMMA.wrapping_mul(n)),
        }
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `0..n` (n > 0), without modulo bias worth caring about
    /// for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// A generator for an independent stream derived from this seed and a
    /// label, so that, say, data order and dropout never share draws.
    pub fn fork(seed: u64, stream: u64) -> Self {
        let mut mix = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        SplitMix64::new(mix.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_ahead_equals_drawing() {
        let mut drawn = SplitMix64::new(7);
        for _ in 0..1000 {
            drawn.next_u64();
        }
        let mut skipped = SplitMix64::new(7).skipped(1000);
        assert_eq!(skipped, drawn);
        assert_eq!(skipped.next_u64(), drawn.next_u64());
    }

    #[test]
    fn reproducible_and_roughly_uniform() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mean: f32 = (0..10_000).map(|_| a.next_f32()).sum::<f32>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let mut items: Vec<usize> = (0..50).collect();
        a.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
        assert!((0..1000).all(|_| a.below(3) < 3));
    }
}
