//! Turning a photo into the network's input, one way for training and
//! inference alike.
//!
//! A model only sees what preprocessing gives it, so a classifier fine-tuned
//! on images prepared one way and run on images prepared another loses
//! accuracy for no visible reason. Everything goes through [`preprocess`]:
//!
//! 1. decode (any format the `image` crate reads here), apply the EXIF
//!    orientation so the network sees the photo as people do, convert to
//!    8-bit RGB;
//! 2. resize so the shorter side is [`RESIZE_SHORTER`] (256) with bicubic
//!    (Catmull-Rom) filtering, the longer side scaled in proportion and
//!    truncated, as torchvision's `Resize(256)` does;
//! 3. crop the central [`IMAGE_SIZE`]² (224²), the offsets rounded as
//!    torchvision's `CenterCrop` rounds them;
//! 4. map each 8-bit value `x` to `(x - 127.5) / 128` (EfficientNet-Lite's
//!    TensorFlow normalisation: [-0.996, 0.996]), channels first.

use std::io::Cursor;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::{MlError, Result};

/// Side of the square the network sees.
pub const IMAGE_SIZE: u32 = 224;

/// Length the shorter side is resized to before the centre crop.
pub const RESIZE_SHORTER: u32 = 256;

/// Longest side an image is resized to; wider panoramas are first cut to
/// their middle (which holds the crop).
const MAX_RESIZED_SIDE: u32 = 4096;

/// Input value subtracted before scaling.
pub const MEAN: f32 = 127.5;

/// Input values are divided by this after the mean is subtracted.
pub const SCALE: f32 = 128.0;

/// Decodes an encoded image (PNG, JPEG, WebP, ...) with its EXIF orientation
/// applied. `name` only labels errors.
pub fn decode(bytes: &[u8], name: &Path) -> Result<DynamicImage> {
    let bad = |e: image::ImageError| MlError::InvalidRequest(format!("{}: {e}", name.display()));
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MlError::io(name, e))?;
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(bad)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Resizes (shorter side [`RESIZE_SHORTER`], bicubic) and centre-crops an
/// image to [`IMAGE_SIZE`]², as 8-bit RGB.
pub fn resize_and_crop(image: &DynamicImage) -> Result<RgbImage> {
    let mut rgb = image.to_rgb8();
    let (mut width, mut height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(MlError::InvalidRequest("the image is empty".into()));
    }
    // An extreme panorama would resize to a huge strip of which only the
    // middle is kept: keep the middle of the original instead.
    let longest = (u64::from(width.min(height)) * u64::from(MAX_RESIZED_SIDE))
        .div_ceil(u64::from(RESIZE_SHORTER))
        .min(u64::from(u32::MAX)) as u32;
    if width.max(height) > longest {
        rgb = if width > height {
            image::imageops::crop_imm(&rgb, (width - longest) / 2, 0, longest, height).to_image()
        } else {
            image::imageops::crop_imm(&rgb, 0, (height - longest) / 2, width, longest).to_image()
        };
        (width, height) = rgb.dimensions();
    }
    let shorter = u64::from(width.min(height));
    // torchvision: the longer side is int(256 * long / short).
    let scaled = |side: u32| -> u32 {
        if u64::from(side) == shorter {
            RESIZE_SHORTER
        } else {
            (u64::from(RESIZE_SHORTER) * u64::from(side) / shorter) as u32
        }
    };
    let (new_width, new_height) = (scaled(width), scaled(height));
    let resized = image::imageops::resize(&rgb, new_width, new_height, FilterType::CatmullRom);
    let left = crop_offset(new_width, IMAGE_SIZE);
    let top = crop_offset(new_height, IMAGE_SIZE);
    Ok(image::imageops::crop_imm(&resized, left, top, IMAGE_SIZE, IMAGE_SIZE).to_image())
}

/// torchvision's centre-crop offset: `round((size - crop) / 2)`, halves to
/// even as Python rounds.
fn crop_offset(size: u32, crop: u32) -> u32 {
    let extra = size.saturating_sub(crop);
    let half = extra / 2;
    if extra % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The network's input for one image: a `(3, 224, 224)` f32 tensor,
/// channels first, values `(x - 127.5) / 128`.
pub fn preprocess(image: &DynamicImage, device: &Device) -> Result<Tensor> {
    to_tensor(&resize_and_crop(image)?, device)
}

/// A prepared `IMAGE_SIZE`² RGB crop as the network's input (step 4).
pub fn to_tensor(crop: &RgbImage, device: &Device) -> Result<Tensor> {
    let side = IMAGE_SIZE as usize;
    if crop.dimensions() != (IMAGE_SIZE, IMAGE_SIZE) {
        return Err(MlError::InvalidRequest(format!(
            "expected a {side}x{side} crop, got {:?}",
            crop.dimensions()
        )));
    }
    let plane = side * side;
    let mut chw = vec![0f32; 3 * plane];
    for (i, pixel) in crop.pixels().enumerate() {
        for (channel, &value) in pixel.0.iter().enumerate() {
            chw[channel * plane + i] = (f32::from(value) - MEAN) / SCALE;
        }
    }
    Ok(Tensor::from_vec(chw, (3, side, side), device)?)
}

/// Smallest and largest share of the image's area a random crop keeps.
/// torchvision's default keeps as little as 8%; with a handful of personal
/// photos a crop that small often loses the very thing the label is about.
const CROP_AREA: (f64, f64) = (0.35, 1.0);

/// Aspect ratios a random crop may have (torchvision's default).
const CROP_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

/// A training view of an image: a random resized crop (area share
/// [`CROP_AREA`], aspect [`CROP_RATIO`], as torchvision's
/// `RandomResizedCrop` picks it) resized to `IMAGE_SIZE`², mirrored half
/// of the time. `uniform` supplies numbers in `[0, 1)`. Feed the result to
/// [`to_tensor`]: the normalisation is the one inference uses.
pub fn augment(image: &DynamicImage, mut uniform: impl FnMut() -> f64) -> Result<RgbImage> {
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(MlError::InvalidRequest("the image is empty".into()));
    }
    let area = f64::from(width) * f64::from(height);
    let mut window = None;
    for _ in 0..10 {
        let share = CROP_AREA.0 + (CROP_AREA.1 - CROP_AREA.0) * uniform();
        let log_ratio = CROP_RATIO.0.ln() + (CROP_RATIO.1.ln() - CROP_RATIO.0.ln()) * uniform();
        let ratio = log_ratio.exp();
        let w = (area * share * ratio).sqrt().round() as u32;
        let h = (area * share / ratio).sqrt().round() as u32;
        if (1..=width).contains(&w) && (1..=height).contains(&h) {
            let left = (f64::from(width - w + 1) * uniform()) as u32;
            let top = (f64::from(height - h + 1) * uniform()) as u32;
            window = Some((left.min(width - w), top.min(height - h), w, h));
            break;
        }
    }
    // Like torchvision, fall back to the largest central crop of an
    // allowed aspect ratio.
    let (left, top, w, h) = window.unwrap_or_else(|| {
        let ratio = f64::from(width) / f64::from(height);
        let (w, h) = if ratio < CROP_RATIO.0 {
            (
                width,
                ((f64::from(width) / CROP_RATIO.0).round() as u32).clamp(1, height),
            )
        } else if ratio > CROP_RATIO.1 {
            (
                ((f64::from(height) * CROP_RATIO.1).round() as u32).clamp(1, width),
                height,
            )
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    });
    let crop = image::imageops::crop_imm(&rgb, left, top, w, h).to_image();
    let mut view = image::imageops::resize(&crop, IMAGE_SIZE, IMAGE_SIZE, FilterType::CatmullRom);
    if uniform() < 0.5 {
        image::imageops::flip_horizontal_in_place(&mut view);
    }
    Ok(view)
}

/// Reads, decodes and preprocesses the image file at `path`.
pub fn load_image(path: &Path, device: &Device) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
    preprocess(&decode(&bytes, path)?, device)
}

/// Preprocesses several images into one `(batch, 3, 224, 224)` tensor.
pub fn preprocess_batch(images: &[DynamicImage], device: &Device) -> Result<Tensor> {
    if images.is_empty() {
        return Err(MlError::InvalidRequest("no images to preprocess".into()));
    }
    let tensors = images
        .iter()
        .map(|image| preprocess(image, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0)?)
}

/// Reads, decodes and preprocesses image files into one
/// `(batch, 3, 224, 224)` tensor.
pub fn load_batch(paths: &[&Path], device: &Device) -> Result<Tensor> {
    if paths.is_empty() {
        return Err(MlError::InvalidRequest("no images to preprocess".into()));
    }
    let tensors = paths
        .iter()
        .map(|path| load_image(path, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_round_like_python() {
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(384, 224), 80);
        assert_eq!(crop_offset(385, 224), 80); // 80.5 -> 80
        assert_eq!(crop_offset(387, 224), 82); // 81.5 -> 82
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn shape_layout_and_scale() {
        // A 300x200 image: left half red, right half blue.
        let image = RgbImage::from_fn(300, 200, |x, _| {
            if x < 150 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let t = preprocess(&DynamicImage::ImageRgb8(image), &Device::Cpu).expect("preprocess");
        assert_eq!(t.dims(), &[3, 224, 224]);
        let v: Vec<Vec<Vec<f32>>> = t.to_vec3().expect("values");
        let high = (255.0 - MEAN) / SCALE;
        let low = -MEAN / SCALE;
        // Top-left is red, top-right blue, channels first.
        assert_eq!((v[0][0][0], v[1][0][0], v[2][0][0]), (high, low, low));
        assert_eq!((v[0][0][223], v[1][0][223], v[2][0][223]), (low, low, high));
    }

    #[test]
    fn tiny_and_portrait_images_are_handled() {
        for (w, h) in [(1, 1), (3, 400), (400, 3), (2, 100_000)] {
            let image = DynamicImage::ImageRgb8(RgbImage::new(w, h));
            let crop = resize_and_crop(&image).expect("crop");
            assert_eq!(crop.dimensions(), (224, 224));
        }
        let batch = preprocess_batch(
            &[
                DynamicImage::ImageRgb8(RgbImage::new(10, 20)),
                DynamicImage::ImageLuma8(image::GrayImage::new(30, 20)),
            ],
            &Device::Cpu,
        )
        .expect("batch");
        assert_eq!(batch.dims(), &[2, 3, 224, 224]);
        assert!(decode(b"not an image", Path::new("x")).is_err());
    }
}
