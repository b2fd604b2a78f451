//! Text to token ids and back, for every model source Hearth loads:
//! `tokenizer.json` (Hugging Face), a GGUF file's embedded vocabulary
//! (rebuilt as a byte-level BPE with the `tokenizers` crate), and llama2.c's
//! `tokenizer.bin`. Also renders a model's chat template.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{MlError, Result};

/// A tokenizer with the special tokens a model needs.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Inner,
    bos: Option<u32>,
    stop: Vec<u32>,
    chat_template: Option<String>,
    bos_text: String,
    eos_text: String,
}

#[derive(Debug, Clone)]
enum Inner {
    Hf(Box<tokenizers::Tokenizer>),
    Llama2c(Llama2cTokenizer),
}

fn tokenizer_error(e: impl std::fmt::Display) -> MlError {
    MlError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Wraps a Hugging Face tokenizer; `bos`, `stop` and the chat template
    /// come from the model's configuration files.
    pub fn from_hf(
        tokenizer: tokenizers::Tokenizer,
        bos: Option<u32>,
        stop: Vec<u32>,
        chat_template: Option<String>,
    ) -> Self {
        let text = |id: Option<u32>| {
            id.and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos_text, eos_text) = (text(bos), text(stop.first().copied()));
        TextTokenizer {
            inner: Inner::Hf(Box::new(tokenizer)),
            bos,
            stop,
            chat_template,
            bos_text,
            eos_text,
        }
    }

    /// Rebuilds a GPT-2-style byte-level BPE tokenizer from GGUF metadata
    /// (`tokenizer.ggml.tokens`, `.merges`, `.token_type`, `.pre`).
    pub fn from_gguf_vocabulary(vocabulary: GgufVocabulary) -> Result<Self> {
        if vocabulary.model != "gpt2" {
            return Err(MlError::Tokenizer(format!(
                "GGUF tokenizer model {:?} is not supported (only byte-level BPE, \"gpt2\")",
                vocabulary.model
            )));
        }
        // Control (3) and user-defined (4) tokens are matched whole.
        let specials: Vec<AddedToken> = vocabulary
            .tokens
            .iter()
            .zip(&vocabulary.token_types)
            .filter(|(_, kind)| matches!(kind, 3 | 4))
            .map(|(token, _)| AddedToken::from(token.clone(), true))
            .collect();
        // The token strings move into the BPE's map (no copy of ~50k).
        let vocab: tokenizers::models::bpe::Vocab = vocabulary
            .tokens
            .into_iter()
            .enumerate()
            .map(|(id, token)| (token, id as u32))
            .collect();
        let merges = vocabulary
            .merges
            .iter()
            .map(|merge| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| MlError::Tokenizer(format!("malformed merge {merge:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tokenizer_error)?;
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        // llama.cpp's pre-tokenizer names: "smollm" (and several others)
        // split digits one by one before the GPT-2 regex.
        let digits_first = matches!(
            vocabulary.pre.as_str(),
            "smollm" | "llama-bpe" | "starcoder" | "qwen2" | "deepseek-llm"
        );
        if digits_first {
            let steps: Vec<PreTokenizerWrapper> = vec![Digits::new(true).into(), byte_level.into()];
            tokenizer.with_pre_tokenizer(Some(Sequence::new(steps)));
        } else {
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
        tokenizer.with_decoder(Some(ByteLevel::default()));
        tokenizer
            .add_special_tokens(specials)
            .map_err(tokenizer_error)?;
        Ok(Self::from_hf(
            tokenizer,
            vocabulary.bos,
            vocabulary.eos.into_iter().collect(),
            vocabulary.chat_template,
        ))
    }

    /// Reads llama2.c's `tokenizer.bin` for a model with `vocab_size` tokens.
    pub fn from_llama2c_file(path: &Path, vocab_size: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
        let tokenizer = Llama2cTokenizer::parse(&bytes, vocab_size)
            .map_err(|reason| MlError::Tokenizer(format!("{}: {reason}", path.display())))?;
        Ok(TextTokenizer {
            inner: Inner::Llama2c(tokenizer),
            bos: Some(1),
            stop: vec![2],
            chat_template: None,
            bos_text: "<s>".into(),
            eos_text: "</s>".into(),
        })
    }

    /// Token ids for `text`, with the beginning-of-sequence token first when
    /// `add_bos` and the model has one. Special tokens written in the text
    /// (`<|im_start|>`) are recognised.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if add_bos && let Some(bos) = self.bos {
            ids.push(bos);
        }
        match &self.inner {
            Inner::Hf(tokenizer) => ids.extend(
                tokenizer
                    .encode(text, false)
                    .map_err(tokenizer_error)?
                    .get_ids(),
            ),
            Inner::Llama2c(tokenizer) => ids.extend(tokenizer.encode(text)),
        }
        Ok(ids)
    }

    /// Text for `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Inner::Hf(tokenizer) => tokenizer.decode(ids, true).map_err(tokenizer_error),
            Inner::Llama2c(tokenizer) => Ok(tokenizer.decode(ids)),
        }
    }

    /// The beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Tokens that end a reply (end-of-sequence, end-of-turn).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }

    /// The token that separates documents when texts are packed for
    /// training: end-of-sequence when the model has one.
    pub fn separator(&self) -> Option<u32> {
        self.stop.first().copied().or(self.bos)
    }

    /// Number of distinct tokens, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Hf(tokenizer) => tokenizer.get_vocab_size(true),
            Inner::Llama2c(tokenizer) => tokenizer.pieces.len(),
        }
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The bytes each token id stands for, for grammar-constrained
    /// decoding; special tokens (`<|im_end|>`, `<s>`) are prefixed with
    /// `0xFF`, a byte no UTF-8 text contains, so no grammar matches them as
    /// text.
    ///
    /// Read from the tokenizer in memory rather than through llguidance's
    /// `token_bytes_from_tokenizer_json`: that helper needs the tokenizer
    /// re-serialised and panics on vocabularies it does not expect, and a
    /// model file is user input.
    pub fn token_bytes(&self) -> Result<Vec<Vec<u8>>> {
        match &self.inner {
            Inner::Hf(tokenizer) => hf_token_bytes(tokenizer),
            Inner::Llama2c(tokenizer) => Ok(tokenizer
                .pieces
                .iter()
                .enumerate()
                .map(|(id, piece)| match id {
                    0..=2 => special_bytes(piece),
                    3..=258 => vec![(id - 3) as u8],
                    _ => piece.clone(),
                })
                .collect()),
        }
    }

    /// `prompt` as one user turn in the model's chat template, ready for the
    /// assistant's reply; `None` when the model has no template.
    pub fn chat_prompt(&self, prompt: &str) -> Result<Option<String>> {
        let Some(template) = &self.chat_template else {
            return Ok(None);
        };
        let context = minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => prompt }],
            add_generation_prompt => true,
            bos_token => &self.bos_text,
            eos_token => &self.eos_text,
        };
        minijinja::Environment::new()
            .render_str(template, context)
            .map(Some)
            .map_err(|e| MlError::Tokenizer(format!("chat template: {e}")))
    }
}

/// `piece` marked as a special token (see [`TextTokenizer::token_bytes`]).
fn special_bytes(piece: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(piece.len() + 1);
    bytes.push(0xFF);
    bytes.extend_from_slice(piece);
    bytes
}

/// Token bytes of a Hugging Face tokenizer: byte-level BPE (GPT-2's
/// printable stand-ins for bytes) or sentencepiece-style pieces (`▁` for a
/// space, `<0xNN>` byte fallback).
fn hf_token_bytes(tokenizer: &tokenizers::Tokenizer) -> Result<Vec<Vec<u8>>> {
    let decoder = tokenizer
        .get_decoder()
        .map(serde_json::to_value)
        .transpose()
        .map_err(tokenizer_error)?
        .unwrap_or_default();
    let byte_level = decoder["type"] == "ByteLevel";
    let byte_of_char = byte_level_alphabet();
    let specials = tokenizer.get_added_tokens_decoder();
    let size = tokenizer.get_vocab_size(true);
    let mut bytes = Vec::with_capacity(size);
    for id in 0..size as u32 {
        let Some(token) = tokenizer.id_to_token(id) else {
            // A hole in the vocabulary: no text maps to it.
            bytes.push(special_bytes(format!("<unused {id}>").as_bytes()));
            continue;
        };
        if specials.get(&id).is_some_and(|added| added.special) {
            bytes.push(special_bytes(token.as_bytes()));
        } else if byte_level {
            let piece: Option<Vec<u8>> = token
                .chars()
                .map(|c| byte_of_char.get(&c).copied())
                .collect();
            bytes.push(piece.ok_or_else(|| {
                MlError::Tokenizer(format!(
                    "token {id} ({token:?}) is not byte-level BPE although the decoder is"
                ))
            })?);
        } else if let Some(byte) = token
            .strip_prefix("<0x")
            .and_then(|rest| rest.strip_suffix('>'))
            .filter(|hex| hex.len() == 2)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            bytes.push(vec![byte]);
        } else {
            bytes.push(token.replace('\u{2581}', " ").into_bytes());
        }
    }
    Ok(bytes)
}

/// GPT-2's byte-level alphabet: each byte is written as a printable
/// character, the printable ones as themselves and the rest from U+0100 on.
fn byte_level_alphabet() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
                next += 1;
                (c, b)
            }
        })
        .collect()
}

/// The tokenizer part of a GGUF file's metadata.
#[derive(Debug, Clone, Default)]
pub struct GgufVocabulary {
    /// `tokenizer.ggml.model` ("gpt2" for byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer regex llama.cpp uses.
    pub pre: String,
    /// Token strings by id.
    pub tokens: Vec<String>,
    /// Token types by id (1 normal, 3 control, 4 user-defined, 6 byte).
    pub token_types: Vec<i32>,
    /// BPE merges, "a b", by priority.
    pub merges: Vec<String>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// The Jinja chat template.
    pub chat_template: Option<String>,
}

/// llama2.c's tokenizer: sentencepiece pieces with merge scores and byte
/// fallback. The `tokenizers` crate has no loader for this format and its
/// score-driven merging, so the few lines of llama2.c's `run.c` algorithm
/// are reproduced here.
#[derive(Debug, Clone)]
struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
}

impl Llama2cTokenizer {
    fn parse(bytes: &[u8], vocab_size: usize) -> Result<Self, String> {
        let mut at = 4; // max_token_length, unused
        let mut take = |n: usize| -> Result<&[u8], String> {
            let slice = bytes.get(at..at + n).ok_or("file ends early")?;
            at += n;
            Ok(slice)
        };
        take(0)?;
        let mut pieces = Vec::with_capacity(vocab_size);
        let mut scores = Vec::with_capacity(vocab_size);
        for _ in 0..vocab_size {
            let score = f32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad score")?);
            let len = i32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad length")?);
            let len = usize::try_from(len).map_err(|_| "negative piece length")?;
            pieces.push(take(len)?.to_vec());
            scores.push(score);
        }
        let lookup = pieces
            .iter()
            .enumerate()
            .map(|(id, piece)| (piece.clone(), id as u32))
            .collect();
        Ok(Llama2cTokenizer {
            pieces,
            scores,
            lookup,
        })
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        if text.is_empty() {
            return Vec::new();
        }
        // sentencepiece adds a dummy space in front of the text.
        let mut tokens: Vec<u32> = self
            .lookup
            .get(b" ".as_slice())
            .copied()
            .into_iter()
            .collect();
        // No piece spans a line break, so lines merge independently; this
        // keeps the quadratic merge loop cheap on long documents.
        for (index, line) in text.split('\n').enumerate() {
            if index > 0 {
                self.push_text(&mut tokens, "\n");
            }
            let mut line_tokens = Vec::new();
            self.push_text(&mut line_tokens, line);
            if index == 0 {
                line_tokens.splice(0..0, tokens.drain(..));
            }
            self.merge(&mut line_tokens);
            tokens.extend(line_tokens);
        }
        tokens
    }

    /// Characters as pieces, with byte fallback (`<0x00>`..`<0xFF>` are
    /// ids 3..=258).
    fn push_text(&self, tokens: &mut Vec<u32>, text: &str) {
        let mut buffer = [0u8; 4];
        for ch in text.chars() {
            let encoded = ch.encode_utf8(&mut buffer).as_bytes();
            match self.lookup.get(encoded) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(encoded.iter().map(|&b| u32::from(b) + 3)),
            }
        }
    }

    /// Repeatedly merges the adjacent pair whose union scores best.
    fn merge(&self, tokens: &mut Vec<u32>) {
        loop {
            let best = tokens
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    let mut merged = self.pieces[pair[0] as usize].clone();
                    merged.extend_from_slice(&self.pieces[pair[1] as usize]);
                    self.lookup
                        .get(&merged)
                        .map(|&id| (i, id, self.scores[id as usize]))
                })
                .fold(None::<(usize, u32, f32)>, |best, candidate| match best {
                    Some(b) if b.2 >= candidate.2 => Some(b),
                    _ => Some(candidate),
                });
            match best {
                Some((i, id, _)) => {
                    tokens[i] = id;
                    tokens.remove(i + 1);
                }
                None => return,
            }
        }
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        let mut previous = None;
        for &id in ids {
            let Some(piece) = self.pieces.get(id as usize) else {
                continue;
            };
            if id <= 2 {
                previous = Some(id);
                continue;
            }
            let mut piece = piece.as_slice();
            // After BOS, sentencepiece drops the leading space.
            if previous == Some(1) && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            match parse_byte_piece(piece) {
                Some(byte) => bytes.push(byte),
                None => bytes.extend_from_slice(piece),
            }
            previous = Some(id);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `<0x41>` to 0x41.
fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    let hex = piece.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_llama2c() -> Llama2cTokenizer {
        let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
        pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
        for piece in [" ", "a", "b", "ab", " ab", "c"] {
            pieces.push(piece.as_bytes().to_vec());
        }
        let scores = (0..pieces.len()).map(|i| i as f32).collect();
        let lookup = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        Llama2cTokenizer {
            pieces,
            scores,
            lookup,
        }
    }

    #[test]
    fn llama2c_merges_by_score_and_falls_back_to_bytes() {
        let tokenizer = tiny_llama2c();
        let ids = tokenizer.encode("abé");
        // " ab" merged whole, "é" as two UTF-8 bytes.
        assert_eq!(ids, vec![263, 0xC3 + 3, 0xA9 + 3]);
        let mut with_bos = vec![1];
        with_bos.extend(ids);
        assert_eq!(tokenizer.decode(&with_bos), "abé");
    }

    #[test]
    fn llama2c_lines_are_joined_by_a_newline_byte() {
        let tokenizer = tiny_llama2c();
        let ids = tokenizer.encode("ab\nab");
        assert_eq!(ids, vec![263, 0x0A + 3, 262]);
        let mut with_bos = vec![1];
        with_bos.extend(ids);
        assert_eq!(tokenizer.decode(&with_bos), "ab\nab");
    }

    #[test]
    fn truncated_llama2c_file_is_an_error() {
        assert!(Llama2cTokenizer::parse(&[0, 0, 0, 0, 1, 2], 3).is_err());
    }
}
