"""Where a rank's cold compile goes, and which inductor settings shorten it (issue 10).

Run (GPU, ~3-4 min, no model files):
    PYTHONPATH=src:benchmarks python benchmarks/profile_compile.py --out DIR [--variants cold,warm,...]
CPU smoke check (dynamo's trace only, the tiny model):
    PYTHONPATH=src:benchmarks python benchmarks/profile_compile.py --device cpu --tiny --variants cold,warm

In the H100 studies of 2026-12-07 a rank's cold warm-up (``eval/warm_up.py``: one small generation batch under
STRING, decoder layers compiled as ``eval.dense_compile`` compiles them) took 20-24 s of one core and was the
start-up's critical path; the same graphs took 6.3-6.6 s with inductor's caches warm. Each variant here runs in a
fresh interpreter (the ranks' situation) with its own inductor and Triton cache folders (``warm`` reuses
``cold``'s), on SmolLM2-135M's shape with random weights (``profile_graph_step.build``), and times:

    import + model    the interpreter's imports and the model built on the device
    generation        warm_up(GENERATION): prefill into the static cache, eager decode steps, one capture
    likelihood        warm_up(LIKELIHOOD): the cache-less forward, after the generation warm-up

with torch.compile's own seconds (dynamo's ``compilation_time_metrics``) beside each, the number of graphs dynamo
compiled, and per variant a file ``<variant>.txt`` with dynamo's ``compile_times`` table (seconds per compile
phase: tracing, AOT, lowering, code generation, waiting for Triton's compiles). Variants:

    cold            defaults; ``cold.log`` has dynamo's per-frame steps, timestamped (TORCH_LOGS=dynamo,...)
    warm            defaults, the caches ``cold`` filled (what a second rank pays)
    threads1        TORCHINDUCTOR_COMPILE_THREADS=1: Triton's compiles in the compiling process itself
    no_autotune     inductor's pointwise autotuning off (one launch config per pointwise kernel)
    no_patterns     inductor's pattern matcher off
    profile         cold under cProfile: ``profile.txt`` lists the 60 functions with the most cumulative time
    likelihood_first  the likelihood warm-up first, then generation: graphs the two share
    pool_ready      inductor's compile workers started before the model is built (``maybe_warm_pool``, on CUDA)
                    and waited for before the warm-up (by default they start at the first kernel, which compiles
                    in the compiling process until they are ready; "pool ready" gives how long they took)
    nested          dynamo's ``nested_graph_breaks``: it resumes inside the frame of the graph break (ropeshift's
                    attention) instead of tracing the layer's stack again from above
    nested_pool     both (the evaluation ran with both in the twenty-eighth session's run 5: every generation
                    batch 0.70-0.79x as fast, warm-up not shorter; benchmarks/RESULTS.md; not in the evaluation)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()

VARIANTS = ("cold", "warm", "threads1", "no_autotune", "no_patterns", "profile", "likelihood_first", "nested", "pool_ready", "nested_pool")
CACHE_OF = {"warm": "cold"}  # variant -> the variant whose cache folders it reuses


def _child(args) -> int:
    import torch
    from profile_graph_step import build

    from ropeshift.eval import warm_up as wu
    from ropeshift.eval.batch_log import compile_seconds
    from ropeshift.eval.dense_compile import compile_model
    from ropeshift.eval.generation import activate, deactivate
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.records import GENERATION, LIKELIHOOD

    if args.child == "no_autotune":
        torch._inductor.config.triton.autotune_pointwise = False
    if args.child == "no_patterns":
        torch._inductor.config.pattern_matcher = False
    if args.child in ("nested", "nested_pool"):  # tried in the evaluation (28th session): slower graphs, dropped
        torch._dynamo.config.nested_graph_breaks = True
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pool = time.perf_counter()
    started = args.child in ("pool_ready", "nested_pool") and device.type == "cuda"
    if started:  # inductor's compile workers before the model (tried in the evaluation: no gain, dropped)
        from torch._inductor.async_compile import maybe_warm_pool

        maybe_warm_pool()
    model = build(device, args.tiny)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out = {"variant": args.child, "import + model": time.perf_counter() - T0}
    if started:
        from torch._inductor.async_compile import AsyncCompile

        AsyncCompile.wait_pool_ready()
        out["pool ready"] = time.perf_counter() - pool
    compile_model(model, "layers", backend=args.backend)

    class Tok:
        pad_token_id, eos_token_id = 0, None

        def decode(self, ids, skip_special_tokens=True):
            return ""

    kinds = (LIKELIHOOD, GENERATION) if args.child == "likelihood_first" else (GENERATION, LIKELIHOOD)
    prof = None
    if args.child == "profile":
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    activate(model, MethodSpec("string"), None, "ropeshift")
    try:
        for kind in kinds:
            t0, c0 = time.perf_counter(), compile_seconds()
            wu.warm_up(model, Tok(), kind)
            out[kind] = time.perf_counter() - t0
            out[f"{kind} compile"] = compile_seconds() - c0
    finally:
        deactivate(model)
    if prof is not None:
        import io
        import pstats

        prof.disable()
        for order in ("cumulative", "tottime"):
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats(order).print_stats(60)
            with open(os.path.join(args.out, f"profile_{order}.txt"), "w") as f:
                f.write(s.getvalue())
    from torch._dynamo.utils import compile_times, counters

    out["graphs"] = int(counters["stats"].get("unique_graphs", 0))
    with open(os.path.join(args.out, f"{args.child}.txt"), "w") as f:
        f.write(compile_times(repr="str", aggregate=True))
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="folder of the per-variant files (default: a temporary one)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--backend", default="inductor")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.out = args.out or tempfile.mkdtemp(prefix="profile_compile_")
    os.makedirs(args.out, exist_ok=True)
    if args.child:
        return _child(args)
    caches = tempfile.mkdtemp(prefix="profile_compile_caches_")
    rows = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        cache = os.path.join(caches, CACHE_OF.get(variant, variant))
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=os.path.join(cache, "triton"))
        if variant in ("cold", "nested"):  # each frame's trace and compile steps, timestamped, in cold.log
            env.setdefault("TORCH_LOGS", "dynamo,recompiles,graph_breaks")
        if variant == "threads1":
            env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--out", args.out,
               "--backend", args.backend] + (["--device", args.device] if args.device else []) + \
              (["--tiny"] if args.tiny else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        with open(os.path.join(args.out, f"{variant}.log"), "w") as f:
            f.write(proc.stdout + proc.stderr)
        result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
        if result is None:
            print(f"{variant}: failed (exit {proc.returncode}); see {variant}.log\n{proc.stderr[-2000:]}", flush=True)
            continue
        result["process"] = wall
        rows.append(result)
        print(f"{variant}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in result.items() if k != "variant"), flush=True)
    cols = ["process", "import + model", "generation", "generation compile", "likelihood", "likelihood compile",
            "graphs"]
    print("\n| variant | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['variant']} | " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])
                                                 for c in cols) + " |")
    print(f"\nper-variant compile phases: {args.out}/<variant>.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
