"""llama.cpp reference for `hearth bench generate`.

Loads a GGUF with llama-cpp-python, processes the given prompt token ids in
one batch, then decodes greedily (argmax of the last logits) for a fixed
number of new tokens without stopping at end-of-text: the same work Hearth's
side of the benchmark does. One untimed warm-up pass, then `--runs` timed
passes; prints one JSON line with the median times and the peak RSS (raw and
right after `import llama_cpp`, so the import's share can be taken out).
Fails (non-zero exit, reason on stderr) if the model does not load: it never
falls back to anything else.
"""

import argparse
import json
import resource
import statistics
import sys
import time


def peak_rss_mb():
    # VmHWM is this process's own peak (reset at exec); ru_maxrss also
    # carries the peak of the process that spawned it (Hearth's bench), which
    # would hide llama.cpp's smaller peak behind Hearth's.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def log(msg):
    print(f"llama.cpp bench: {msg}", file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gguf", required=True, help="the GGUF model file")
    p.add_argument("--prompt-ids", required=True, help="comma-separated prompt token ids")
    p.add_argument("--new", type=int, default=64, help="new tokens per pass")
    p.add_argument("--threads", type=int, default=2, help="threads (decode and batch)")
    p.add_argument("--runs", type=int, default=1, help="timed passes (medians reported)")
    a = p.parse_args()
    prompt = [int(t) for t in a.prompt_ids.split(",") if t]
    if not prompt or a.new < 2 or a.runs < 1:
        p.error("need a prompt, --new >= 2 and --runs >= 1")

    start_rss = peak_rss_mb()
    import numpy as np
    import llama_cpp

    import_rss = peak_rss_mb()
    try:
        llm = llama_cpp.Llama(
            model_path=a.gguf,
            n_ctx=len(prompt) + a.new + 8,
            n_batch=max(len(prompt), 8),
            n_ubatch=max(len(prompt), 8),
            n_threads=a.threads,
            n_threads_batch=a.threads,
            logits_all=False,
            verbose=False,
        )
    except Exception as e:  # noqa: BLE001 - any failure to load is fatal here
        log(f"error: could not load {a.gguf}: {e}")
        sys.exit(1)

    n_vocab = llm.n_vocab()

    def last_logits():
        # The logits of the batch's last token, straight from the context:
        # `Llama.scores` is only filled with logits_all, which would compute
        # the output head for every prompt token (work Hearth does not do).
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))

    def one_pass():
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tokens = []
        for _ in range(a.new - 1):
            nxt = int(np.argmax(last_logits()))
            tokens.append(nxt)
            llm.eval([nxt])
        tokens.append(int(np.argmax(last_logits())))
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, tokens

    one_pass()  # warm-up
    prompt_s, decode_s = [], []
    for _ in range(a.runs):
        ps, ds, tokens = one_pass()
        prompt_s.append(ps)
        decode_s.append(ds)
    ps, ds = statistics.median(prompt_s), statistics.median(decode_s)
    result = {
        "framework": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": a.threads,
        "prompt_tokens": len(prompt),
        "new_tokens": a.new,
        "prompt_s": round(ps, 6),
        "decode_s": round(ds, 6),
        "prompt_tokens_per_s": round(len(prompt) / ps, 3),
        "decode_tokens_per_s": round((a.new - 1) / ds, 3),
        "tokens_per_s": round(a.new / (ps + ds), 3),
        "first_tokens": tokens[:8],
        "start_rss_mb": round(start_rss, 1),
        "import_rss_mb": round(import_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    log(f"prompt {result['prompt_tokens_per_s']:.0f} tokens/s, decode "
        f"{result['decode_tokens_per_s']:.1f} tokens/s, peak RSS {result['peak_rss_mb']:.0f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
