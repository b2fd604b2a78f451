//! The federated data: tinyshakespeare split by speaking role (LEAF's
//! Shakespeare task), each role one device's library of notes, and the
//! held-out speeches every published global adapter is scored on.

use std::collections::HashMap;
use std::path::Path;

use hearth_fed::client::GlobalAdapter;
use hearth_ml::candle::{Device, Tensor};
use hearth_ml::{LoadedModel, LoraAdapter, LoraConfig, MlError};
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::{ImportOptions, Library};

use crate::SimError;

/// Speeches per imported note: fewer, larger files import faster and train
/// the same (the trainer packs all texts into sequences anyway).
const SPEECHES_PER_NOTE: usize = 10;
/// Held-out sequences the global adapter is scored on each round.
const EVAL_SEQUENCES: usize = 64;

/// One speaking role: its speeches for training and a few held out.
pub(crate) struct Role {
    pub name: String,
    pub train: Vec<String>,
    pub held_out: Vec<String>,
}

/// Splits the play by speaker (a line `NAME:` opens a speech that runs to
/// the next blank line) and keeps the `n` roles with the most lines,
/// holding out the last tenth (at least one) of each role's speeches.
pub(crate) fn split_by_role(text: &str, n: usize) -> Result<Vec<Role>, SimError> {
    let mut speeches: HashMap<&str, (usize, Vec<String>)> = HashMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        let Some(name) = head.trim().strip_suffix(':') else {
            continue;
        };
        if name.is_empty() || name.contains(':') {
            continue;
        }
        let body: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
        if body.is_empty() {
            continue;
        }
        let entry = speeches.entry(name).or_default();
        entry.0 += body.len();
        entry.1.push(body.join("\n"));
    }
    let mut ranked: Vec<_> = speeches
        .into_iter()
        .filter(|(_, (_, s))| s.len() >= 2)
        .collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    if ranked.len() < n {
        return Err(SimError::Data(format!(
            "the text has only {} roles with two or more speeches, fewer than {n} devices",
            ranked.len()
        )));
    }
    Ok(ranked
        .into_iter()
        .take(n)
        .map(|(name, (_, mut all))| {
            let held = (all.len() / 10).max(1);
            let held_out = all.split_off(all.len() - held);
            Role {
                name: name.to_owned(),
                train: all,
                held_out,
            }
        })
        .collect())
}

/// Writes `speeches` as notes under `dir` and imports them into a new
/// library at `dir/library`.
pub(crate) fn prepare_library(dir: &Path, speeches: &[String]) -> Result<(), SimError> {
    let notes = dir.join("notes");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimError::Io { path, source }
    };
    std::fs::create_dir_all(&notes).map_err(io(&notes))?;
    for (i, chunk) in speeches.chunks(SPEECHES_PER_NOTE).enumerate() {
        let path = notes.join(format!("{i:04}.txt"));
        std::fs::write(&path, chunk.join("\n\n")).map_err(io(&path))?;
    }
    let mut library = Library::open(dir.join("library"))?;
    let report = library.import(
        &[notes],
        &ImportOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )?;
    if report.failed > 0 {
        return Err(SimError::Data(format!(
            "{} of a simulated device's notes failed to import",
            report.failed
        )));
    }
    Ok(())
}

/// The held-out speeches of every role, tokenized, joined and cut into
/// sequences of `seq + 1` tokens (input and shifted target).
pub(crate) fn validation_sequences(
    loaded: &LoadedModel,
    roles: &[Role],
    seq: usize,
) -> Result<Vec<Vec<u32>>, SimError> {
    let mut tokens = Vec::new();
    for speech in roles.iter().flat_map(|r| &r.held_out) {
        tokens.extend(loaded.tokenizer.encode(speech, false)?);
        tokens.extend(loaded.tokenizer.separator());
    }
    let sequences: Vec<Vec<u32>> = tokens
        .chunks_exact(seq + 1)
        .take(EVAL_SEQUENCES)
        .map(<[u32]>::to_vec)
        .collect();
    if sequences.is_empty() {
        return Err(SimError::Data(format!(
            "the held-out text is shorter than one sequence of {seq} tokens"
        )));
    }
    Ok(sequences)
}

/// Mean held-out loss of the base model with the global adapter.
pub(crate) fn score(
    loaded: &LoadedModel,
    lora: &LoraConfig,
    global: &GlobalAdapter,
    sequences: &[&Vec<u32>],
) -> Result<f32, SimError> {
    let tensors: HashMap<String, Tensor> =
        hearth_ml::candle::safetensors::load_buffer(global.bytes(), &Device::Cpu)
            .map_err(MlError::from)?;
    let adapter = LoraAdapter::from_tensors(lora, loaded.model.config(), &tensors, &Device::Cpu)?;
    Ok(hearth_ml::train::mean_loss(
        &loaded.model,
        Some(&adapter),
        sequences,
        8,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAY: &str = "First Citizen:\nBefore we proceed.\n\nAll:\nSpeak, speak.\n\n\
        First Citizen:\nYou are all resolved.\nRather to die.\n\nAll:\nResolved.\n\n\
        MENENIUS:\nWhy, masters.\n\nStage direction without a speaker\n\n\
        First Citizen:\nWe are accounted poor.\n";

    #[test]
    fn roles_are_ranked_by_lines_and_hold_out_their_last_speech() {
        let roles = split_by_role(PLAY, 2).expect("splits");
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["First Citizen", "All"]);
        assert_eq!(roles[0].train.len(), 2);
        assert_eq!(roles[0].held_out, ["We are accounted poor."]);
        assert_eq!(roles[1].held_out, ["Resolved."]);
    }

    #[test]
    fn too_few_roles_for_the_devices_is_an_error() {
        // MENENIUS has a single speech, so only two roles qualify.
        assert!(matches!(split_by_role(PLAY, 3), Err(SimError::Data(_))));
    }
}
