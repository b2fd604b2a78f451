//! `hearth bench embed`: photo embeddings per second and peak memory with
//! EfficientNet-Lite0 on 224x224 batches, next to PyTorch running the same
//! architecture with the same weights on the same machine
//! (`bench/pytorch/run.sh embed`).

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hearth_ml::candle::{Device, Tensor};
use serde_json::Value;

use super::peak_rss_self_mib;
use crate::args::BenchEmbedArgs;

pub fn run(args: BenchEmbedArgs) -> Result<ExitCode> {
    if args.batch == 0 || args.iterations == 0 {
        bail!("--batch and --iterations must be at least 1");
    }
    let device = Device::Cpu;
    let threads = hearth_ml::candle::utils::get_num_threads();
    let weights = hearth_ml::registry::resolve(hearth_personalize::photos::VISION_MODEL)
        .context("the photo model is not on this machine (run scripts/fetch-models.sh)")?;
    // The reference runs first, before this process has grown: on Linux a
    // child's peak RSS starts from its parent's at fork.
    let reference = if args.no_reference {
        None
    } else {
        Some(run_reference(&args, threads, &weights)?)
    };
    let model = hearth_personalize::photos::load_photo_model(None, &device)?.model;
    // The same input as the reference: sin(0.001 i), deterministic.
    let n = args.batch * 3 * 224 * 224;
    let input: Vec<f32> = (0..n).map(|i| ((i as f64) * 0.001).sin() as f32).collect();
    let x = Tensor::from_vec(input, (args.batch, 3, 224, 224), &device)?;
    let mut seconds = Vec::new();
    for iteration in 0..args.warmup + args.iterations {
        let started = Instant::now();
        let embedding = model.embed(&x)?;
        // Make sure the work is done, as the reference's tensors are.
        let _ = embedding.flatten_all()?.to_vec1::<f32>()?;
        if iteration >= args.warmup {
            seconds.push(started.elapsed().as_secs_f64());
        }
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    let images_per_second = args.batch as f64 / median;
    let rss = peak_rss_self_mib();
    println!(
        "bench embed: EfficientNet-Lite0, 224x224, batch {}, f32 CPU, {threads} threads",
        args.batch
    );
    println!(
        "  hearth   {:.0} ms/batch (median of {}), {images_per_second:.1} images/s, peak RSS {rss:.0} MiB",
        median * 1000.0,
        seconds.len()
    );
    let Some(reference) = reference else {
        return Ok(ExitCode::SUCCESS);
    };
    let number = |key: &str| reference[key].as_f64();
    let (Some(torch_ips), Some(torch_ms), Some(torch_rss)) = (
        number("images_per_s"),
        number("ms_per_batch_median"),
        number("peak_rss_mb"),
    ) else {
        bail!("unexpected reference output: {reference}");
    };
    println!(
        "  pytorch  {torch_ms:.0} ms/batch (median), {torch_ips:.1} images/s, peak RSS {torch_rss:.0} MiB  [torch {}]",
        reference["torch"].as_str().unwrap_or("?")
    );
    println!(
        "  ratio    hearth/pytorch = {:.2}x images/s, {:.2}x peak RSS",
        images_per_second / torch_ips,
        rss / torch_rss
    );
    Ok(ExitCode::SUCCESS)
}

fn run_reference(
    args: &BenchEmbedArgs,
    threads: usize,
    weights: &std::path::Path,
) -> Result<Value> {
    let script = super::train::reference_script();
    eprintln!("pytorch: running {} embed", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .arg("embed")
        .arg("--weights")
        .arg(weights)
        .args(["--batch", &args.batch.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--iterations", &args.iterations.to_string()])
        .args(["--threads", &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running the PyTorch reference")?;
    if !output.status.success() {
        bail!("the PyTorch reference failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(line).context("reading the PyTorch reference's JSON line")
}
