//! The parallel half of an import: read one file (within the size limit),
//! hash it, and, unless the library already has that content, decode it and
//! write its thumbnail. Touches no database.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ImportOptions;
use super::discover::Candidate;
use super::photo::decode_photo;
use super::problem::FileProblem;
use super::text::decode_text;
use crate::items::ItemKind;
use crate::thumbnails;

/// A new item, fully prepared: its thumbnail is already on disk.
#[derive(Debug)]
pub(crate) struct NewItem {
    pub path: String,
    pub kind: ItemKind,
    pub sha256: String,
    pub size_bytes: u64,
    pub media_type: &'static str,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub captured_at: Option<String>,
    pub thumbnail: Option<String>,
    pub text: Option<String>,
}

/// What examining one candidate found.
#[derive(Debug)]
pub(crate) enum Examined {
    New(Box<NewItem>),
    /// Content the library already holds.
    Known {
        path: String,
        kind: ItemKind,
        sha256: String,
    },
    Skipped {
        path: String,
        kind: ItemKind,
        reason: String,
    },
    Failed {
        path: String,
        kind: ItemKind,
        problem: FileProblem,
    },
}

/// Examines one candidate. `known` holds the sha256 of every item already
/// in the library, so unchanged files are never decoded again.
pub(crate) fn examine(
    candidate: &Candidate,
    options: &ImportOptions,
    known: &HashSet<String>,
    library_root: &Path,
) -> Examined {
    let path = candidate.path_text.clone();
    let kind = candidate.kind;
    let failed = |problem| Examined::Failed {
        path: candidate.path_text.clone(),
        kind,
        problem,
    };
    let bytes = match read_limited(&candidate.path, options.max_file_bytes) {
        Ok(bytes) => bytes,
        Err(problem) => return failed(problem),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if known.contains(&sha256) {
        return Examined::Known { path, kind, sha256 };
    }
    let size_bytes = bytes.len() as u64;
    match kind {
        ItemKind::Text => match decode_text(&bytes) {
            Ok(text) => Examined::New(Box::new(NewItem {
                path,
                kind,
                sha256,
                size_bytes,
                media_type: candidate.text_media_type,
                width: None,
                height: None,
                captured_at: None,
                thumbnail: None,
                text: Some(text),
            })),
            Err(problem) => failed(problem),
        },
        ItemKind::Photo => {
            let photo = match decode_photo(&bytes, options.max_pixels) {
                Ok(photo) => photo,
                Err(FileProblem::UnsupportedFormat(format)) => {
                    return Examined::Skipped {
                        path,
                        kind,
                        reason: FileProblem::UnsupportedFormat(format).to_string(),
                    };
                }
                Err(problem) => return failed(problem),
            };
            drop(bytes);
            let relative = thumbnails::relative_path(&sha256, photo.thumbnail.extension);
            if let Err(e) =
                thumbnails::write_atomically(library_root, &relative, &photo.thumbnail.bytes)
            {
                return failed(FileProblem::ThumbnailWrite(e));
            }
            Examined::New(Box::new(NewItem {
                path,
                kind,
                sha256,
                size_bytes,
                media_type: photo.media_type,
                width: Some(photo.width),
                height: Some(photo.height),
                captured_at: photo.captured_at,
                thumbnail: Some(relative),
                text: None,
            }))
        }
    }
}

/// Reads a whole regular file, refusing empty files and files over `limit`
/// (checked before reading, and again while reading in case it grows).
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileProblem> {
    let file = std::fs::File::open(path).map_err(FileProblem::Unreadable)?;
    let meta = file.metadata().map_err(FileProblem::Unreadable)?;
    if !meta.is_file() {
        return Err(FileProblem::NotRegularFile);
    }
    if meta.len() > limit {
        return Err(FileProblem::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileProblem::Unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    if bytes.is_empty() {
        return Err(FileProblem::Empty);
    }
    Ok(bytes)
}
