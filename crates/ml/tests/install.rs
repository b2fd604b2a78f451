//! Installing registry models from copies the person has: the real files
//! install and verify; a wrong file or a cancelled copy leaves nothing.
//! (One test function: the model cache is set once per process.)

use std::path::Path;

use hearth_ml::registry;
use hearth_progress::{CancelToken, NoProgress};

fn leftovers(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|name| name.starts_with(".tmp-"))
        .collect()
}

fn walk(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            names.extend(walk(&path));
        }
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names
}

#[test]
fn installs_the_registry_files_and_refuses_anything_else() {
    let cache = tempfile::tempdir().expect("temp dir");
    assert!(registry::set_models_dir(cache.path().to_path_buf()));
    let none = CancelToken::new();

    // A file that is not the model: refused, nothing kept.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let wrong = elsewhere.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(&wrong, b"GGUF but not really").expect("write");
    let refused = registry::install_from("smollm2-135m-instruct", &wrong, &NoProgress, &none);
    let message = refused.expect_err("a wrong file is refused").to_string();
    assert!(message.contains("not the registry's file"), "{message}");
    assert!(leftovers(cache.path()).is_empty());
    assert!(
        registry::entry("smollm2-135m-instruct")
            .expect("entry")
            .package_file()
            .is_none()
    );

    // A folder model asked for with a file, and a name the registry lacks.
    assert!(registry::install_from("all-minilm-l6-v2", &wrong, &NoProgress, &none).is_err());
    assert!(registry::install_from("no-such-model", &wrong, &NoProgress, &none).is_err());

    let Some(gguf) =
        hearth_testdata::fetched_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    else {
        return;
    };
    // Cancelled: nothing kept.
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let outcome = registry::install_from("smollm2-135m-instruct", &gguf, &NoProgress, &cancelled)
        .expect("no error");
    assert!(outcome.is_none());
    assert!(leftovers(cache.path()).is_empty());

    // The real file: installed where the registry finds it, verified.
    let installed = registry::install_from("smollm2-135m-instruct", &gguf, &NoProgress, &none)
        .expect("installs")
        .expect("not cancelled");
    let entry = registry::entry("smollm2-135m-instruct").expect("entry");
    assert_eq!(
        entry.package_file().as_deref(),
        Some(installed.path.as_path())
    );
    assert!(installed.path.starts_with(cache.path()));
    entry
        .verify_package_file(&installed.path)
        .expect("pinned sha256");
    assert_eq!(
        installed.bytes,
        std::fs::metadata(&gguf).expect("size").len()
    );
    assert!(leftovers(cache.path()).is_empty());

    // A several-file model from its folder.
    let Some(minilm) = hearth_testdata::fetched_model("all-minilm-l6-v2") else {
        return;
    };
    let installed = registry::install_from("all-minilm-l6-v2", &minilm, &NoProgress, &none)
        .expect("installs")
        .expect("not cancelled");
    assert!(installed.path.is_dir());
    registry::entry("all-minilm-l6-v2")
        .expect("entry")
        .verify_package_file(&installed.path)
        .expect("pinned sha256s");
}
