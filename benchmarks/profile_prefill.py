"""Where one evaluation prefill goes, kernel by kernel, against its compute floor (issue 10).

Run (GPU, ~2 min):  PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py [--shapes 48x8k,64x4k]
                    [--methods plain,string] [--compile] [--out prefill.md]
CPU smoke check:    PYTHONPATH=src:benchmarks python benchmarks/profile_prefill.py --device cpu --tiny

Model: SmolLM2-135M's shape with random weights (``profile_graph_step.build``): a forward's cost does not depend
on the weights. Per shape (rows x prompt tokens, every row unpadded) and method, the study's prefill call
(``model(ids, mask, logits_to_keep=1)``, as ``graph_decode.static_generate`` makes it, here without a cache) is
timed with CUDA events (best of --repeats), then run once under ``torch.profiler`` for its split by kernel family.
``--likelihood`` adds the perplexity task's forward of the same tokens (rows "likelihood": no mask, every
position's logits when rows x n x vocab fit the task's LOGITS_BYTES, else a strided window's 257, the NLL summed
as ``Perplexity.evaluate`` does; with --compile also on the compiled copies),
to see why a scored token costs more than a prefill token in the study.
``--compile`` adds three rows per case: "layers" and "blocks", the model compiled by ``eval.dense_compile`` in
that mode (layers: what the evaluation runs on CUDA; attention eager in both), and "compiled", the whole model
under ``torch.compile`` (our attention an opaque custom op), each on its own copy of the model, its compile time
in the last column.

The floor counts the forward's FLOPs::

    linear     2 x (non-embedding parameters) per token            (q k v o, gate up down)
    attention  4 x (visible keys summed over queries) x d x h x layers   (QK^T and PV; causal: n (n + 1) / 2 per row)
    head       2 x hidden x vocab per kept logit                    (one per row)

"attn TF/s" and "gemm TF/s" divide each family's FLOPs by its kernels' time; "floor ms" is the whole forward at
--peak-tflops (989: H100 / H200 dense bf16), so "x floor" says how far the forward is from the hardware.
"""
from __future__ import annotations

import argparse
import collections
import time

import torch

from profile_graph_step import _applied, _cases, _kernels, build, family


def flops(cfg, rows: int, n: int, kept: int = 1) -> dict[str, float]:
    """FLOPs of one causal forward of rows x n tokens by family (see the module docstring)."""
    h, kv, d, inter = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size
    hid, layers = cfg.hidden_size, cfg.num_hidden_layers
    per_layer = hid * (h * d) * 2 + hid * (kv * d) * 2 + 3 * hid * inter  # q, o; k, v; gate, up, down
    return {"linear": 2.0 * per_layer * layers * rows * n,
            "attention": 4.0 * rows * (n * (n + 1) / 2) * d * h * layers,
            "head": 2.0 * hid * cfg.vocab_size * rows * kept}


def _inputs(cfg, rows, n, device):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, cfg.vocab_size - 100, (rows, n), generator=g).to(device)
    return ids, torch.ones_like(ids)


def likelihood_keep(model, rows, n) -> int:
    """Logits kept by the perplexity task's forward of rows x n tokens: every position's (a first window, as
    many rows as keep them within LOGITS_BYTES) when they fit, else a strided window's STRIDE + 1."""
    from ropeshift.eval.tasks.perplexity import LOGITS_BYTES, STRIDE

    head = model.get_output_embeddings().weight
    fits = rows * n * head.shape[0] * head.element_size() <= LOGITS_BYTES
    return n if fits else min(n, STRIDE + 1)


def _timed(fn, device, repeats):
    """Best seconds of fn() over `repeats` runs (CUDA events on a GPU, the host clock on a CPU)."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            best = min(best, a.elapsed_time(b) * 1e-3)
        else:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def measure(model, rows, n, device, repeats, compiled=False, likelihood=False, kernels=None):
    """(seconds per forward, {family: kernel s}, compile s or None) of the study's prefill call; ``compiled``:
    the whole model under torch.compile, or True for a model whose blocks compile at their first call.
    ``likelihood``: the perplexity task's call instead (no mask, ``likelihood_keep`` logits, the NLL summed by
    ``tasks.perplexity._add_nll_sums``), as ``Perplexity.evaluate`` makes it for a first or a strided window."""
    ids, mask = _inputs(model.config, rows, n, device)
    keep = likelihood_keep(model, rows, n) if likelihood else 1
    fwd = torch.compile(model, dynamic=False) if compiled == "whole" else model

    def call():
        if likelihood:
            from ropeshift.eval.tasks.perplexity import _add_nll_sums

            sums = torch.zeros(rows, dtype=torch.float64, device=device)
            logits = fwd(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
            _add_nll_sums(sums, logits[:, :-1], ids[:, n - keep + 1:])
        else:
            fwd(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False)

    with torch.inference_mode():
        t0 = time.perf_counter()
        call()  # Triton compiles (and torch.compile's)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        first = time.perf_counter() - t0
        sec = _timed(call, device, repeats)
        _, per = _kernels(call, device)
    if kernels is not None:  # the caller's dict gets {kernel name: device s} of the profiled call
        kernels.update(per)
    fams = collections.Counter()
    for k, v in per.items():
        fams[family(k)] += v
    return sec, fams, (first - sec) if compiled else None


HEADER = ("| rows x tokens | method | loop | ms | us/token | GPU ms | attention ms | gemm ms | norm/act ms | "
          "copy/index ms | other ms | attn TF/s | gemm TF/s | TF/s | floor ms | x floor | compile s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row_line(rows, n, name, loop, sec, fams, comp, f, peak):
    total = sum(f.values())
    floor = total / (peak * 1e12)
    attn_t, gemm_t = fams.get("attention", 0.0), fams.get("gemm", 0.0)
    tf = lambda fl, t: f"{fl / t / 1e12:.0f}" if t > 0 else "-"  # noqa: E731
    cols = [f"{rows} x {n}", name, loop, f"{sec * 1e3:.1f}", f"{sec / (rows * n) * 1e6:.3f}",
            f"{sum(fams.values()) * 1e3:.1f}"]
    cols += [f"{fams.get(k, 0.0) * 1e3:.1f}" for k in ("attention", "gemm", "norm/act", "copy/index")]
    cols += [f"{(fams.get('argmax', 0.0) + fams.get('other', 0.0)) * 1e3:.1f}", tf(f["attention"], attn_t),
             tf(f["linear"] + f["head"], gemm_t), f"{total / sec / 1e12:.0f}", f"{floor * 1e3:.1f}",
             f"{sec / floor:.2f}", "-" if comp is None else f"{comp:.0f}"]
    return "| " + " | ".join(cols) + " |"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="48x8k,64x4k,96x2k,192x1k", help="rows x prompt tokens, comma separated")
    p.add_argument("--methods", default="plain,string")
    p.add_argument("--compile", action="store_true", help="also time each case under torch.compile")
    p.add_argument("--modes", default="layers,blocks,compiled",
                   help="with --compile: which of eval.dense_compile's modes and 'compiled' (whole model) to time")
    p.add_argument("--likelihood", action="store_true",
                   help="also time each case as the perplexity task's forward (no mask, all logits, NLL sums)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the floor's compute rate (dense bf16)")
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true", help="CPU smoke check: 2 layers, 2 x 64 tokens")
    p.add_argument("--out", default=None, help="also write the table as markdown")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    modes = set(args.modes.split(","))
    if args.tiny:
        args.shapes, args.repeats = "2x64", 1
    model = build(device, args.tiny)
    copies = {}
    if args.compile:
        from ropeshift.eval.dense_compile import MODES, compile_model

        for mode in (m for m in MODES if m in modes):
            copies[mode] = build(device, args.tiny)
            compile_model(copies[mode], mode)
    head = (f"# {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'} | torch "
            f"{torch.__version__} | peak {args.peak_tflops:.0f} TF/s")
    lines = [head, "", HEADER]
    print("\n".join(lines), flush=True)
    for rows, n, name in _cases(model, args):
        variants = [("eager", model, False, False)]
        if args.compile:
            variants += [(mode, m, True, False) for mode, m in copies.items()]
            variants += [("compiled", model, "whole", False)] if "compiled" in modes else []
        if args.likelihood:
            variants += [("likelihood", model, False, True)]
            variants += [(f"likelihood {mode}", m, True, True) for mode, m in copies.items()]
        for loop, m, compiled, lik in variants:
            f = flops(model.config, rows, n, kept=likelihood_keep(m, rows, n) if lik else 1)
            with _applied(m, name):
                try:
                    sec, fams, comp = measure(m, rows, n, device, args.repeats, compiled, lik)
                except Exception as e:  # one failing case (e.g. out of memory) does not end the table
                    print(f"# {rows}x{n} {name} {loop}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                    continue
            line = row_line(rows, n, name, loop, sec, fams, comp, f, args.peak_tflops)
            lines.append(line)
            print(line, flush=True)
        torch.cuda.empty_cache() if device.type == "cuda" else None
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
