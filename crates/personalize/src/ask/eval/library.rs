//! The evaluation's library: photos with EXIF capture dates and labels and
//! notes naming places and topics, generated from a seed and imported by
//! the store's real importer, with every fact the questions need kept on
//! the side so that true answers are computed without the query engine.

use std::io::Cursor;
use std::path::Path;

use chrono::{Duration, NaiveDate};
use hearth_ml::rng::SplitMix64;
use hearth_progress::{CancelToken, NoProgress};
use hearth_store::{ImportOptions, ItemFilter, ItemId, Library};
use image::{ImageFormat, RgbImage};

use crate::error::{PersonalizeError, Result};

/// Photo labels: pets, people, places.
pub(crate) const PHOTO_LABELS: &[&str] =
    &["Rex", "Luna", "Grandma", "beach", "mountains", "garden"];
/// Places and topics notes mention, one of each at most per note; none
/// occurs in the Shakespeare speeches used as filler.
pub(crate) const NOTE_WORDS: &[&str] = &[
    "Lisbon",
    "Kyoto",
    "Nairobi",
    "Oslo",
    "Montreal",
    "taxes",
    "piano",
    "sourdough",
];
/// The first and last day photos are dated.
pub(crate) fn photo_days() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2021, 1, 1).expect("date"),
        NaiveDate::from_ymd_opt(2024, 11, 30).expect("date"),
    )
}

/// A generated photo.
#[derive(Debug, Clone)]
pub(crate) struct Photo {
    pub(crate) label: &'static str,
    pub(crate) taken: NaiveDate,
}

/// A generated note.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    pub(crate) id: ItemId,
    /// The words of [`NOTE_WORDS`] it mentions.
    pub(crate) words: Vec<&'static str>,
}

/// What was put in the library.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    pub(crate) photos: Vec<Photo>,
    pub(crate) notes: Vec<Note>,
}

/// Builds a library of `photos` photos and `notes` notes (a third of them
/// Shakespeare speeches from `shakespeare` when given) in `dir`.
pub(crate) fn build(
    dir: &Path,
    photos: usize,
    notes: usize,
    shakespeare: Option<&str>,
    seed: u64,
) -> Result<(Library, Generated)> {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).map_err(|source| PersonalizeError::Io {
        path: input.clone(),
        source,
    })?;
    let mut rng = SplitMix64::new(seed);
    let (first, last) = photo_days();
    let span = (last - first).num_days() as u64 + 1;
    let mut photo_plan = Vec::with_capacity(photos);
    for n in 0..photos {
        let label = PHOTO_LABELS[(rng.next_u64() % PHOTO_LABELS.len() as u64) as usize];
        let taken = first + Duration::days((rng.next_u64() % span) as i64);
        let name = format!("photo-{n:04}.jpg");
        write(&input.join(&name), &jpeg_taken(n as u64 ^ seed, taken))?;
        photo_plan.push((name, label, taken));
    }
    let speeches: Vec<&str> = shakespeare
        .map(|text| {
            text.split("\n\n")
                .filter(|speech| {
                    let lower = speech.to_lowercase();
                    speech.len() > 80
                        && !NOTE_WORDS.iter().any(|w| lower.contains(&w.to_lowercase()))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut note_plan = Vec::with_capacity(notes);
    for n in 0..notes {
        let name = format!("note-{n:04}.txt");
        let (body, words) = if !speeches.is_empty() && n % 3 == 2 {
            let speech = speeches[(rng.next_u64() % speeches.len() as u64) as usize];
            (format!("{speech}\n(note {n})"), Vec::new())
        } else {
            note_text(&mut rng, n)
        };
        write(&input.join(&name), body.as_bytes())?;
        note_plan.push((name, words));
    }
    let mut library = Library::open(dir.join("library"))?;
    library.import(
        std::slice::from_ref(&input),
        &ImportOptions::default(),
        &NoProgress,
        &CancelToken::new(),
    )?;
    let items = library.items(&ItemFilter::default())?;
    let id_of = |name: &str| -> Result<ItemId> {
        items
            .iter()
            .find(|item| Path::new(&item.path).file_name().and_then(|f| f.to_str()) == Some(name))
            .map(|item| item.id)
            .ok_or_else(|| PersonalizeError::Inconsistent(format!("{name} was not imported")))
    };
    let mut generated = Generated {
        photos: Vec::with_capacity(photos),
        notes: Vec::with_capacity(notes),
    };
    for (name, label, taken) in photo_plan {
        library.add_label(id_of(&name)?, label)?;
        generated.photos.push(Photo { label, taken });
    }
    for (name, words) in note_plan {
        generated.notes.push(Note {
            id: id_of(&name)?,
            words,
        });
    }
    Ok((library, generated))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| PersonalizeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A short diary note naming one place, sometimes one topic.
fn note_text(rng: &mut SplitMix64, n: usize) -> (String, Vec<&'static str>) {
    const OPENINGS: &[&str] = &[
        "Spent the afternoon in",
        "Booked the flights for",
        "Remember the little cafe in",
        "Photos from",
        "Next time we are in",
    ];
    let places = &NOTE_WORDS[..5];
    let topics = &NOTE_WORDS[5..];
    let place = places[(rng.next_u64() % places.len() as u64) as usize];
    let opening = OPENINGS[(rng.next_u64() % OPENINGS.len() as u64) as usize];
    let mut words = vec![place];
    let mut text = format!("{opening} {place}.");
    if rng.next_u64().is_multiple_of(2) {
        let topic = topics[(rng.next_u64() % topics.len() as u64) as usize];
        text.push_str(&format!(" Also: {topic} to sort out before the weekend."));
        words.push(topic);
    }
    text.push_str(&format!(" (note {n})"));
    (text, words)
}

/// A small JPEG whose EXIF `DateTimeOriginal` is noon on `taken` (noon,
/// so no time zone moves it to another day).
fn jpeg_taken(seed: u64, taken: NaiveDate) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let shade = (seed % 251) as u8;
    let image = RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 ^ shade, y as u8, shade]));
    let mut jpeg = Vec::new();
    // Encoding an in-memory image into a Vec cannot fail.
    let _ = image.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg);
    let mut writer = exif::experimental::Writer::new();
    let stamp = taken.format("%Y:%m:%d 12:00:00").to_string();
    let field = Field {
        tag: Tag::DateTimeOriginal,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![stamp.into_bytes()]),
    };
    writer.push_field(&field);
    let mut tiff = Cursor::new(Vec::new());
    if writer.write(&mut tiff, false).is_err() {
        return jpeg;
    }
    let payload: Vec<u8> = b"Exif\0\0"
        .iter()
        .copied()
        .chain(tiff.into_inner())
        .collect();
    // APP1 right after the start-of-image marker.
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}
