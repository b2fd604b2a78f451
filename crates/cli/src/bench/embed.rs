//! `hearth bench embed`: photo embeddings per second and peak memory with
//! EfficientNet-Lite0 on 224x224 batches, next to PyTorch running the same
//! network with the same weights on the same machine
//! (`bench/pytorch/run.sh embed`) in several variants (folded BatchNorm,
//! channels_last, TorchScript freezing, ...), the fastest of which is the
//! reference. Rounds interleave: each round times every variant, then
//! Hearth, so a slow spell of a shared machine falls on all alike.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hearth_ml::candle::{Device, Tensor};
use hearth_ml::train::median;

use super::reference::{self, Served};
use super::{Memory, vm_hwm_mib};
use crate::args::BenchEmbedArgs;

/// Largest difference allowed between a variant's embedding and Hearth's:
/// a variant that computes something else is not a reference.
const SAME_WORK: f32 = 1e-3;

/// One PyTorch variant's figures.
struct Variant {
    served: Served,
    ms: Vec<f64>,
    difference: f32,
}

pub fn run(args: BenchEmbedArgs) -> Result<ExitCode> {
    if args.batch == 0 || args.iterations == 0 {
        bail!("--batch and --iterations must be at least 1");
    }
    let device = Device::Cpu;
    let threads = hearth_ml::candle::utils::get_num_threads();
    let weights = hearth_ml::registry::resolve(hearth_personalize::photos::VISION_MODEL)
        .context("the photo model is not on this machine (run scripts/fetch-models.sh)")?;
    // Hearth's baseline: the peak before the model loads, measured as the
    // references measure theirs (VmHWM, which a child starts afresh at exec).
    let baseline = vm_hwm_mib();
    let model = hearth_personalize::photos::load_photo_model(None, &device)?.model;
    // The same input as the reference: sin(0.001 i), deterministic.
    let n = args.batch * 3 * 224 * 224;
    let input: Vec<f32> = (0..n).map(|i| ((i as f64) * 0.001).sin() as f32).collect();
    let x = Tensor::from_vec(input, (args.batch, 3, 224, 224), &device)?;
    let embed = || -> Result<Vec<f32>> {
        // Reading the values back makes sure the work is done.
        Ok(model.embed(&x)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let first: Vec<f32> = embed()?.into_iter().take(1280).collect();

    let mut variants = Vec::new();
    if !args.no_reference {
        let script = reference::script()?;
        for name in &args.variants {
            eprintln!(
                "pytorch: setting up variant {name} ({} embed)",
                script.display()
            );
            let mut command = Command::new("bash");
            command
                .arg(&script)
                .arg("embed")
                .arg("--weights")
                .arg(&weights)
                .args(["--batch", &args.batch.to_string()])
                .args(["--warmup", &args.warmup.to_string()])
                .args(["--iterations", &args.iterations.to_string()])
                .args(["--threads", &threads.to_string()])
                .args(["--variants", name, "--serve"]);
            let served = match Served::start(command, &format!("PyTorch variant {name}")) {
                Ok(served) => served,
                Err(error) => {
                    eprintln!("pytorch: variant {name} left out: {error:#}");
                    continue;
                }
            };
            let theirs: Vec<f32> = served.ready["first"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|v| v.as_f64().map(|v| v as f32))
                        .collect()
                })
                .unwrap_or_default();
            if theirs.len() != first.len() {
                bail!(
                    "PyTorch variant {name}: unexpected embedding length {}",
                    theirs.len()
                );
            }
            let difference = first
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            if difference > SAME_WORK {
                bail!(
                    "PyTorch variant {name} computes another embedding (differs from Hearth's by up to {difference:e}): not a reference"
                );
            }
            variants.push(Variant {
                served,
                ms: Vec::new(),
                difference,
            });
        }
        if variants.is_empty() {
            bail!("no PyTorch variant could run (see above); --no-reference skips the comparison");
        }
    }

    for _ in 0..args.warmup {
        embed()?;
    }
    let mut ours = Vec::new();
    for round in 0..args.rounds as usize {
        // Rotate which variant goes first, so none always follows Hearth.
        let count = variants.len();
        for k in 0..count {
            let variant = &mut variants[(round + k) % count];
            let reply = variant.served.round()?;
            let ms = reply["ms"]
                .as_array()
                .with_context(|| format!("{}: unexpected reply {reply}", variant.served.name))?;
            variant.ms.extend(ms.iter().filter_map(|v| v.as_f64()));
        }
        for _ in 0..args.iterations {
            let started = Instant::now();
            embed()?;
            ours.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        eprintln!(
            "hearth: round {}/{}: median {:.0} ms/batch",
            round + 1,
            args.rounds,
            median(&ours[ours.len() - args.iterations..])
        );
    }
    let hearth = Memory {
        peak: vm_hwm_mib(),
        baseline,
    };
    let ours_ms = median(&ours);
    let ips = |ms: f64| args.batch as f64 * 1000.0 / ms;

    println!(
        "bench embed: EfficientNet-Lite0, 224x224, batch {}, f32 CPU, {threads} threads, {} interleaved rounds of {} batches",
        args.batch, args.rounds, args.iterations
    );
    println!(
        "  hearth                {:>6.0} ms/batch  {:>6.1} images/s  {}",
        ours_ms,
        ips(ours_ms),
        hearth.describe("before the model")
    );
    let mut best: Option<(String, f64, Memory)> = None;
    for variant in variants {
        let name = variant.served.name.clone();
        let short = variant.served.ready["variant"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let setup = variant.served.ready["setup_s"].as_f64().unwrap_or(f64::NAN);
        let torch = variant.served.ready["torch"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let done = variant.served.finish()?;
        let (Some(peak), Some(imports)) =
            (done["peak_rss_mb"].as_f64(), done["import_rss_mb"].as_f64())
        else {
            bail!("{name}: unexpected final line {done}");
        };
        let memory = Memory {
            peak,
            baseline: imports,
        };
        let ms = median(&variant.ms);
        println!(
            "  pytorch {short:<13} {ms:>6.0} ms/batch  {:>6.1} images/s  {}  [torch {torch}, set-up {setup:.1} s, max |diff| {:.1e}]",
            ips(ms),
            memory.describe("after imports"),
            variant.difference
        );
        if best.as_ref().is_none_or(|(_, best_ms, _)| ms < *best_ms) {
            best = Some((short, ms, memory));
        }
    }
    if let Some((name, ms, memory)) = best {
        println!(
            "  ratio    hearth/pytorch {name} (fastest variant) = {:.2}x images/s, {:.2}x net peak RSS (raw {:.2}x)",
            ips(ours_ms) / ips(ms),
            hearth.net() / memory.net(),
            hearth.peak / memory.peak
        );
    }
    Ok(ExitCode::SUCCESS)
}
