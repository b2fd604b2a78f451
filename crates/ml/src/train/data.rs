//! Training data from a person's texts: tokenised, packed into fixed-length
//! sequences (documents joined by an end-of-sequence token, so no padding
//! is wasted), split deterministically into training and validation sets,
//! and served in a seeded order whose position is part of the checkpoint.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::rng::SplitMix64;

/// Packed sequences of `seq_len + 1` tokens (inputs and shifted targets).
#[derive(Debug, Clone)]
pub struct TextDataset {
    seq_len: usize,
    train: Vec<Vec<u32>>,
    validation: Vec<Vec<u32>>,
    tokens: usize,
}

/// Where the data order stands: a checkpoint resumes from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataCursor {
    /// Passes over the training set completed.
    pub epoch: u64,
    /// Sequences served in the current pass.
    pub position: usize,
}

impl TextDataset {
    /// Packs `documents` (token ids, without separators) into sequences of
    /// `seq_len` and holds out `validation_fraction` of them (at least one)
    /// chosen by `seed`.
    pub fn pack(
        documents: &[Vec<u32>],
        separator: Option<u32>,
        seq_len: usize,
        validation_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        if seq_len < 2 {
            return Err(MlError::Data(format!(
                "sequence length {seq_len} is too short"
            )));
        }
        let mut stream = Vec::new();
        for document in documents.iter().filter(|d| !d.is_empty()) {
            stream.extend_from_slice(document);
            stream.extend(separator);
        }
        let tokens = stream.len();
        // Windows of seq_len + 1 overlapping by one token: every token is a
        // target exactly once.
        let mut sequences: Vec<Vec<u32>> = stream
            .windows(seq_len + 1)
            .step_by(seq_len)
            .map(<[u32]>::to_vec)
            .collect();
        if sequences.len() < 2 {
            return Err(MlError::Data(format!(
                "{tokens} tokens of text make {} training sequences of {seq_len} tokens; at least 2 are needed (add more text or lower the sequence length)",
                sequences.len()
            )));
        }
        SplitMix64::fork(seed, 0xda7a).shuffle(&mut sequences);
        let held_out = ((sequences.len() as f64 * validation_fraction).round() as usize)
            .clamp(1, sequences.len() - 1);
        let validation = sequences.split_off(sequences.len() - held_out);
        Ok(TextDataset {
            seq_len,
            train: sequences,
            validation,
            tokens,
        })
    }

    /// Tokens of text packed.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Training sequences.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// Held-out sequences.
    pub fn validation(&self) -> &[Vec<u32>] {
        &self.validation
    }

    /// Sequence length (without the extra target token).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The next `batch` training sequences from `cursor` (advancing it) as
    /// `(inputs, targets)`, each `(batch, seq_len)`. The order of each epoch
    /// is a permutation drawn from `seed` and the epoch number.
    pub fn next_batch(
        &self,
        cursor: &mut DataCursor,
        batch: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let mut order = self.epoch_order(cursor.epoch, seed);
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            if cursor.position >= order.len() {
                cursor.epoch += 1;
                cursor.position = 0;
                order = self.epoch_order(cursor.epoch, seed);
            }
            rows.push(&self.train[order[cursor.position]]);
            cursor.position += 1;
        }
        batch_tensors(&rows, device)
    }

    fn epoch_order(&self, epoch: u64, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        SplitMix64::fork(seed, 0xe0c4 ^ epoch.wrapping_mul(0x9E37_79B9)).shuffle(&mut order);
        order
    }
}

/// `(inputs, targets)` tensors from rows of `seq_len + 1` tokens.
pub fn batch_tensors(rows: &[&Vec<u32>], device: &Device) -> Result<(Tensor, Tensor)> {
    let width = rows.first().map_or(0, |r| r.len());
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    let all = Tensor::from_vec(flat, (rows.len(), width), device)?;
    Ok((all.narrow(1, 0, width - 1)?, all.narrow(1, 1, width - 1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_splits_and_serves_deterministically() {
        let documents: Vec<Vec<u32>> = (0..10)
            .map(|d| (0..37).map(|t| d * 100 + t).collect())
            .collect();
        let data = TextDataset::pack(&documents, Some(9999), 16, 0.1, 7).expect("pack");
        assert_eq!(data.tokens(), 380);
        assert_eq!(data.train_len() + data.validation().len(), 23);
        assert_eq!(data.validation().len(), 2);
        let again = TextDataset::pack(&documents, Some(9999), 16, 0.1, 7).expect("pack");
        assert_eq!(data.validation(), again.validation());

        let device = Device::Cpu;
        let mut cursor = DataCursor::default();
        let (inputs, targets) = data.next_batch(&mut cursor, 4, 1, &device).expect("batch");
        assert_eq!(inputs.dims(), &[4, 16]);
        let inputs: Vec<Vec<u32>> = inputs.to_vec2().expect("vec");
        let targets: Vec<Vec<u32>> = targets.to_vec2().expect("vec");
        assert_eq!(
            inputs[0][1..],
            targets[0][..15],
            "targets are inputs shifted by one"
        );
        // A whole epoch serves every training sequence exactly once.
        let mut cursor = DataCursor::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..data.train_len() {
            let (x, _) = data.next_batch(&mut cursor, 1, 1, &device).expect("batch");
            seen.insert(x.to_vec2::<u32>().expect("vec"));
        }
        assert_eq!(seen.len(), data.train_len());
        assert_eq!(
            cursor,
            DataCursor {
                epoch: 0,
                position: data.train_len()
            }
        );
        data.next_batch(&mut cursor, 1, 1, &device).expect("wraps");
        assert_eq!(
            cursor,
            DataCursor {
                epoch: 1,
                position: 1
            }
        );
    }

    #[test]
    fn too_little_text_is_a_clear_error() {
        let err = TextDataset::pack(&[vec![1, 2, 3]], Some(0), 16, 0.1, 1).expect_err("too short");
        assert!(err.to_string().contains("at least 2 are needed"), "{err}");
        assert!(TextDataset::pack(&[], None, 16, 0.1, 1).is_err());
    }
}
