//! `hearth import`, `hearth library ...` and `hearth label ...`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use hearth_store::{CancelToken, ImportOptions, Item, ItemFilter, ItemKind, Library, Outcome};

use crate::args::{ImportArgs, LabelCommand, LibraryCommand};
use crate::output;
use crate::progress_bar::Bar;

pub fn import(mut library: Library, args: ImportArgs) -> Result<ExitCode> {
    let options = ImportOptions {
        max_file_bytes: args.max_file_mb.saturating_mul(1_000_000),
        max_pixels: args.max_megapixels.saturating_mul(1_000_000),
        follow_links_outside: args.follow_links_outside,
    };
    let started = Instant::now();
    let bar = Bar::new(args.json);
    let report = library.import(&args.paths, &options, &bar, &CancelToken::new())?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut out = std::io::stdout().lock();
    let unsupported: Vec<_> = report
        .files
        .iter()
        .filter(|f| f.outcome == Outcome::Skipped && f.kind.is_some())
        .collect();
    for file in &unsupported {
        writeln!(
            out,
            "skipped {}: {}",
            file.path,
            file.reason.as_deref().unwrap_or("unsupported")
        )?;
    }
    let seen = report.imported + report.already_present + report.failed;
    writeln!(
        out,
        "{} imported, {} already present{}, {} skipped, {} failed ({} files in {:.1} s, {:.1} files/s)",
        report.imported,
        report.already_present,
        if report.moved > 0 {
            format!(" ({} moved)", report.moved)
        } else {
            String::new()
        },
        report.skipped,
        report.failed,
        seen + report.skipped,
        seconds,
        seen as f64 / seconds.max(1e-9),
    )?;
    if report.failed > 0 {
        writeln!(
            out,
            "failures are listed above; `hearth import --json` gives a per-file report"
        )?;
    }
    let stats = library.stats()?;
    writeln!(
        out,
        "library {}: {} photos, {} texts",
        library.root().display(),
        stats.photos,
        stats.texts
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn library(mut library: Library, command: LibraryCommand) -> Result<ExitCode> {
    match command {
        LibraryCommand::List { kind, label, json } => {
            let items = library.items(&ItemFilter { kind, label })?;
            if json {
                output::json(&items)?;
            } else {
                print_items(&items)?;
            }
        }
        LibraryCommand::Show { id, json } => {
            let item = library.item(id)?;
            let text = library.item_text(id)?;
            let thumbnail = library.thumbnail_path(&item);
            if json {
                #[derive(serde::Serialize)]
                struct Shown<'a> {
                    #[serde(flatten)]
                    item: &'a Item,
                    thumbnail_file: Option<PathBuf>,
                    text: Option<String>,
                }
                output::json(&Shown {
                    item: &item,
                    thumbnail_file: thumbnail,
                    text,
                })?;
            } else {
                print_item(&item, thumbnail, text.as_deref())?;
            }
        }
        LibraryCommand::Stats { json } => {
            let stats = library.stats()?;
            if json {
                output::json(&stats)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "library    {}", library.root().display())?;
                writeln!(
                    out,
                    "photos     {} ({})",
                    stats.photos,
                    output::bytes(stats.photo_bytes)
                )?;
                writeln!(
                    out,
                    "texts      {} ({}, {} characters)",
                    stats.texts,
                    output::bytes(stats.text_bytes),
                    stats.text_chars
                )?;
                writeln!(
                    out,
                    "labels     {} on {} items",
                    stats.labels, stats.labelled_items
                )?;
                writeln!(out, "database   {}", output::bytes(stats.database_bytes))?;
                writeln!(out, "thumbnails {}", output::bytes(stats.thumbnail_bytes))?;
            }
        }
        LibraryCommand::Remove { id, yes } => {
            let item = library.item(id)?;
            let trained = hearth_personalize::lineage::adapters_trained_on(&library, &item.sha256)?;
            let taggers =
                hearth_personalize::lineage::photo_taggers_trained_on(&library, &item.sha256)?;
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            if !trained.is_empty() {
                println!(
                    "{} adapter{} learned from item {id} ({}):",
                    trained.len(),
                    plural(trained.len()),
                    item.path
                );
                for adapter in &trained {
                    println!(
                        "  adapter {} {:?} (run {})",
                        adapter.id,
                        adapter.name,
                        adapter.run_id.map_or("?".to_owned(), |r| r.to_string())
                    );
                }
            }
            if !taggers.is_empty() {
                println!(
                    "{} photo tagger{} learned from item {id} ({}):",
                    taggers.len(),
                    plural(taggers.len()),
                    item.path
                );
                for tagger in &taggers {
                    println!(
                        "  tagger {} ({}) (run {})",
                        tagger.id,
                        tagger.labels.join(", "),
                        tagger.run_id
                    );
                }
            }
            if (!trained.is_empty() || !taggers.is_empty())
                && !yes
                && !confirm(
                    "Remove the item anyway? What was learned from it stays until retrained. [y/N] ",
                )?
            {
                println!("nothing removed");
                return Ok(ExitCode::FAILURE);
            }
            let item = library.remove_item(id)?;
            println!(
                "removed item {id} ({}); the original {} is untouched",
                item.kind, item.path
            );
            for adapter in &trained {
                let label = adapter
                    .run_id
                    .and_then(|run| library.run(run).ok())
                    .and_then(|run| run.label);
                println!(
                    "to retrain adapter {} without it: hearth train text{}",
                    adapter.id,
                    label.map_or(String::new(), |l| format!(" --label {l:?}"))
                );
            }
            if !taggers.is_empty() {
                println!("to retrain the photo tagger without it: hearth photos train");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn label(mut library: Library, command: LabelCommand) -> Result<ExitCode> {
    match command {
        LabelCommand::Add { id, name } => {
            if library.add_label(id, &name)? {
                println!("item {id} labelled {:?}", name.trim());
            } else {
                println!("item {id} already had label {:?}", name.trim());
            }
        }
        LabelCommand::Remove { id, name } => {
            if library.remove_label(id, &name)? {
                println!("label {:?} removed from item {id}", name.trim());
            } else {
                println!("item {id} did not have label {:?}", name.trim());
            }
        }
        LabelCommand::Accept { id, name } => {
            library.record_verdict(id, &name, hearth_store::Verdict::Accepted)?;
            println!("item {id} labelled {:?} (accepted)", name.trim());
        }
        LabelCommand::Reject { id, name } => {
            library.record_verdict(id, &name, hearth_store::Verdict::Rejected)?;
            println!(
                "item {id} is not {:?} (noted for the next training)",
                name.trim()
            );
        }
        LabelCommand::List { json } => {
            let labels = library.labels()?;
            if json {
                output::json(&labels)?;
            } else {
                let mut out = std::io::stdout().lock();
                for label in labels {
                    writeln!(out, "{:>6}  {}", label.items, label.name)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn details(item: &Item) -> String {
    match (item.kind, item.width, item.height, item.text_chars) {
        (ItemKind::Photo, Some(w), Some(h), _) => format!("{w}x{h}"),
        (ItemKind::Text, _, _, Some(chars)) => format!("{chars} chars"),
        _ => String::new(),
    }
}

fn print_items(items: &[Item]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>6}  {:<5}  {:>8}  {:<12}  {:<19}  {:<16}  PATH",
        "ID", "KIND", "SIZE", "DETAILS", "CAPTURED", "LABELS"
    )?;
    for item in items {
        writeln!(
            out,
            "{:>6}  {:<5}  {:>8}  {:<12}  {:<19}  {:<16}  {}",
            item.id,
            item.kind.as_str(),
            output::bytes(item.size_bytes),
            details(item),
            item.captured_at
                .as_deref()
                .map_or("", |t| &t[..t.len().min(19)]),
            item.labels.join(", "),
            item.path
        )?;
    }
    Ok(())
}

fn print_item(item: &Item, thumbnail: Option<PathBuf>, text: Option<&str>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "id          {}", item.id)?;
    writeln!(out, "kind        {}", item.kind)?;
    writeln!(out, "path        {}", item.path)?;
    writeln!(out, "sha256      {}", item.sha256)?;
    writeln!(
        out,
        "size        {} ({} bytes)",
        output::bytes(item.size_bytes),
        item.size_bytes
    )?;
    writeln!(out, "media type  {}", item.media_type)?;
    if let (Some(w), Some(h)) = (item.width, item.height) {
        writeln!(out, "dimensions  {w}x{h}")?;
    }
    if let Some(captured) = &item.captured_at {
        writeln!(out, "captured    {captured}")?;
    }
    if let Some(thumbnail) = thumbnail {
        writeln!(out, "thumbnail   {}", thumbnail.display())?;
    }
    if let Some(chars) = item.text_chars {
        writeln!(out, "characters  {chars}")?;
    }
    writeln!(out, "imported    {}", item.imported_at)?;
    writeln!(out, "labels      {}", item.labels.join(", "))?;
    if let Some(text) = text {
        const PREVIEW: usize = 400;
        let preview: String = text.chars().take(PREVIEW).collect();
        writeln!(
            out,
            "\n{preview}{}",
            if text.chars().nth(PREVIEW).is_some() {
                "..."
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// Asks a yes/no question on the terminal; without one, the answer is no
/// (scripts pass `--yes`).
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        eprintln!("not removing without --yes (no terminal to ask on)");
        return Ok(false);
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
