//! `hearth ask`: run a query over the library and show the answer with
//! its query and the items it came from; correct asks; see past ones.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use hearth_ml::DeviceChoice;
use hearth_ml::train::Outcome;
use hearth_personalize::PersonalizeError;
use hearth_personalize::ask::{
    self, AskError, AskRequest, AskTrainingRequest, NaiveDate, ResolvedRange, SourceItem, Value,
    ask_question,
};
use hearth_store::Library;

use crate::args::{AskArgs, AskCommand, AskCommon};
use crate::commands::text::ctrl_c_token;
use crate::output;
use crate::progress_bar::Bar;

pub fn ask(mut library: Library, args: AskArgs) -> Result<ExitCode> {
    match args.command {
        Some(AskCommand::Correct { id, query, common }) => {
            let semantic = semantic_index(&library);
            let correction =
                ask::correct_ask(&mut library, id, &query, today(&common), Some(&semantic))
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
        Some(AskCommand::Train {
            steps,
            model,
            device,
            json,
        }) => train(&mut library, steps, model, device, json)?,
        None => {
            let today = today(&args.common);
            let semantic = semantic_index(&library);
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
                (None, Some(question)) => {
                    let device = args.device.open()?;
                    let (translator, _) =
                        ask::library_translator(&library, args.model.as_deref(), &device)?;
                    // `similar` is offered to the translator only when the
                    // embedding model is here to run it.
                    let offered = semantic.model_present();
                    ask_question(
                        &mut library,
                        &question,
                        today,
                        &translator,
                        if offered { Some(&semantic) } else { None },
                    )?
                }
                (None, None) => bail!(
                    "give a question, or a query with --query (e.g. hearth ask --query 'count photos')"
                ),
            };
            semantic_report(&semantic);
            if args.common.json {
                output::json(&answer)?;
            } else {
                if let (true, Some(translation)) = (args.show_query, &answer.translation) {
                    println!(
                        "translated: {} ({} prompt tokens, {} query tokens, {:.2} s; grammar {:.2} ms per token)",
                        translation.query,
                        translation.prompt_tokens,
                        translation.query_tokens,
                        translation.seconds,
                        translation.mask_ms_per_token
                    );
                }
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

fn train(
    library: &mut Library,
    steps: Option<u64>,
    model: Option<String>,
    device: DeviceChoice,
    json: bool,
) -> Result<()> {
    let request = AskTrainingRequest {
        model,
        steps,
        device: Some(device.to_string()),
    }
    .training()?;
    let pairs = ask::training_pairs(library)?.len();
    let cancel = ctrl_c_token()?;
    let summary = ask::train_ask(library, &request, &Bar::new(json), &cancel)?;
    if json {
        return output::json(&summary);
    }
    println!(
        "run {}: {} steps of {} on {pairs} corrected questions and the prompt's examples ({} tokens), {:.0} tokens/s",
        summary.run_id,
        summary.steps,
        summary.total_steps,
        summary.tokens,
        summary.tokens_per_second
    );
    if let (Some(base), Some(after)) = (summary.base_validation_loss, summary.validation_loss) {
        println!("held-out loss {base:.3} -> {after:.3}");
    }
    match (summary.outcome, summary.adapter_id) {
        (Outcome::Paused, _) => {
            println!("stopped before the end; nothing is used until a run finishes (run it again)")
        }
        (_, Some(id)) => println!("adapter {id} now translates your questions"),
        (_, None) => {}
    }
    Ok(())
}

/// `hearth eval ask`: prints each configuration's exact-answer accuracy,
/// valid queries, answers outside the library and time per question.
pub fn eval(args: crate::args::EvalAskArgs) -> Result<ExitCode> {
    use hearth_personalize::ask::eval::{AskEvalRequest, eval_ask};
    let workdir = tempfile::tempdir()?;
    let mut request = AskEvalRequest::new(workdir.path().join("eval"));
    request.questions = args.questions;
    request.train_pairs = args.train_pairs;
    request.seed = args.seed;
    request.model = args.model;
    request.device = args.device;
    request.shakespeare = args.notes_from;
    request.unconstrained = !args.no_unconstrained;
    if let Some(steps) = args.steps {
        request.training.config.steps = steps;
        request.training.config.warmup_steps = request.training.config.warmup_steps.min(steps);
    }
    let cancel = ctrl_c_token()?;
    let started = std::time::Instant::now();
    let report = eval_ask(&request, &Bar::new(args.json), &cancel)?;
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (agree, of) = report.reference_agreement;
    println!(
        "generated library of {} items; {} questions (reference queries match the generated truth: {agree}/{of}); {:.0} s in all",
        report.library_items,
        args.questions,
        started.elapsed().as_secs_f64()
    );
    if let Some(training) = &report.training {
        println!(
            "ask training: {} steps on {} pairs, held-out loss {} -> {}, {:.0} tokens/s",
            training.steps,
            args.train_pairs,
            training
                .base_validation_loss
                .map_or("-".into(), |l| format!("{l:.3}")),
            training
                .validation_loss
                .map_or("-".into(), |l| format!("{l:.3}")),
            training.tokens_per_second
        );
    }
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "", "exact", "valid", "outside", "mean s", "median s", "mask ms"
    );
    for config in &report.configs {
        let pct = |n: usize| 100.0 * n as f64 / config.questions.max(1) as f64;
        println!(
            "{:<34} {:>7.1}% {:>7.1}% {:>8} {:>9.2} {:>9.2} {:>9}",
            config.name,
            pct(config.exact),
            pct(config.valid),
            config.outside_library,
            config.mean_seconds,
            config.median_seconds,
            config
                .mask_ms_per_token
                .map_or("-".into(), |ms| format!("{ms:.2}"))
        );
    }
    for config in &report.configs {
        if !config.wrong.is_empty() {
            println!("\n{}: some wrong answers", config.name);
            for (question, written) in &config.wrong {
                println!("  {question}\n    -> {written}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The library's semantic index for `similar` queries; it loads the
/// sentence-embedding model only if a query needs it.
fn semantic_index(library: &Library) -> hearth_personalize::ask::LibrarySemanticIndex {
    hearth_personalize::ask::LibrarySemanticIndex::new(
        library.root(),
        None,
        hearth_ml::candle::Device::Cpu,
    )
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
