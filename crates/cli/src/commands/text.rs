//! `hearth train text`, `runs`, `adapters`, `generate`, `eval`: text
//! personalization, over hearth-personalize.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use hearth_ml::train::Outcome;
use hearth_personalize::generate::{GenerateRequest, GenerationEvent, Pass, generate_text};
use hearth_personalize::{RunSummary, TextTrainingRequest};
use hearth_progress::CancelToken;
use hearth_store::{Library, RunStatus};

use crate::args::{
    AdaptersCommand, EvalArgs, GenerateArgs, RunsCommand, TrainCommand, TrainTextArgs,
};
use crate::output;
use crate::progress_bar::Bar;

/// A cancellation token that Ctrl-C triggers: the first press pauses at
/// the next step (with a checkpoint), a second one quits at once.
pub(crate) fn ctrl_c_token() -> Result<CancelToken> {
    let token = CancelToken::new();
    let handler = token.clone();
    ctrlc::set_handler(move || {
        if handler.is_cancelled() {
            std::process::exit(130);
        }
        eprintln!("\npausing after this step (Ctrl-C again to quit now)...");
        handler.cancel();
    })
    .context("installing the Ctrl-C handler")?;
    Ok(token)
}

pub fn train(mut library: Library, command: TrainCommand) -> Result<ExitCode> {
    let TrainCommand::Text(args) = command;
    let cancel = ctrl_c_token()?;
    let bar = Bar::new(args.json);
    let summary = match args.resume {
        Some(run) => {
            hearth_personalize::resume_text(&mut library, run, args.device, &bar, &cancel)?
        }
        None => {
            let training = request(&args).training()?;
            hearth_personalize::train_text(&mut library, &training, &bar, &cancel)?
        }
    };
    if args.json {
        output::json(&summary)?;
    } else {
        print_summary(&summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The library's request for `hearth train text`'s flags (whose defaults
/// are [`TextTrainingRequest::default`]'s).
fn request(args: &TrainTextArgs) -> TextTrainingRequest {
    TextTrainingRequest {
        model: args.model.clone(),
        label: args.label.clone(),
        steps: args.steps,
        rank: args.rank,
        alpha: args.alpha,
        dropout: args.dropout,
        targets: args.targets.0.clone(),
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        grad_accumulation: args.grad_accumulation,
        learning_rate: args.lr,
        warmup_steps: args.warmup,
        eval_every: args.eval_every,
        patience: args.patience,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        base_dtype: args.base_dtype.clone(),
        device: args.device.to_string(),
    }
}

fn print_summary(summary: &RunSummary) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "run {}: {} steps of {} on {} texts ({} tokens), {:.0} tokens/s",
        summary.run_id,
        summary.steps,
        summary.total_steps,
        summary.items,
        summary.tokens,
        summary.tokens_per_second
    )?;
    if let (Some(base), Some(after)) = (summary.base_validation_loss, summary.validation_loss) {
        writeln!(
            out,
            "held-out loss {base:.3} -> {after:.3} (perplexity {:.1} -> {:.1})",
            base.exp(),
            after.exp()
        )?;
    }
    match (summary.outcome, summary.adapter_id) {
        (Outcome::Paused, _) => writeln!(
            out,
            "paused; continue with `hearth train text --resume {}`",
            summary.run_id
        )?,
        (Outcome::EarlyStopped, Some(id)) => {
            writeln!(out, "stopped early (no more improvement); adapter {id}")?
        }
        (_, Some(id)) => writeln!(
            out,
            "adapter {id}: try `hearth generate --adapter {id} --compare \"...\"`"
        )?,
        _ => {}
    }
    Ok(())
}

pub fn runs(mut library: Library, command: RunsCommand) -> Result<ExitCode> {
    match command {
        RunsCommand::List { json } => {
            let runs = library.runs()?;
            if json {
                output::json(&runs)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>4}  {:<13}  {:>9}  {:>15}  {:<20}  {:<10}  STARTED",
                "ID", "STATUS", "STEPS", "HELD-OUT LOSS", "MODEL", "LABEL"
            )?;
            for run in runs {
                let losses = match (run.base_validation_loss, run.validation_loss) {
                    (Some(a), Some(b)) => format!("{a:.3} -> {b:.3}"),
                    _ => String::new(),
                };
                // Photo runs have no planned step count.
                let steps = match hearth_personalize::planned_steps(&run) {
                    Some(total) => format!("{}/{total}", run.steps_done),
                    None => run.steps_done.to_string(),
                };
                writeln!(
                    out,
                    "{:>4}  {:<13}  {:>9}  {:>15}  {:<20}  {:<10}  {}",
                    run.id,
                    run.status.as_str(),
                    steps,
                    losses,
                    short(&run.base_model, 20),
                    run.label.as_deref().unwrap_or("(all)"),
                    run.started_at
                )?;
            }
        }
        RunsCommand::Show { id, json } => {
            let run = library.run(id)?;
            if json {
                output::json(&run)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "run         {}", run.id)?;
                writeln!(out, "status      {}", run.status)?;
                writeln!(
                    out,
                    "base model  {} (sha256 {})",
                    run.base_model, run.base_model_sha256
                )?;
                writeln!(
                    out,
                    "data        {} texts{}, {} tokens",
                    run.item_count,
                    run.label
                        .map(|l| format!(" labelled {l:?}"))
                        .unwrap_or_default(),
                    run.token_count
                )?;
                writeln!(out, "device      {}", run.device)?;
                writeln!(out, "steps       {}", run.steps_done)?;
                if let Some(loss) = run.train_loss {
                    writeln!(out, "train loss  {loss:.4}")?;
                }
                if let (Some(base), Some(after)) = (run.base_validation_loss, run.validation_loss) {
                    writeln!(out, "held-out    {base:.4} -> {after:.4}")?;
                }
                if let Some(speed) = run.tokens_per_second {
                    writeln!(out, "speed       {speed:.0} tokens/s")?;
                }
                if let Some(error) = run.error {
                    writeln!(out, "error       {error}")?;
                }
                writeln!(out, "started     {}", run.started_at)?;
                writeln!(out, "updated     {}", run.updated_at)?;
                writeln!(out, "config      {}", run.config)?;
            }
        }
        RunsCommand::Discard { id, interrupted } => {
            // Another hearth may be training a run marked running; only the
            // person can say it was killed instead.
            if library.run(id)?.status == RunStatus::Running && !interrupted {
                bail!(
                    "run {id} is marked running: pause it first, or, if no hearth is training it (it was killed), pass --interrupted"
                );
            }
            hearth_personalize::discard_run(&mut library, id)?;
            println!("run {id} cancelled; `hearth train text --resume {id}` can still continue it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let tail: String = text
        .chars()
        .rev()
        .take(width - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

pub fn adapters(mut library: Library, command: AdaptersCommand) -> Result<ExitCode> {
    match command {
        AdaptersCommand::List { json } => {
            let adapters = library.adapters()?;
            if json {
                output::json(&adapters)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>4}  {:<16}  {:<8}  {:>4}  {:<20}  {:<24}  CREATED",
                "ID", "NAME", "SOURCE", "RANK", "BASE", "TARGETS"
            )?;
            for adapter in adapters {
                writeln!(
                    out,
                    "{:>4}  {:<16}  {:<8}  {:>4}  {:<20}  {:<24}  {}",
                    adapter.id,
                    short(&adapter.name, 16),
                    adapter.source,
                    adapter.rank,
                    short(adapter.base_model.as_deref().unwrap_or("?"), 20),
                    short(&adapter.targets.join(","), 24),
                    adapter.created_at
                )?;
            }
        }
        AdaptersCommand::Export { id, dir } => {
            hearth_personalize::export_adapter(&library, id, &dir)?;
            println!("adapter {id} exported to {} (PEFT layout)", dir.display());
        }
        AdaptersCommand::Import { dir, name, model } => {
            let loaded = match model {
                Some(model) => Some(
                    hearth_personalize::load_model(Some(&model), &hearth_ml::candle::Device::Cpu)?
                        .1,
                ),
                None => None,
            };
            let id = hearth_personalize::import_adapter(&mut library, &dir, name, loaded.as_ref())?;
            println!("imported {} as adapter {id}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn generate(library: Library, args: GenerateArgs) -> Result<ExitCode> {
    let device = args.device.open()?;
    let request = GenerateRequest {
        prompt: args.prompt,
        adapter_id: args.adapter,
        compare: args.compare,
        model: args.model,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        repeat_penalty: args.repeat_penalty,
        raw: args.raw,
    };
    let mut out = std::io::stdout();
    let mut render = |event: GenerationEvent| match event {
        GenerationEvent::Loading { .. } => {}
        GenerationEvent::Begin { pass } => {
            if request.compare {
                println!(
                    "== {}",
                    match pass {
                        Pass::Base => "base model",
                        Pass::Personalized => "personalized",
                    }
                );
            }
        }
        GenerationEvent::Text { text, .. } => {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        GenerationEvent::End {
            prompt_tokens,
            new_tokens,
            tokens_per_second,
            ..
        } => {
            println!();
            eprintln!(
                "[{prompt_tokens} prompt tokens, {new_tokens} new tokens, {tokens_per_second:.1} tokens/s]"
            );
        }
    };
    generate_text(
        &library,
        &request,
        &device,
        &mut render,
        &CancelToken::new(),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn eval(library: Library, args: EvalArgs) -> Result<ExitCode> {
    if args.adapter.is_some() && args.label.is_some() {
        bail!(
            "--label applies without --adapter; an adapter is scored on its own run's held-out text"
        );
    }
    let report = hearth_personalize::evaluate(
        &library,
        args.model.as_deref(),
        args.adapter,
        args.label.as_deref(),
        args.device,
    )?;
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "held-out text: {} sequences of {} tokens",
        report.sequences, report.seq_len
    );
    println!(
        "base model    loss {:.4}  perplexity {:.2}",
        report.base_loss, report.base_perplexity
    );
    if let (Some(loss), Some(perplexity)) = (report.adapter_loss, report.adapter_perplexity) {
        println!("adapter       loss {loss:.4}  perplexity {perplexity:.2}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    #[test]
    fn train_text_without_flags_is_the_libraries_default_training() {
        let cli = Cli::try_parse_from(["hearth", "train", "text"]).expect("parses");
        let Command::Train(TrainCommand::Text(args)) = cli.command else {
            panic!("not train text");
        };
        assert_eq!(request(&args), TextTrainingRequest::default());
        let training = request(&args).training().expect("valid");
        assert_eq!(training.config, hearth_ml::train::TrainConfig::default());
    }
}
