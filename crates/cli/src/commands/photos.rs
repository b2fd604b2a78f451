//! `hearth photos ...` and the accept/reject verdicts of `hearth label`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use hearth_ml::vision::finetune::FineTuneConfig;
use hearth_personalize::lineage::photo_tagger_lineage;
use hearth_personalize::photos::{self, PhotoSuggestions};
use hearth_store::Library;

use crate::args::{EvalPhotosArgs, PhotosCommand};
use crate::commands::lineage::print_items;
use crate::output;
use crate::progress_bar::Bar;

/// The photo model tagging uses now (the base network, or its fine-tuned
/// version after `photos train --fine-tune-blocks`).
fn active_model(library: &Library, device: hearth_ml::DeviceChoice) -> Result<photos::PhotoModel> {
    Ok(photos::active_photo_model(library, &device.open()?)?)
}

/// A token Ctrl-C cancels: embedding stops after the batch in hand (the
/// batches before it are kept), training at its next step.
fn cancelled_by_ctrl_c() -> hearth_progress::CancelToken {
    let cancel = hearth_progress::CancelToken::new();
    let on_interrupt = cancel.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.cancel());
    cancel
}

pub fn photos(mut library: Library, command: PhotosCommand) -> Result<ExitCode> {
    let cancel = cancelled_by_ctrl_c();
    match command {
        PhotosCommand::Embed { batch, device } => {
            let model = active_model(&library, device)?;
            let summary =
                photos::embed_photos(&mut library, &model, batch, &Bar::new(false), &cancel)?;
            println!(
                "{} photos embedded, {} already cached, {} no longer decode",
                summary.embedded, summary.cached, summary.failed
            );
        }
        PhotosCommand::Train {
            resume,
            fine_tune_blocks,
            steps,
            device,
            json,
        } => {
            // The examples are chosen on the base network's embeddings.
            let base = photos::load_photo_model(None, &device.open()?)?;
            let trained = match resume {
                Some(run) => {
                    photos::resume_tagger(&mut library, &base, run, &Bar::new(false), &cancel)
                }
                None => {
                    let request = photos::PhotoTrainingRequest {
                        fine_tune_blocks,
                        steps,
                    };
                    photos::train_new_tagger(
                        &mut library,
                        &base,
                        &request,
                        &Bar::new(false),
                        &cancel,
                    )
                }
            };
            let summary = match trained {
                Ok(summary) => summary,
                Err(hearth_personalize::PersonalizeError::Cancelled) => {
                    eprintln!("cancelled; nothing was trained");
                    return Ok(ExitCode::from(130));
                }
                Err(hearth_personalize::PersonalizeError::Paused {
                    run_id,
                    steps_done,
                    total_steps,
                }) => {
                    println!(
                        "paused run {run_id} at step {steps_done} of {total_steps}; continue with `hearth photos train --resume {run_id}`"
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Err(error) => return Err(error.into()),
            };
            if summary.newly_embedded > 0 {
                eprintln!("embedded {} new photos first", summary.newly_embedded);
            }
            if json {
                output::json(&summary)?;
            } else {
                println!(
                    "run {}: learned {} labels from {} photos{}",
                    summary.run_id,
                    summary.labels.len(),
                    summary.examples,
                    summary
                        .fine_tune_loss
                        .map_or(String::new(), |(before, after)| format!(
                            " (fine-tuned: loss {before:.3} -> {after:.3})"
                        ))
                );
                for ((label, accuracy), threshold) in summary
                    .labels
                    .iter()
                    .zip(&summary.held_out_accuracy)
                    .zip(&summary.thresholds)
                {
                    // The tagger never marks a label its held-out photos
                    // guessed no better than chance (`Suggestion::suggested`).
                    let chance = if accuracy.is_some_and(|a| a <= 0.5) {
                        ": no better than chance, not suggested until more photos have it"
                    } else {
                        ""
                    };
                    let accuracy =
                        accuracy.map_or("n/a".to_owned(), |a| format!("{:.0}%", a * 100.0));
                    println!(
                        "  {label:<20} held-out accuracy {accuracy:>5}, threshold {threshold:.2}{chance}"
                    );
                }
            }
        }
        PhotosCommand::Tag { all, json } => {
            let model = active_model(&library, hearth_ml::DeviceChoice::Cpu)?;
            let suggestions = photos::suggest_tags(&library, &model.sha256, all)?;
            print_suggestions(&suggestions, json)?;
        }
        PhotosCommand::Ask { n, json } => {
            let model = active_model(&library, hearth_ml::DeviceChoice::Cpu)?;
            let questions = photos::ask(&library, &model.sha256, n)?;
            print_suggestions(&questions, json)?;
        }
        PhotosCommand::Similar { id, k, json } => {
            let model = active_model(&library, hearth_ml::DeviceChoice::Cpu)?;
            let neighbours = photos::similar(&library, &model.sha256, id, k)?;
            if json {
                let rows: Vec<_> = neighbours
                    .iter()
                    .map(|(id, path, score)| serde_json::json!({"id": id, "path": path, "similarity": score}))
                    .collect();
                output::json(&rows)?;
            } else {
                for (id, path, score) in neighbours {
                    println!("{id:>6}  {score:.3}  {path}");
                }
            }
        }
        PhotosCommand::Taggers { json } => {
            let taggers = library.photo_taggers()?;
            if json {
                output::json(&taggers)?;
            } else if taggers.is_empty() {
                println!("no taggers yet: label a few photos, then `hearth photos train`");
            } else {
                for t in &taggers {
                    println!(
                        "{:>4}  run {:<4} {}  network {}  {}",
                        t.id,
                        t.run_id,
                        t.created_at,
                        &t.model_sha256[..12],
                        t.labels.join(", ")
                    );
                }
            }
        }
        PhotosCommand::Lineage { id, json } => {
            let lineage = photo_tagger_lineage(&library, id)?;
            if json {
                output::json(&lineage)?;
                return Ok(ExitCode::SUCCESS);
            }
            let (t, run) = (&lineage.tagger, &lineage.run);
            println!(
                "tagger {} ({}), head sha256 {}",
                t.id,
                t.labels.join(", "),
                t.sha256
            );
            println!(
                "  trained by run {} ({}, {}), base {} ({}), network {}",
                run.id, run.kind, run.status, run.base_model, run.base_model_sha256, t.model_sha256
            );
            println!("  configuration {}", run.config);
            println!(
                "  photos: {} (Merkle root {})",
                lineage.items_root.count, lineage.items_root.root
            );
            print_items(&lineage.items);
            match &lineage.file_sha256 {
                Some(_) if lineage.file_matches => {
                    println!("  head file {}: matches the record", t.path)
                }
                Some(now) => println!(
                    "  head file {}: sha256 {now} DOES NOT match the record",
                    t.path
                ),
                None => println!("  head file {}: missing", t.path),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_suggestions(rows: &[PhotoSuggestions], json: bool) -> Result<()> {
    if json {
        return output::json(&rows);
    }
    let mut out = std::io::stdout().lock();
    for row in rows {
        let labels: Vec<String> = row
            .suggestions
            .iter()
            .map(|s| {
                format!(
                    "{}{} {:.0}%",
                    if s.suggested { "" } else { "(" },
                    s.label,
                    s.confidence * 100.0
                ) + if s.suggested { "" } else { ")" }
            })
            .collect();
        writeln!(
            out,
            "{:>6}  {}  {}",
            row.item_id,
            labels.join(", "),
            row.path
        )?;
    }
    Ok(())
}

/// `hearth eval photos --fashion-mnist`.
pub fn eval(args: EvalPhotosArgs) -> Result<ExitCode> {
    use hearth_personalize::photo_eval::{FashionMnist, FewShotConfig, evaluate_few_shot, summary};
    let data = FashionMnist::load(&args.dir).with_context(|| {
        format!(
            "reading Fashion-MNIST from {} (install the Debian package dataset-fashion-mnist)",
            args.dir.display()
        )
    })?;
    let model = photos::load_photo_model(None, &args.device.open()?)?;
    let config = FewShotConfig {
        shots: args.shots,
        test_images: args.test_images,
        seed: args.seed,
        draws: args.draws,
        fine_tune: (!args.no_fine_tune).then(|| FineTuneConfig {
            blocks: args.fine_tune_blocks,
            ..FineTuneConfig::default()
        }),
        ..FewShotConfig::default()
    };
    let cancel = cancelled_by_ctrl_c();
    let started = std::time::Instant::now();
    let report = evaluate_few_shot(&model.model, &data, &config, &Bar::new(false), &cancel)?;
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Fashion-MNIST, {} test images, EfficientNet-Lite0 ({}), {} draw{} of the examples, {:.0} s{}",
        report.test_images,
        &model.sha256[..12],
        report.draws,
        if report.draws == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64(),
        if report.cancelled { " (cancelled)" } else { "" }
    );
    println!("accuracy: mean over draws (lowest-highest)");
    println!(
        "{:>9}  {:>20}  {:>20}  {:>20}",
        "per class", "frozen head", "fine-tuned (last)", "nearest centroid"
    );
    let cell = |values: &[f32]| match summary(values) {
        Some((mean, low, high)) if values.len() > 1 => format!(
            "{:.1}% ({:.1}-{:.1})",
            100.0 * mean,
            100.0 * low,
            100.0 * high
        ),
        Some((mean, _, _)) => format!("{:.1}%", 100.0 * mean),
        None => "-".to_owned(),
    };
    for row in &report.rows {
        println!(
            "{:>9}  {:>20}  {:>20}  {:>20}",
            row.shots,
            cell(&row.head),
            cell(&row.fine_tuned),
            cell(&row.centroid)
        );
    }
    println!("frozen head, yes or no for each label (as `hearth photos tag` marks suggestions)");
    println!(
        "{:>9}  {:>20}  {:>20}",
        "per class", "balanced accuracy", "calibration error"
    );
    for row in &report.rows {
        let error = summary(&row.head_calibration_error)
            .map_or("-".to_owned(), |(mean, low, high)| {
                format!("{mean:.3} ({low:.3}-{high:.3})")
            });
        println!(
            "{:>9}  {:>20}  {:>20}",
            row.shots,
            cell(&row.head_decisions),
            error
        );
    }
    Ok(ExitCode::SUCCESS)
}
