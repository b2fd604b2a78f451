//! `hearth bench import`: photos/s and peak RSS of importing generated
//! 12-megapixel JPEGs.

use std::io::Cursor;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use image::RgbImage;
use nix::sys::resource::{UsageWho, getrusage};
use rayon::prelude::*;

use crate::output;

/// Distinct pictures rendered; the rest are copies that differ only in a
/// JPEG comment, so every file hashes differently and is fully imported,
/// while generation stays quick.
const DISTINCT_PICTURES: usize = 8;

/// Generates `count` JPEGs of `megapixels` and imports them with a child
/// `hearth import` into a scratch library, so that the importer's peak RSS
/// is its own.
pub fn run(count: usize, megapixels: f64) -> Result<ExitCode> {
    if count == 0 || !(0.01..=100.0).contains(&megapixels) {
        bail!("need at least one photo and between 0.01 and 100 megapixels");
    }
    let scratch = tempfile::Builder::new()
        .prefix("hearth-bench-import-")
        .tempdir()?;
    let photos = scratch.path().join("photos");
    std::fs::create_dir(&photos)?;
    let width = (megapixels * 1e6 * 4.0 / 3.0).sqrt().round() as u32;
    let height = width * 3 / 4;

    eprintln!(
        "generating {count} JPEGs of {width}x{height} in {}",
        photos.display()
    );
    let started = Instant::now();
    let pictures: Vec<Vec<u8>> = (0..DISTINCT_PICTURES.min(count))
        .into_par_iter()
        .map(|seed| render_jpeg(width, height, seed as u32))
        .collect::<Result<_>>()?;
    let mut total_bytes = 0u64;
    for index in 0..count {
        let jpeg = with_comment(
            &pictures[index % pictures.len()],
            &format!("hearth bench photo {index}"),
        );
        total_bytes += jpeg.len() as u64;
        std::fs::write(photos.join(format!("IMG_{index:04}.jpg")), jpeg)?;
    }
    eprintln!(
        "generated in {:.1} s; importing",
        started.elapsed().as_secs_f64()
    );

    let exe = std::env::current_exe().context("finding the hearth binary")?;
    let library = scratch.path().join("library");
    let started = Instant::now();
    let child = Command::new(exe)
        .arg("--library")
        .arg(&library)
        .args(["import", "--json"])
        .arg(&photos)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running hearth import")?;
    let seconds = started.elapsed().as_secs_f64();
    if !child.status.success() {
        bail!("hearth import failed: {}", child.status);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&child.stdout).context("reading the import report")?;
    let imported = report["imported"].as_u64().unwrap_or(0);
    if imported != count as u64 {
        bail!("expected {count} photos imported, the report says {imported}: {report}");
    }
    let peak_rss_kb = getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss();

    let rate = count as f64 / seconds;
    let peak_mb = peak_rss_kb as f64 / 1024.0;
    println!(
        "bench import: {count} photos, {width}x{height} JPEG, {} average",
        output::bytes(total_bytes / count as u64)
    );
    println!("  time        {seconds:.2} s");
    println!("  throughput  {rate:.1} photos/s (goal >= 20)");
    println!("  peak RSS    {peak_mb:.0} MiB (goal < 500)");
    println!("  threads     {}", rayon::current_num_threads());
    Ok(ExitCode::SUCCESS)
}

/// A photo-like picture: smooth gradients, some edges and texture, so it
/// compresses (and decodes) like a camera JPEG rather than like noise.
fn render_jpeg(width: u32, height: u32, seed: u32) -> Result<Vec<u8>> {
    let phase = seed as f32 * 0.7;
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let hash = (x.wrapping_mul(374_761_393)
            ^ y.wrapping_mul(668_265_263)
            ^ seed.wrapping_mul(2_246_822_519))
        .wrapping_mul(3_266_489_917)
            >> 27;
        let wave = ((fx * 40.0 + phase).sin() * (fy * 25.0 - phase).cos() * 40.0) as i32;
        let edge = if (fx - 0.5 + 0.1 * (fy * 9.0 + phase).sin()).abs() < 0.15 {
            60
        } else {
            0
        };
        let channel = |base: f32, scale: f32| {
            (base + scale * fx + wave as f32 + edge as f32 + hash as f32).clamp(0.0, 255.0) as u8
        };
        image::Rgb([
            channel(60.0, 150.0),
            channel(90.0 * fy, 100.0),
            channel(180.0 - 120.0 * fy, 40.0),
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut bytes), 90)
        .encode_image(&image)?;
    Ok(bytes)
}

/// Inserts a COM segment right after the JPEG's SOI marker.
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    let length = (comment.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}
