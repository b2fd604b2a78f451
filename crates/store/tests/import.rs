//! The importer against real photos and text, generated bad input, and
//! re-imports: what a person's folders will throw at it.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use hearth_store::{
    CancelToken, ImportOptions, ImportReport, ItemFilter, ItemKind, Library, NoProgress, Outcome,
    THUMBNAIL_MAX_SIDE,
};
use image::{ImageFormat, RgbImage, RgbaImage};

fn import(library: &mut Library, paths: &[&Path]) -> ImportReport {
    import_with(library, paths, &ImportOptions::default())
}

fn import_with(library: &mut Library, paths: &[&Path], options: &ImportOptions) -> ImportReport {
    let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    library
        .import(&paths, options, &NoProgress, &CancelToken::new())
        .expect("import runs")
}

fn encode(image: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .into()
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encode");
    bytes
}

fn picture(width: u32, height: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed])
    })
}

fn outcome_of<'a>(report: &'a ImportReport, name: &str) -> &'a hearth_store::FileReport {
    report
        .files
        .iter()
        .find(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{name} missing from the report: {:#?}", report.files))
}

/// Every thumbnail file on disk, and whether each photo row has its own.
fn assert_thumbnails_match_rows(library: &Library) {
    let photos = library
        .items(&ItemFilter {
            kind: Some(ItemKind::Photo),
            ..Default::default()
        })
        .expect("list");
    for photo in &photos {
        let path = library
            .thumbnail_path(photo)
            .expect("photo has a thumbnail");
        let thumb = image::open(&path)
            .unwrap_or_else(|e| panic!("thumbnail {} unreadable: {e}", path.display()));
        assert!(thumb.width().max(thumb.height()) <= THUMBNAIL_MAX_SIDE);
    }
    let on_disk = walkdir::WalkDir::new(library.root().join("thumbnails"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(
        on_disk,
        photos.len(),
        "one thumbnail per photo, no strays or temporaries"
    );
}

#[test]
fn imports_the_shared_photos_and_text() {
    let Some(data) = hearth_testdata::shared("") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut library = Library::open(dir.path()).expect("open");
    let report = import(&mut library, &[&data.join("photos"), &data.join("text")]);
    assert_eq!(
        (report.imported, report.failed, report.skipped),
        (9, 0, 0),
        "{report:#?}"
    );

    let photos = library
        .items(&ItemFilter {
            kind: Some(ItemKind::Photo),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(photos.len(), 8);
    let dims = |name: &str| {
        let item = photos.iter().find(|p| p.path.ends_with(name)).expect(name);
        (item.width, item.height, item.media_type.as_str())
    };
    assert_eq!(dims("chelsea.png"), (Some(451), Some(300), "image/png"));
    assert_eq!(dims("coffee.png"), (Some(600), Some(400), "image/png"));
    assert_eq!(dims("rocket.jpg"), (Some(640), Some(427), "image/jpeg"));
    assert_eq!(
        dims("hubble_deep_field.jpg"),
        (Some(1000), Some(872), "image/jpeg")
    );
    assert_eq!(dims("camera.png"), (Some(512), Some(512), "image/png"));
    assert_thumbnails_match_rows(&library);
    let chelsea = photos
        .iter()
        .find(|p| p.path.ends_with("chelsea.png"))
        .expect("chelsea");
    let thumb = image::open(library.thumbnail_path(chelsea).expect("thumb")).expect("decodes");
    assert_eq!((thumb.width(), thumb.height()), (256, 170));

    let texts = library
        .items(&ItemFilter {
            kind: Some(ItemKind::Text),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(texts.len(), 1);
    assert_eq!(texts[0].text_chars, Some(1_115_394));
    let body = library
        .item_text(texts[0].id)
        .expect("text")
        .expect("stored");
    assert!(body.starts_with("First Citizen:"));
    library.integrity_check().expect("integrity");
}

#[test]
fn every_supported_format_imports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).expect("mkdir");
    let formats = [
        ("a.jpg", ImageFormat::Jpeg, "image/jpeg"),
        ("b.png", ImageFormat::Png, "image/png"),
        ("c.webp", ImageFormat::WebP, "image/webp"),
        ("d.gif", ImageFormat::Gif, "image/gif"),
        ("e.bmp", ImageFormat::Bmp, "image/bmp"),
        ("f.tiff", ImageFormat::Tiff, "image/tiff"),
    ];
    for (seed, (name, format, _)) in formats.iter().enumerate() {
        std::fs::write(
            photos.join(name),
            encode(picture(320, 200, seed as u8), *format),
        )
        .expect("write");
    }
    // Transparency keeps a PNG thumbnail.
    let clear = RgbaImage::from_fn(300, 300, |x, _| image::Rgba([200, 10, 10, x as u8]));
    std::fs::write(photos.join("g.png"), encode(clear, ImageFormat::Png)).expect("write");
    std::fs::write(photos.join("notes.md"), "# Garden\nTomatoes again.").expect("write");
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("Grüße, Rex 🐕".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    std::fs::write(photos.join("letter.txt"), utf16).expect("write");

    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&photos]);
    assert_eq!((report.imported, report.failed), (9, 0), "{report:#?}");
    for (name, _, media_type) in formats {
        let id = outcome_of(&report, name).item_id.expect("imported");
        let item = library.item(id).expect("item");
        assert_eq!(
            (item.media_type.as_str(), item.width, item.height),
            (media_type, Some(320), Some(200))
        );
    }
    let clear = library
        .item(outcome_of(&report, "g.png").item_id.expect("id"))
        .expect("item");
    assert!(clear.thumbnail.as_deref().expect("thumb").ends_with(".png"));
    let letter = outcome_of(&report, "letter.txt").item_id.expect("id");
    assert_eq!(
        library.item_text(letter).expect("text").as_deref(),
        Some("Grüße, Rex 🐕")
    );
    assert_eq!(library.item(letter).expect("item").text_chars, Some(12));
    assert_thumbnails_match_rows(&library);
}

/// A JPEG carrying EXIF capture time, offset and orientation 6 (the camera
/// was turned: stored 400x300, displayed 300x400).
fn jpeg_with_exif() -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let jpeg = encode(picture(400, 300, 3), ImageFormat::Jpeg);
    let fields = [
        Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![6]),
        },
        Field {
            tag: Tag::DateTimeOriginal,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"2024:07:14 18:03:09".to_vec()]),
        },
        Field {
            tag: Tag::OffsetTimeOriginal,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"+02:00".to_vec()]),
        },
    ];
    let mut writer = exif::experimental::Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("exif");
    let payload: Vec<u8> = b"Exif\0\0"
        .iter()
        .copied()
        .chain(tiff.into_inner())
        .collect();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_capture_time_and_orientation_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("turned.jpg");
    std::fs::write(&photo, jpeg_with_exif()).expect("write");
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&photo]);
    let item = library
        .item(report.files[0].item_id.expect("imported"))
        .expect("item");
    assert_eq!(
        item.captured_at.as_deref(),
        Some("2024-07-14T18:03:09+02:00")
    );
    assert_eq!((item.width, item.height), (Some(300), Some(400)));
    let thumb = image::open(library.thumbnail_path(&item).expect("thumb")).expect("decodes");
    assert_eq!(
        (thumb.width(), thumb.height()),
        (192, 256),
        "thumbnail is upright"
    );
}

#[test]
fn bad_input_is_reported_per_file_and_leaves_nothing_partial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    let good = encode(picture(64, 48, 1), ImageFormat::Png);
    std::fs::write(input.join("good.png"), &good).expect("write");
    std::fs::write(
        input.join("truncated.png"),
        &encode(picture(300, 300, 2), ImageFormat::Png)[..400],
    )
    .expect("write");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(input.join("noise.jpg"), noise).expect("write");
    std::fs::write(input.join("empty.png"), b"").expect("write");
    std::fs::write(input.join("bomb.png"), png_claiming(30_000, 30_000)).expect("write");
    std::fs::write(input.join("latin1.txt"), b"caf\xe9 au lait").expect("write");
    std::fs::write(input.join("phone.HEIC"), b"\0\0\0\x18ftypheic").expect("write");
    std::fs::write(input.join("movie.mp4"), b"not imported").expect("write");
    std::fs::create_dir(input.join("loop")).expect("mkdir");
    std::os::unix::fs::symlink("..", input.join("loop/back")).expect("symlink");
    std::os::unix::fs::symlink("nowhere.jpg", input.join("dangling.jpg")).expect("symlink");
    let non_utf8 = {
        use std::os::unix::ffi::OsStrExt;
        input.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"))
    };
    std::fs::write(&non_utf8, &good).expect("write");

    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&input]);

    let reason = |name: &str| {
        let file = outcome_of(&report, name);
        (file.outcome, file.reason.clone().unwrap_or_default())
    };
    assert_eq!(reason("good.png").0, Outcome::Imported);
    let (outcome, why) = reason("truncated.png");
    assert_eq!(outcome, Outcome::Failed);
    assert!(why.starts_with("corrupt or truncated PNG"), "{why}");
    assert_eq!(
        reason("noise.jpg"),
        (
            Outcome::Failed,
            "not a readable photo: the content is not JPEG, PNG, WebP, GIF, BMP or TIFF".into()
        )
    );
    assert_eq!(
        reason("empty.png"),
        (Outcome::Failed, "empty file (0 bytes)".into())
    );
    assert_eq!(
        reason("bomb.png"),
        (
            Outcome::Failed,
            "image claims 30000x30000 pixels (900 megapixels), over the 100 megapixel limit".into()
        )
    );
    let (outcome, why) = reason("latin1.txt");
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        why.contains("not valid UTF-8 text (invalid byte at offset 3)"),
        "{why}"
    );
    assert_eq!(
        reason("phone.HEIC"),
        (
            Outcome::Skipped,
            "HEIC/HEIF photos are not supported yet".into()
        )
    );
    assert_eq!(reason("movie.mp4").0, Outcome::Skipped);
    let (outcome, why) = reason("loop/back");
    assert_eq!(outcome, Outcome::Failed);
    assert!(why.starts_with("symbolic link loop"), "{why}");
    let (outcome, why) = reason("dangling.jpg");
    assert_eq!(outcome, Outcome::Failed);
    assert!(why.starts_with("cannot read"), "{why}");
    let (outcome, why) = reason("caf\u{FFFD}.png");
    assert_eq!(outcome, Outcome::Failed);
    assert!(why.contains("not valid UTF-8"), "{why}");

    assert_eq!(report.imported, 1, "{report:#?}");
    assert_eq!(report.skipped, 2);
    assert_eq!(report.failed, 8);
    assert_eq!(
        library.items(&ItemFilter::default()).expect("list").len(),
        1
    );
    assert_thumbnails_match_rows(&library);
    library.integrity_check().expect("integrity");
}

/// A valid PNG signature and IHDR claiming `width`x`height`, and no pixels.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn size_limit_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("big.png");
    std::fs::write(&photo, encode(picture(256, 256, 9), ImageFormat::Png)).expect("write");
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let options = ImportOptions {
        max_file_bytes: 1_000,
        ..ImportOptions::default()
    };
    let report = import_with(&mut library, &[&photo], &options);
    assert_eq!(report.failed, 1);
    let reason = report.files[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.ends_with("over the 0 MB import limit") || reason.contains("import limit"),
        "{reason}"
    );
}

#[test]
fn unreadable_files_are_reported_when_permissions_apply() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "private").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::read(&secret).is_ok() {
        // Root reads anything; the CLI test covers this case by dropping
        // privileges in a child process.
        eprintln!("skipping: running with privileges that bypass file permissions");
        return;
    }
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&secret]);
    assert_eq!(report.files[0].outcome, Outcome::Failed);
    assert!(
        report.files[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("cannot read")
    );
}

#[test]
fn reimport_is_idempotent_and_follows_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("2024")).expect("mkdir");
    for i in 0..3 {
        std::fs::write(
            photos.join(format!("2024/{i}.png")),
            encode(picture(90, 60, i), ImageFormat::Png),
        )
        .expect("write");
    }
    // The same content twice: one item.
    std::fs::copy(photos.join("2024/0.png"), photos.join("copy-of-0.png")).expect("copy");
    let mut library = Library::open(dir.path().join("library")).expect("open");

    let first = import(&mut library, &[&photos]);
    assert_eq!(
        (first.imported, first.already_present),
        (3, 1),
        "{first:#?}"
    );
    // Workers finish in any order: whichever copy lands first is the item,
    // the other is reported as the same content.
    let copies = [
        outcome_of(&first, "copy-of-0.png"),
        outcome_of(&first, "2024/0.png"),
    ];
    assert_eq!(copies[0].item_id, copies[1].item_id);
    let duplicates = copies
        .iter()
        .filter(|c| {
            c.reason
                .as_deref()
                .unwrap_or_default()
                .starts_with("same content as item")
        })
        .count();
    assert_eq!(duplicates, 1, "{copies:#?}");

    let second = import(&mut library, &[&photos]);
    assert_eq!(
        (second.imported, second.already_present, second.moved),
        (0, 4, 0)
    );
    assert_eq!(
        library.items(&ItemFilter::default()).expect("list").len(),
        3
    );

    std::fs::create_dir(photos.join("sorted")).expect("mkdir");
    std::fs::rename(photos.join("2024/1.png"), photos.join("sorted/rex.png")).expect("move");
    let third = import(&mut library, &[&photos]);
    assert_eq!((third.imported, third.moved), (0, 1), "{third:#?}");
    let moved = outcome_of(&third, "sorted/rex.png");
    assert_eq!(moved.outcome, Outcome::Moved);
    let item = library.item(moved.item_id.expect("id")).expect("item");
    assert!(
        item.path.ends_with("photos/sorted/rex.png"),
        "{}",
        item.path
    );
    assert_thumbnails_match_rows(&library);
}

#[test]
fn labels_filter_and_removal_keeps_originals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("rex.png");
    std::fs::write(&photo, encode(picture(90, 60, 5), ImageFormat::Png)).expect("write");
    let note = dir.path().join("walk.txt");
    std::fs::write(&note, "Rex and I walked to the river.").expect("write");
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&photo, &note]);
    let photo_id = outcome_of(&report, "rex.png").item_id.expect("id");
    let note_id = outcome_of(&report, "walk.txt").item_id.expect("id");

    assert!(library.add_label(photo_id, "Rex").expect("label"));
    assert!(
        !library.add_label(photo_id, "rex").expect("label again"),
        "case-insensitive"
    );
    assert!(library.add_label(note_id, "Rex").expect("label"));
    assert!(library.add_label(note_id, "walks").expect("label"));
    let rex = library
        .items(&ItemFilter {
            label: Some("REX".into()),
            kind: Some(ItemKind::Photo),
        })
        .expect("filter");
    assert_eq!(rex.iter().map(|i| i.id).collect::<Vec<_>>(), vec![photo_id]);
    assert_eq!(
        library.item(note_id).expect("item").labels,
        vec!["Rex", "walks"]
    );
    let counts: Vec<_> = library
        .labels()
        .expect("labels")
        .into_iter()
        .map(|l| (l.name, l.items))
        .collect();
    assert_eq!(counts, vec![("Rex".to_owned(), 2), ("walks".to_owned(), 1)]);

    assert!(library.remove_label(note_id, "walks").expect("unlabel"));
    assert_eq!(
        library.labels().expect("labels").len(),
        1,
        "unused labels are forgotten"
    );

    let thumb = library
        .thumbnail_path(&library.item(photo_id).expect("item"))
        .expect("thumb");
    library.remove_item(photo_id).expect("remove");
    assert!(!thumb.exists());
    assert!(photo.exists(), "the original is never touched");
    assert_eq!(library.labels().expect("labels")[0].items, 1);
}

#[test]
fn cancelled_import_commits_nothing_half_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.png"),
        encode(picture(50, 50, 1), ImageFormat::Png),
    )
    .expect("write");
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let cancel = CancelToken::new();
    cancel.cancel();
    let report = library
        .import(
            &[dir.path().to_path_buf()],
            &ImportOptions::default(),
            &NoProgress,
            &cancel,
        )
        .expect("import");
    assert!(report.cancelled);
    assert_eq!(report.imported, 0);
    assert_thumbnails_match_rows(&library);
}

/// An imported folder with symbolic links in and out of it:
///
/// ```text
/// input/inside.txt, input/sub/deep.md, input/.hidden/only-by-link.md
/// input/visible.md -> .hidden/only-by-link.md  (a file link within)
/// input/alias -> sub                           (a folder link within)
/// input/notes.txt -> ../outside/id_ed25519.txt (a file link out)
/// input/chain.txt -> notes.txt                 (a link to a link out)
/// input/escape -> ../outside/dir               (a folder link out)
/// outside/id_ed25519.txt, outside/dir/leak.md
/// ```
#[cfg(unix)]
fn linked_folders() -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(input.join("sub")).expect("mkdir");
    std::fs::create_dir_all(input.join(".hidden")).expect("mkdir");
    std::fs::create_dir_all(outside.join("dir")).expect("mkdir");
    std::fs::write(input.join("inside.txt"), "a note inside").expect("write");
    std::fs::write(input.join("sub/deep.md"), "# deeper inside").expect("write");
    std::fs::write(input.join(".hidden/only-by-link.md"), "reached by a link").expect("write");
    std::fs::write(outside.join("id_ed25519.txt"), "PRIVATE KEY").expect("write");
    std::fs::write(outside.join("dir/leak.md"), "not for training").expect("write");
    symlink(".hidden/only-by-link.md", input.join("visible.md")).expect("symlink");
    symlink("sub", input.join("alias")).expect("symlink");
    // Absolute, as `ln -s ~/.ssh/id_ed25519 notes.txt` would make it.
    symlink(outside.join("id_ed25519.txt"), input.join("notes.txt")).expect("symlink");
    symlink("notes.txt", input.join("chain.txt")).expect("symlink");
    symlink("../outside/dir", input.join("escape")).expect("symlink");
    (dir, input, outside)
}

#[cfg(unix)]
#[test]
fn symlinks_leaving_the_imported_folders_are_reported_not_imported() {
    let (dir, input, _outside) = linked_folders();
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&input]);

    for name in ["input/notes.txt", "input/chain.txt", "input/escape"] {
        let file = outcome_of(&report, name);
        assert_eq!(file.outcome, Outcome::Failed, "{file:#?}");
        let why = file.reason.as_deref().unwrap_or_default();
        assert!(
            why.starts_with("symbolic link leaves the imported folders"),
            "{name}: {why}"
        );
    }
    assert!(
        report.files.iter().all(|f| !f.path.contains("escape/")),
        "nothing is read through a folder link out: {:#?}",
        report.files
    );
    // Links that stay inside are followed.
    for name in ["input/visible.md", "input/alias/deep.md"] {
        let file = outcome_of(&report, name);
        assert!(
            matches!(file.outcome, Outcome::Imported | Outcome::AlreadyPresent),
            "{file:#?}"
        );
        assert!(file.item_id.is_some(), "{file:#?}");
    }
    assert_eq!(
        outcome_of(&report, "input/visible.md").outcome,
        Outcome::Imported
    );
    assert_eq!((report.imported, report.failed), (3, 3), "{report:#?}");

    let items = library.items(&ItemFilter::default()).expect("list");
    assert_eq!(items.len(), 3, "{items:#?}");
    for item in &items {
        let text = library
            .item_text(item.id)
            .expect("text")
            .unwrap_or_default();
        assert!(!text.contains("PRIVATE KEY") && !text.contains("not for training"));
    }
}

#[cfg(unix)]
#[test]
fn following_links_outside_is_opt_in() {
    let (dir, input, _outside) = linked_folders();
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let options = ImportOptions {
        follow_links_outside: true,
        ..ImportOptions::default()
    };
    let report = import_with(&mut library, &[&input], &options);
    assert_eq!(report.failed, 0, "{report:#?}");
    let key = outcome_of(&report, "input/notes.txt");
    assert!(key.item_id.is_some(), "{key:#?}");
    assert_eq!(
        outcome_of(&report, "input/escape/leak.md").outcome,
        Outcome::Imported
    );
    // inside, deep, only-by-link, the key (chain.txt is the same content)
    // and leak.
    assert_eq!(report.imported, 5, "{report:#?}");
}

#[cfg(unix)]
#[test]
fn symlinks_into_another_imported_folder_are_followed() {
    let (dir, input, outside) = linked_folders();
    let mut library = Library::open(dir.path().join("library")).expect("open");
    let report = import(&mut library, &[&input, &outside]);
    assert_eq!(report.failed, 0, "{report:#?}");
    for name in ["input/notes.txt", "input/chain.txt", "input/escape/leak.md"] {
        let file = outcome_of(&report, name);
        assert!(file.item_id.is_some(), "{file:#?}");
    }
}
