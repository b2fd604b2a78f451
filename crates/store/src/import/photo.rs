//! Decoding a photo just enough to import it: its real dimensions, EXIF
//! capture time and orientation, and a thumbnail.
//!
//! Dimensions are read from the header and checked against the pixel limit
//! before any pixel is decoded, so a decompression bomb costs nothing.
//! JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (the
//! thumbnail needs no more), which makes a 12-megapixel photo several times
//! cheaper than a full decode.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use super::problem::FileProblem;
use crate::thumbnails::THUMBNAIL_MAX_SIDE;

/// What the import keeps of a photo.
#[derive(Debug)]
pub(crate) struct DecodedPhoto {
    pub media_type: &'static str,
    /// Displayed size (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub captured_at: Option<String>,
    pub thumbnail: Thumbnail,
}

/// An encoded thumbnail, not yet written anywhere.
#[derive(Debug)]
pub(crate) struct Thumbnail {
    pub bytes: Vec<u8>,
    pub extension: &'static str,
}

/// The formats Hearth imports, with their names and media types.
fn supported(format: ImageFormat) -> Option<(&'static str, &'static str)> {
    Some(match format {
        ImageFormat::Jpeg => ("JPEG", "image/jpeg"),
        ImageFormat::Png => ("PNG", "image/png"),
        ImageFormat::WebP => ("WebP", "image/webp"),
        ImageFormat::Gif => ("GIF", "image/gif"),
        ImageFormat::Bmp => ("BMP", "image/bmp"),
        ImageFormat::Tiff => ("TIFF", "image/tiff"),
        _ => return None,
    })
}

/// Recognises HEIF-family files (HEIC, AVIF) by their ISO-BMFF `ftyp` box,
/// which `image` does not know.
fn heif_family(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    match &bytes[8..12] {
        b"avif" | b"avis" => Some("AVIF"),
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
            Some("HEIC/HEIF")
        }
        _ => None,
    }
}

/// Decodes `bytes` as a photo, refusing more than `max_pixels`.
pub(crate) fn decode_photo(bytes: &[u8], max_pixels: u64) -> Result<DecodedPhoto, FileProblem> {
    let format = match image::guess_format(bytes) {
        Ok(format) => format,
        Err(_) => {
            return Err(match heif_family(bytes) {
                Some(name) => FileProblem::UnsupportedFormat(name),
                None => FileProblem::UnrecognizedImage,
            });
        }
    };
    let Some((name, media_type)) = supported(format) else {
        return Err(FileProblem::UnsupportedFormat(
            format
                .extensions_str()
                .first()
                .map_or("this kind of", |ext| match *ext {
                    "avif" => "AVIF",
                    "ico" => "ICO",
                    "tga" => "TGA",
                    "dds" => "DDS",
                    "exr" => "OpenEXR",
                    "hdr" => "Radiance HDR",
                    "qoi" => "QOI",
                    "ff" => "Farbfeld",
                    "pnm" | "pbm" | "pgm" | "ppm" | "pam" => "Netpbm",
                    _ => "this kind of",
                }),
        ));
    };
    let corrupt = |e: &dyn std::fmt::Display| FileProblem::CorruptImage {
        format: name,
        message: e.to_string(),
    };

    let exif = read_exif(bytes);
    let orientation = exif
        .as_ref()
        .and_then(|exif| exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY))
        .and_then(|field| field.value.get_uint(0))
        .and_then(|value| u8::try_from(value).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    let captured_at = exif.as_ref().and_then(capture_time);

    let (mut image, stored_width, stored_height) = if format == ImageFormat::Jpeg {
        decode_jpeg_scaled(bytes, max_pixels).map_err(|e| match e {
            JpegError::Problem(problem) => problem,
            JpegError::Decoder(e) => corrupt(&e),
        })?
    } else {
        let reader = || ImageReader::with_format(Cursor::new(bytes), format);
        // A PNG states its size in the first chunk; check it before the
        // decoder reads further (a bomb need not be well-formed beyond it).
        if let Some((width, height)) = png_header_size(bytes) {
            check_pixels(width, height, max_pixels)?;
        }
        let (width, height) = reader().into_dimensions().map_err(|e| corrupt(&e))?;
        check_pixels(width, height, max_pixels)?;
        let mut limits = Limits::default();
        // The pixel limit already bounds the image; allow its 16-bit RGBA
        // buffer and no more.
        limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
        let mut reader = reader();
        reader.limits(limits);
        let image = reader.decode().map_err(|e| corrupt(&e))?;
        (image, width, height)
    };

    let (width, height) = match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (stored_height, stored_width),
        _ => (stored_width, stored_height),
    };
    image.apply_orientation(orientation);
    Ok(DecodedPhoto {
        media_type,
        width,
        height,
        captured_at,
        thumbnail: thumbnail(image).map_err(|e| corrupt(&e))?,
    })
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let header = bytes.get(8..24)?;
    if &header[4..8] != b"IHDR" {
        return None;
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Some((word(8), word(12)))
}

fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), FileProblem> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(FileProblem::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}

enum JpegError {
    Problem(FileProblem),
    Decoder(jpeg_decoder::Error),
}

impl From<jpeg_decoder::Error> for JpegError {
    fn from(e: jpeg_decoder::Error) -> Self {
        JpegError::Decoder(e)
    }
}

/// Decodes a JPEG at the smallest DCT scale that still covers the
/// thumbnail. Returns the image and the full stored dimensions.
fn decode_jpeg_scaled(
    bytes: &[u8],
    max_pixels: u64,
) -> Result<(DynamicImage, u32, u32), JpegError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info()?;
    let info = decoder
        .info()
        .ok_or(JpegError::Decoder(jpeg_decoder::Error::Format(
            "no frame header".into(),
        )))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if width == 0 || height == 0 {
        return Err(JpegError::Decoder(jpeg_decoder::Error::Format(
            "zero-sized image".into(),
        )));
    }
    check_pixels(width, height, max_pixels).map_err(JpegError::Problem)?;
    // Ask for at least thumbnail size along both axes.
    let side = THUMBNAIL_MAX_SIDE as u64;
    let (long, short) = (width.max(height) as u64, width.min(height) as u64);
    let short_needed = (side * short).div_ceil(long).max(1) as u16;
    let (want_w, want_h) = if width >= height {
        (THUMBNAIL_MAX_SIDE as u16, short_needed)
    } else {
        (short_needed, THUMBNAIL_MAX_SIDE as u16)
    };
    decoder.scale(want_w, want_h)?;
    // A corrupt header can promise more than the file holds; the decoder
    // allocates from the (scaled) header, which the pixel limit bounds.
    decoder.set_max_decoding_buffer_size(
        usize::try_from(max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
    );
    let pixels = decoder.decode()?;
    let info = decoder
        .info()
        .ok_or(JpegError::Decoder(jpeg_decoder::Error::Format(
            "no frame header".into(),
        )))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let bad_size = || {
        JpegError::Decoder(jpeg_decoder::Error::Format(
            "pixel buffer does not match the header".into(),
        ))
    };
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).ok_or_else(bad_size)?)
        }
        jpeg_decoder::PixelFormat::L16 => {
            let samples = pixels
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            DynamicImage::ImageLuma16(
                image::ImageBuffer::from_raw(w, h, samples).ok_or_else(bad_size)?,
            )
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).ok_or_else(bad_size)?)
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            // jpeg-decoder already undoes Adobe's inversion; convert to RGB.
            let rgb = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - u32::from(p[3]);
                    [0, 1, 2].map(|i| ((255 - u32::from(p[i])) * k / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, rgb).ok_or_else(bad_size)?)
        }
    };
    Ok((image, width, height))
}

/// The EXIF block, if the container has one that parses. Broken EXIF never
/// fails an import: the pixels are what matter.
fn read_exif(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()
}

/// EXIF `DateTimeOriginal` (or `DateTimeDigitized`) as ISO 8601, with the
/// camera's UTC offset when it recorded one.
fn capture_time(exif: &exif::Exif) -> Option<String> {
    let ascii = |tag| match exif.get_field(tag, exif::In::PRIMARY).map(|f| &f.value) {
        Some(exif::Value::Ascii(parts)) => parts.first().cloned(),
        _ => None,
    };
    let (time_tag, offset_tag) = [
        (exif::Tag::DateTimeOriginal, exif::Tag::OffsetTimeOriginal),
        (exif::Tag::DateTimeDigitized, exif::Tag::OffsetTimeDigitized),
    ]
    .into_iter()
    .find(|(tag, _)| ascii(*tag).is_some())?;
    let mut time = exif::DateTime::from_ascii(&ascii(time_tag)?).ok()?;
    let plausible = (1..=12).contains(&time.month)
        && (1..=31).contains(&time.day)
        && time.hour < 24
        && time.minute < 60
        && time.second < 61
        && time.year >= 1826;
    if !plausible {
        return None;
    }
    let mut iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year, time.month, time.day, time.hour, time.minute, time.second
    );
    if let Some(offset) = ascii(offset_tag)
        && time.parse_offset(&offset).is_ok()
        && let Some(minutes) = time.offset
    {
        let sign = if minutes < 0 { '-' } else { '+' };
        let minutes = minutes.unsigned_abs();
        iso.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    Some(iso)
}

/// Shrinks to fit [`THUMBNAIL_MAX_SIDE`] and encodes: PNG when the photo has
/// transparency, JPEG otherwise.
fn thumbnail(image: DynamicImage) -> Result<Thumbnail, image::ImageError> {
    let fits = image.width() <= THUMBNAIL_MAX_SIDE && image.height() <= THUMBNAIL_MAX_SIDE;
    let far_too_big = image.width().max(image.height()) > 2 * THUMBNAIL_MAX_SIDE;
    let small = if fits {
        image
    } else if far_too_big {
        // A box filter: every source pixel counts once, fast on big images.
        image.thumbnail(THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE)
    } else {
        image.resize(
            THUMBNAIL_MAX_SIDE,
            THUMBNAIL_MAX_SIDE,
            image::imageops::FilterType::Triangle,
        )
    };
    let mut bytes = Vec::new();
    if small.color().has_alpha() {
        small
            .to_rgba8()
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)?;
        Ok(Thumbnail {
            bytes,
            extension: "png",
        })
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85);
        small.to_rgb8().write_with_encoder(encoder)?;
        Ok(Thumbnail {
            bytes,
            extension: "jpg",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .expect("encode");
        bytes
    }

    #[test]
    fn thumbnails_keep_aspect_and_never_upscale() {
        let big = decode_photo(&png(1000, 500), 100_000_000).expect("decode");
        assert_eq!((big.width, big.height), (1000, 500));
        let thumb = image::load_from_memory(&big.thumbnail.bytes).expect("thumb decodes");
        assert_eq!((thumb.width(), thumb.height()), (256, 128));

        let small = decode_photo(&png(40, 30), 100_000_000).expect("decode");
        let thumb = image::load_from_memory(&small.thumbnail.bytes).expect("thumb decodes");
        assert_eq!((thumb.width(), thumb.height()), (40, 30));
    }

    #[test]
    fn jpeg_is_decoded_scaled_with_full_dimensions() {
        let image = image::RgbImage::from_fn(2048, 1536, |x, y| {
            image::Rgb([(x / 8) as u8, (y / 8) as u8, 90])
        });
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .expect("encode");
        let (scaled, w, h) = match decode_jpeg_scaled(&bytes, 100_000_000) {
            Ok(decoded) => decoded,
            Err(_) => panic!("decode failed"),
        };
        assert_eq!((w, h), (2048, 1536));
        assert_eq!((scaled.width(), scaled.height()), (256, 192), "1/8 scale");
        let photo = decode_photo(&bytes, 100_000_000).expect("decode");
        assert_eq!(photo.media_type, "image/jpeg");
        assert_eq!(photo.thumbnail.extension, "jpg");
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        assert!(matches!(
            decode_photo(&png(200, 100), 10_000),
            Err(FileProblem::TooManyPixels {
                width: 200,
                height: 100,
                ..
            })
        ));
    }

    #[test]
    fn heif_is_named() {
        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
        assert!(matches!(
            decode_photo(&heic, 1000),
            Err(FileProblem::UnsupportedFormat("HEIC/HEIF"))
        ));
        assert!(matches!(
            decode_photo(b"definitely not", 1000),
            Err(FileProblem::UnrecognizedImage)
        ));
    }
}
