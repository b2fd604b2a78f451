//! `hearth ask`: run a query over the library and show the answer with
//! its query and the items it came from; correct asks; see past ones.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use hearth_personalize::PersonalizeError;
use hearth_personalize::ask::{
    self, AskError, AskRequest, NaiveDate, ResolvedRange, SourceItem, Value, ask_question,
};
use hearth_store::Library;

use crate::args::{AskArgs, AskCommand, AskCommon};
use crate::output;

pub fn ask(mut library: Library, args: AskArgs) -> Result<ExitCode> {
    match args.command {
        Some(AskCommand::Correct { id, query, common }) => {
            let correction = ask::correct_ask(&mut library, id, &query, today(&common))
                .map_err(|e| with_caret(e, &query))?;
            if common.json {
                output::json(&correction)?;
            } else {
                println!(
                    "kept as the query for ask {id}{}",
                    correction
                        .question
                        .as_deref()
                        .map(|q| format!(" ({q:?})"))
                        .unwrap_or_default()
                );
                print_answer(
                    &correction.canonical,
                    &correction.value,
                    &correction.ranges,
                    &correction.notes,
                    &correction.sources,
                );
            }
        }
        Some(AskCommand::History { json }) => history(&library, json)?,
        None => {
            let today = today(&args.common);
            // Loads the sentence-embedding model only if the query needs it.
            let semantic = hearth_personalize::ask::LibrarySemanticIndex::new(
                library.root(),
                None,
                hearth_ml::candle::Device::Cpu,
            );
            let answer = match (args.query, args.question) {
                (Some(query), question) => {
                    let request = AskRequest {
                        question,
                        query,
                        today,
                    };
                    ask::ask(&mut library, &request, Some(&semantic))
                        .map_err(|e| with_caret(e, &request.query))?
                }
                (None, Some(question)) => ask_question(&mut library, &question, today)?,
                (None, None) => bail!(
                    "give a question, or a query with --query (e.g. hearth ask --query 'count photos')"
                ),
            };
            semantic_report(&semantic);
            if args.common.json {
                output::json(&answer)?;
            } else {
                print_answer(
                    &answer.canonical,
                    &answer.value,
                    &answer.ranges,
                    &answer.notes,
                    &answer.sources,
                );
                if answer.question.is_some() {
                    println!(
                        "ask {} (if the query is wrong: hearth ask correct {} 'QUERY')",
                        answer.ask_id, answer.ask_id
                    );
                } else {
                    println!("ask {}", answer.ask_id);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A parse error shown under the query, with a caret where it went wrong.
fn with_caret(error: PersonalizeError, query: &str) -> anyhow::Error {
    match error {
        PersonalizeError::Ask(AskError::Parse(parse)) => {
            anyhow!("the query does not parse:\n{}", parse.render(query))
        }
        other => other.into(),
    }
}

fn today(common: &AskCommon) -> NaiveDate {
    common.today.unwrap_or_else(ask::local_today)
}

fn print_answer(
    canonical: &str,
    value: &Value,
    ranges: &[ResolvedRange],
    notes: &[String],
    sources: &[SourceItem],
) {
    println!("query: {canonical}");
    for range in ranges {
        println!("  {} = {}", range.range, range.span);
    }
    match value {
        Value::Refusal => println!("I can't answer that from your library."),
        Value::Number { value } => println!("answer: {value}"),
        Value::Date { date } => println!("answer: {}", date.format("%Y-%m-%d")),
        Value::Items { total: 1 } => println!("answer: 1 item"),
        Value::Items { total } => println!("answer: {total} items"),
        Value::Unknown { reason } => println!("no answer: {reason}"),
        _ => println!("answer: {value:?}"),
    }
    for note in notes {
        println!("  note: {note}");
    }
    if !sources.is_empty() {
        println!("from:");
    }
    for item in sources {
        let labels = if item.labels.is_empty() {
            String::new()
        } else {
            format!("  [{}]", item.labels.join(", "))
        };
        let score = item
            .score
            .map(|s| format!("  score {s:.3}"))
            .unwrap_or_default();
        println!(
            "  {:>6}  {:<5}  {:<25}  {}{labels}{score}",
            item.id,
            item.kind,
            item.date.as_deref().unwrap_or("(no date)"),
            item.path
        );
    }
}

fn history(library: &Library, json: bool) -> Result<()> {
    let asks = ask::history(library)?;
    let corrections = ask::corrections(library)?;
    if json {
        output::json(&serde_json::json!({ "asks": asks, "corrections": corrections }))?;
        return Ok(());
    }
    for record in &asks {
        println!(
            "{:>5}  {}  {}",
            record.id,
            record.asked_at,
            record
                .question
                .as_deref()
                .unwrap_or("(query written by hand)")
        );
        println!("       query: {}", record.query);
        for correction in corrections.iter().filter(|c| c.ask_id == record.id) {
            println!("       corrected: {}", correction.query);
        }
    }
    Ok(())
}

/// What semantic search did, on stderr: notes embedded now (the first
/// search over a library embeds them all; later ones only new or edited
/// notes), and why photos were left out of the ranking, if they were.
fn semantic_report(semantic: &hearth_personalize::ask::LibrarySemanticIndex) {
    let stats = semantic.stats();
    if stats.notes_embedded > 0 {
        eprintln!(
            "embedded {} notes in {:.2} s ({:.1} ms per note; model loaded in {:.2} s), kept for later searches",
            stats.notes_embedded,
            stats.embed_seconds,
            stats.embed_seconds * 1e3 / stats.notes_embedded as f64,
            stats.load_seconds
        );
    }
    if let Some(reason) = stats.photos_skipped {
        eprintln!("photos were not ranked: {reason}");
    }
}
