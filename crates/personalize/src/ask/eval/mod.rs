//! `hearth eval ask`: how often a question in words gets the exact answer.
//! A generated library (photos with dates and labels, notes naming places
//! and topics, Shakespeare as filler) and generated questions whose true
//! answers are computed from the generated facts; the translator answers
//! them with constrained decoding, then again after training on corrected
//! pairs (held-out questions: no evaluated question is a training one),
//! and the base model without the grammar shows what the grammar buys.
//! This is a measurement, not a test: it prints figures.

mod library;
mod questions;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use hearth_ask::{AskDb, LibraryFacts, Outcome, Value};
use hearth_ml::DeviceChoice;
use hearth_ml::generate::{Sampling, generate};
use hearth_progress::{CancelToken, Progress};
use hearth_store::ItemFilter;
use serde::Serialize;

use self::questions::{Question, Truth, today};
use super::train::{AskTraining, library_translator, train_ask};
use super::translate::{MAX_QUERY_TOKENS, Translator, prompt};
use super::{AskRequest, ask, correct_ask};
use crate::RunSummary;
use crate::error::{PersonalizeError, Result};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct AskEvalRequest {
    /// Questions asked in each configuration.
    pub questions: usize,
    /// Corrected pairs trained on.
    pub train_pairs: usize,
    /// Photos in the generated library.
    pub photos: usize,
    /// Notes in the generated library.
    pub notes: usize,
    /// Seed for the library and the questions.
    pub seed: u64,
    /// The translating model (default: the default text model).
    pub model: Option<String>,
    /// Where to run.
    pub device: DeviceChoice,
    /// Folder for the generated library (emptied first).
    pub workdir: PathBuf,
    /// Shakespeare's text for filler notes, when available.
    pub shakespeare: Option<PathBuf>,
    /// The ask training.
    pub training: AskTraining,
    /// Also measure unconstrained generation.
    pub unconstrained: bool,
}

impl AskEvalRequest {
    /// The sizes: 200 questions, 100 pairs, a library of 360.
    pub fn new(workdir: PathBuf) -> Self {
        AskEvalRequest {
            questions: 200,
            train_pairs: 100,
            photos: 240,
            notes: 120,
            seed: 7,
            model: None,
            device: DeviceChoice::Auto,
            workdir,
            shakespeare: None,
            training: AskTraining::default(),
            unconstrained: true,
        }
    }
}

/// One configuration's results.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// Which.
    pub name: String,
    /// Questions asked.
    pub questions: usize,
    /// Answers equal to the truth.
    pub exact: usize,
    /// Translations that parsed, checked and ran.
    pub valid: usize,
    /// Answers citing an item that is not in the library.
    pub outside_library: usize,
    /// Mean seconds per question (translation and answer).
    pub mean_seconds: f64,
    /// Median seconds per question.
    pub median_seconds: f64,
    /// Grammar mask cost, ms per written token (constrained only).
    pub mask_ms_per_token: Option<f64>,
    /// A few of the wrong answers: question, the query written.
    pub wrong: Vec<(String, String)>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct AskEvalReport {
    /// Items in the generated library.
    pub library_items: usize,
    /// Reference queries whose answer matched the generated truth (a
    /// check of the query engine against facts computed without it).
    pub reference_agreement: (usize, usize),
    /// The ask training run.
    pub training: Option<RunSummary>,
    /// Each configuration.
    pub configs: Vec<ConfigReport>,
}

/// Runs the evaluation.
pub fn eval_ask(
    request: &AskEvalRequest,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<AskEvalReport> {
    if request.workdir.exists() {
        std::fs::remove_dir_all(&request.workdir).map_err(|source| PersonalizeError::Io {
            path: request.workdir.clone(),
            source,
        })?;
    }
    let shakespeare = match &request.shakespeare {
        Some(path) => {
            Some(
                std::fs::read_to_string(path).map_err(|source| PersonalizeError::Io {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    progress.note("generating and importing the library");
    let (mut library, generated) = library::build(
        &request.workdir,
        request.photos,
        request.notes,
        shakespeare.as_deref(),
        request.seed,
    )?;
    let library_ids: BTreeSet<i64> = library
        .items(&ItemFilter::default())?
        .iter()
        .map(|item| item.id)
        .collect();
    let asked = questions::draw(
        &generated,
        request.questions,
        request.seed,
        &BTreeSet::new(),
    );
    let held_out: BTreeSet<String> = asked.iter().map(|q| q.text.clone()).collect();
    let pairs = questions::draw(
        &generated,
        request.train_pairs,
        request.seed.wrapping_add(1),
        &held_out,
    );
    let db = AskDb::open(library.root())?;
    let facts = db.facts()?;
    let agreement = asked
        .iter()
        .filter(|q| {
            db.ask(&q.query, today(), None)
                .is_ok_and(|outcome| exact(&q.truth, &outcome))
        })
        .count();

    let device = request.device.open()?;
    let (base, _) = library_translator(&library, request.model.as_deref(), &device)?;
    let judge = Judge {
        db: &db,
        facts: &facts,
        library: &library_ids,
        corrections: &[],
    };
    let mut configs = Vec::new();
    configs.push(judge.constrained("base model, constrained", &base, &asked, progress, cancel)?);
    if request.unconstrained {
        configs.push(judge.unconstrained(&base, &asked, progress, cancel)?);
    }
    drop(base);

    progress.note(&format!("correcting {} asks and training", pairs.len()));
    for pair in &pairs {
        let answer = ask(
            &mut library,
            &AskRequest {
                question: Some(pair.text.clone()),
                query: "cannot_answer".into(),
                today: today(),
            },
            None,
        )?;
        correct_ask(&mut library, answer.ask_id, &pair.query, today(), None)?;
    }
    let training = train_ask(&mut library, &request.training, progress, cancel)?;
    let (trained, adapter) = library_translator(&library, request.model.as_deref(), &device)?;
    if adapter.is_none() {
        return Err(PersonalizeError::Inconsistent(
            "training finished without an ask adapter".into(),
        ));
    }
    let corrections = library.ask_corrections()?;
    let judge = Judge {
        corrections: &corrections,
        ..judge
    };
    configs.push(judge.constrained(
        "after ask training, constrained",
        &trained,
        &asked,
        progress,
        cancel,
    )?);
    Ok(AskEvalReport {
        library_items: library_ids.len(),
        reference_agreement: (agreement, asked.len()),
        training: Some(training),
        configs,
    })
}

/// Whether `outcome` is the true answer.
fn exact(truth: &Truth, outcome: &Outcome) -> bool {
    match (truth, &outcome.value) {
        (Truth::Refusal, Value::Refusal) => true,
        (Truth::Number(n), Value::Number { value }) => n == value,
        (Truth::Date(d), Value::Date { date }) => d == date,
        (Truth::Items(items), Value::Items { total }) => {
            let shown: BTreeSet<i64> = outcome.sources.iter().map(|s| s.id).collect();
            *total == items.len() as u64
                && if shown.len() == items.len() {
                    shown == *items
                } else {
                    shown.is_subset(items)
                }
        }
        _ => false,
    }
}

/// Asks the questions and scores the answers.
struct Judge<'a> {
    db: &'a AskDb,
    facts: &'a LibraryFacts,
    library: &'a BTreeSet<i64>,
    corrections: &'a [hearth_store::AskCorrection],
}

impl Judge<'_> {
    fn constrained(
        &self,
        name: &str,
        translator: &Translator,
        asked: &[Question],
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<ConfigReport> {
        progress.begin(name, Some(asked.len() as u64));
        let mut report = Scores::default();
        let mut mask = Vec::new();
        for (n, question) in asked.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(PersonalizeError::Cancelled);
            }
            let start = Instant::now();
            let query = match translator.translate(
                &question.text,
                self.facts,
                self.corrections,
                today(),
                false,
            ) {
                Ok(translation) => {
                    mask.push(translation.mask_ms_per_token);
                    Some(translation.query)
                }
                Err(PersonalizeError::Untranslated { partial, .. }) => {
                    report.wrong(question, &format!("(unfinished) {partial}"));
                    None
                }
                Err(other) => return Err(other),
            };
            if let Some(query) = query {
                self.score(&mut report, question, &query);
            }
            report.seconds.push(start.elapsed().as_secs_f64());
            progress.advance(n as u64 + 1);
        }
        progress.end();
        let mut config = report.finish(name, asked.len());
        config.mask_ms_per_token = Some(mean(&mask));
        Ok(config)
    }

    fn unconstrained(
        &self,
        translator: &Translator,
        asked: &[Question],
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<ConfigReport> {
        let name = "base model, unconstrained";
        progress.begin(name, Some(asked.len() as u64));
        let loaded = translator.loaded();
        let sampling = Sampling {
            temperature: 0.0,
            max_new_tokens: MAX_QUERY_TOKENS / 2,
            ..Sampling::default()
        };
        let mut report = Scores::default();
        for (n, question) in asked.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(PersonalizeError::Cancelled);
            }
            let start = Instant::now();
            let text = prompt(&question.text, self.facts, self.corrections, today(), false);
            let ids = loaded.tokenizer.encode(&text, true)?;
            let generation = generate(loaded, None, &ids, &sampling, |_| {})?;
            let query = generation
                .text
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            self.score(&mut report, question, &query);
            report.seconds.push(start.elapsed().as_secs_f64());
            progress.advance(n as u64 + 1);
        }
        progress.end();
        Ok(report.finish(name, asked.len()))
    }

    fn score(&self, report: &mut Scores, question: &Question, query: &str) {
        match self.db.ask(query, today(), None) {
            Ok(outcome) => {
                report.valid += 1;
                if outcome
                    .sources
                    .iter()
                    .any(|s| !self.library.contains(&s.id))
                {
                    report.outside += 1;
                }
                if exact(&question.truth, &outcome) {
                    report.exact += 1;
                } else {
                    report.wrong(question, &outcome.canonical);
                }
            }
            Err(error) => report.wrong(question, &format!("{query} ({error})")),
        }
    }
}

#[derive(Default)]
struct Scores {
    exact: usize,
    valid: usize,
    outside: usize,
    seconds: Vec<f64>,
    wrong: Vec<(String, String)>,
}

impl Scores {
    fn wrong(&mut self, question: &Question, written: &str) {
        if self.wrong.len() < 8 {
            self.wrong.push((
                question.text.clone(),
                format!("{written}   [want {}]", question.query),
            ));
        }
    }

    fn finish(mut self, name: &str, questions: usize) -> ConfigReport {
        self.seconds.sort_by(f64::total_cmp);
        ConfigReport {
            name: name.to_owned(),
            questions,
            exact: self.exact,
            valid: self.valid,
            outside_library: self.outside,
            mean_seconds: mean(&self.seconds),
            median_seconds: self
                .seconds
                .get(self.seconds.len() / 2)
                .copied()
                .unwrap_or(0.0),
            mask_ms_per_token: None,
            wrong: self.wrong,
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_queries_agree_with_the_generated_truth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (library, generated) = library::build(dir.path(), 60, 30, None, 3).expect("library");
        let db = AskDb::open(library.root()).expect("db");
        let asked = questions::draw(&generated, 80, 3, &BTreeSet::new());
        assert_eq!(asked.len(), 80);
        for question in &asked {
            let outcome = db
                .ask(&question.query, today(), None)
                .expect(&question.query);
            assert!(
                exact(&question.truth, &outcome),
                "{}: {:?} vs {:?}",
                question.query,
                question.truth,
                outcome.value
            );
        }
    }
}
