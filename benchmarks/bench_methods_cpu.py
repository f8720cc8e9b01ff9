"""CPU prefill time of every registered method at one length vs the unpatched model (SDPA), one run.

Model: the embedded SmolLM2-135M-Instruct (fp32, CPU, L = 8192). Attention-level methods run with
impl="torch" at their defaults (resolved against L: STRING S = 2703, W = 128; ReRoPE w = 2048; Self-Extend
G = 8, w_n = 1024; DCA C = 6144, w = 512; LM-Infinite n_global = 10, n_local = 8192), so at 4k ReRoPE,
Self-Extend and STRING use both of their segments while DCA and LM-Infinite stay inside their first region.
RoPE-scaling methods (factor 2) keep SDPA. Prefill = one forward pass keeping only the last token's logits;
median of --repeats runs after a short warm-up, the unpatched model timed before and after the methods.

Run: python benchmarks/bench_methods_cpu.py [--length 4096] [--repeats 3]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import ropeshift

SCALING_PARAMS = {"longrope": dict(short_factor=[1.0] * 32, long_factor=[2.0] * 32)}


def time_prefill(model, ids, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1, use_cache=False)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from ropeshift.remaps.registry import METHODS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=int, default=4096, help="prompt length in tokens")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    args = ap.parse_args()
    model, _ = ropeshift.load_model("smollm2-135m", device="cpu", progress=False)
    ids = torch.randint(100, 40000, (1, args.length), generator=torch.Generator().manual_seed(0))
    warm = ids[:, :256]

    def timed() -> float:
        time_prefill(model, warm, 1)
        return time_prefill(model, ids, args.repeats)

    base_before = timed()
    rows = []
    for name, cls in METHODS.items():
        ropeshift.remove(model)
        if getattr(cls, "kind", "attention") == "rope_scaling":
            ropeshift.apply(model, name, factor=2.0, **SCALING_PARAMS.get(name, {}))
            impl = "sdpa"
        else:
            ropeshift.apply(model, name, impl="torch")
            impl = "torch"
        rows.append((name, impl, timed()))
    ropeshift.remove(model)
    base = statistics.median([base_before, timed()])

    print(f"# SmolLM2-135M fp32, prefill {args.length} tokens, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; unpatched SDPA {base:.2f} s")
    print("| method | attention | prefill s | ratio vs unpatched |")
    print("|---|---|---|---|")
    print(f"| rope (unpatched) | sdpa | {base:.2f} | 1.00 |")
    for name, impl, t in rows:
        print(f"| {name} | {impl} | {t:.2f} | {t / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
