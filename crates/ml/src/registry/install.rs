//! Installing a registry model from files the person already has (a
//! download made on another machine, a copy from another device): the way
//! to a first model without the hub, and on a phone the way a model
//! reaches the app at all.
//!
//! Each file is copied into the Hearth model cache through a temporary
//! file beside its place and hashed while it is copied (a model is
//! hundreds of megabytes: one read, not two). Only when every file has
//! its registry pin are the temporary files renamed into place, so a
//! wrong, truncated or cancelled copy leaves the cache as it was. (The
//! library's atomic writer is hearth-store's, which this crate does not
//! depend on; this is a streaming copy with a hash check, not a write of
//! bytes in memory.)

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hearth_progress::{CancelToken, Progress};
use sha2::{Digest, Sha256};

use super::{entry, models_dir};
use crate::error::{MlError, Result};

/// A model installed into the Hearth model cache.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Installed {
    /// The registry name.
    pub name: String,
    /// Where it now is: the model file, or the folder of a several-file
    /// model.
    pub path: PathBuf,
    /// Bytes copied.
    pub bytes: u64,
}

/// Copies registry model `name` from `source` (the model file, or for a
/// several-file model the folder holding its files at their registry
/// paths) into the model cache, checking every file against its pinned
/// sha256. `Ok(None)` when `cancel` stopped it; nothing is left behind
/// then, nor on any error.
pub fn install_from(
    name: &str,
    source: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<Installed>> {
    let entry = entry(name)?;
    let package = entry.package.as_ref().ok_or_else(|| {
        MlError::Registry(format!(
            "{name} has no pinned files to install from a copy; see models/registry.toml"
        ))
    })?;
    let files = package.pinned_files();
    let sources: Vec<(PathBuf, &str, &str)> = if package.is_folder() {
        if !source.is_dir() {
            return Err(MlError::Registry(format!(
                "{name} is several files: choose the folder that holds them ({}), not {}",
                files.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", "),
                source.display()
            )));
        }
        files
            .iter()
            .map(|(file, pin)| (source.join(file), *file, *pin))
            .collect()
    } else {
        if !source.is_file() {
            return Err(MlError::io(
                source,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a file"),
            ));
        }
        files
            .iter()
            .map(|(file, pin)| (source.to_path_buf(), *file, *pin))
            .collect()
    };
    let mut total = 0;
    for (path, _, _) in &sources {
        total += std::fs::metadata(path)
            .map_err(|e| MlError::io(path, e))?
            .len();
    }

    let folder = models_dir().join(name);
    progress.begin(&format!("Installing {name}"), Some(total));
    let mut copied = Copied::default();
    let mut done = 0;
    for (from, file, pin) in &sources {
        let target = folder.join(file);
        let result = copy_checked(from, &target, pin, &mut done, progress, cancel);
        match result {
            Ok(Some(temp)) => copied.0.push((temp, target)),
            Ok(None) => {
                progress.end();
                return Ok(None);
            }
            Err(error) => {
                progress.end();
                return Err(error);
            }
        }
    }
    // Every file checked: into place. (What is left in `copied` when a
    // rename fails is removed as it drops.)
    while let Some((temp, target)) = copied.0.pop() {
        if let Err(e) = std::fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            progress.end();
            return Err(MlError::io(target, e));
        }
    }
    progress.end();
    let path = entry
        .package_file()
        .ok_or_else(|| MlError::Registry(format!("{name} was copied but is not found")))?;
    Ok(Some(Installed {
        name: name.to_owned(),
        path,
        bytes: total,
    }))
}

/// Temporary copies not yet renamed into place, removed if dropped.
#[derive(Default)]
struct Copied(Vec<(PathBuf, PathBuf)>);

impl Drop for Copied {
    fn drop(&mut self) {
        for (temp, _) in &self.0 {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Copies `from` to a temporary file beside `target`, hashing on the way.
/// The temporary path when the hash is `pin`; `None` when cancelled.
fn copy_checked(
    from: &Path,
    target: &Path,
    pin: &str,
    done: &mut u64,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<PathBuf>> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir, e))?;
    let temp = dir.join(format!(
        ".tmp-install-{}-{}",
        std::process::id(),
        target
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    let outcome = copy_hashing(from, &temp, done, progress, cancel);
    let keep = match outcome {
        Ok(Some(actual)) if actual == pin => Ok(Some(temp.clone())),
        Ok(Some(actual)) => Err(MlError::Registry(format!(
            "{} has sha256 {actual}, but the registry pins {pin} for {}: not the registry's file (another version, or a partial download)",
            from.display(),
            target
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ))),
        Ok(None) => Ok(None),
        Err(error) => Err(error),
    };
    if !matches!(keep, Ok(Some(_))) {
        let _ = std::fs::remove_file(&temp);
    }
    keep
}

/// The copy itself: the sha256 of what was copied, or `None` when
/// cancelled.
fn copy_hashing(
    from: &Path,
    to: &Path,
    done: &mut u64,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Option<String>> {
    let mut input = File::open(from).map_err(|e| MlError::io(from, e))?;
    let mut output = File::create(to).map_err(|e| MlError::io(to, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let n = input.read(&mut buffer).map_err(|e| MlError::io(from, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .map_err(|e| MlError::io(to, e))?;
        *done += n as u64;
        progress.advance(*done);
    }
    output.sync_all().map_err(|e| MlError::io(to, e))?;
    Ok(Some(hex::encode(hasher.finalize())))
}
