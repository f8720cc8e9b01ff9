"""CPU prefill benchmark: patched methods (impl=torch) vs the unpatched model with SDPA, side by side in one run.

Model: the embedded SmolLM2-135M-Instruct (fp32, CPU, L = 8192). Prefill = one forward pass that keeps only
the last token's logits (as ``generate`` does), on the same random prompt for every variant; median of
--repeats runs after a short warm-up. The unpatched model is timed before and after the methods of each length
and the mean of both is the baseline, so slow drift in machine load is spread over the run's ratios.

Defaults resolved against L: STRING S = 2703, W = 128 (4k and 8k use both the near and the far segment);
ReRoPE w = 2048; Self-Extend G = 8, w_n = 1024; DCA C = 6144, w = 512; LM-Infinite n_global = 10,
n_local = 8192. RoPE-scaling methods (pi, ntk, yarn, ...) run with factor 2 and keep SDPA.

Run:
  python benchmarks/bench_cpu_prefill.py                                # STRING at 1k, 2k, 4k, 8k
  python benchmarks/bench_cpu_prefill.py --lengths 4k --methods all     # every registered method at 4k
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import ropeshift

# longrope needs one factor per rotary frequency: 32 for the embedded model (head_dim 64)
SCALING_PARAMS = {"longrope": dict(short_factor=[1.0] * 32, long_factor=[2.0] * 32)}


def parse_lengths(text: str) -> list[int]:
    return [int(float(t[:-1]) * 1024) if t.lower().endswith("k") else int(t) for t in text.split(",")]


def time_prefill(model, ids, repeats: int) -> float:
    """Median seconds of ``repeats`` forward passes over ``ids`` [1, n], after one short warm-up."""
    times = []
    with torch.no_grad():
        model(ids[:, :256], logits_to_keep=1, use_cache=False)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1, use_cache=False)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def apply_method(model, name: str) -> str:
    """Apply ``name`` at its defaults; return the attention used ("torch" or "sdpa")."""
    from ropeshift.methods.registry import METHODS

    ropeshift.remove(model)
    if getattr(METHODS[name], "kind", "attention") == "rope_scaling":
        ropeshift.apply(model, name, factor=2.0, **SCALING_PARAMS.get(name, {}))
        return "sdpa"
    ropeshift.apply(model, name, impl="torch")
    return "torch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1k,2k,4k,8k", help="prompt lengths in tokens (k = 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant and length (median)")
    ap.add_argument("--methods", default="string",
                    help="comma-separated methods to time against unpatched SDPA, or 'all'")
    args = ap.parse_args()
    names = [m for m in ropeshift.methods() if m != "rope"] if args.methods == "all" else args.methods.split(",")
    model, _ = ropeshift.load_model("smollm2-135m", device="cpu", progress=False)
    print(f"# SmolLM2-135M-Instruct fp32, {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, repeats {args.repeats}")
    print("| length | method | attention | prefill s | unpatched SDPA s | ratio |")
    print("|---|---|---|---|---|---|")
    for n in parse_lengths(args.lengths):
        ids = torch.randint(100, 40000, (1, n), generator=torch.Generator().manual_seed(n))
        ropeshift.remove(model)
        before = time_prefill(model, ids, args.repeats)
        rows = []
        for name in names:
            impl = apply_method(model, name)
            rows.append((name, impl, time_prefill(model, ids, args.repeats)))
        ropeshift.remove(model)
        base = (before + time_prefill(model, ids, args.repeats)) / 2
        for name, impl, t in rows:
            print(f"| {n} | {name} | {impl} | {t:.2f} | {base:.2f} | {t / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
