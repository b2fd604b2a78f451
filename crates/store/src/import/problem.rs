//! Why one file could not be imported. These are reported per file and the
//! import carries on; they never abort the whole import.

use std::path::PathBuf;

/// The reason a single file was not imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// Opening or reading failed (permissions, a vanished file, I/O error).
    #[error("cannot read: {0}")]
    Unreadable(#[source] std::io::Error),
    /// The name cannot be stored faithfully as text.
    #[error("file name is not valid UTF-8; rename the file to import it")]
    NonUtf8Name,
    /// A symbolic link leads back to one of its own ancestors.
    #[error("symbolic link loop back to {}", .0.display())]
    SymlinkLoop(PathBuf),
    /// A symbolic link whose target lies outside every imported folder
    /// (followed only when the import opts in).
    #[error(
        "symbolic link leaves the imported folders (it points to {}); import that location too, or allow links outside",
        .0.display()
    )]
    SymlinkOutside(PathBuf),
    /// A socket, FIFO or device node.
    #[error("not a regular file")]
    NotRegularFile,
    /// Zero bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// Over the configured size limit.
    #[error("file is {} MB, over the {} MB import limit", mb(*.size), mb(*.limit))]
    TooLarge {
        /// Size found.
        size: u64,
        /// Limit in force.
        limit: u64,
    },
    /// A photo format Hearth recognises but cannot decode.
    #[error("{0} photos are not supported yet")]
    UnsupportedFormat(&'static str),
    /// Content that is no image format Hearth knows.
    #[error("not a readable photo: the content is not JPEG, PNG, WebP, GIF, BMP or TIFF")]
    UnrecognizedImage,
    /// The decoder gave up part way.
    #[error("corrupt or truncated {format}: {message}")]
    CorruptImage {
        /// The format the header claimed.
        format: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// The header claims more pixels than the limit (a decompression bomb,
    /// or a panorama too big to import).
    #[error(
        "image claims {width}x{height} pixels ({} megapixels), over the {} megapixel limit",
        megapixels(*.width as u64 * *.height as u64),
        megapixels(*.limit)
    )]
    TooManyPixels {
        /// Claimed width.
        width: u32,
        /// Claimed height.
        height: u32,
        /// Limit in force, in pixels.
        limit: u64,
    },
    /// The library folder refused the thumbnail (disk full, permissions).
    #[error("could not write its thumbnail into the library: {0}")]
    ThumbnailWrite(#[source] std::io::Error),
    /// A `.txt`/`.md` that is not UTF-8 and has no UTF-16 byte-order mark.
    #[error(
        "not valid UTF-8 text (invalid byte at offset {offset}); save it as UTF-8, or UTF-16 with a byte-order mark"
    )]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A file with a UTF-16 byte-order mark whose content is not UTF-16.
    #[error("not valid UTF-16 text despite its byte-order mark ({0})")]
    InvalidUtf16(&'static str),
}

fn mb(bytes: u64) -> String {
    format_decimal(bytes as f64 / 1e6)
}

fn megapixels(pixels: u64) -> String {
    format_decimal(pixels as f64 / 1e6)
}

fn format_decimal(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_well() {
        let big = FileProblem::TooManyPixels {
            width: 30000,
            height: 30000,
            limit: 100_000_000,
        };
        assert_eq!(
            big.to_string(),
            "image claims 30000x30000 pixels (900 megapixels), over the 100 megapixel limit"
        );
        let large = FileProblem::TooLarge {
            size: 150_500_000,
            limit: 100_000_000,
        };
        assert_eq!(
            large.to_string(),
            "file is 150.5 MB, over the 100 MB import limit"
        );
    }
}
