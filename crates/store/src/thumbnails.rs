//! Thumbnails, stored content-addressed inside the library folder as
//! `thumbnails/ab/<sha256 of the original>.<jpg|png>`.
//!
//! Each is written to a temporary file, synced and renamed into place, so a
//! thumbnail that exists under its final name is always complete; rows are
//! committed only after their thumbnail is in place.

use std::path::Path;

use crate::atomic::{self, TEMP_PREFIX};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_MAX_SIDE: u32 = 256;

const DIR: &str = "thumbnails";

/// The thumbnail's path relative to the library folder.
pub(crate) fn relative_path(sha256_hex: &str, extension: &str) -> String {
    format!("{DIR}/{}/{sha256_hex}.{extension}", &sha256_hex[..2])
}

/// Writes `bytes` to `root/relative` atomically ([`crate::atomic`]),
/// creating its folder.
pub(crate) fn write_atomically(root: &Path, relative: &str, bytes: &[u8]) -> std::io::Result<()> {
    let target = root.join(relative);
    let dir = target.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    atomic::write_atomically(&target, bytes)
}

/// Removes temporary files a killed import left behind. Call only while
/// holding the import lock.
pub(crate) fn remove_leftovers(root: &Path) -> std::io::Result<()> {
    let dir = root.join(DIR);
    if !dir.exists() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(&dir).min_depth(2).max_depth(2) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Bytes used by all thumbnails.
pub(crate) fn total_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root.join(DIR))
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_cleans_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sha = "ab".repeat(32);
        let rel = relative_path(&sha, "jpg");
        assert_eq!(rel, format!("thumbnails/ab/{sha}.jpg"));
        write_atomically(dir.path(), &rel, b"thumb").expect("write");
        assert_eq!(
            std::fs::read(dir.path().join(&rel)).expect("read"),
            b"thumb"
        );

        let leftover = dir.path().join("thumbnails/ab/.tmp-1-1");
        std::fs::write(&leftover, b"half").expect("write leftover");
        remove_leftovers(dir.path()).expect("clean");
        assert!(!leftover.exists());
        assert!(dir.path().join(&rel).exists());
        assert_eq!(total_bytes(dir.path()), 5);
    }
}
