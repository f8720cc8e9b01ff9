"""CPU prefill benchmark: STRING (impl=torch) vs the unpatched model with SDPA, side by side in one run.

Model: the embedded SmolLM2-135M-Instruct (fp32, CPU). Each length is timed with the same random prompt
for both variants, alternating, median of --repeats runs after one warm-up; prefill = one forward pass that
keeps only the last token's logits (as ``generate`` does). S = round(0.33 * 8192) = 2703, W = 128, so 4k and
8k prompts exercise both the near and the far segments.

Run: python benchmarks/bench_cpu_prefill.py [--lengths 1k,2k,4k,8k] [--repeats 3] [--methods string]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import ropeshift


def parse_lengths(text: str) -> list[int]:
    return [int(float(t[:-1]) * 1024) if t.lower().endswith("k") else int(t) for t in text.split(",")]


def time_prefill(model, ids, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1, use_cache=False)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1k,2k,4k,8k", help="prompt lengths in tokens (k = 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant and length (median)")
    ap.add_argument("--methods", default="string", help="comma-separated methods to time against unpatched SDPA")
    args = ap.parse_args()
    model, _ = ropeshift.load_model("smollm2-135m", device="cpu", progress=False)
    methods = args.methods.split(",")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'length':>7} {'sdpa s':>8} " + " ".join(f"{m + ' s':>12} {'ratio':>6}" for m in methods))
    for n in parse_lengths(args.lengths):
        ids = torch.randint(100, 40000, (1, n), generator=torch.Generator().manual_seed(n))
        ropeshift.remove(model)
        time_prefill(model, ids[:, :256], 1)  # warm-up
        base = time_prefill(model, ids, args.repeats)
        row = f"{n:>7} {base:>8.2f} "
        for m in methods:
            ropeshift.apply(model, m, impl="torch")
            time_prefill(model, ids[:, :256], 1)
            t = time_prefill(model, ids, args.repeats)
            row += f"{t:>12.2f} {t / base:>6.2f}"
        ropeshift.remove(model)
        print(row, flush=True)


if __name__ == "__main__":
    main()
