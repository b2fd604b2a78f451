//! `hearth bench generate`: generation speed and memory at batch 1 on a
//! GGUF, Hearth's quantized path (base, and with a LoRA adapter on every
//! projection) next to llama.cpp on the same file and thread count
//! (`bench/llamacpp/run.sh`, which builds llama-cpp-python from source into
//! its own environment) and PyTorch (`bench/pytorch/run.sh --generate`).
//!
//! Every side processes a prompt of the same length in one batch, then
//! decodes greedily the same number of new tokens, never stopping early.
//! Rounds are interleaved, each starting with a different side; medians
//! are reported. A reference that cannot load the same weights fails the
//! benchmark: nothing falls back.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hearth_ml::candle::Device;
use hearth_ml::generate::{Decoder, Quantized, Reference};
use hearth_ml::models::llama::Config;
use hearth_ml::models::quantized;
use hearth_ml::train::median;
use hearth_ml::{LoraAdapter, LoraConfig, Target};
use serde_json::Value;

use super::peak_rss_self_mib;
use super::reference::run_json;
use crate::args::BenchGenerateArgs;

/// `bench/llamacpp/run.sh`, or `HEARTH_LLAMACPP_BENCH`.
fn llamacpp_script() -> PathBuf {
    match std::env::var_os("HEARTH_LLAMACPP_BENCH") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/llamacpp/run.sh"
        )),
    }
}

/// Seconds for the prompt and for the decoding steps of one pass.
#[derive(Debug, Clone, Copy)]
struct Pass {
    prompt: f64,
    decode: f64,
}

/// One greedy pass: the prompt at once, then `new - 1` single tokens.
fn pass<D: Decoder>(decoder: &D, prompt: &[u32], new: usize) -> Result<Pass> {
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0 as u32
    };
    let mut cache = decoder.cache_for(prompt.len() + new);
    let start = Instant::now();
    let mut logits = decoder.next_logits(prompt, &mut cache)?;
    let prompt_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 1..new {
        logits = decoder.next_logits(&[argmax(&logits)], &mut cache)?;
    }
    std::hint::black_box(argmax(&logits));
    Ok(Pass {
        prompt: prompt_s,
        decode: start.elapsed().as_secs_f64(),
    })
}

/// Whose turn it is within a round.
#[derive(Debug, Clone, Copy)]
enum Turn {
    HearthBase,
    HearthLora,
    HearthF32,
    LlamaCpp,
    PyTorch,
}

/// Median figures of one side.
#[derive(Debug, Default)]
struct Side {
    prompt_s: Vec<f64>,
    decode_s: Vec<f64>,
}

impl Side {
    fn push(&mut self, p: Pass) {
        self.prompt_s.push(p.prompt);
        self.decode_s.push(p.decode);
    }
    /// (prompt tokens/s, decode tokens/s, end-to-end tokens/s).
    fn rates(&self, prompt: usize, new: usize) -> (f64, f64, f64) {
        let (p, d) = (median(&self.prompt_s), median(&self.decode_s));
        (
            prompt as f64 / p,
            (new - 1) as f64 / d,
            new as f64 / (p + d),
        )
    }
}

/// A deterministic prompt of exactly `len` tokens: English text, repeated.
fn prompt_ids(tokenizer: &hearth_ml::TextTokenizer, len: usize) -> Result<Vec<u32>> {
    let text = "The garden behind the old house was quiet in the early morning. \
                Dew covered the grass, and a blackbird sang from the apple tree \
                while the kettle started to whistle in the kitchen. ";
    let mut ids = Vec::new();
    while ids.len() < len {
        ids.extend(tokenizer.encode(text, false)?);
    }
    ids.truncate(len);
    Ok(ids)
}

/// A LoRA adapter on every projection of a model configured by `cfg`
/// (random, B not zero).
fn adapter(cfg: &Config, rank: usize) -> Result<LoraAdapter> {
    let config = LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        targets: Target::ALL.to_vec(),
        ..LoraConfig::default()
    };
    let lora = LoraAdapter::new(&config, cfg, 5, &Device::Cpu)?;
    // A trained adapter's B is not zero; the cost does not depend on values.
    for (name, var) in lora.named_vars() {
        if name.contains("lora_B") {
            let noise = hearth_ml::candle::Tensor::randn(
                0f32,
                0.01,
                var.as_tensor().shape(),
                &Device::Cpu,
            )?;
            var.set(&noise)?;
        }
    }
    Ok(lora)
}

pub fn run(args: BenchGenerateArgs) -> Result<ExitCode> {
    if args.new_tokens < 2 || args.prompt_tokens == 0 || args.rounds == 0 {
        bail!("need --prompt-tokens >= 1, --new-tokens >= 2 and --rounds >= 1");
    }
    let threads = hearth_ml::candle::utils::get_num_threads();
    let path = match &args.model {
        Some(model) => hearth_ml::registry::resolve(model)?,
        None => hearth_ml::registry::default_model("text")?
            .local_path()
            .context("the default text model is not here: run scripts/fetch-models.sh")?,
    };
    if path.extension().is_none_or(|e| e != "gguf") {
        bail!("{} is not a GGUF file", path.display());
    }
    let start_rss = peak_rss_self_mib();
    // The adapter is built as the app builds one it loads: between the
    // model's header and its weights. The app keeps only the quantized
    // path's form; so does the bench, unless the f32 reference needs a
    // copy of the other.
    let mut f32_lora_adapter = None;
    let (model, tokenizer, lora) = quantized::load_with(&path, |cfg| {
        let lora = adapter(cfg, args.rank)?;
        if args.f32_reference {
            let tensors = lora.tensors()?;
            let copy = LoraAdapter::from_tensors(lora.config(), cfg, &tensors, &Device::Cpu)?;
            f32_lora_adapter = Some(copy);
        }
        anyhow::Ok(Some(lora))
    })?;
    let lora = lora.context("the bench's adapter was not built")?;
    let prompt = prompt_ids(&tokenizer, args.prompt_tokens)?;
    let (p, n) = (args.prompt_tokens, args.new_tokens);
    println!(
        "bench generate: {} , prompt {p} tokens, {n} new tokens greedy, batch 1, {threads} threads, {} interleaved rounds",
        path.display(),
        args.rounds
    );
    println!(
        "  hearth weights: {:.0} MiB as stored (Q4_1/Q8_0 blocks); adapter: LoRA r{} on all 7 projections",
        model.weight_bytes() as f64 / 1048576.0,
        args.rank
    );

    let base = Quantized {
        model: &model,
        adapter: None,
    };
    let adapted = Quantized {
        model: &model,
        adapter: Some(&lora),
    };
    pass(&base, &prompt, n.min(8))?; // warm-up
    // Hearth's f32 path, loaded only when asked for (its weights would
    // otherwise count in the quantized path's RSS).
    let f32_model = if args.f32_reference {
        Some(hearth_ml::loaders::load(&path, &Device::Cpu)?)
    } else {
        None
    };
    let (mut f32_base, mut f32_lora) = (Side::default(), Side::default());
    let (mut ours, mut ours_lora, mut llama) = (Side::default(), Side::default(), Side::default());
    let (mut llama_rss, mut llama_import, mut torch) = (0f64, 0f64, Vec::new());
    // Each round starts with a different side. In a fixed order Hearth's
    // base side always ran right after the PyTorch reference (a 1.4 GB
    // process, 14 s of GGUF loading) and measured 0.91x-1.24x llama.cpp
    // from run to run, against 1.10x-1.20x without PyTorch in the rounds.
    let mut order = vec![Turn::HearthBase, Turn::HearthLora];
    if f32_model.is_some() {
        order.push(Turn::HearthF32);
    }
    if !args.no_llamacpp {
        order.push(Turn::LlamaCpp);
    }
    if !args.no_pytorch {
        order.push(Turn::PyTorch);
    }
    for round in 1..=args.rounds {
        for turn in order.iter().cycle().skip(round - 1).take(order.len()) {
            match turn {
                Turn::HearthBase => ours.push(pass(&base, &prompt, n)?),
                Turn::HearthLora => ours_lora.push(pass(&adapted, &prompt, n)?),
                Turn::HearthF32 => {
                    if let Some(loaded) = &f32_model {
                        let reference = |adapter| Reference {
                            model: &loaded.model,
                            adapter,
                        };
                        f32_base.push(pass(&reference(None), &prompt, n)?);
                        f32_lora.push(pass(&reference(f32_lora_adapter.as_ref()), &prompt, n)?);
                    }
                }
                Turn::LlamaCpp => {
                    let r = run_llamacpp(&path, &prompt, n, threads)?;
                    llama.push(Pass {
                        prompt: number(&r, "prompt_s")?,
                        decode: number(&r, "decode_s")?,
                    });
                    llama_rss = llama_rss.max(number(&r, "peak_rss_mb")?);
                    llama_import = number(&r, "import_rss_mb")?;
                }
                Turn::PyTorch => torch.push(run_pytorch(&path, p, n, threads)?),
            }
        }
        eprintln!("round {round}/{} done", args.rounds);
    }
    let rss = peak_rss_self_mib();
    let net = rss - start_rss;

    let show = |name: &str, side: &Side| {
        let (pp, dec, all) = side.rates(p, n);
        println!(
            "  {name:<22} prompt {pp:>7.0} tokens/s   decode {dec:>6.1} tokens/s   end to end {all:>6.1} tokens/s"
        );
        all
    };
    let ours_all = show("hearth (base)", &ours);
    let ours_lora_all = show("hearth (LoRA r8)", &ours_lora);
    if f32_model.is_some() {
        let f32_all = show("hearth f32 (base)", &f32_base);
        let f32_lora_all = show("hearth f32 (LoRA r8)", &f32_lora);
        println!(
            "  quantized/f32 path: end to end {:.2}x base, {:.2}x with LoRA",
            ours_all / f32_all,
            ours_lora_all / f32_lora_all
        );
    }
    let (_, ours_dec, _) = ours.rates(p, n);
    let (_, ours_lora_dec, _) = ours_lora.rates(p, n);
    println!(
        "  hearth peak RSS {rss:.0} MiB raw, {net:.0} MiB net of the {start_rss:.0} MiB before loading"
    );
    if !args.no_llamacpp {
        let llama_all = show("llama.cpp (base)", &llama);
        let (_, llama_dec, _) = llama.rates(p, n);
        let llama_net = llama_rss - llama_import;
        println!(
            "  llama.cpp peak RSS {llama_rss:.0} MiB raw, {llama_net:.0} MiB net of the {llama_import:.0} MiB after `import llama_cpp`"
        );
        println!(
            "  hearth/llama.cpp: end to end {:.2}x base, {:.2}x with LoRA; decode {:.2}x base, {:.2}x with LoRA; RSS {:.2}x raw, {:.2}x net",
            ours_all / llama_all,
            ours_lora_all / llama_all,
            ours_dec / llama_dec,
            ours_lora_dec / llama_dec,
            rss / llama_rss,
            net / llama_net
        );
    }
    if !torch.is_empty() {
        let tps: Vec<f64> = torch.iter().map(|t| t.0).collect();
        let torch_tps = median(&tps);
        let (torch_rss, torch_import) = torch
            .iter()
            .fold((0f64, 0f64), |(r, i), t| (r.max(t.1), t.2.max(i)));
        println!(
            "  pytorch (base)         end to end {torch_tps:>6.1} tokens/s   peak RSS {torch_rss:.0} MiB raw, {:.0} MiB net of import",
            torch_rss - torch_import
        );
        println!(
            "  hearth/pytorch: end to end {:.2}x base, {:.2}x with LoRA",
            ours_all / torch_tps,
            ours_lora_all / torch_tps
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("the reference's JSON has no number {key:?}"))
}

fn run_llamacpp(gguf: &Path, prompt: &[u32], new: usize, threads: usize) -> Result<Value> {
    let script = llamacpp_script();
    if !script.exists() {
        bail!("the llama.cpp reference {} is missing", script.display());
    }
    let ids: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--gguf")
        .arg(gguf)
        .args(["--prompt-ids", &ids.join(",")])
        .args(["--new", &new.to_string(), "--threads", &threads.to_string()]);
    run_json(command, "the llama.cpp reference")
}

/// (tokens/s end to end, peak RSS, import RSS) of PyTorch's generation on
/// the same GGUF's weights.
fn run_pytorch(gguf: &Path, prompt: usize, new: usize, threads: usize) -> Result<(f64, f64, f64)> {
    let script = super::reference::script()?;
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--gguf")
        .arg(gguf)
        .args([
            "--batch", "1", "--seq", "16", "--warmup", "0", "--steps", "1",
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--generate", &new.to_string()])
        .args(["--prompt-len", &prompt.to_string()]);
    let v = run_json(command, "the PyTorch reference")?;
    Ok((
        number(&v, "generate_tokens_per_s")?,
        number(&v, "generate_peak_rss_mb")?,
        number(&v, "import_rss_mb")?,
    ))
}
