//! From words to a query: the text model writes the Ask query for a
//! question, held token by token to the library's grammar
//! ([`hearth_ask::lark_grammar`]), so whatever it writes parses and checks.
//! The model only translates; the answer is computed by code.
//!
//! The prompt is a few-shot list of question/query pairs: fixed examples
//! written with the person's own labels, then the person's corrections
//! (their words, as they meant them), then the question. Decoding is
//! greedy: a translation should not change from one ask to the next.

use std::time::Instant;

use hearth_ask::LibraryFacts;
use hearth_ml::LoadedModel;
use hearth_ml::LoraAdapter;
use hearth_ml::candle::Device;
use hearth_ml::constrain::ConstraintFactory;
use hearth_ml::generate::{Sampling, generate_constrained};
use hearth_store::AskCorrection;
use serde::Serialize;

use super::NaiveDate;
use crate::error::{PersonalizeError, Result};

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 500;
/// Most tokens a query may take (the longest examples take about 30).
pub const MAX_QUERY_TOKENS: usize = 96;
/// Corrections shown to the model, most recent first.
pub const CORRECTIONS_IN_PROMPT: usize = 8;
/// Labels named in the prompt (the grammar allows every label anyway).
const LABELS_IN_PROMPT: usize = 40;

/// Worked examples; `{A}` and `{B}` become two of the person's labels.
/// Those naming a label are left out of a library without labels.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "how many photos of {A} did I take last summer?",
        "count photos label \"{A}\" in last_summer",
    ),
    (
        "show my notes that mention Lisbon",
        "list notes text \"lisbon\"",
    ),
    (
        "which photos look like the beach?",
        "similar photos to \"the beach\" limit 10",
    ),
    (
        "how many days between my first and last photo of {A}?",
        "days_between(first photos label \"{A}\", last photos label \"{A}\")",
    ),
    (
        "how many more photos of {A} than of {B}?",
        "minus(count photos label \"{A}\", count photos label \"{B}\")",
    ),
    (
        "when did I first photograph {B}?",
        "first photos label \"{B}\"",
    ),
    (
        "how many notes did I add in March 2024?",
        "count notes in 2024-03",
    ),
    (
        "how long ago was my first note?",
        "days_between(first notes, today)",
    ),
    ("notes about taxes", "similar notes to \"taxes\" limit 10"),
    ("list my notes about cooking", "list notes text \"cooking\""),
    ("what is the capital of France?", "cannot_answer"),
];

/// A text model ready to translate questions: the model, its vocabulary
/// prepared for constrained decoding, and the adapter trained on the
/// person's corrections if there is one.
pub struct Translator {
    loaded: LoadedModel,
    adapter: Option<LoraAdapter>,
    factory: ConstraintFactory,
    /// Which model, for the record.
    pub model: String,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("model", &self.model)
            .field("adapter", &self.adapter.is_some())
            .finish_non_exhaustive()
    }
}

/// What the translation of one question cost and produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Translation {
    /// The query the model wrote.
    pub query: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens the model wrote.
    pub query_tokens: usize,
    /// Seconds from the question to the query (prompt and decoding).
    pub seconds: f64,
    /// Milliseconds per written token spent computing grammar masks: the
    /// constraint's overhead.
    pub mask_ms_per_token: f64,
}

impl Translator {
    /// Loads `model` (a registry name or path; the default text model when
    /// `None`) on `device`.
    pub fn load(model: Option<&str>, device: &Device) -> Result<Self> {
        let (name, loaded) = crate::load_model(model, device)?;
        Self::new(name, loaded, None)
    }

    /// A translator over an already loaded model and optional adapter.
    pub fn new(model: String, loaded: LoadedModel, adapter: Option<LoraAdapter>) -> Result<Self> {
        let factory = ConstraintFactory::new(&loaded.tokenizer)?;
        Ok(Translator {
            loaded,
            adapter,
            factory,
            model,
        })
    }

    /// The model, for training an adapter on corrections.
    pub fn loaded(&self) -> &LoadedModel {
        &self.loaded
    }

    /// Uses `adapter` (trained on corrections) from now on.
    pub fn set_adapter(&mut self, adapter: Option<LoraAdapter>) {
        self.adapter = adapter;
    }

    /// Writes the query for `question` over a library with `facts`, as
    /// asked on `today`, learning from `corrections` (oldest first).
    /// `semantic` says whether `similar` can run (an embedding model is
    /// set up); without it the model may not write it.
    pub fn translate(
        &self,
        question: &str,
        facts: &LibraryFacts,
        corrections: &[AskCorrection],
        today: NaiveDate,
        semantic: bool,
    ) -> Result<Translation> {
        let question = check_question(question)?;
        let start = Instant::now();
        let prompt_text = prompt(question, facts, corrections, today, semantic);
        let prompt = self.loaded.tokenizer.encode(&prompt_text, true)?;
        let mut constraint = self
            .factory
            .constraint(&hearth_ask::lark_grammar(facts, semantic))?;
        let sampling = Sampling {
            temperature: 0.0,
            max_new_tokens: MAX_QUERY_TOKENS,
            ..Sampling::default()
        };
        let generation = generate_constrained(
            &self.loaded,
            self.adapter.as_ref(),
            &prompt,
            &sampling,
            &mut constraint,
            |_| {},
        )?;
        let query = generation.text.trim().to_owned();
        if !generation.complete {
            return Err(PersonalizeError::Untranslated {
                question: question.to_owned(),
                partial: query,
            });
        }
        let (mask_seconds, masks) = constraint.mask_time();
        Ok(Translation {
            query,
            prompt_tokens: generation.prompt_tokens,
            query_tokens: generation.new_tokens,
            seconds: start.elapsed().as_secs_f64(),
            mask_ms_per_token: if masks == 0 {
                0.0
            } else {
                mask_seconds * 1e3 / masks as f64
            },
        })
    }
}

/// The question, trimmed, if it can be translated at all.
pub(crate) fn check_question(question: &str) -> Result<&str> {
    let question = question.trim();
    if question.is_empty() {
        return Err(PersonalizeError::Invalid("ask a question first".into()));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(PersonalizeError::Invalid(format!(
            "the question is longer than {MAX_QUESTION_CHARS} characters; ask one thing at a time"
        )));
    }
    Ok(question)
}

/// One line of the prompt: a question with its line breaks and control
/// characters made spaces, so it cannot end the example early.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// One worked pair as the prompt and the training data write it.
pub(crate) fn pair_text(question: &str, query: &str) -> String {
    format!("Question: {}\nQuery: {}\n\n", one_line(question), query)
}

/// The labels the prompt names: the library's first few, as spelled.
fn prompt_labels(facts: &LibraryFacts) -> Vec<&str> {
    facts
        .labels
        .iter()
        .map(String::as_str)
        .filter(|label| !label.chars().any(char::is_control))
        .take(LABELS_IN_PROMPT)
        .collect()
}

/// The fixed examples written with the person's labels (and an adapter of
/// theirs), as (question, query) pairs; without a semantic index, none
/// that uses `similar`.
pub(crate) fn examples(facts: &LibraryFacts, semantic: bool) -> Vec<(String, String)> {
    let labels = prompt_labels(facts);
    let (a, b) = match labels.as_slice() {
        [] => (None, None),
        [only] => (Some(*only), Some(*only)),
        [first, second, ..] => (Some(*first), Some(*second)),
    };
    let mut pairs = Vec::new();
    for (question, query) in EXAMPLES {
        if !semantic && query.starts_with("similar") {
            continue;
        }
        let names_label = query.contains("{A}") || query.contains("{B}");
        match (names_label, a, b) {
            (false, _, _) => pairs.push(((*question).to_owned(), (*query).to_owned())),
            (true, Some(a), Some(b)) => {
                // The query side quotes the label as the language does.
                let quoted = |label: &str| label.replace('\\', "\\\\").replace('"', "\\\"");
                pairs.push((
                    question.replace("{A}", a).replace("{B}", b),
                    query.replace("{A}", &quoted(a)).replace("{B}", &quoted(b)),
                ));
            }
            (true, _, _) => {}
        }
    }
    if let Some((adapter, _)) = facts.adapters.iter().find(|(_, run)| run.is_some()) {
        pairs.push((
            format!("what was adapter {adapter} trained on?"),
            format!("list items trained_on adapter {adapter}"),
        ));
    }
    pairs
}

/// The few-shot prompt for `question`.
pub(crate) fn prompt(
    question: &str,
    facts: &LibraryFacts,
    corrections: &[AskCorrection],
    today: NaiveDate,
    semantic: bool,
) -> String {
    let mut text = String::from(
        "Each question about a person's library of photos and notes is written as a query. \
         A question the library cannot answer is written cannot_answer.\n",
    );
    text.push_str(&format!("Today is {}.\n", today.format("%Y-%m-%d")));
    let labels = prompt_labels(facts);
    if labels.is_empty() {
        text.push_str("The library has no labels.\n");
    } else {
        let quoted: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
        text.push_str(&format!("Labels: {}.\n", quoted.join(", ")));
    }
    text.push('\n');
    for (question, query) in examples(facts, semantic) {
        text.push_str(&pair_text(&question, &query));
    }
    let recent = corrections.len().saturating_sub(CORRECTIONS_IN_PROMPT);
    for correction in &corrections[recent..] {
        if let Some(question) = &correction.question
            && (semantic || !correction.query.starts_with("similar"))
        {
            text.push_str(&pair_text(question, &correction.query));
        }
    }
    text.push_str(&format!("Question: {}\nQuery:", one_line(question)));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")
    }

    #[test]
    fn the_prompt_speaks_the_persons_words() {
        let facts = LibraryFacts {
            labels: vec!["Rex".into(), "Oma".into()],
            adapters: vec![(3, Some(1))],
            runs: vec![1],
            taggers: vec![],
        };
        let corrections = vec![AskCorrection {
            id: 1,
            ask_id: 1,
            question: Some("pics of the pup\nlast year".into()),
            query: "list photos label \"Rex\" in last_year".into(),
            corrected_at: "2024-02-01".into(),
        }];
        let text = prompt(
            "how many photos of Oma?",
            &facts,
            &corrections,
            today(),
            true,
        );
        assert!(text.contains("Labels: \"Rex\", \"Oma\"."), "{text}");
        assert!(text.contains("Today is 2024-03-01."), "{text}");
        assert!(
            text.contains("count photos label \"Rex\" in last_summer"),
            "{text}"
        );
        assert!(text.contains("list items trained_on adapter 3"), "{text}");
        // The correction, on one line, last before the question.
        assert!(
            text.ends_with(
                "Question: pics of the pup last year\nQuery: list photos label \"Rex\" in last_year\n\n\
                 Question: how many photos of Oma?\nQuery:"
            ),
            "{text}"
        );
    }

    #[test]
    fn without_labels_no_example_names_one() {
        let text = prompt(
            "how many notes?",
            &LibraryFacts::default(),
            &[],
            today(),
            false,
        );
        assert!(!text.contains("label \""), "{text}");
        assert!(!text.contains("similar"), "{text}");
        assert!(!text.contains("{A}"), "{text}");
        assert!(text.contains("The library has no labels."), "{text}");
    }

    #[test]
    fn empty_and_huge_questions_are_refused() {
        assert!(check_question("  ").is_err());
        assert!(check_question(&"why ".repeat(200)).is_err());
        assert_eq!(
            check_question(" how many notes? ").ok(),
            Some("how many notes?")
        );
    }
}
