"""PyTorch reference for `hearth bench embed`: EfficientNet-Lite0 embeddings
(1280-d, global average pool after the head convolution) of 224x224 batches,
on CPU, with the same published weights Hearth uses.

The network is written out with torch.nn.functional from the architecture's
description (the same reference the vision tests compare logits against):
TensorFlow "SAME" padding as explicit pads, BatchNorm in inference mode with
eps 1e-3, ReLU6, no squeeze-excite. Prints one JSON line.
"""

import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sd = torch.load(args.weights, map_location="cpu", weights_only=False)

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
                            sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-3)

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

    n = args.batch * 3 * 224 * 224
    x = torch.sin(torch.arange(n, dtype=torch.float64) * 0.001).float().reshape(args.batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        for it in range(args.warmup + args.iterations):
            start = time.perf_counter()
            out = embed(x)
            elapsed = time.perf_counter() - start
            if it >= args.warmup:
                times.append(elapsed)
    assert out.shape == (args.batch, 1280)
    median = statistics.median(times)
    print(json.dumps({
        "images_per_s": args.batch / median,
        "ms_per_batch_median": median * 1000.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
