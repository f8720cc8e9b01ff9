"""The evaluation's compiled-layers prefill under inductor settings, side by side, kernel by kernel (issue 10).

Run (GPU, ~5 min):  PYTHONPATH=src:benchmarks python benchmarks/bench_inductor_knobs.py [--knobs default,cdt,autotune]
                    [--shapes 48x8k,384x1k,17x8k:lik] [--method plain] [--top 25] [--out knobs.md]
                    (a shape ending in ":lik" times the perplexity task's forward: no mask, its logits)
CPU smoke check:    PYTHONPATH=src:benchmarks python benchmarks/bench_inductor_knobs.py --device cpu --tiny --knobs default

Why: with compiled layers, a prefill of 48 x 8k tokens spends 119 of 505 ms in fused elementwise kernels and
copies and 120 ms in GEMMs (benchmarks/RESULTS.md, fourteenth session). Whether inductor's own options recover
part of that (GEMM epilogue fusion with its Triton templates, tuned pointwise kernels) decides whether the study
can lose GPU time without kernels of our own. Each setting runs in its own process (inductor's config is
process-wide; its on-disk caches are shared, so a setting is timed after its own compile, not a cold one):
``eval.dense_compile.compile_model(model, "layers")`` on SmolLM2-135M's shape with random weights, the method
applied as the study applies it (``ropeshift.apply(model, method, impl="auto")``), then
``profile_prefill.measure`` (the study's prefill call, CUDA events, best of --repeats; one profiled call for the
split by kernel family). Printed: ms per forward and its ratio to "default", the family split, the compile's
seconds, and the --top kernels of each setting by GPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

KNOBS = {  # name -> torch._inductor.config assignments
    "default": {},
    "cdt": {"coordinate_descent_tuning": True},
    "autotune": {"max_autotune": True, "max_autotune_gemm": True, "max_autotune_gemm_backends": "ATEN,TRITON"},
    "autotune-triton": {"max_autotune": True, "max_autotune_gemm": True, "max_autotune_gemm_backends": "TRITON"},
    "freezing": {"freezing": True},
    "free-strides": {"keep_output_stride": False},  # graph outputs in inductor's layout, not eager's
}


def child(knob: str, args) -> None:
    import torch

    import profile_prefill as pp
    from profile_graph_step import _applied, build
    from ropeshift.eval.dense_compile import compile_model
    from ropeshift.eval.options import parse_length

    for key, value in KNOBS[knob].items():
        setattr(torch._inductor.config, key, value)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build(device, args.tiny)
    compile_model(model, "layers")
    shapes = ["2x64", "2x64:lik"] if args.tiny else args.shapes.split(",")
    for shape in shapes:
        dims, _, kind = shape.partition(":")
        rows, n = dims.split("x")
        rows, n, lik = int(rows), parse_length(n), kind == "lik"
        with _applied(model, args.method):
            t0 = time.perf_counter()
            per = {}
            with torch.inference_mode():
                sec, fams, comp = pp.measure(model, rows, n, device, args.repeats, compiled=True, likelihood=lik,
                                             kernels=per)
        top = sorted(per.items(), key=lambda kv: -kv[1])[:args.top]
        print("RESULT " + json.dumps({"knob": knob, "shape": shape, "ms": sec * 1e3, "compile_s": comp,
                                      "wall_s": time.perf_counter() - t0,
                                      "fams": {k: v * 1e3 for k, v in fams.items()},
                                      "top": [(k[:110], v * 1e3) for k, v in top]}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--knobs", default="default,cdt,autotune")
    p.add_argument("--shapes", default="48x8k,384x1k,17x8k:lik")
    p.add_argument("--method", default="plain")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per setting")
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args)
        return
    unknown = [k for k in args.knobs.split(",") if k not in KNOBS]
    if unknown:
        raise SystemExit(f"unknown knob(s) {unknown}; known: {', '.join(KNOBS)}")
    results = []
    for knob in args.knobs.split(","):
        cmd = [sys.executable, __file__, "--child", knob] + [a for a in (argv or sys.argv[1:])]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=os.environ)
        except subprocess.TimeoutExpired:
            print(f"# {knob}: stopped after {args.timeout:.0f} s", flush=True)
            continue
        got = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not got:
            print(f"# {knob}: exit {done.returncode}: {done.stderr[-1500:]}", flush=True)
        print(f"# {knob}: {time.perf_counter() - t0:.0f} s in all", flush=True)
        results += got
    base = {r["shape"]: r["ms"] for r in results if r["knob"] == "default"}
    fam_names = ("attention", "gemm", "norm/act", "copy/index")
    lines = ["| setting | rows x tokens | ms | x default | " + " | ".join(f"{f} ms" for f in fam_names)
             + " | other ms | compile s |", "|---" * (6 + len(fam_names)) + "|"]
    for r in results:
        ratio = f"{r['ms'] / base[r['shape']]:.3f}" if r["shape"] in base else "-"
        other = sum(v for k, v in r["fams"].items() if k not in fam_names)
        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}"
        lines.append(f"| {r['knob']} | {r['shape']} | {r['ms']:.1f} | {ratio} | "
                     + " | ".join(f"{r['fams'].get(f, 0.0):.1f}" for f in fam_names) + f" | {other:.1f} | {comp} |")
    for r in results:
        lines += ["", f"Top kernels, {r['knob']} {r['shape']} (ms per forward):", ""]
        lines += [f"    {v:8.2f}  {k}" for k, v in r["top"]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
