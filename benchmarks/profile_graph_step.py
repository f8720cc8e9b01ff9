"""Where one CUDA-graph decode step of the evaluation goes, kernel by kernel (issue 10).

Run (GPU, ~2 min):  PYTHONPATH=src python benchmarks/profile_graph_step.py [--shapes 48x8k,64x4k]
                    [--methods plain,string] [--steps 32] [--out step.md]
Per-batch cost:     PYTHONPATH=src python benchmarks/profile_graph_step.py --overhead [--shapes 48x8k]
Ended rows:         add --ended 0.64 [--check-every 8] to --overhead: the stopper ends that share of the rows at
                    its first check; each row of the table is timed with ended rows retired (their mask zeroed
                    below the next slot: the kernels skip their keys, ``graph_decode.retire``) and without
                    (ROPESHIFT_RETIRE_ROWS=0), "retire on / off" in the method column
Compiled layers:    add --compile layers,blocks: every case also on a copy of the model compiled by
                    ``eval.dense_compile`` in that mode (layers: what the evaluation runs on CUDA), rows "+<mode>"
CPU smoke check:    PYTHONPATH=src python benchmarks/profile_graph_step.py --device cpu --tiny [--overhead]

Model: SmolLM2-135M's shape (30 layers, hidden 576, 9 query / 3 key-value heads of 64, MLP 1536, vocab 49152,
RoPE theta 1e5) in bf16 with random weights: a step's cost does not depend on the weights, so no model file is
needed. Per shape (rows x prompt tokens) and method, ``eval.graph_decode.static_generate`` (the study's decode
loop: static cache, one captured step replayed; on a CPU the same steps eagerly) runs with a stopper that never
ends a row, once for 1 new token (the prefill) and once for 1 + T, each under ``torch.profiler``: the difference
of the two, divided by T, is one decode step. Columns: wall ms per step (host clock), GPU kernel ms per step and
its split by kernel family, and the floor: the KV bytes one step must read (rows x tokens x layers x 2 x kv
heads x head dim x 2 bytes) at the measured copy bandwidth.

``--overhead`` (no profiler: the profiler inflates host time several-fold): whole ``static_generate`` calls of 1,
1 + T and 1 + 3T new tokens, timed on the host, best of 3: the prefill alone, the per-step slope, and the fixed
cost per batch (warm-up steps, capture, the final check) = the 1 + T call minus the prefill minus T steps.
(2026-12-03 on the H200 this also compared a capture without ``torch.cuda.graph``'s ``empty_cache``: no
difference, 0.06-0.12 s per batch either way, so the loop keeps ``torch.cuda.graph``.)
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import re
import time

import torch

FAMILIES = (  # (family, kernel-name pattern), first match wins
    ("attention", r"_table_decode_split|_decode_combine|_hopper_ws|_table_prefill|flash|fmha|attention"),
    ("gemm", r"gemm|gemv|xmma|cutlass|nvjet|cublas|wgmma|matmul"),
    ("norm/act", r"rms|norm|silu|act|mul|add|rsqrt|pow|mean|neg|cos|sin|exp"),
    ("copy/index", r"copy|cat|index|gather|scatter|fill|arange|where|slice|view|contig"),
    ("argmax", r"argmax|reduce|max"),
)


def family(name: str) -> str:
    low = name.lower()
    for fam, pat in FAMILIES:
        if re.search(pat, low):
            return fam
    return "other"


def build(device, tiny=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    width = (dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  num_hidden_layers=2, vocab_size=512) if tiny else
             dict(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                  num_hidden_layers=30, vocab_size=49152))
    cfg = LlamaConfig(**width, max_position_embeddings=8192, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                      bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.float32 if device.type == "cpu" else torch.bfloat16)
    return model.eval()


def _kernels(fn, device):
    """(wall s, {kernel name: device s}) of fn() under the profiler (CUDA kernels; on a CPU: no kernels)."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    out = collections.Counter()
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            out[e.name] += getattr(e, "device_time", None) or e.cuda_time  # us
    return wall, {k: v * 1e-6 for k, v in out.items()}


def profile(model, rows, length, steps, device):
    """Per-step wall s, per-step kernel s by name, of static_generate over a rows x length batch."""
    from ropeshift.eval.graph_decode import graph_decode_reason, static_generate

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.config.vocab_size - 100, (rows, length), generator=g).to(device)
    mask = torch.ones_like(ids)
    capture = graph_decode_reason(model) is None

    def never(toks, _):
        return torch.zeros(toks.shape[0], dtype=torch.bool)

    def run(t):
        return lambda: static_generate(model, ids, mask, never, max_new=t, graphs=capture, check_every=t)

    with torch.inference_mode():
        run(steps + 1)()  # warm-up: Triton compiles, allocator
        w1, k1 = _kernels(run(1), device)
        wt, kt = _kernels(run(steps + 1), device)
    per = {name: (kt.get(name, 0.0) - k1.get(name, 0.0)) / steps for name in kt}
    return (wt - w1) / steps, {k: v for k, v in per.items() if v > 0}, capture


def overhead(model, rows, length, steps, device, repeats=3, ended=0.0, check_every=None):
    """(prefill s, per-step s, fixed s per batch) from host-timed static_generate calls (no profiler).

    ended: share of the rows (the first ones) that the stopper ends at its first check, every ``check_every``
    steps (default: once per call, at its end)."""
    from ropeshift.eval import graph_decode as G

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.config.vocab_size - 100, (rows, length), generator=g).to(device)
    mask = torch.ones_like(ids)
    capture = G.graph_decode_reason(model) is None

    n_end = int(round(ended * rows))
    if not 0 <= n_end < rows:
        raise ValueError(f"--ended must leave at least one row running, got {ended} of {rows} rows")

    def stopper(toks, _):
        out = torch.zeros(toks.shape[0], dtype=torch.bool)
        out[:n_end] = True
        return out

    def timed(t):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        G.static_generate(model, ids, mask, stopper, max_new=t, graphs=capture, check_every=check_every or t)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    best = None
    with torch.inference_mode():
        timed(1 + steps)  # Triton compiles
        for _ in range(repeats):
            got = (timed(1), timed(1 + steps), timed(1 + 3 * steps))
            best = got if best is None else tuple(min(a, b) for a, b in zip(best, got))
    t0, t1, t3 = best
    per = (t3 - t1) / (2 * steps)
    return t0, per, t1 - t0 - steps * per


def _cases(model, args):
    """(rows, prompt tokens, method) of every --shapes x --methods row."""
    from ropeshift.eval.options import parse_length

    for shape in args.shapes.split(","):
        rows, length = shape.split("x")
        for name in args.methods.split(","):
            yield int(rows), parse_length(length), name


@contextlib.contextmanager
def _applied(model, name):
    """The model with method ``name`` applied (impl auto) for the duration."""
    import ropeshift

    ropeshift.apply(model, name, impl="auto")
    try:
        yield
    finally:
        ropeshift.remove(model)


def copy_bandwidth(device):
    if device.type != "cuda":
        return None
    x = torch.empty(2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize(device)
    return 2 * x.numel() * 10 / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="48x8k,96x8k,64x4k,192x2k", help="rows x prompt tokens, comma separated")
    p.add_argument("--methods", default="plain,string")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true", help="CPU smoke check: 2 layers, 2 x 64 tokens, 4 steps")
    p.add_argument("--top", type=int, default=6, help="kernels listed per row")
    p.add_argument("--out", default=None, help="also write the table as markdown")
    p.add_argument("--compile", default="", help="also run every case on a copy of the model compiled in these "
                   "eval.dense_compile modes (comma separated: layers, blocks)")
    p.add_argument("--overhead", action="store_true", help="time whole calls instead (no profiler): prefill, "
                   "per-step and per-batch fixed cost")
    p.add_argument("--ended", type=float, default=0.0, help="with --overhead: share of the rows ended at the "
                   "stopper's first check, each case timed with those rows retired and not")
    p.add_argument("--check-every", type=int, default=None, help="with --overhead: steps between stopper checks "
                   "(default: one check per call)")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.tiny:
        args.shapes, args.steps = "2x64", 4
    model = build(device, args.tiny)
    models = [("", model)]
    for mode in filter(None, args.compile.split(",")):
        from ropeshift.eval.dense_compile import compile_model

        copy = build(device, args.tiny)
        compile_model(copy, mode)
        models.append((f"+{mode}", copy))
    if args.overhead:
        return main_overhead(models, args, device)
    cfg = model.config
    kv_bytes_per_token = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 2
    bw = copy_bandwidth(device)
    lines = [f"# {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} | torch {torch.__version__}"
             f" | copy bandwidth {bw / 1e12:.2f} TB/s" if bw else "# cpu (no kernel times)", "",
             "| rows x tokens | method | loop | wall ms/step | GPU ms/step | attention | gemm | norm/act | copy/index "
             "| argmax | other | KV floor ms | top kernels (ms/step) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for (rows, length, name), (tag, m) in ((c, v) for c in _cases(model, args) for v in models):
        with _applied(m, name):
            wall, per, capture = profile(m, rows, length, args.steps, device)
        fams = collections.Counter()
        for k, v in per.items():
            fams[family(k)] += v
        floor = rows * length * kv_bytes_per_token / bw * 1e3 if bw else None
        top = sorted(per.items(), key=lambda kv: -kv[1])[:args.top]
        line = (f"| {rows} x {length} | {name} | {'graph' if capture else 'eager'}{tag} | {wall * 1e3:.2f} | "
                f"{sum(per.values()) * 1e3:.2f} | "
                + " | ".join(f"{fams[f] * 1e3:.2f}" for f in ("attention", "gemm", "norm/act", "copy/index",
                                                               "argmax", "other"))
                + f" | {'-' if floor is None else f'{floor:.2f}'} | "
                + "; ".join(f"{k[:48]} {v * 1e3:.3f}" for k, v in top) + " |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")



def main_overhead(models, args, device):
    lines = ["| rows x tokens | method | prefill s | ms per step | fixed s per batch | 1 + T call s |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    import os

    from ropeshift.eval.graph_decode import RETIRE_ENV

    retire = ("1", "0") if args.ended else (None,)
    for (rows, length, name), (tag, m), flag in ((c, v, f) for c in _cases(models[0][1], args) for v in models
                                                  for f in retire):
        before = os.environ.get(RETIRE_ENV)
        if flag is not None:
            os.environ[RETIRE_ENV] = flag
        try:
            with _applied(m, name):
                t0, per, fixed = overhead(m, rows, length, args.steps, device, ended=args.ended,
                                          check_every=args.check_every)
        finally:
            if flag is not None:
                os.environ.pop(RETIRE_ENV, None) if before is None else os.environ.__setitem__(RETIRE_ENV, before)
        label = name + tag
        if flag is not None:
            label += f", {args.ended:.0%} ended, retire {'on' if flag == '1' else 'off'}"
        line = (f"| {rows} x {length} | {label} | {t0:.3f} | {per * 1e3:.2f} | {fixed:.3f} | "
                f"{t0 + fixed + args.steps * per:.3f} |")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
