//! Grammar-constrained decoding: at each step only the tokens that keep the
//! output inside a grammar may be picked, so even a 135M-parameter model
//! always writes a string the grammar accepts (Ask's queries, for one).
//!
//! The grammar is Lark text, compiled by llguidance (an Earley parser over
//! a lexer, with token masks computed against a trie of the vocabulary);
//! Hearth supplies the vocabulary's bytes and the tokenizer, and applies
//! each mask to the logits before picking.

use std::sync::Arc;
use std::time::Instant;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::error::{MlError, Result};
use crate::tokenizer::TextTokenizer;

fn constraint_error(e: impl std::fmt::Display) -> MlError {
    MlError::Constraint(e.to_string())
}

/// A tokenizer's vocabulary prepared for constrained decoding. Building it
/// indexes every token's bytes (tens of milliseconds for 49k tokens), so
/// build it once per model and make a [`GrammarConstraint`] per request.
pub struct ConstraintFactory {
    factory: ParserFactory,
    stop: Vec<u32>,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory")
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

/// llguidance's view of a tokenizer: the trie of token bytes. Masks need
/// only the trie; the few byte strings llguidance tokenizes itself (forced
/// text, which Hearth does not use) are split greedily by the trie, because
/// a sentencepiece tokenizer would add its dummy space to every fragment.
struct Vocabulary {
    trie: TokTrie,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }
}

impl ConstraintFactory {
    /// Prepares `tokenizer`'s vocabulary. The first stop token is the one
    /// a finished grammar allows; every other stop token is allowed with it.
    pub fn new(tokenizer: &TextTokenizer) -> Result<Self> {
        let stop = tokenizer.stop_tokens().to_vec();
        let Some(&eos) = stop.first() else {
            return Err(MlError::Constraint(
                "the model has no end-of-sequence token, so a constrained reply could never end"
                    .into(),
            ));
        };
        let words = tokenizer.token_bytes()?;
        let vocab_size = u32::try_from(words.len())
            .map_err(|_| MlError::Constraint("the vocabulary is too large".into()))?;
        if eos >= vocab_size {
            return Err(MlError::Constraint(format!(
                "the end-of-sequence token {eos} is outside the vocabulary of {vocab_size}"
            )));
        }
        let info = TokRxInfo::new(vocab_size, eos);
        let env: TokEnv = Arc::new(Vocabulary {
            trie: TokTrie::from(&info, &words),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(constraint_error)?;
        factory.quiet();
        Ok(ConstraintFactory { factory, stop })
    }

    /// A fresh constraint for one reply in the Lark grammar `lark`.
    pub fn constraint(&self, lark: &str) -> Result<GrammarConstraint> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_owned()))
            .map_err(constraint_error)?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(MlError::Constraint(error));
        }
        Ok(GrammarConstraint {
            matcher,
            stop: self.stop.clone(),
            mask_seconds: 0.0,
            masks: 0,
        })
    }
}

/// One reply's grammar state: which tokens may come next, advanced by each
/// token picked.
pub struct GrammarConstraint {
    matcher: Matcher,
    stop: Vec<u32>,
    mask_seconds: f64,
    masks: usize,
}

impl std::fmt::Debug for GrammarConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarConstraint")
            .field("masks", &self.masks)
            .field("mask_seconds", &self.mask_seconds)
            .finish_non_exhaustive()
    }
}

impl GrammarConstraint {
    /// Sets every logit the grammar does not allow next to minus infinity.
    /// Logits past the vocabulary (padding rows of the output layer) are
    /// never allowed. A finished grammar allows only the stop tokens.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let start = Instant::now();
        let mask = self.allowed()?;
        for (id, logit) in logits.iter_mut().enumerate() {
            let allowed = u32::try_from(id).is_ok_and(|id| {
                (id as usize) < mask.len()
                    && (mask.is_allowed(id)
                        || (self.stop.contains(&id) && mask.is_allowed(self.stop[0])))
            });
            if !allowed {
                *logit = f32::NEG_INFINITY;
            }
        }
        self.mask_seconds += start.elapsed().as_secs_f64();
        self.masks += 1;
        Ok(())
    }

    fn allowed(&mut self) -> Result<SimpleVob> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(constraint_error)?;
        if mask.num_set() == 0 {
            return Err(MlError::Constraint(
                "the grammar allows no token here (it cannot be finished with this vocabulary)"
                    .into(),
            ));
        }
        Ok(mask)
    }

    /// Advances past `token`, which must be one [`Self::mask_logits`]
    /// allowed. A stop token ends the reply; it is accepted only where the
    /// grammar is complete.
    pub fn consume(&mut self, token: u32) -> Result<()> {
        let token = if self.stop.contains(&token) {
            // A grammar that cannot be extended has already stopped the
            // matcher; the stop token then only ends the reply.
            if self.matcher.is_stopped() {
                return Ok(());
            }
            self.stop[0]
        } else {
            token
        };
        self.matcher
            .consume_token(token)
            .map_err(constraint_error)?;
        if let Some(error) = self.matcher.get_error() {
            return Err(MlError::Constraint(error));
        }
        Ok(())
    }

    /// Whether the text so far is a complete sentence of the grammar.
    pub fn is_complete(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether nothing but a stop token can follow.
    pub fn is_finished(&mut self) -> bool {
        self.matcher.is_stopped()
            || self
                .matcher
                .compute_mask()
                .is_ok_and(|mask| mask.num_set() == 1 && mask.is_allowed(self.stop[0]))
    }

    /// Seconds spent computing masks, and how many were computed: the
    /// per-token cost of the constraint.
    pub fn mask_time(&self) -> (f64, usize) {
        (self.mask_seconds, self.masks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level toy: one token per ASCII letter and space, a few
    /// multi-letter tokens, and an end token.
    fn toy_tokenizer() -> TextTokenizer {
        use tokenizers::models::bpe::BPE;
        let mut vocab: Vec<String> = (b'a'..=b'z').map(|b| char::from(b).to_string()).collect();
        vocab.extend(["Ġ", "ye", "yes", "no", "Ġno"].map(str::to_owned));
        let ids: tokenizers::models::bpe::Vocab = vocab
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let merges = vec![
            ("y".to_owned(), "e".to_owned()),
            ("ye".to_owned(), "s".to_owned()),
            ("n".to_owned(), "o".to_owned()),
            ("Ġ".to_owned(), "no".to_owned()),
        ];
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .build()
            .expect("bpe");
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(
            tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, false, false),
        ));
        tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        tokenizer
            .add_special_tokens(vec![tokenizers::AddedToken::from("<end>", true)])
            .expect("special");
        let end = tokenizer.token_to_id("<end>").expect("end id");
        TextTokenizer::from_hf(tokenizer, None, vec![end], None)
    }

    #[test]
    fn only_grammatical_tokens_survive_the_mask() {
        let tokenizer = toy_tokenizer();
        let factory = ConstraintFactory::new(&tokenizer).expect("factory");
        let mut constraint = factory
            .constraint("start: \"yes\" | \"no\"")
            .expect("constraint");
        let vocab = tokenizer.vocab_size();
        let mut logits = vec![0.0f32; vocab + 3];
        constraint.mask_logits(&mut logits).expect("mask");
        let allowed: Vec<String> = (0..logits.len())
            .filter(|&id| logits[id].is_finite())
            .map(|id| tokenizer.decode(&[id as u32]).expect("decode"))
            .collect();
        // "y", "ye", "yes", "n", "no" start a sentence; nothing else does,
        // and the padding rows past the vocabulary never do.
        let mut sorted = allowed.clone();
        sorted.sort();
        assert_eq!(sorted, ["n", "no", "y", "ye", "yes"]);
        let end = tokenizer.stop_tokens()[0];
        assert!(!constraint.is_complete());

        let yes = tokenizer.encode("yes", false).expect("encode");
        assert_eq!(yes.len(), 1);
        constraint.consume(yes[0]).expect("consume");
        assert!(constraint.is_complete());
        assert!(constraint.is_finished());
        let mut logits = vec![0.0f32; vocab];
        constraint.mask_logits(&mut logits).expect("mask");
        let finite: Vec<usize> = (0..vocab).filter(|&id| logits[id].is_finite()).collect();
        assert_eq!(finite, [end as usize]);
    }

    #[test]
    fn a_token_the_grammar_refuses_is_an_error_not_a_panic() {
        let tokenizer = toy_tokenizer();
        let factory = ConstraintFactory::new(&tokenizer).expect("factory");
        let mut constraint = factory.constraint("start: \"yes\"").expect("constraint");
        let no = tokenizer.encode("no", false).expect("encode");
        assert!(matches!(
            constraint.consume(no[0]),
            Err(MlError::Constraint(_))
        ));
    }

    #[test]
    fn a_grammar_that_does_not_compile_is_a_typed_error() {
        let factory = ConstraintFactory::new(&toy_tokenizer()).expect("factory");
        assert!(matches!(
            factory.constraint("start: undefined_rule"),
            Err(MlError::Constraint(_))
        ));
    }
}
