//! Replacing a file so that a crash at any moment leaves either the old
//! file or the new one, whole, under its name: never half of either.
//!
//! One implementation for everything Hearth writes this way (thumbnails,
//! photo tagger records and tails, ...): the bytes go to a temporary file
//! in the target's own folder (a rename is atomic only within one file
//! system), the file is synced, renamed over the target, and on Unix the
//! folder is synced too, so the rename itself survives a power cut.
//! Temporary files are named `.tmp-<pid>-<n>` ([`TEMP_PREFIX`]): hidden,
//! unique across threads and processes, and easy for a cleaner that holds
//! the folder's lock to recognise as leftovers of a killed writer.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How every temporary file this module names begins.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary path beside `target` (same folder), for a writer that
/// produces the file itself and then calls [`persist`].
pub fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    match target.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// Moves the finished temporary file `temp` (from [`temp_path`]) over
/// `target`: syncs it, renames it, and on Unix syncs the folder. On failure
/// the temporary file is removed and `target` is as it was.
pub fn persist(temp: &Path, target: &Path) -> std::io::Result<()> {
    let result = File::open(temp)
        .and_then(|file| file.sync_all())
        .and_then(|()| std::fs::rename(temp, target));
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result?;
    sync_parent(target)
}

/// Writes `bytes` to `target` atomically (see the module docs). The folder
/// must exist.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = temp_path(target);
    let written = File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    persist(&temp, target)
}

/// Makes a rename into `path`'s folder durable (Unix; elsewhere the rename
/// is what the platform offers).
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("record.json");
        write_atomically(&target, b"first").expect("write");
        write_atomically(&target, b"second").expect("replace");
        assert_eq!(std::fs::read(&target).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-folder").join("x");
        assert!(write_atomically(&missing, b"x").is_err());
        let target = dir.path().join("file");
        std::fs::write(&target, b"old").expect("write");
        let temp = temp_path(&target);
        std::fs::write(&temp, b"new").expect("temp");
        std::fs::create_dir(dir.path().join("dir")).expect("dir");
        // Renaming a file over a folder fails: the temporary file goes.
        assert!(persist(&temp, &dir.path().join("dir")).is_err());
        assert!(!temp.exists());
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
    }
}
