//! `hearth bench train`: LoRA training throughput and memory on the
//! SmolLM2-135M workload, and generation speed with the KV cache, each next
//! to PyTorch + PEFT running the same workload on the same machine
//! (`bench/pytorch/run.sh`, which installs its own Python environment).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Result, bail};
use hearth_ml::candle::{DType, Device, Tensor};
use hearth_ml::candle_nn::VarBuilder;
use hearth_ml::lora::LoraConfig;
use hearth_ml::models::llama::{Config, Llama, random_weights};
use hearth_ml::train::{Engine, TrainConfig, measure_steps, median};
use hearth_ml::{KvCache, Target};
use serde_json::Value;

use super::{Memory, reference, vm_hwm_mib};
use crate::args::BenchTrainArgs;

/// SmolLM2-135M's shape, for random weights when the real ones are absent.
fn smollm2_shape() -> Config {
    Config {
        vocab_size: 49_152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        attention_bias: false,
    }
}

pub fn run(args: BenchTrainArgs) -> Result<ExitCode> {
    let device = Device::Cpu;
    let threads = hearth_ml::candle::utils::get_num_threads();
    let targets = args.targets.0.clone();
    let model_path = match &args.model {
        Some(model) => hearth_ml::registry::resolve(model).ok(),
        None => hearth_ml::registry::default_model("text")
            .ok()
            .and_then(|entry| entry.local_path()),
    };
    // Hearth's baseline: the peak before the model loads, measured as the
    // reference measures its own after its imports (VmHWM).
    let baseline = vm_hwm_mib();
    let reference_weights = match &model_path {
        Some(path) if !args.no_reference => Some(reference_weights(path)?),
        _ => None,
    };
    let (model, weights) = match hearth_personalize::load_model(args.model.as_deref(), &device) {
        Ok((name, loaded)) => (
            loaded.model,
            format!("{name} ({}, dequantized)", loaded.info.format),
        ),
        Err(error) if args.model.is_none() => {
            eprintln!("default model not present ({error}); using random weights of its shape");
            let cfg = smollm2_shape();
            let weights = random_weights(&cfg, 1, &device)?;
            let model = Llama::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, &device))?;
            (model, "random weights, SmolLM2-135M shape".to_owned())
        }
        Err(error) => return Err(error.into()),
    };
    // Unchanged tensors are only re-referenced (candle's `to_dtype`).
    let model = model.with_weight_dtype(hearth_ml::train::parse_base_dtype(&args.base_dtype)?)?;
    let dtype_name = args.base_dtype.as_str();

    let config = TrainConfig {
        lora: LoraConfig {
            rank: args.rank,
            alpha: 2.0 * args.rank as f64,
            dropout: 0.0,
            targets: targets.clone(),
        },
        steps: (args.warmup + args.steps) as u64,
        batch_size: args.batch,
        seq_len: args.seq,
        learning_rate: 1e-4,
        warmup_steps: 0,
        // The reference does not clip; neither does this measurement.
        max_grad_norm: 0.0,
        base_dtype: args.base_dtype.clone(),
        ..TrainConfig::default()
    };
    let engine = if args.autograd {
        Engine::Autograd
    } else {
        Engine::Auto
    };
    let tokens_per_step = (args.batch * args.seq) as f64;

    // Interleaved rounds, so a slow spell of a shared machine falls on
    // both sides alike, and the side that goes first alternates: a side
    // that always runs right after the other's multi-GB process starts on
    // a machine still settling from it (in `bench generate`, Hearth's side
    // that always followed the PyTorch reference swung from 0.91x to
    // 1.24x llama.cpp between runs). The reference reports its own peak
    // RSS (VmHWM, which does not count this process's memory at fork).
    let mut ours: Vec<f64> = Vec::new();
    let mut theirs: Vec<f64> = Vec::new();
    let mut reference: Option<Value> = None;
    let mut torch_memory: Option<Memory> = None;
    let mut reference_round = |round: u32| -> Result<()> {
        if args.no_reference {
            return Ok(());
        }
        let generate = if round == 1 { args.generate } else { 0 };
        let result = run_reference(
            &args,
            &targets,
            threads,
            reference_weights.as_ref(),
            generate,
        )?;
        check_same_shape(model.config(), &result)?;
        let steps = result["ms_per_step"]
            .as_array()
            .map(|steps| steps.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default();
        let (Some(peak), Some(imports)) = (
            result["peak_rss_mb"].as_f64(),
            result["import_rss_mb"].as_f64(),
        ) else {
            bail!("unexpected reference output: {result}");
        };
        // The round that took the most beyond its imports.
        if torch_memory.is_none_or(|m| peak - imports > m.net()) {
            torch_memory = Some(Memory {
                peak,
                baseline: imports,
            });
        }
        theirs.extend(steps.iter().map(|ms| ms / 1000.0));
        if reference.is_none() {
            reference = Some(result);
        }
        Ok(())
    };
    let mut hearth_round = |round: u32| -> Result<()> {
        eprintln!(
            "hearth: round {round}/{}: {} steps ({} warm-up) of LoRA r{} on {} projections, batch {}x{}, {dtype_name} base, {threads} threads, {weights}",
            args.rounds,
            args.warmup + args.steps,
            args.warmup,
            args.rank,
            targets.len(),
            args.batch,
            args.seq
        );
        let timings = measure_steps(&model, &config, engine, args.warmup, args.steps)?;
        eprintln!(
            "hearth: round {round}: median {:.0} ms/step",
            timings.median() * 1000.0
        );
        ours.extend(timings.seconds);
        Ok(())
    };
    for round in 1..=args.rounds {
        if round % 2 == 1 {
            reference_round(round)?;
            hearth_round(round)?;
        } else {
            hearth_round(round)?;
            reference_round(round)?;
        }
    }
    let hearth_memory = Memory {
        peak: vm_hwm_mib(),
        baseline,
    };
    let our_median = median(&ours);
    let tokens_per_second = tokens_per_step / our_median;
    let generation = if args.generate > 0 {
        Some(generation_speed(&model, args.generate)?)
    } else {
        None
    };

    println!(
        "bench train: LoRA r{} on {}, batch {}x{}, {dtype_name} base weights on the CPU, {threads} threads, {} interleaved rounds",
        args.rank,
        names(&targets),
        args.batch,
        args.seq,
        args.rounds
    );
    println!("  weights      {weights}");
    println!(
        "  hearth       {:.0} ms/step (median of {}), {:.1} tokens/s, {}  [{}]",
        our_median * 1000.0,
        ours.len(),
        tokens_per_second,
        hearth_memory.describe("before the model"),
        if args.autograd {
            "candle autograd"
        } else if model.weight_dtype() != DType::F32 {
            "candle autograd: the CPU training step is f32-only"
        } else {
            "CPU training step"
        }
    );
    if let Some(speed) = generation {
        println!(
            "  hearth gen   {speed:.1} tokens/s (greedy, KV cache, 16-token prompt, {} new)",
            args.generate
        );
    }
    let (Some(reference), Some(torch_memory)) = (reference, torch_memory) else {
        return Ok(ExitCode::SUCCESS);
    };
    let torch_median = median(&theirs);
    let torch_tps = tokens_per_step / torch_median;
    println!(
        "  pytorch      {:.0} ms/step (median of {}), {torch_tps:.1} tokens/s, {}  [torch {}, peft {}, weights {}]",
        torch_median * 1000.0,
        theirs.len(),
        torch_memory.describe("after imports"),
        reference["torch"].as_str().unwrap_or("?"),
        reference["peft"].as_str().unwrap_or("?"),
        reference["weights"].as_str().unwrap_or("?")
    );
    if let (Some(ours), Some(theirs)) = (generation, reference["generate_tokens_per_s"].as_f64()) {
        println!("  pytorch gen  {theirs:.1} tokens/s");
        println!("  generation   hearth/pytorch = {:.2}x", ours / theirs);
    }
    println!(
        "  training     hearth/pytorch = {:.2}x tokens/s, {:.2}x net peak RSS (raw peaks {:.2}x)",
        tokens_per_second / torch_tps,
        hearth_memory.net() / torch_memory.net(),
        hearth_memory.peak / torch_memory.peak
    );
    Ok(ExitCode::SUCCESS)
}

/// How the reference gets the weights Hearth trains.
enum ReferenceWeights {
    /// A GGUF file (`--gguf`; transformers dequantizes it).
    Gguf(PathBuf),
    /// A Hugging Face model folder (`--pretrained`).
    Pretrained(PathBuf),
}

/// The reference's weights for `path`, or a refusal: timing a random
/// SmolLM2 next to another model would compare different work.
fn reference_weights(path: &Path) -> Result<ReferenceWeights> {
    if path.extension().is_some_and(|e| e == "gguf") {
        return Ok(ReferenceWeights::Gguf(path.to_path_buf()));
    }
    if path.is_dir() && path.join("config.json").is_file() {
        return Ok(ReferenceWeights::Pretrained(path.to_path_buf()));
    }
    bail!(
        "the PyTorch reference cannot load {} (it takes a GGUF file or a Hugging Face folder with config.json); run with --no-reference to time Hearth alone",
        path.display()
    )
}

/// The reference's model must have Hearth's shape.
fn check_same_shape(ours: &Config, result: &Value) -> Result<()> {
    let theirs = (
        result["layers"].as_u64(),
        result["hidden_size"].as_u64(),
        result["vocab_size"].as_u64(),
    );
    let expected = (
        Some(ours.num_hidden_layers as u64),
        Some(ours.hidden_size as u64),
        Some(ours.vocab_size as u64),
    );
    if theirs != expected {
        bail!(
            "the PyTorch reference built another model (layers, hidden, vocab = {theirs:?}, Hearth's {expected:?})"
        );
    }
    Ok(())
}

/// Runs `bench/pytorch/run.sh` on the same workload; returns its JSON line.
/// A reference that cannot load the weights fails the bench.
fn run_reference(
    args: &BenchTrainArgs,
    targets: &[Target],
    threads: usize,
    weights: Option<&ReferenceWeights>,
    generate: usize,
) -> Result<Value> {
    let script = reference::script()?;
    eprintln!(
        "pytorch: running {} (the first run installs its environment)",
        script.display()
    );
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args([
            "--batch",
            &args.batch.to_string(),
            "--seq",
            &args.seq.to_string(),
        ])
        .args([
            "--rank",
            &args.rank.to_string(),
            "--alpha",
            &(2 * args.rank).to_string(),
            "--dropout",
            "0.0",
        ])
        .args([
            "--targets",
            &names(targets),
            "--lr",
            "1e-4",
            "--threads",
            &threads.to_string(),
        ])
        .args([
            "--warmup",
            &args.warmup.to_string(),
            "--steps",
            &args.steps.to_string(),
        ])
        .args(["--generate", &generate.to_string()])
        .args(["--dtype", &args.base_dtype]);
    match weights {
        Some(ReferenceWeights::Gguf(path)) => {
            command.arg("--gguf").arg(path);
        }
        Some(ReferenceWeights::Pretrained(path)) => {
            command.arg("--pretrained").arg(path);
        }
        None => {}
    }
    reference::run_json(command, "the PyTorch reference")
}

fn names(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// Greedy decoding speed with the KV cache: a 16-token prompt, then `new`
/// tokens, never stopping early (as the reference's `min_new_tokens`).
fn generation_speed(model: &Llama, new: usize) -> Result<f64> {
    let prompt: Vec<u32> = (0..16u32).map(|i| 100 + i * 7).collect();
    let decode = |tokens: usize| -> Result<f64> {
        let started = Instant::now();
        let mut cache = KvCache::default();
        let mut logits = model.forward_cached(
            &Tensor::new(prompt.as_slice(), model.device())?.unsqueeze(0)?,
            &mut cache,
            None,
        )?;
        for _ in 0..tokens {
            let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
            logits = model.forward_cached(
                &Tensor::new(&[next], model.device())?.unsqueeze(0)?,
                &mut cache,
                None,
            )?;
        }
        Ok(started.elapsed().as_secs_f64())
    };
    decode(4)?;
    let seconds = decode(new)?;
    Ok(new as f64 / seconds)
}
