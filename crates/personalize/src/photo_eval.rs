//! How well photo personalization learns from a few examples, measured on
//! real images whose answers are known: Fashion-MNIST's ten classes stand
//! in for a person's labels.
//!
//! For 5, 10 and 20 labelled examples per class (nested: the 5 are among
//! the 10), accuracy on a class-balanced test sample, for several random
//! draws of the examples (which five photos a person labels moves accuracy
//! by a few points, more than the methods differ by), for
//! (a) the tagger's head on frozen embeddings, (b) the last blocks
//! fine-tuned with augmentation and the head refitted on the fine-tuned
//! embeddings, (c) a nearest-class-centroid baseline on the frozen
//! embeddings. A prediction is the label with the highest calibrated
//! confidence: what `hearth photos tag` would put first.
//!
//! The data comes from Debian's `dataset-fashion-mnist` package (IDX
//! files, gzip-compressed); the images are 28x28 grey and go through the
//! same preprocessing as any photo.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hearth_ml::MlError;
use hearth_ml::candle::Tensor;
use hearth_ml::image::{DynamicImage, GrayImage};
use hearth_ml::rng::SplitMix64;
use hearth_ml::tagger::{Known, Tagger, TaggerConfig};
use hearth_ml::vision::finetune::{FineTuneConfig, fine_tune};
use hearth_ml::vision::{EfficientNet, preprocess};
use hearth_progress::{CancelToken, Progress};
use serde::Serialize;

use crate::error::{PersonalizeError, Result};

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Side of a Fashion-MNIST image.
const SIDE: usize = 28;

/// Largest decompressed IDX file accepted (the training images are 47 MB).
const MAX_IDX_BYTES: u64 = 64 << 20;

/// One split of Fashion-MNIST: grey 28x28 images and their class.
#[derive(Debug, Clone)]
pub struct LabelledImages {
    /// Row-major pixels, `SIDE * SIDE` per image.
    pixels: Vec<u8>,
    /// Class of each image, `0..10`.
    pub labels: Vec<u8>,
}

impl LabelledImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `index` as a picture.
    pub fn image(&self, index: usize) -> Option<DynamicImage> {
        let plane = SIDE * SIDE;
        let pixels = self.pixels.get(index * plane..(index + 1) * plane)?;
        GrayImage::from_raw(SIDE as u32, SIDE as u32, pixels.to_vec()).map(DynamicImage::ImageLuma8)
    }
}

/// Fashion-MNIST's training and test splits.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// 60,000 training images.
    pub train: LabelledImages,
    /// 10,000 test images.
    pub test: LabelledImages,
}

impl FashionMnist {
    /// Reads the four IDX files (gzip-compressed or not) from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let split = |images: &str, labels_file: &str| -> Result<LabelledImages> {
            let (image_dims, pixels) = read_idx(&dir.join(images), 3)?;
            let (label_dims, labels) = read_idx(&dir.join(labels_file), 1)?;
            if image_dims[1..] != [SIDE, SIDE] || image_dims[0] != label_dims[0] {
                return Err(bad(
                    &dir.join(images),
                    format!("{image_dims:?} images for {label_dims:?} labels"),
                ));
            }
            if let Some(label) = labels.iter().find(|&&l| l >= 10) {
                return Err(bad(&dir.join(labels_file), format!("class {label}")));
            }
            Ok(LabelledImages { pixels, labels })
        };
        Ok(FashionMnist {
            train: split("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        })
    }
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> PersonalizeError {
    PersonalizeError::NoData(format!(
        "{}: not a usable IDX file: {reason}",
        path.display()
    ))
}

/// Reads an IDX file (`name` or `name.gz`) of unsigned bytes with `rank`
/// dimensions: its dimensions and its data.
pub fn read_idx(name: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let gz = PathBuf::from(format!("{}.gz", name.display()));
    let (path, raw) = if gz.exists() {
        (gz.clone(), read_file(&gz)?)
    } else {
        (name.to_path_buf(), read_file(name)?)
    };
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(&path, e))?;
        out
    } else {
        raw
    };
    if bytes.len() as u64 > MAX_IDX_BYTES {
        return Err(bad(&path, "larger than any Fashion-MNIST file"));
    }
    // Magic: two zero bytes, the type (0x08: unsigned byte), the rank.
    let header = 4 + 4 * rank;
    if bytes.len() < header || bytes[..3] != [0, 0, 8] || usize::from(bytes[3]) != rank {
        return Err(bad(
            &path,
            format!("not an unsigned-byte IDX file of rank {rank}"),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&path, "dimensions overflow"))?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(bad(
            &path,
            format!("{dims:?} needs {expected} bytes, found {}", data.len()),
        ));
    }
    Ok((dims, data.to_vec()))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| PersonalizeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// What to evaluate.
#[derive(Debug, Clone, Serialize)]
pub struct FewShotConfig {
    /// Labelled examples per class, one row each.
    pub shots: Vec<usize>,
    /// Test images (balanced over the classes).
    pub test_images: usize,
    /// Seed for picking examples and test images.
    pub seed: u64,
    /// Independent draws of the labelled examples (the test images stay).
    pub draws: usize,
    /// The tagger's head.
    pub tagger: TaggerConfig,
    /// Fine-tuning (b); `None` leaves it out.
    pub fine_tune: Option<FineTuneConfig>,
}

impl Default for FewShotConfig {
    fn default() -> Self {
        FewShotConfig {
            shots: vec![5, 10, 20],
            test_images: 1000,
            seed: 2024,
            draws: 3,
            tagger: TaggerConfig::default(),
            fine_tune: Some(FineTuneConfig::default()),
        }
    }
}

/// Accuracy at one number of examples per class, one value per draw of
/// the examples.
#[derive(Debug, Clone, Serialize)]
pub struct FewShotRow {
    /// Labelled examples per class.
    pub shots: usize,
    /// (a) head on frozen embeddings: top-1 accuracy.
    pub head: Vec<f32>,
    /// (a)'s yes/no decision per label (its confidence against the label's
    /// threshold, as `hearth photos tag` marks suggestions): balanced
    /// accuracy, the mean over labels of (true positive rate + true
    /// negative rate) / 2.
    pub head_decisions: Vec<f32>,
    /// (a)'s expected calibration error over every (image, label)
    /// confidence, in 10 equal bins: how far "70% sure" is from being right
    /// 70% of the time.
    pub head_calibration_error: Vec<f32>,
    /// (b) last blocks fine-tuned, head refitted (empty when left out).
    pub fine_tuned: Vec<f32>,
    /// (c) nearest class centroid on frozen embeddings.
    pub centroid: Vec<f32>,
    /// Seconds fine-tuning took (data preparation included).
    pub fine_tune_seconds: Vec<f64>,
}

/// Mean, lowest and highest of some accuracies (`None` when there are none).
pub fn summary(values: &[f32]) -> Option<(f32, f32, f32)> {
    if values.is_empty() {
        return None;
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let low = values.iter().copied().fold(f32::INFINITY, f32::min);
    let high = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    Some((mean, low, high))
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct FewShotReport {
    /// Test images scored.
    pub test_images: usize,
    /// Draws of the examples completed.
    pub draws: usize,
    /// One row per number of examples.
    pub rows: Vec<FewShotRow>,
    /// Whether it was cancelled (rows so far are complete).
    pub cancelled: bool,
}

/// Images embedded together.
const BATCH: usize = 16;

/// Runs the few-shot evaluation of `model` on `data`.
pub fn evaluate_few_shot(
    model: &EfficientNet,
    data: &FashionMnist,
    config: &FewShotConfig,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<FewShotReport> {
    let classes = FASHION_MNIST_CLASSES.len();
    let most = config.shots.iter().copied().max().unwrap_or(0);
    if most == 0 || config.test_images < classes || config.draws == 0 {
        return Err(PersonalizeError::NoData(
            "ask for at least one example per class, one test image per class and one draw".into(),
        ));
    }
    let mut rng = SplitMix64::new(config.seed);
    // Nested example sets: the first `s` of each class's shuffled list.
    let per_class = |split: &LabelledImages, n: usize, rng: &mut SplitMix64| {
        let mut picked = Vec::new();
        for class in 0..classes {
            let mut members: Vec<usize> = (0..split.len())
                .filter(|&i| usize::from(split.labels[i]) == class)
                .collect();
            rng.shuffle(&mut members);
            members.truncate(n);
            picked.push(members);
        }
        picked
    };
    let examples = per_class(&data.train, most, &mut rng);
    if examples.iter().any(|m| m.len() < most) {
        return Err(PersonalizeError::NoData(format!(
            "fewer than {most} training images in some class"
        )));
    }
    let test: Vec<usize> = per_class(&data.test, config.test_images / classes, &mut rng)
        .into_iter()
        .flatten()
        .collect();
    let truth: Vec<usize> = test
        .iter()
        .map(|&i| usize::from(data.test.labels[i]))
        .collect();

    let from_block = config.fine_tune.as_ref().map_or(model.num_blocks(), |f| {
        model.num_blocks().saturating_sub(f.blocks)
    });
    let image = |split: &LabelledImages, i: usize| {
        split
            .image(i)
            .ok_or_else(|| PersonalizeError::NoData(format!("image {i} is missing")))
    };

    // Test images: the frozen prefix once (fine-tuning starts after it),
    // then the frozen tail.
    progress.begin("Embedding test images", Some(test.len() as u64));
    let mut test_prefix = Vec::new();
    for (n, chunk) in test.chunks(BATCH).enumerate() {
        if cancel.is_cancelled() {
            progress.end();
            return Ok(FewShotReport {
                test_images: test.len(),
                draws: 0,
                rows: Vec::new(),
                cancelled: true,
            });
        }
        let inputs = chunk
            .iter()
            .map(|&i| Ok(preprocess(&image(&data.test, i)?, model.device())?))
            .collect::<Result<Vec<_>>>()?;
        test_prefix.push(model.features_until(&stack(&inputs)?, from_block)?);
        progress.advance(((n + 1) * BATCH).min(test.len()) as u64);
    }
    progress.end();
    let test_prefix = cat(&test_prefix)?;
    let frozen_test = tail_embeddings(model, &test_prefix, from_block)?;

    let mut rows: Vec<FewShotRow> = config
        .shots
        .iter()
        .map(|&shots| FewShotRow {
            shots,
            head: Vec::new(),
            head_decisions: Vec::new(),
            head_calibration_error: Vec::new(),
            fine_tuned: Vec::new(),
            centroid: Vec::new(),
            fine_tune_seconds: Vec::new(),
        })
        .collect();
    let report = |rows: Vec<FewShotRow>, draws: usize, cancelled: bool| FewShotReport {
        test_images: test.len(),
        draws,
        rows,
        cancelled,
    };
    for draw in 0..config.draws {
        // The first draw is the one picked with the test images; later ones
        // come from streams of their own.
        let examples = if draw == 0 {
            examples.clone()
        } else {
            per_class(
                &data.train,
                most,
                &mut SplitMix64::fork(config.seed, draw as u64),
            )
        };
        let train_images: Vec<Vec<DynamicImage>> = examples
            .iter()
            .map(|members| members.iter().map(|&i| image(&data.train, i)).collect())
            .collect::<Result<_>>()?;
        let frozen_train: Vec<Vec<Vec<f32>>> = train_images
            .iter()
            .map(|images| embed_images(model, images))
            .collect::<Result<_>>()?;
        for row in rows.iter_mut() {
            if cancel.is_cancelled() {
                return Ok(report(rows, draw, true));
            }
            let shots = row.shots;
            let (rows_train, targets) = few(&frozen_train, shots);
            let head = head_scores(&rows_train, &targets, &frozen_test, &truth, &config.tagger)?;
            let centroid = centroid_accuracy(&rows_train, &targets, &frozen_test, &truth);
            let mut fine_tuned = None;
            if let Some(fine_config) = &config.fine_tune {
                let started = Instant::now();
                let mut tuned = model.clone();
                let images: Vec<DynamicImage> = train_images
                    .iter()
                    .flat_map(|images| images[..shots].iter().cloned())
                    .collect();
                let outcome = fine_tune(
                    &mut tuned,
                    &images,
                    &targets,
                    fine_config,
                    None,
                    progress,
                    cancel,
                )?;
                if outcome.cancelled {
                    return Ok(report(rows, draw, true));
                }
                let seconds = started.elapsed().as_secs_f64();
                let tuned_train = embed_images(&tuned, &images)?;
                let tuned_test = tail_embeddings(&tuned, &test_prefix, from_block)?;
                let scores =
                    head_scores(&tuned_train, &targets, &tuned_test, &truth, &config.tagger)?;
                row.fine_tune_seconds.push(seconds);
                fine_tuned = Some(scores.top1);
            }
            progress.note(&format!(
                "draw {}, {shots} per class: head {:.1}%, fine-tuned {}, centroid {:.1}%",
                draw + 1,
                100.0 * head.top1,
                fine_tuned.map_or("-".to_owned(), |a| format!("{:.1}%", 100.0 * a)),
                100.0 * centroid
            ));
            row.head.push(head.top1);
            row.head_decisions.push(head.decisions);
            row.head_calibration_error.push(head.calibration_error);
            row.centroid.push(centroid);
            row.fine_tuned.extend(fine_tuned);
        }
    }
    Ok(report(rows, config.draws, false))
}

fn stack(inputs: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::stack(inputs, 0).map_err(MlError::from)?)
}

fn cat(parts: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::cat(parts, 0).map_err(MlError::from)?)
}

/// The first `shots` embeddings of every class, with one-hot targets.
fn few(per_class: &[Vec<Vec<f32>>], shots: usize) -> (Vec<Vec<f32>>, Vec<Vec<Known>>) {
    let classes = per_class.len();
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (class, embeddings) in per_class.iter().enumerate() {
        for embedding in embeddings.iter().take(shots) {
            rows.push(embedding.clone());
            targets.push(
                (0..classes)
                    .map(|c| {
                        if c == class {
                            Known::Positive
                        } else {
                            Known::Negative
                        }
                    })
                    .collect(),
            );
        }
    }
    (rows, targets)
}

fn embed_images(model: &EfficientNet, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(BATCH) {
        let inputs = chunk
            .iter()
            .map(|image| Ok(preprocess(image, model.device())?))
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<Vec<f32>> = model
            .embed(&stack(&inputs)?)?
            .to_vec2()
            .map_err(MlError::from)?;
        out.extend(rows);
    }
    Ok(out)
}

fn tail_embeddings(
    model: &EfficientNet,
    prefix: &Tensor,
    from_block: usize,
) -> Result<Vec<Vec<f32>>> {
    let n = prefix.dim(0).map_err(MlError::from)?;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(BATCH) {
        let len = BATCH.min(n - start);
        let part = prefix.narrow(0, start, len).map_err(MlError::from)?;
        let rows: Vec<Vec<f32>> = model
            .forward_tail(&part, from_block)?
            .to_vec2()
            .map_err(MlError::from)?;
        out.extend(rows);
    }
    Ok(out)
}

/// How a head did on the test images.
struct HeadScores {
    /// Its most confident label is the right one.
    top1: f32,
    /// See [`FewShotRow::head_decisions`].
    decisions: f32,
    /// See [`FewShotRow::head_calibration_error`].
    calibration_error: f32,
}

/// The tagger trained on `rows`, scored on `test`.
fn head_scores(
    rows: &[Vec<f32>],
    targets: &[Vec<Known>],
    test: &[Vec<f32>],
    truth: &[usize],
    config: &TaggerConfig,
) -> Result<HeadScores> {
    let labels: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let tagger = Tagger::train(&labels, rows, targets, config)?;
    let mut correct = 0usize;
    // Per label: [true negatives, false positives, false negatives, true positives].
    let mut outcomes = vec![[0usize; 4]; labels.len()];
    // Per confidence bin: (count, sum of confidences, positives).
    let mut bins = [(0usize, 0f64, 0usize); 10];
    for (embedding, &class) in test.iter().zip(truth) {
        let suggestions = tagger.suggest(embedding)?;
        if suggestions
            .first()
            .is_some_and(|s| s.label == labels[class])
        {
            correct += 1;
        }
        for suggestion in &suggestions {
            let Some(label) = labels.iter().position(|l| *l == suggestion.label) else {
                continue;
            };
            let positive = label == class;
            outcomes[label][usize::from(positive) * 2 + usize::from(suggestion.suggested)] += 1;
            let bin = &mut bins[((suggestion.confidence * 10.0) as usize).min(9)];
            bin.0 += 1;
            bin.1 += f64::from(suggestion.confidence);
            bin.2 += usize::from(positive);
        }
    }
    let rate = |hits: usize, misses: usize| hits as f32 / (hits + misses).max(1) as f32;
    let decisions = outcomes
        .iter()
        .map(|[tn, fp, fn_, tp]| (rate(*tp, *fn_) + rate(*tn, *fp)) / 2.0)
        .sum::<f32>()
        / labels.len() as f32;
    let total: usize = bins.iter().map(|b| b.0).sum();
    let calibration_error = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(_, confidence, positives)| (confidence - positives as f64).abs() / total as f64)
        .sum::<f64>() as f32;
    Ok(HeadScores {
        top1: correct as f32 / test.len().max(1) as f32,
        decisions,
        calibration_error,
    })
}

/// Nearest class centroid of L2-normalised embeddings, by cosine.
fn centroid_accuracy(
    rows: &[Vec<f32>],
    targets: &[Vec<Known>],
    test: &[Vec<f32>],
    truth: &[usize],
) -> f32 {
    let unit = |v: &[f32]| -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / norm).collect()
    };
    let classes = targets.first().map_or(0, Vec::len);
    let dim = rows.first().map_or(0, Vec::len);
    let mut centroids = vec![vec![0f32; dim]; classes];
    for (row, target) in rows.iter().zip(targets) {
        if let Some(class) = target.iter().position(|k| *k == Known::Positive) {
            for (c, x) in centroids[class].iter_mut().zip(unit(row)) {
                *c += x;
            }
        }
    }
    let centroids: Vec<Vec<f32>> = centroids.iter().map(|c| unit(c)).collect();
    let correct = test
        .iter()
        .zip(truth)
        .filter(|(embedding, class)| {
            let e = unit(embedding);
            let best = centroids
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.iter().zip(&e).map(|(a, b)| a * b).sum::<f32>()))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            best == Some(**class)
        })
        .count();
    correct as f32 / test.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_idx(path: &Path, dims: &[u32], data: &[u8], gzip: bool) {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(data);
        let bytes = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&bytes).expect("gzip");
            encoder.finish().expect("gzip")
        } else {
            bytes
        };
        let name = if gzip {
            format!("{}.gz", path.display())
        } else {
            path.display().to_string()
        };
        std::fs::write(name, bytes).expect("write");
    }

    #[test]
    fn reads_idx_files_and_refuses_broken_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 251) as u8).collect();
        write_idx(
            &dir.path().join("train-images-idx3-ubyte"),
            &[2, 28, 28],
            &images,
            true,
        );
        write_idx(
            &dir.path().join("train-labels-idx1-ubyte"),
            &[2],
            &[3, 9],
            false,
        );
        write_idx(
            &dir.path().join("t10k-images-idx3-ubyte"),
            &[2, 28, 28],
            &images,
            false,
        );
        write_idx(
            &dir.path().join("t10k-labels-idx1-ubyte"),
            &[2],
            &[0, 1],
            true,
        );
        let data = FashionMnist::load(dir.path()).expect("load");
        assert_eq!(data.train.labels, [3, 9]);
        assert_eq!(data.test.len(), 2);
        let image = data.train.image(1).expect("image").to_luma8();
        assert_eq!(image.dimensions(), (28, 28));
        assert_eq!(image.as_raw()[..], images[784..]);
        assert!(data.train.image(2).is_none());

        // Truncated data, a wrong type byte, a class out of range.
        write_idx(
            &dir.path().join("t10k-labels-idx1-ubyte"),
            &[3],
            &[0, 1],
            true,
        );
        assert!(FashionMnist::load(dir.path()).is_err());
        write_idx(
            &dir.path().join("t10k-labels-idx1-ubyte"),
            &[2],
            &[0, 10],
            true,
        );
        let error = FashionMnist::load(dir.path()).expect_err("class 10");
        assert!(error.to_string().contains("class 10"), "{error}");
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            b"\x1f\x8bnot gzip",
        )
        .expect("write");
        assert!(FashionMnist::load(dir.path()).is_err());
        assert!(FashionMnist::load(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn centroids_classify_clusters() {
        let rows = vec![
            vec![1.0, 0.1],
            vec![0.9, 0.0],
            vec![0.0, 1.0],
            vec![0.1, 0.8],
        ];
        let targets = vec![
            vec![Known::Positive, Known::Negative],
            vec![Known::Positive, Known::Negative],
            vec![Known::Negative, Known::Positive],
            vec![Known::Negative, Known::Positive],
        ];
        let test = vec![vec![2.0, 0.3], vec![0.2, 3.0], vec![1.0, 0.9]];
        let accuracy = centroid_accuracy(&rows, &targets, &test, &[0, 1, 0]);
        assert!((accuracy - 1.0).abs() < 1e-6, "{accuracy}");
    }
}
