//! Finding what to import: walks the given paths (following symbolic links,
//! with loop detection), sorts files into photos, texts and the rest, and
//! reports what cannot even be looked at.
//!
//! A symbolic link is followed only if it resolves inside one of the
//! imported folders, unless the import opts in to links outside: otherwise
//! `notes.txt -> ~/.ssh/id_ed25519` in an imported folder would be read as a
//! note.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use super::problem::FileProblem;
use crate::items::ItemKind;
use hearth_progress::CancelToken;

/// A file worth opening.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub path: PathBuf,
    /// The path as stored in the library (absolute, valid UTF-8).
    pub path_text: String,
    pub kind: ItemKind,
    /// Media type a text file gets (photos are typed by content).
    pub text_media_type: &'static str,
}

/// Something the walk itself settled.
#[derive(Debug)]
pub(crate) enum Settled {
    Skipped { path: String, reason: String },
    Failed { path: String, problem: FileProblem },
}

enum Class {
    Photo,
    Text(&'static str),
    Unsupported(&'static str),
    Other,
}

fn classify(path: &Path) -> Class {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" | "jpe" | "jfif" | "png" | "webp" | "gif" | "bmp" | "dib" | "tif"
        | "tiff" => Class::Photo,
        "txt" | "text" => Class::Text("text/plain"),
        "md" | "markdown" => Class::Text("text/markdown"),
        "heic" | "heif" | "hif" => Class::Unsupported("HEIC/HEIF"),
        "avif" => Class::Unsupported("AVIF"),
        _ => Class::Other,
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Where a symbolic link found by the walk may lead.
enum LinkPolicy {
    /// Anywhere.
    Anywhere,
    /// Only inside these (canonical) imported paths.
    Within(Vec<PathBuf>),
}

impl LinkPolicy {
    /// Why the link at `path` may not be followed, if it may not.
    fn refuses(&self, path: &Path) -> Option<FileProblem> {
        let LinkPolicy::Within(roots) = self else {
            return None;
        };
        match std::fs::canonicalize(path) {
            Ok(target) if roots.iter().any(|root| target.starts_with(root)) => None,
            Ok(target) => Some(FileProblem::SymlinkOutside(target)),
            Err(error) => Some(FileProblem::Unreadable(error)),
        }
    }
}

/// Walks `roots`, never descending into the library folder itself or into
/// hidden files and folders (`.git`, `.thumbnails`, ...). Symbolic links
/// that resolve outside every root are reported and not followed unless
/// `follow_links_outside`.
pub(crate) fn discover(
    roots: &[PathBuf],
    library_root: &Path,
    follow_links_outside: bool,
    cancel: &CancelToken,
    mut found: impl FnMut(usize),
) -> (Vec<Candidate>, Vec<Settled>) {
    let mut candidates = Vec::new();
    let mut settled = Vec::new();
    // Canonical roots give every file one stable path to remember, and the
    // bounds symbolic links must resolve within.
    let mut canonical_roots = Vec::with_capacity(roots.len());
    for root in roots {
        match std::fs::canonicalize(root) {
            Ok(root) => canonical_roots.push(root),
            Err(error) => settled.push(Settled::Failed {
                path: root.display().to_string(),
                problem: FileProblem::Unreadable(error),
            }),
        }
    }
    let links = if follow_links_outside {
        LinkPolicy::Anywhere
    } else {
        LinkPolicy::Within(canonical_roots.clone())
    };
    for root in canonical_roots {
        let mut walk = WalkDir::new(&root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.path() != library_root
                    && (entry.depth() == 0 || !is_hidden(entry.file_name()))
            });
        while let Some(entry) = walk.next() {
            if cancel.is_cancelled() {
                return (candidates, settled);
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    let path = error.path().unwrap_or(&root).display().to_string();
                    let problem = match error.loop_ancestor() {
                        Some(ancestor) => FileProblem::SymlinkLoop(ancestor.to_path_buf()),
                        None => FileProblem::Unreadable(
                            error
                                .into_io_error()
                                .unwrap_or_else(|| std::io::Error::other("unreadable")),
                        ),
                    };
                    settled.push(Settled::Failed { path, problem });
                    continue;
                }
            };
            if entry.path_is_symlink()
                && let Some(problem) = links.refuses(entry.path())
            {
                if entry.file_type().is_dir() {
                    walk.skip_current_dir();
                }
                settled.push(Settled::Failed {
                    path: entry.path().display().to_string(),
                    problem,
                });
                continue;
            }
            if entry.file_type().is_dir() {
                continue;
            }
            let regular = entry.file_type().is_file();
            let path = entry.into_path();
            let display = path.display().to_string();
            let class = classify(&path);
            if matches!(class, Class::Other) {
                let reason = match path.extension() {
                    Some(ext) => format!("not a photo or text file (.{})", ext.to_string_lossy()),
                    None => "not a photo or text file (no extension)".to_owned(),
                };
                settled.push(Settled::Skipped {
                    path: display,
                    reason,
                });
                continue;
            }
            let Some(path_text) = path.to_str().map(str::to_owned) else {
                settled.push(Settled::Failed {
                    path: display,
                    problem: FileProblem::NonUtf8Name,
                });
                continue;
            };
            if !regular {
                settled.push(Settled::Failed {
                    path: display,
                    problem: FileProblem::NotRegularFile,
                });
                continue;
            }
            let (kind, text_media_type) = match class {
                Class::Photo => (ItemKind::Photo, ""),
                Class::Text(media_type) => (ItemKind::Text, media_type),
                Class::Unsupported(format) => {
                    settled.push(Settled::Skipped {
                        path: display,
                        reason: FileProblem::UnsupportedFormat(format).to_string(),
                    });
                    continue;
                }
                Class::Other => continue,
            };
            candidates.push(Candidate {
                path,
                path_text,
                kind,
                text_media_type,
            });
            found(candidates.len());
        }
    }
    (candidates, settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_extension_case_insensitively() {
        assert!(matches!(classify(Path::new("a/B.JPG")), Class::Photo));
        assert!(matches!(
            classify(Path::new("notes.md")),
            Class::Text("text/markdown")
        ));
        assert!(matches!(
            classify(Path::new("x.HEIC")),
            Class::Unsupported("HEIC/HEIF")
        ));
        assert!(matches!(classify(Path::new("movie.mp4")), Class::Other));
        assert!(matches!(classify(Path::new("README")), Class::Other));
    }
}
