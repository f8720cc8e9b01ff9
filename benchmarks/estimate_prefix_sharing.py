"""How much of a study's generation prefill repeats work already done: shared prompt prefixes and each method's
exact-RoPE prefix (issue 10, the design that could bring the study under 5 GPU-minutes; CPU, no model weights).

Run (~1 minute here: the suite's prompts are made as the runner makes them, then tokenised):
    PYTHONPATH=src:benchmarks python benchmarks/estimate_prefix_sharing.py \
        --records results/smollm2-135m_h100_2026-12-07.tgz

A prefill computes, for each row, every layer's hidden state of every prompt position; a position's states depend
only on the tokens up to it and on how the method relates their positions. Two kinds of repeats follow:

    shared prefix   rows of one task and length that begin with the same tokens (the same haystack before the
                    first needle) have the same states there, under any method:

        row a   [ template | haystack ........ | needle a | haystack ... | question ]
        row b   [ template | haystack .. | needle b | haystack ......... | question ]
                 <-- computed once ---->   (row b's prefix is row a's)

    RoPE prefix     a method that is exactly RoPE for every query below T (STRING: T = its shift S; ReRoPE: its
                    window; Self-Extend: its neighbour window; DCA: its chunk) has the rope row's states at
                    positions < T of the same prompt (``report_headline.rope_lengths``, checked from the method)

A position is repeated when it lies below either bound (the longest prefix the row shares with another row of its
cell, the method's T). Work is counted in FLOPs per position: the linear layers (2 x the decoder's weights) plus
causal attention (4 x query width x layers x the position's keys); the last position of each row is never skipped
(its logits give the first token). Cells the runner already copies from the rope row (the method is RoPE at the
whole length) are left out. ``--records`` gives each method's parameters as the study resolved them, and which
methods ran. The model's shape comes from its config (``--model``). Prints one table per method, the shared
prefix per task, and how much of it ``eval.shared_prefill``'s plan keeps (``plan_flops``) with 1-4 suffix forwards
per cell.
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path


def shared_prefixes(rows: list[list[int]]) -> list[int]:
    """For each row, the longest prefix it shares with a row before it in sorted order (0 for the first): with
    rows sorted, the longest common prefix with any other row is the one with a sorted neighbour, so summing
    ``len - shared`` over rows counts each distinct prefix-tree node once."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    out = [0] * len(rows)
    for a, b in zip(order, order[1:]):
        x, y = rows[a], rows[b]
        k, n = 0, min(len(x), len(y))
        while k < n and x[k] == y[k]:
            k += 1
        out[b] = k
    return out


def flops(lo: int, hi: int, linear: float, attention: float) -> float:
    """FLOPs of prefill positions [lo, hi): ``linear`` per position, ``attention`` per (position, visible key)."""
    return linear * (hi - lo) + attention * (hi * (hi + 1) - lo * (lo + 1)) / 2


def shape_flops(config) -> tuple[float, float]:
    """(linear FLOPs per position, attention FLOPs per position and key) of a Llama-like decoder ``config``."""
    d, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", heads) * head_dim
    weights = d * heads * head_dim * 2 + d * kv * 2 + 3 * d * config.intermediate_size
    return 2.0 * weights * layers, 4.0 * heads * head_dim * layers


def method_params(records: Path) -> dict[str, tuple[str, dict]]:
    """``{label: (method name, params)}`` of the generation records under ``records`` (a folder or a .tgz); each
    cell file's first record says its kind and method (``records.Record``, older formats included)."""
    from ropeshift.eval.records import GENERATION, Record

    if records.suffix in (".tgz", ".gz"):
        with tempfile.TemporaryDirectory(prefix="prefix_sharing_") as tmp:
            with tarfile.open(records) as tar:
                tar.extractall(tmp, filter="data")
            return method_params(Path(tmp))
    out = {}
    for f in sorted(records.rglob("*.jsonl")):
        if any(part.startswith("_") for part in f.relative_to(records).parts):
            continue  # batch logs, progress counters
        with open(f) as fh:
            line = fh.readline()
        if not line.strip():
            continue
        r = Record.from_dict(json.loads(line))
        if r.kind == GENERATION:
            out.setdefault(r.method, (r.method_name or r.method, r.params or {}))
    return out


def rope_prefix(name: str, params: dict, longest: int, step: int = 128) -> int:
    """The largest multiple of ``step`` (<= longest) below which the method is exactly RoPE."""
    from ropeshift.eval.report_headline import rope_lengths

    t = 0
    for n in range(step, longest + 1, step):
        if rope_lengths(name, params, [n]) != [n]:
            break
        t = n
    return t


def plan_flops(rows: list[list[int]], groups: int, linear: float, attention: float,
               min_shared: int | None = None) -> tuple[float, float]:
    """(FLOPs of ``eval.shared_prefill``'s plan, FLOPs of the plain prefill) for one cell's rows: the plan's donors
    prefilled whole, each other row its group's longest suffix Q (the plan as the evaluation would run it, with at
    most ``groups`` suffix forwards and any saving kept; without a plan, the plain prefill)."""
    from ropeshift.eval import shared_prefill

    full = sum(flops(0, len(r), linear, attention) for r in rows)
    kw = {} if min_shared is None else {"min_shared": min_shared}
    plan = shared_prefill.plan(rows, groups=groups, min_saving=0.0, **kw)
    if plan is None:
        return full, full
    done = sum(flops(0, len(rows[d]), linear, attention) for d in plan.donors)
    for q, pairs in plan.groups:
        done += sum(flops(max(0, len(rows[r]) - q), len(rows[r]), linear, attention) for r, _ in pairs)
    return done, full


def estimate(cells: dict, methods: dict, equal: dict, bound: dict, linear: float, attention: float) -> dict:
    """``{label: Counter(total, shared, rope, both)}`` in FLOPs. ``cells``: ``{(task, length): [token ids]}``,
    ``methods``: labels, ``equal[label]``: lengths copied from rope, ``bound[label]``: its exact-RoPE prefix T
    (0 for rope itself, whose states nothing precedes)."""
    out = {m: Counter() for m in methods}
    for (_, length), rows in cells.items():
        shared = shared_prefixes(rows)
        for m in methods:
            if length in equal[m]:
                continue
            c = out[m]
            for row, s in zip(rows, shared):
                n = len(row)
                c["total"] += flops(0, n, linear, attention)
                c["shared"] += flops(0, min(s, n - 1), linear, attention)
                c["rope"] += flops(0, min(bound[m], n - 1), linear, attention)
                c["both"] += flops(0, min(max(s, bound[m]), n - 1), linear, attention)
    return out


def main(argv=None) -> int:
    from ropeshift.eval.options import MethodSpec, parse_lengths
    from ropeshift.eval.prompts import encode_many
    from ropeshift.eval.records import GENERATION
    from ropeshift.eval.report_headline import BASELINE, rope_lengths
    from ropeshift.eval.runner import RunConfig
    from ropeshift.eval.sample_store import prepare_samples
    from ropeshift.eval.suites import SUITES
    from ropeshift.eval.tasks import resolve_task
    from ropeshift.loader import load_tokenizer, resolve_model_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=Path, required=True, help="a study's records (folder or .tgz): its methods")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--suite", default="ruler-lite", choices=sorted(SUITES))
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="prompt worker processes")
    args = ap.parse_args(argv)

    from transformers import AutoConfig

    suite = SUITES[args.suite]
    tasks = tuple(t for t in suite.tasks if resolve_task(t).kind == GENERATION)
    lengths = tuple(parse_lengths(suite.lengths))
    tokenizer = load_tokenizer(args.model)
    folder, gguf_file = resolve_model_path(args.model)
    config = AutoConfig.from_pretrained(str(folder), **({"gguf_file": gguf_file} if gguf_file else {}))
    linear, attention = shape_flops(config)
    methods = method_params(args.records)
    if not methods:
        raise SystemExit(f"no generation records under {args.records}")
    with tempfile.TemporaryDirectory(prefix="prefix_sharing_") as tmp:
        cfg = RunConfig(model=args.model, tasks=tasks, lengths=lengths, methods=(MethodSpec(BASELINE),),
                        samples=args.samples, out=Path(tmp), workers=args.workers)
        samples = prepare_samples(cfg, tokenizer, progress=False)
    cells = {k: encode_many(tokenizer, [s.prompt for s in ss], bool(ss[0].add_special_tokens))
             for k, ss in samples.items()}
    longest = max(len(r) for rows in cells.values() for r in rows)
    equal = {m: set() if m == BASELINE else set(rope_lengths(name, p, list(lengths)))
             for m, (name, p) in methods.items()}
    bound = {m: 0 if m == BASELINE else rope_prefix(name, p, longest) for m, (name, p) in methods.items()}
    got = estimate(cells, list(methods), equal, bound, linear, attention)

    print(f"{args.suite}, {args.samples} samples, {len(tasks)} generation tasks x {len(lengths)} lengths; "
          f"{linear / 1e6:.0f} MFLOP per position + {attention:.0f} per visible key")
    print("\n| method | exact-RoPE prefix T | prefill PFLOP | shared prompt prefix | RoPE prefix | either |")
    print("|---|---|---|---|---|---|")
    total = Counter()
    for m, c in got.items():
        if not c["total"]:
            continue
        total.update(c)
        print(f"| {m} | {bound[m]} | {c['total'] / 1e15:.2f} | {100 * c['shared'] / c['total']:.1f} % "
              f"| {100 * c['rope'] / c['total']:.1f} % | {100 * c['both'] / c['total']:.1f} % |")
    print(f"| **all** | | {total['total'] / 1e15:.2f} | {100 * total['shared'] / total['total']:.1f} % "
          f"| {100 * total['rope'] / total['total']:.1f} % | **{100 * total['both'] / total['total']:.1f} %** |")
    per_task = {}
    for (task, length), rows in cells.items():
        t = per_task.setdefault(task, Counter())
        for row, s in zip(rows, shared_prefixes(rows)):
            t["total"] += flops(0, len(row), linear, attention)
            t["shared"] += flops(0, min(s, len(row) - 1), linear, attention)
    print("\n| task | shared prompt prefix (every method) |\n|---|---|")
    for task, t in per_task.items():
        print(f"| {task} | {100 * t['shared'] / t['total']:.1f} % |")
    # the part of the shared prefixes the evaluation's plan keeps (eval/shared_prefill.py, per cell), each cell
    # weighted by the methods that compute it (not copied from rope)
    print("\n| suffix forwards per cell | generation prefill skipped (shared_prefill's plan, every method) |\n|---|---|")
    weight = {k: sum(1 for m in methods if k[1] not in equal[m]) for k in cells}
    for groups in (1, 2, 3, 4):
        plan = full = 0.0
        for k, rows in cells.items():
            p, f = plan_flops(rows, groups, linear, attention)
            plan, full = plan + weight[k] * p, full + weight[k] * f
        print(f"| {groups} | {100 * (1 - plan / full):.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
