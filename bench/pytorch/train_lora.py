#!/usr/bin/env python3
"""PyTorch + PEFT reference workload for `hearth bench train`.

Measures LoRA fine-tuning step time (forward + backward + AdamW step +
zero_grad) of a Llama-architecture model (default: SmolLM2-135M's shape) on
the CPU in f32 (or, with --dtype bf16, a bf16 base under torch.autocast),
and optionally greedy KV-cached generation speed of the base model. Prints
exactly one JSON line on stdout; everything else goes to stderr.

Run it through bench/pytorch/run.sh, which provides the pinned environment.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings

# SmolLM2-135M (and -Instruct) config.json, Hugging Face LlamaConfig form.
SMOLLM2_135M_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "initializer_range": 0.041666666666666664,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "use_cache": True,
}

PROMPT_LEN = 16
GEN_WARMUP_TOKENS = 4


def log(msg):
    print(f"[pytorch-bench] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb():
    # VmHWM is this process's own peak (reset at exec); ru_maxrss also
    # counts what the parent had mapped when it forked us, which would
    # charge the caller's memory to PyTorch. Both in KiB.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="LoRA fine-tuning step time (PyTorch + PEFT, CPU, f32); one JSON line on stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model-config", metavar="PATH",
                   help="Hugging Face LlamaConfig JSON (config.json); default: SmolLM2-135M's shape")
    p.add_argument("--gguf", metavar="PATH",
                   help="GGUF file to load real weights from via transformers (dequantized to f32); "
                        "if it cannot be loaded the script exits with status 3")
    p.add_argument("--pretrained", metavar="DIR",
                   help="Hugging Face model folder (config.json + safetensors) to load real weights from; "
                        "if it cannot be loaded the script exits with status 3")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha")
    p.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout")
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                   help="comma-separated module names to adapt")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=4, help="sequences per step")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="also time greedy generation of N new tokens (batch 1, 16-token prompt); 0 = skip")
    p.add_argument("--prompt-len", type=int, default=PROMPT_LEN,
                   help="prompt tokens for --generate (hearth bench generate sets it)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and token ids")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                   help="type of the frozen base weights; bf16 also runs the forward pass under "
                        "torch.autocast(bfloat16) (the LoRA weights and optimizer stay f32)")
    a = p.parse_args(argv)
    for name in ("rank", "threads", "batch", "seq", "steps"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.warmup < 0 or a.generate < 0:
        p.error("--warmup and --generate must be >= 0")
    if a.gguf and a.pretrained:
        p.error("--gguf and --pretrained are exclusive")
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    if not a.targets:
        p.error("--targets is empty")
    return a


def load_config_dict(path):
    if path is None:
        return dict(SMOLLM2_135M_CONFIG), "smollm2-135m (built-in)"
    with open(path, "r", encoding="utf-8") as f:
        d = json.load(f)
    if not isinstance(d, dict):
        raise SystemExit(f"--model-config {path}: expected a JSON object")
    d.setdefault("model_type", "llama")
    return d, path


class WeightsError(Exception):
    """Real weights were asked for and could not be loaded."""


def build_model(args, torch, transformers):
    """Returns (model, weights, source). weights is "gguf", "pretrained" or "random".

    Random init happens only when no weights were asked for: a file that
    fails to load raises WeightsError (the bench must not silently time a
    different model)."""
    if args.gguf:
        gguf_path = os.path.abspath(os.path.expanduser(args.gguf))
        if not os.path.isfile(gguf_path):
            raise WeightsError(f"--gguf {gguf_path}: no such file")
        log(f"loading GGUF weights from {gguf_path} (dequantizing to f32)")
        t0 = time.perf_counter()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                os.path.dirname(gguf_path),
                gguf_file=os.path.basename(gguf_path),
                dtype=torch.float32,
                local_files_only=True,
            )
        except Exception as e:  # noqa: BLE001 - reported, then the bench fails
            raise WeightsError(f"--gguf {gguf_path} failed to load ({type(e).__name__}: {str(e)[:300]})") from e
        log(f"GGUF loaded in {time.perf_counter() - t0:.1f} s")
        if args.model_config:
            log("note: --model-config is ignored when --gguf loads (the GGUF carries its own config)")
        return model, "gguf", gguf_path
    if args.pretrained:
        directory = os.path.abspath(os.path.expanduser(args.pretrained))
        if not os.path.isfile(os.path.join(directory, "config.json")):
            raise WeightsError(f"--pretrained {directory}: no config.json there")
        log(f"loading weights from {directory}")
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                directory, dtype=torch.float32, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - reported, then the bench fails
            raise WeightsError(f"--pretrained {directory} failed to load ({type(e).__name__}: {str(e)[:300]})") from e
        return model, "pretrained", directory
    cfg_dict, source = load_config_dict(args.model_config)
    cfg_dict.pop("torch_dtype", None)
    cfg_dict.pop("dtype", None)
    config = transformers.LlamaConfig.from_dict(cfg_dict)
    torch.manual_seed(args.seed)
    log(f"random init from config: {source}")
    model = transformers.LlamaForCausalLM(config)
    return model, "random", source


def main(argv=None):
    args = parse_args(argv)

    # Thread counts must be fixed before torch initialises its pools.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    t_import = time.perf_counter()
    import torch
    import transformers
    import peft

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
        f"threads {torch.get_num_threads()}; imports {time.perf_counter() - t_import:.1f} s")

    import_rss = peak_rss_mb()  # libraries only (torch's Linux wheel maps its CUDA libs too)
    try:
        model, weights, weights_source = build_model(args, torch, transformers)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3
    base_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = model.to(dtype=base_dtype, device="cpu")
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
        f"{n_params / 1e6:.1f} M params, attn {getattr(cfg, '_attn_implementation', None)}")
    if args.seq > cfg.max_position_embeddings:
        raise SystemExit(f"--seq {args.seq} exceeds max_position_embeddings {cfg.max_position_embeddings}")

    lora_cfg = peft.LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=args.targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    pmodel = peft.get_peft_model(model, lora_cfg)
    trainable = [p for p in pmodel.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    if n_trainable == 0:
        raise SystemExit(f"no LoRA parameters: none of --targets {args.targets} matched a module")
    log(f"LoRA r={args.rank} alpha={args.alpha} on {args.targets}: {n_trainable} trainable params")
    # PEFT keeps the adapter in f32 over a bf16 base (autocast_adapter_dtype).
    assert all(p.dtype == torch.float32 for p in trainable), "expected f32 adapter parameters"
    if args.dtype == "bf16":
        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        def autocast():
            return contextlib.nullcontext()

    opt = torch.optim.AdamW(trainable, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=gen)
    attention_mask = torch.ones_like(input_ids)

    pmodel.train()
    step_ms = []
    losses = []
    total = args.warmup + args.steps
    for i in range(total):
        t0 = time.perf_counter()
        with autocast():
            out = pmodel(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = (time.perf_counter() - t0) * 1000.0
        loss = float(out.loss.detach())
        del out
        losses.append(loss)
        kind = "warm-up" if i < args.warmup else "timed"
        log(f"step {i + 1}/{total} ({kind}): {dt:.0f} ms, loss {loss:.4f}")
        if i >= args.warmup:
            step_ms.append(dt)

    median_ms = statistics.median(step_ms)
    train_rss = peak_rss_mb()
    tokens_per_s = args.batch * args.seq / (median_ms / 1000.0)
    log(f"median step {median_ms:.0f} ms, {tokens_per_s:.1f} tokens/s, peak RSS {train_rss:.0f} MB")

    gen_tps = None
    gen_ms = None
    gen_rss = None
    if args.generate > 0:
        del opt, trainable
        # Drop the LoRA wrappers: generation is measured on the plain base model.
        base = pmodel.unload()
        del pmodel
        base.eval()
        gc = base.generation_config
        if gc.pad_token_id is None:
            eos = gc.eos_token_id if gc.eos_token_id is not None else cfg.eos_token_id
            if isinstance(eos, (list, tuple)):
                eos = eos[0] if eos else None
            gc.pad_token_id = eos if eos is not None else 0
        prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_len), generator=gen)
        prompt_mask = torch.ones_like(prompt)

        def run_generate(n):
            with torch.inference_mode():
                return base.generate(
                    input_ids=prompt,
                    attention_mask=prompt_mask,
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    use_cache=True,
                )

        run_generate(GEN_WARMUP_TOKENS)  # warm-up, untimed
        t0 = time.perf_counter()
        out_ids = run_generate(args.generate)
        elapsed = time.perf_counter() - t0
        new_tokens = int(out_ids.shape[1] - args.prompt_len)
        if new_tokens != args.generate:
            log(f"WARNING: generated {new_tokens} tokens, asked for {args.generate}")
        gen_ms = elapsed * 1000.0
        gen_tps = new_tokens / elapsed
        gen_rss = peak_rss_mb()
        log(f"generate: {new_tokens} tokens in {gen_ms:.0f} ms = {gen_tps:.1f} tokens/s "
            f"(includes the {args.prompt_len}-token prefill)")

    result = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq": args.seq,
        "rank": args.rank,
        "alpha": args.alpha,
        "dropout": args.dropout,
        "lr": args.lr,
        "targets": args.targets,
        "weights": weights,
        "weights_source": weights_source,
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "params": n_params,
        "trainable_params": n_trainable,
        "warmup": args.warmup,
        "steps": args.steps,
        "ms_per_step": [round(x, 3) for x in step_ms],
        "ms_per_step_median": round(median_ms, 3),
        "tokens_per_s": round(tokens_per_s, 3),
        "loss_first": round(losses[0], 6),
        "loss_last": round(losses[-1], 6),
        "peak_rss_mb": round(train_rss, 1),
        "import_rss_mb": round(import_rss, 1),
        "net_peak_rss_mb": round(train_rss - import_rss, 1),
        "generate_new_tokens": args.generate if args.generate > 0 else None,
        "generate_prompt_tokens": args.prompt_len if args.generate > 0 else None,
        "generate_ms": round(gen_ms, 3) if gen_ms is not None else None,
        "generate_tokens_per_s": round(gen_tps, 3) if gen_tps is not None else None,
        "generate_peak_rss_mb": round(gen_rss, 1) if gen_rss is not None else None,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
