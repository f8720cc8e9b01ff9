"""One batch's prompt forward, whole against prefix-shared (``eval/shared_prefill.py``), side by side (issue 10).

Run (GPU, ~2 min, no model files: SmolLM2-135M's shape with random weights, decoder layers compiled as the
evaluation compiles them):
    PYTHONPATH=src:benchmarks python benchmarks/bench_shared_prefill.py [--methods plain,string] [--length 8k]
        [--cells 50,25] [--repeats 3]
CPU smoke check:
    PYTHONPATH=src:benchmarks python benchmarks/bench_shared_prefill.py --device cpu --tiny

The batch mimics a study batch of NIAH rows: each cell is a haystack of random ids; its rows insert an 8-token
needle at depths spread over [0, 1) (RULER's grid) and end with the same 24-token question, cut to lengths a few
tokens apart (left padding), so rows of a cell share the haystack before their needle and cells share nothing.
Both sides fill the evaluation's static cache (``graph_decode._cache_class``) and return the last position's
logits, as ``static_generate``'s prefill does; times are CUDA-event milliseconds, best of --repeats after one
warm-up call each (the compile and autotuning). Printed per method: ms whole, ms shared (host plan included), their
ratio, the plan's share of the query tokens, its forwards, and the largest gap between the two sides' first
logits (as between batch sizes in bf16).
"""
from __future__ import annotations

import argparse
import random
import sys
import time


def batch(cells: list[int], length: int, vocab: int, seed: int = 0):
    """Token-id rows (lists): per cell, ``cells[i]`` rows sharing one haystack before their needle."""
    rng = random.Random(seed)
    question = [rng.randrange(10, vocab) for _ in range(24)]
    rows = []
    for size in cells:
        hay = [rng.randrange(10, vocab) for _ in range(length)]
        for k in range(size):
            needle = [rng.randrange(10, vocab) for _ in range(8)]
            at = int(k / size * (length - 40))
            body = hay[:at] + needle + hay[at:]
            keep = length - len(question) - rng.randrange(0, 6)
            rows.append(body[:keep] + question)
    return rows


def main(argv=None) -> int:
    import torch

    from profile_graph_step import _applied, build
    from ropeshift.eval import shared_prefill as SP
    from ropeshift.eval.dense_compile import compile_model
    from ropeshift.eval.generation import left_pad
    from ropeshift.eval.graph_decode import _cache_class, cache_kwarg
    from ropeshift.eval.options import parse_length

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="plain,string")
    ap.add_argument("--length", default="8k")
    ap.add_argument("--cells", default="50,25", help="rows per cell (rows of a cell share a haystack)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model, 2 cells of 6 rows of 300 tokens")
    ap.add_argument("--eager", action="store_true", help="decoder layers not compiled")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build(device, args.tiny)
    if not args.eager and device.type == "cuda":
        compile_model(model, "layers")
    length, cells = (300, [6, 6]) if args.tiny else (parse_length(args.length), [int(c) for c in args.cells.split(",")])
    min_shared = 16 if args.tiny else SP.MIN_SHARED
    rows = batch(cells, length, model.config.vocab_size)
    ids, mask = (t.to(device) for t in left_pad(rows, 0))
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    b, n0 = ids.shape
    kw = cache_kwarg(model)

    def whole():
        cache = _cache_class()(config=model.config, max_cache_len=n0 + 1)
        return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                     **{kw: cache}).logits[:, -1]

    def shared():   # as generation.generate: the plan from the host's ids, then the prefill
        plan = SP.plan(rows, min_shared=min_shared)
        cache = _cache_class()(config=model.config, max_cache_len=n0 + 1)
        return SP.prefill(model, kw, ids, mask, pos, cache, plan), plan

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end), out
        t0 = time.perf_counter()
        out = fn()
        return (time.perf_counter() - t0) * 1e3, out

    print(f"{device} {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}; {b} rows x {n0} "
          f"slots, cells {cells}; decoder layers {'eager' if args.eager or device.type != 'cuda' else 'compiled'}")
    print("\n| method | whole ms | shared ms | shared / whole | query tokens computed | forwards | max first-logit gap |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        with _applied(model, method), torch.inference_mode():
            want = whole()
            got, plan = shared()  # warm-up: compile, autotuning
            if plan is None:
                print(f"| {method} | - | - | - | no plan (nothing shared enough) | 1 | - |")
                continue
            gap = float((got.float() - want.float()).abs().max())
            ms_whole = min(timed(whole)[0] for _ in range(args.repeats))
            ms_shared = min(timed(shared)[0] for _ in range(args.repeats))
        share = plan.tokens(n0) / (b * n0)
        print(f"| {method} | {ms_whole:.1f} | {ms_shared:.1f} | {ms_shared / ms_whole:.3f} | {100 * share:.1f} % "
              f"| {1 + len(plan.groups)} | {gap:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
