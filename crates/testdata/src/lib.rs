//! Test support: where Hearth's tests find real data, and one rule for
//! when it is absent. On a person's machine a missing file skips the test
//! with a message; under CI (`CI=true`) it fails, because CI's scripts fetch
//! everything.
//!
//! ```
//! // `shared("photos")` is `../shared/data/photos` beside the repository.
//! if let Some(photos) = hearth_testdata::shared("photos") {
//!     assert!(photos.is_dir());
//! }
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

/// Whether the tests run under CI.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `path` if it exists; otherwise `None` after saying what is skipped, or a
/// panic under CI.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(!ci(), "CI=true but {what} is missing at {}", path.display());
    eprintln!("skipping: {what} not found at {}", path.display());
    None
}

/// A path below the shared test data (`../shared/data` beside the
/// repository), subject to [`require`].
pub fn shared(relative: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    require(root.join(relative), &format!("shared test data {relative}"))
}

/// A file in the Hearth model cache (`$HEARTH_MODELS`, default
/// `~/.cache/hearth/models`), fetched by `scripts/fetch-models.sh`, subject
/// to [`require`].
pub fn fetched_model(relative: &str) -> Option<PathBuf> {
    let cache = match std::env::var_os("HEARTH_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("hearth")
            .join("models"),
    };
    require(
        cache.join(relative),
        &format!("model {relative} (scripts/fetch-models.sh)"),
    )
}

/// The Python interpreter of the PyTorch venv the cross-checks against
/// PyTorch run with, subject to [`require`]: `$HEARTH_TORCH_PYTHON` when
/// set (scripts/test.sh sets it to the venv it makes with
/// `bench/pytorch/venv.sh torch`); otherwise that venv's default place,
/// `~/.cache/hearth/torch-venv`, or else the benchmark's venv
/// (`bench/pytorch/run.sh`), which has torch too.
pub fn torch_python() -> Option<PathBuf> {
    const WHAT: &str = "a Python with torch (HEARTH_TORCH_PYTHON; scripts/test.sh makes one)";
    if let Some(python) = std::env::var_os("HEARTH_TORCH_PYTHON") {
        return require(PathBuf::from(python), WHAT);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("hearth");
    let tests = cache.join("torch-venv/bin/python");
    let bench = cache.join("pytorch-bench-venv/bin/python");
    if !tests.exists() && bench.exists() {
        return Some(bench);
    }
    require(tests, WHAT)
}

/// Writes the first `speeches` speeches of the shared tinyshakespeare text
/// as one note each (`000.txt`, ...) into `dir/notes`, a stand-in for a
/// person's notes folder; returns that folder, subject to [`require`].
pub fn shakespeare_notes(dir: &Path, speeches: usize) -> Option<PathBuf> {
    let text = std::fs::read_to_string(shared("text/tinyshakespeare.txt")?)
        .unwrap_or_else(|e| panic!("reading tinyshakespeare.txt: {e}"));
    let notes = dir.join("notes");
    std::fs::create_dir_all(&notes).unwrap_or_else(|e| panic!("creating {}: {e}", notes.display()));
    for (index, speech) in text.split("\n\n").take(speeches).enumerate() {
        let path = notes.join(format!("{index:03}.txt"));
        std::fs::write(&path, speech).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    Some(notes)
}
