//! The `hearth` binary as a person (or a script) uses it: real processes,
//! real files, a kill -9 in the middle of an import.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{hearth, json, run_ok};
use image::{ImageFormat, RgbImage};

fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8, y as u8 ^ seed, seed])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("encode");
    bytes
}

#[test]
fn import_list_label_show_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("rex.png"), png(300, 200, 1)).expect("write");
    std::fs::write(input.join("diary.md"), "Walked Rex by the river.").expect("write");
    std::fs::write(input.join("broken.png"), b"\x89PNG\r\n\x1a\nnope").expect("write");
    let library = dir.path().join("library");

    let report = json(hearth(&library).arg("import").arg("--json").arg(&input));
    assert_eq!(report["imported"], 2);
    assert_eq!(report["failed"], 1);
    let broken = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("broken.png"))
        })
        .expect("broken.png reported");
    assert_eq!(broken["outcome"], "failed");
    assert!(
        broken["reason"]
            .as_str()
            .expect("reason")
            .starts_with("corrupt or truncated PNG")
    );

    // HEARTH_LIBRARY works as well as --library.
    let listed = json(
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .env("HEARTH_LIBRARY", &library)
            .args(["library", "list", "--kind", "photo", "--json"]),
    );
    let photos = listed.as_array().expect("array");
    assert_eq!(photos.len(), 1);
    assert_eq!(
        (photos[0]["width"].as_u64(), photos[0]["height"].as_u64()),
        (Some(300), Some(200))
    );
    let id = photos[0]["id"].as_i64().expect("id").to_string();

    run_ok(hearth(&library).args(["label", "add", &id, "Rex"]));
    let labelled = json(hearth(&library).args(["library", "list", "--label", "rex", "--json"]));
    assert_eq!(labelled.as_array().expect("array").len(), 1);
    let labels = json(hearth(&library).args(["label", "list", "--json"]));
    assert_eq!(labels[0]["name"], "Rex");

    let shown = json(hearth(&library).args(["library", "show", &id, "--json"]));
    assert_eq!(shown["labels"][0], "Rex");
    let thumbnail = PathBuf::from(shown["thumbnail_file"].as_str().expect("thumbnail"));
    assert_eq!(
        image::open(&thumbnail).expect("thumbnail decodes").width(),
        256
    );

    let human = String::from_utf8(run_ok(hearth(&library).args(["library", "list"])).stdout)
        .expect("utf-8");
    assert!(
        human.contains("300x200") && human.contains("Rex"),
        "{human}"
    );
    let stats = json(hearth(&library).args(["library", "stats", "--json"]));
    assert_eq!(
        (stats["photos"].as_u64(), stats["texts"].as_u64()),
        (Some(1), Some(1))
    );

    run_ok(hearth(&library).args(["library", "remove", &id]));
    assert!(!thumbnail.exists());
    assert!(
        input.join("rex.png").exists(),
        "originals are never touched"
    );

    let missing = hearth(&library)
        .args(["library", "show", "999"])
        .output()
        .expect("runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no item with id 999"));
}

/// A symbolic link out of the imported folder is reported, not read, unless
/// `--follow-links-outside` says so.
#[cfg(unix)]
#[test]
fn import_follows_links_outside_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(dir.path().join("id_ed25519"), "PRIVATE KEY").expect("write");
    std::os::unix::fs::symlink(dir.path().join("id_ed25519"), input.join("notes.txt"))
        .expect("symlink");
    let library = dir.path().join("library");

    let refused = json(hearth(&library).arg("import").arg("--json").arg(&input));
    assert_eq!(refused["imported"], 0, "{refused:#}");
    assert_eq!(refused["failed"], 1, "{refused:#}");
    assert!(
        refused["files"][0]["reason"]
            .as_str()
            .expect("reason")
            .starts_with("symbolic link leaves the imported folders"),
        "{refused:#}"
    );

    let followed = json(
        hearth(&library)
            .args(["import", "--json", "--follow-links-outside"])
            .arg(&input),
    );
    assert_eq!(followed["imported"], 1, "{followed:#}");
}

/// Root can read a mode-000 file, so as root the importer runs as `nobody`.
#[test]
fn unreadable_file_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let input = root.join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("ok.txt"), "fine").expect("write");
    std::fs::write(input.join("secret.txt"), "private").expect("write");
    std::fs::set_permissions(
        input.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let library = root.join("library");
    std::fs::create_dir(&library).expect("mkdir");

    let mut command = if nix::unistd::geteuid().is_root() {
        const NOBODY: u32 = 65534;
        // The build folder may sit where `nobody` cannot reach it.
        let binary = root.join("hearth");
        std::fs::copy(env!("CARGO_BIN_EXE_hearth"), &binary).expect("copy binary");
        std::os::unix::fs::chown(&library, Some(NOBODY), Some(NOBODY)).expect("chown");
        let mut command = Command::new(binary);
        command.uid(NOBODY).gid(NOBODY).env("HOME", root);
        command.arg("--library").arg(&library);
        command
    } else {
        hearth(&library)
    };
    let report = json(command.arg("import").arg("--json").arg(&input));
    assert_eq!(report["imported"], 1, "{report:#}");
    let secret = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("secret.txt"))
        })
        .expect("secret.txt reported");
    assert_eq!(secret["outcome"], "failed");
    assert_eq!(
        secret["reason"],
        "cannot read: Permission denied (os error 13)"
    );
}

/// A JPEG with a unique comment segment, so copies hash differently.
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn count_items(database: &Path) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row("SELECT count(*) FROM items", [], |row| row.get(0))
        .ok()
}

#[test]
fn kill_9_mid_import_loses_nothing() {
    const PHOTOS: usize = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    let bases: Vec<Vec<u8>> = (0..4u8)
        .map(|seed| {
            let image = RgbImage::from_fn(2400, 1800, |x, y| {
                image::Rgb([(x / 9) as u8 ^ seed, (y / 7) as u8, ((x * y) >> 11) as u8])
            });
            let mut bytes = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
                .expect("encode");
            bytes
        })
        .collect();
    for i in 0..PHOTOS {
        std::fs::write(
            input.join(format!("{i:04}.jpg")),
            with_comment(&bases[i % bases.len()], &i.to_string()),
        )
        .expect("write");
    }
    let library = dir.path().join("library");
    let database = library.join(hearth_store::DATABASE_FILE);

    let mut child = hearth(&library)
        .arg("import")
        .arg(&input)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = loop {
        match count_items(&database) {
            Some(n) if n > 0 => break n,
            _ if Instant::now() > deadline => panic!("no item was committed within two minutes"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        (committed as usize) < PHOTOS,
        "the import finished before it could be killed; raise PHOTOS"
    );

    let conn = rusqlite::Connection::open(&database).expect("open");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let mut stmt = conn
        .prepare("SELECT thumbnail FROM items")
        .expect("prepare");
    let thumbnails: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!thumbnails.is_empty());
    for thumbnail in &thumbnails {
        image::open(library.join(thumbnail))
            .unwrap_or_else(|e| panic!("thumbnail {thumbnail} after the kill: {e}"));
    }
    drop(stmt);
    drop(conn);

    let report = json(hearth(&library).arg("import").arg("--json").arg(&input));
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(
        report["imported"].as_u64().expect("imported")
            + report["already_present"].as_u64().expect("present"),
        PHOTOS as u64
    );
    assert_eq!(count_items(&database), Some(PHOTOS as i64));
    let stray = walkdir_files(&library.join("thumbnails"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .count();
    assert_eq!(stray, 0, "no temporary thumbnail survives the next import");
    assert_eq!(walkdir_files(&library.join("thumbnails")).len(), PHOTOS);
}

fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

#[test]
fn federation_is_off_until_joined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let library = dir.path().join("library");
    let status = run_ok(hearth(&library).args(["fed", "status"]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("federation is off"));
    assert_eq!(
        json(hearth(&library).args(["fed", "status", "--json"])),
        serde_json::json!([])
    );
    assert_eq!(
        json(hearth(&library).args(["fed", "history", "--json"])),
        serde_json::json!([])
    );
    let audit = run_ok(hearth(&library).arg("audit"));
    assert!(String::from_utf8_lossy(&audit.stdout).contains("nothing to audit"));
    // Nothing to take part in: a clear refusal, and no network touched.
    let run = hearth(&library)
        .args(["fed", "run", "--once"])
        .output()
        .expect("runs");
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("member of no federation"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let leave = hearth(&library)
        .args(["fed", "leave"])
        .output()
        .expect("runs");
    assert!(!leave.status.success());
}
