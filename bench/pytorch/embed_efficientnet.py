"""PyTorch reference for `hearth bench embed`: EfficientNet-Lite0 embeddings
(1280-d, global average pool after the head convolution) of 224x224 batches,
on CPU, with the same published weights Hearth uses, in several variants so
that the reference is PyTorch at its best rather than at its plainest:

  functional  torch.nn.functional written from the architecture's description
              (the same code the vision tests compare logits against):
              TensorFlow "SAME" padding as explicit pads, BatchNorm unfolded
              (inference mode, eps 1e-3), ReLU6, NCHW.
  folded      nn.Conv2d modules with BatchNorm folded into the weights and
              biases, symmetric padding inside the convolution (explicit pads
              remain only where SAME padding is asymmetric: the stride-2
              convolutions), NCHW, eager.
  folded-cl   folded, channels_last memory format (input converted inside
              the timed region).
  jit         folded, torch.jit.trace + torch.jit.freeze +
              torch.jit.optimize_for_inference (oneDNN convolutions), NCHW.
  jit-cl      jit with channels_last.
  compile     folded, channels_last, torch.compile (inductor's C++ backend;
              the first run on a machine compiles for minutes, later runs
              reuse inductor's cache and set up in seconds).

Modes:
  one-shot (default): runs each of --variants for --warmup + --iterations
      batches in this process and prints one JSON line.
  --serve (one variant): sets up, warms up, prints a JSON line
      {"ready": ...}; then for each line "run" on stdin times --iterations
      batches and prints {"ms": [...]}; at end of input prints
      {"done": ..., "peak_rss_mb": ...} and exits. `hearth bench embed` runs
      one such process per variant, so each variant's peak RSS is its own,
      and interleaves their rounds with its own.

Memory: peak_rss_mb is VmHWM (this process's own peak since exec);
import_rss_mb is the same taken right after `import torch` (the PyPI wheel
maps its CUDA libraries even on the CPU), so the net figure is the
difference.
"""

import argparse
import json
import math
import resource
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.trace is deprecated, still works

STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
VARIANTS = ["functional", "folded", "folded-cl", "jit", "jit-cl", "compile"]
DEFAULT_VARIANTS = ",".join(VARIANTS)
EPS = 1e-3
SIZE = 224


def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def log(msg):
    print(f"[pytorch-embed] {msg}", file=sys.stderr, flush=True)


def same_pads(size, k, s):
    """TensorFlow SAME padding for one spatial dimension: (before, after)."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def functional_embed(torch, sd):
    F = torch.nn.functional

    def same(x, w, s, groups=1):
        k = w.shape[-1]
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, w, None, s, 0, 1, groups)

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"],
                            sd[p + ".weight"], sd[p + ".bias"], False, 0.0, EPS)

    def r6(x):
        return x.clamp(0, 6)

    def embed(x):
        x = r6(bn(same(x, sd["_conv_stem.weight"], 2), "_bn0"))
        i, cin = 0, 32
        for k, s, e, o, n in STAGES:
            for j in range(n):
                st, p, h = (s if j == 0 else 1), f"_blocks.{i}", x
                if e != 1:
                    h = r6(bn(same(h, sd[p + "._expand_conv.weight"], 1), p + "._bn0"))
                h = r6(bn(same(h, sd[p + "._depthwise_conv.weight"], st, h.shape[1]), p + "._bn1"))
                h = bn(same(h, sd[p + "._project_conv.weight"], 1), p + "._bn2")
                x = h + x if st == 1 and cin == o else h
                cin, i = o, i + 1
        return r6(bn(same(x, sd["_conv_head.weight"], 1), "_bn1")).mean((2, 3))

    return embed


def folded_module(torch, sd):
    """EfficientNet-Lite0 up to the pooled embedding, BatchNorm folded."""
    nn = torch.nn

    class ConvBn(nn.Module):
        def __init__(self, conv, bn, stride, groups, size, act):
            super().__init__()
            w = sd[conv + ".weight"]
            scale = sd[bn + ".weight"] / torch.sqrt(sd[bn + ".running_var"] + EPS)
            k = w.shape[-1]
            pads = same_pads(size, k, stride)
            symmetric = pads[0] == pads[1]
            self.pad = None if symmetric else (pads[0], pads[1], pads[0], pads[1])
            self.conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], k, stride,
                                  pads[0] if symmetric else 0, groups=groups, bias=True)
            with torch.no_grad():
                self.conv.weight.copy_(w * scale.reshape(-1, 1, 1, 1))
                self.conv.bias.copy_(sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale)
            self.act = nn.ReLU6() if act else nn.Identity()
            self.out_size = math.ceil(size / stride)

        def forward(self, x):
            if self.pad is not None:
                x = torch.nn.functional.pad(x, self.pad)
            return self.act(self.conv(x))

    class Block(nn.Module):
        def __init__(self, p, k, stride, expand, cin, cout, size):
            super().__init__()
            layers = []
            if expand != 1:
                layers.append(ConvBn(p + "._expand_conv", p + "._bn0", 1, 1, size, True))
            mid = cin * expand
            dw = ConvBn(p + "._depthwise_conv", p + "._bn1", stride, mid, size, True)
            layers += [dw, ConvBn(p + "._project_conv", p + "._bn2", 1, 1, dw.out_size, False)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout
            self.out_size = dw.out_size

        def forward(self, x):
            h = self.body(x)
            return h + x if self.residual else h

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = ConvBn("_conv_stem", "_bn0", 2, 1, SIZE, True)
            size, blocks, i, cin = self.stem.out_size, [], 0, 32
            for k, s, e, o, n in STAGES:
                for j in range(n):
                    block = Block(f"_blocks.{i}", k, s if j == 0 else 1, e, cin, o, size)
                    blocks.append(block)
                    size, cin, i = block.out_size, o, i + 1
            self.blocks = nn.Sequential(*blocks)
            self.head = ConvBn("_conv_head", "_bn1", 1, 1, size, True)

        def forward(self, x):
            return self.head(self.blocks(self.stem(x))).mean((2, 3))

    return Lite0().eval()


def build(torch, sd, variant, example):
    """Returns embed(x_nchw) -> [batch, 1280] for the variant."""
    if variant == "functional":
        return functional_embed(torch, sd)
    model = folded_module(torch, sd)
    channels_last = variant.endswith("-cl") or variant == "compile"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant in ("jit", "jit-cl"):
        x = example.contiguous(memory_format=torch.channels_last) if channels_last else example
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, x)
            model = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    elif variant == "compile":
        model = torch.compile(model)
    if channels_last:
        return lambda x: model(x.contiguous(memory_format=torch.channels_last))
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("--serve", action="store_true",
                        help="one variant; timed rounds on request (see the module's doc)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"unknown variants {unknown}; known: {VARIANTS}")
    if args.serve and len(variants) != 1:
        parser.error("--serve takes exactly one variant")
    if min(args.batch, args.iterations) < 1 or args.warmup < 0:
        parser.error("--batch and --iterations must be >= 1, --warmup >= 0")

    import torch
    import_rss = peak_rss_mb()
    torch.set_num_threads(args.threads)
    sd = torch.load(args.weights, map_location="cpu", weights_only=False)
    n = args.batch * 3 * SIZE * SIZE
    x = torch.sin(torch.arange(n, dtype=torch.float64) * 0.001).float().reshape(args.batch, 3, SIZE, SIZE)

    def timed(embed, count):
        times, out = [], None
        with torch.inference_mode():
            for _ in range(count):
                start = time.perf_counter()
                out = embed(x)
                times.append((time.perf_counter() - start) * 1000.0)
        if tuple(out.shape) != (args.batch, 1280):
            raise SystemExit(f"error: embedding shape {tuple(out.shape)}")
        return times, out

    def setup(variant):
        started = time.perf_counter()
        try:
            embed = build(torch, sd, variant, x)
            # jit's profiling executor optimises over its first runs.
            warmup = max(args.warmup, 3) if variant.startswith("jit") else args.warmup
            _, out = timed(embed, max(warmup, 1))
        except Exception as e:  # noqa: BLE001 - reported as this variant's failure
            return None, None, f"{type(e).__name__}: {str(e)[:300]}", 0.0
        return embed, out, None, time.perf_counter() - started

    common = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "python": sys.version.split()[0], "batch": args.batch}
    if args.serve:
        variant = variants[0]
        embed, out, error, setup_s = setup(variant)
        if error is not None:
            print(f"error: variant {variant}: {error}", file=sys.stderr, flush=True)
            print(json.dumps({"ready": False, "variant": variant, "error": error, **common}), flush=True)
            return 3
        log(f"{variant}: ready in {setup_s:.1f} s")
        print(json.dumps({"ready": True, "variant": variant, "setup_s": round(setup_s, 3),
                          "import_rss_mb": round(import_rss, 1),
                          "first": [round(v, 6) for v in out[0].tolist()], **common}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                continue
            times, _ = timed(embed, args.iterations)
            print(json.dumps({"ms": [round(t, 3) for t in times]}), flush=True)
        print(json.dumps({"done": True, "variant": variant, "peak_rss_mb": round(peak_rss_mb(), 1),
                          "import_rss_mb": round(import_rss, 1)}), flush=True)
        return 0

    results = {}
    for variant in variants:
        embed, _, error, setup_s = setup(variant)
        if error is not None:
            log(f"{variant}: failed: {error}")
            results[variant] = {"error": error}
            continue
        times, _ = timed(embed, args.iterations)
        median = statistics.median(times)
        results[variant] = {"ms_per_batch_median": median, "images_per_s": args.batch / (median / 1000.0),
                            "setup_s": setup_s, "peak_rss_mb_so_far": peak_rss_mb()}
        log(f"{variant}: {median:.0f} ms/batch, {args.batch / (median / 1000.0):.1f} images/s")
    ok = {v: r for v, r in results.items() if "error" not in r}
    if not ok:
        print("error: no variant ran", file=sys.stderr)
        return 3
    best = max(ok, key=lambda v: ok[v]["images_per_s"])
    peak = peak_rss_mb()
    print(json.dumps({"variants": results, "best": best, "images_per_s": ok[best]["images_per_s"],
                      "ms_per_batch_median": ok[best]["ms_per_batch_median"],
                      "peak_rss_mb": peak, "import_rss_mb": import_rss,
                      "net_peak_rss_mb": peak - import_rss, **common}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
