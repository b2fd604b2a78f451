//! `hearth model ...`: the registry and the files on this machine.

use std::process::ExitCode;

use anyhow::{Context, Result};
use hearth_ml::registry;
use hearth_progress::CancelToken;

use crate::args::ModelCommand;

pub fn model(command: ModelCommand) -> Result<ExitCode> {
    match command {
        ModelCommand::List => {
            for entry in registry::entries()? {
                let location = match entry.local_path() {
                    Some(path) => format!("present: {}", path.display()),
                    None => "not on this machine".to_owned(),
                };
                let default = if entry.default { " (default)" } else { "" };
                println!(
                    "{}{default}  [{}]  {}",
                    entry.name, entry.license, entry.description
                );
                println!("    {location}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Pull { name } => pull(&name),
        ModelCommand::Install { name, from } => {
            let bar = crate::progress_bar::Bar::new(false);
            // Ctrl-C stops the copy and removes what it wrote.
            let cancel = CancelToken::new();
            let on_interrupt = cancel.clone();
            ctrlc::set_handler(move || on_interrupt.cancel())
                .context("installing the Ctrl-C handler")?;
            match registry::install_from(&name, &from, &bar, &cancel)? {
                Some(installed) => {
                    println!(
                        "installed {} ({} bytes, sha256 checked): {}",
                        installed.name,
                        installed.bytes,
                        installed.path.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("cancelled; nothing was kept");
                    Ok(ExitCode::from(130))
                }
            }
        }
        ModelCommand::Classify { files } => {
            let device = hearth_ml::candle::Device::Cpu;
            let model = hearth_personalize::photos::load_photo_model(None, &device)?;
            for file in files {
                let input = hearth_ml::vision::load_image(&file, &device)?.unsqueeze(0)?;
                let top = model.model.classify(&input, 5)?;
                let classes: Vec<String> = top
                    .first()
                    .map(|row| {
                        row.iter()
                            .map(|p| format!("{} {:.3}", p.class, p.probability))
                            .collect()
                    })
                    .unwrap_or_default();
                println!("{}: {}", file.display(), classes.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "hub")]
fn pull(name: &str) -> Result<ExitCode> {
    let bar = crate::progress_bar::Bar::new(false);
    let hashes = registry::pull(name, &bar)?;
    for (file, sha256) in hashes {
        println!("{sha256}  {file}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "hub"))]
fn pull(_name: &str) -> Result<ExitCode> {
    anyhow::bail!(
        "this build has no hub client (build with --features hub); scripts/fetch-models.sh fetches the default model offline"
    )
}
