//! Thumbnails for the photo grid, served by the `hearth-thumb` URI scheme.
//!
//! The webview asks for `hearth-thumb://localhost/<ab>/<sha256>.<jpg|png>`
//! (the item's `thumbnail` path without its `thumbnails/` prefix). Only
//! names of exactly that shape are served, and only from the library's
//! `thumbnails` folder after resolving links, so no request can read any
//! other file. No database access is needed: thumbnails are
//! content-addressed.

use std::path::Path;

use tauri::http::{Response, StatusCode, header};

/// The scheme's name.
pub const SCHEME: &str = "hearth-thumb";

/// The thumbnail folder inside a library (as `hearth-store` writes it).
const THUMBNAILS: &str = "thumbnails";

/// The response to a request for `uri_path` (the URI's path, percent-
/// encoded as the webview sent it) from the library at `library`.
pub fn respond(library: &Path, uri_path: &str) -> Response<Vec<u8>> {
    match read(library, uri_path) {
        Ok((bytes, media_type)) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, media_type)
            // Content-addressed: a name never changes its bytes.
            .header(header::CACHE_CONTROL, "max-age=31536000, immutable")
            .body(bytes),
        Err(status) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .as_bytes()
                    .to_vec(),
            ),
    }
    .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// `ab/<64 hex>.jpg` or `.png`, with `ab` the hash's first two digits.
fn valid_name(name: &str) -> Option<&'static str> {
    let (dir, file) = name.split_once('/')?;
    let (hash, extension) = file.split_once('.')?;
    let media_type = match extension {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        _ => return None,
    };
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (dir.len() == 2 && hash.len() == 64 && hex(hash) && hash.starts_with(dir)).then_some(media_type)
}

fn read(library: &Path, uri_path: &str) -> Result<(Vec<u8>, &'static str), StatusCode> {
    // The front end's convertFileSrc percent-encodes the slash.
    let name = uri_path
        .trim_start_matches('/')
        .replace("%2F", "/")
        .replace("%2f", "/");
    let media_type = valid_name(&name).ok_or(StatusCode::BAD_REQUEST)?;
    let folder = library
        .join(THUMBNAILS)
        .canonicalize()
        .map_err(|_| StatusCode::NOT_FOUND)?;
    let path = folder
        .join(&name)
        .canonicalize()
        .map_err(|_| StatusCode::NOT_FOUND)?;
    if !path.starts_with(&folder) {
        return Err(StatusCode::FORBIDDEN);
    }
    let bytes = std::fs::read(&path).map_err(|_| StatusCode::NOT_FOUND)?;
    Ok((bytes, media_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_content_addressed_thumbnails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = format!("ab{}", "0".repeat(62));
        std::fs::create_dir_all(dir.path().join("thumbnails/ab")).expect("mkdir");
        std::fs::write(
            dir.path().join(format!("thumbnails/ab/{hash}.jpg")),
            b"jpeg",
        )
        .expect("write");
        std::fs::write(dir.path().join("secret.txt"), b"secret").expect("write");

        let ok = respond(dir.path(), &format!("/ab%2F{hash}.jpg"));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.body(), b"jpeg");
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "image/jpeg");

        let wrong_folder = format!("/cd/{hash}.jpg");
        let wrong_type = format!("/ab/{hash}.txt");
        for bad in [
            "/../secret.txt",
            "/ab%2F..%2F..%2Fsecret.txt",
            wrong_folder.as_str(),
            wrong_type.as_str(),
            "/ab/short.jpg",
        ] {
            assert_eq!(
                respond(dir.path(), bad).status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        let missing = format!("/ab/ab{}.png", "1".repeat(62));
        assert_eq!(
            respond(dir.path(), &missing).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_out_of_the_folder_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = format!("cd{}", "0".repeat(62));
        std::fs::create_dir_all(dir.path().join("thumbnails/cd")).expect("mkdir");
        std::fs::write(dir.path().join("secret.png"), b"secret").expect("write");
        std::os::unix::fs::symlink(
            dir.path().join("secret.png"),
            dir.path().join(format!("thumbnails/cd/{hash}.png")),
        )
        .expect("symlink");
        assert_eq!(
            respond(dir.path(), &format!("/cd/{hash}.png")).status(),
            StatusCode::FORBIDDEN
        );
    }
}
