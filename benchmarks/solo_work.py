"""A study's GPU work priced at single-process rates, and what its decode seconds follow (issue 10; CPU, no model).

Run:  PYTHONPATH=src:benchmarks python benchmarks/solo_work.py --records results/throughput_2026-12-06_h100/records

``--records``: a study's records folder (or a .tgz of one) with its batch log (``_batches/rank*.jsonl``). Three
processes share one GPU in the study, so a phase's rank-seconds say how long each process waited, not how much
GPU work it was. Here each batch's work is priced at the rates measured for one process alone (benchmarks/
RESULTS.md: ``PREFILL_US`` per prompt token by length, compiled layers, H100; a likelihood forward the same, +31 %
on the one window in five that scores every position; a decode step ``STEP_FIXED_S`` of small kernels plus its
open rows' KV bytes at ``KV_BYTES_S``)::

    generation prefill   sum of prompt tokens x PREFILL_US[length]
    likelihood           documents x 5 windows x L tokens x PREFILL_US[length] x 1.06
    decode, fixed part   decode steps x STEP_FIXED_S
    decode, KV reads     sum over rows of min(row end, steps) x L x KV_BYTES_TOKEN / KV_BYTES_S

Against the loop's wall this says how busy the GPU was (what a change can save once the GPU is full: its solo
GPU-seconds). Row ends come from the predictions (``estimate_compaction.row_end``); each generation batch's rows
are the next ``tasks`` counts of the rank's own records file of each cell, in write order (rope copies skipped).
The last table fits each batch's decode seconds to ``a x steps + b x KV TB``: how a step's wall cost splits.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

PREFILL_US = {1024: 0.76, 2048: 0.85, 4096: 1.0, 6144: 1.15, 8192: 1.29}   # us per token, one process (H100)
LIKELIHOOD_EXTRA = 1.06      # +31 % on one window of five (all logits, fp32 cross-entropy)
WINDOWS = 5                  # forwards of L per strided document; a single document is its first (shared)
STEP_FIXED_S = 1.75e-3       # a decode step's norms, GEMMs, copies with compiled layers (48 x 8k: 4.15 ms - 2.40)
KV_BYTES_TOKEN = 30 * 2 * 3 * 64 * 2   # SmolLM2-135M: layers x (K, V) x KV heads x head dim x bf16
KV_BYTES_S = 3.35e12 / 1.13  # H100 HBM3, at the decode kernel's measured 1.13 x its floor


def _near(table: dict, length: int) -> float:
    return table[min(table, key=lambda n: abs(n - length))]


def price(batches: list[dict], ends: list[list[int] | None]) -> dict:
    """Solo GPU-seconds per part of ``batches`` (batch log lines, generation and likelihood), ``ends[i]`` the row
    ends of generation batch i (None for a likelihood batch)."""
    out = Counter()
    for b, rows in zip(batches, ends):
        n = b["length"]
        if b["kind"] != "generation":
            out["likelihood"] += b["rows"] / 2 * WINDOWS * n * _near(PREFILL_US, n) * LIKELIHOOD_EXTRA / 1e6
            continue
        out["generation prefill"] += b["tokens"] * _near(PREFILL_US, n) / 1e6
        out["decode, fixed part"] += b.get("decode_steps", 0) * STEP_FIXED_S
        out["decode, KV reads"] += kv_bytes(b, rows) / KV_BYTES_S
    return dict(out)


def kv_bytes(batch: dict, ends: list[int]) -> float:
    """KV bytes the batch's decode loop read: each row's open steps (its end, at most the batch's steps) inside the
    loop's share of the steps, times its prompt length's KV."""
    steps = batch.get("steps", 0)
    if not steps:
        return 0.0
    inside = batch.get("decode_steps", 0) / steps
    return sum(min(e, steps) for e in ends) * inside * batch["length"] * KV_BYTES_TOKEN


def fit(batches: list[dict], ends: list[list[int] | None]):
    """Least squares of each generation batch's ``decode_s`` on (its decode steps, its KV TB): ``(coefficients,
    R^2, seconds each term explains)``."""
    import numpy as np

    rows = [(b["decode_steps"], kv_bytes(b, e) / 1e12, b["decode_s"]) for b, e in zip(batches, ends)
            if b["kind"] == "generation" and b.get("decode_steps")]
    x, y = np.array([r[:2] for r in rows], dtype=float), np.array([r[2] for r in rows], dtype=float)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    r2 = 1 - ((y - x @ coef) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    return coef, float(r2), (x * coef).sum(0)


def read_batches_and_ends(root: Path, tokenizer) -> tuple[list[dict], list]:
    """Every rank's batch log lines (generation and likelihood, in order) and the row ends of each generation batch."""
    from estimate_compaction import row_end

    from ropeshift.eval.batch_log import read_batches
    from ropeshift.eval.records import BATCH_LOG, read_records, record_path
    from ropeshift.eval.rope_share import SAME_AS
    from ropeshift.eval.tasks import resolve_task

    logs = sorted(root.rglob(f"{BATCH_LOG}/rank*.jsonl"))
    if not logs:
        raise SystemExit(f"{root}: no batch log ({BATCH_LOG}/rank*.jsonl) under it")
    model_dir = logs[0].parent.parent
    queues: dict[tuple, list] = {}
    batches, ends = [], []
    for b in read_batches(model_dir):
        if b.get("kind") not in ("generation", "likelihood"):
            continue
        batches.append(b)
        if b["kind"] != "generation":
            ends.append(None)
            continue
        rows = []
        for task, count in b["tasks"].items():
            key = (task, b["method"], b["length"], b["rank"])
            if key not in queues:
                path = record_path(model_dir.parent, model_dir.name, task, b["method"], b["length"], f"w{b['rank']}")
                queues[key] = [r for r in (read_records(path) if path.exists() else []) if not r.details.get(SAME_AS)]
            taken, queues[key] = queues[key][:count], queues[key][count:]
            if len(taken) != count:
                raise ValueError(f"rank {b['rank']}: a batch of {count} {task} rows finds {len(taken)} records")
            rows += [row_end(tokenizer, resolve_task(task), r) for r in taken]
        ends.append(rows)
    return batches, ends


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", required=True, help="a records folder with its batch log, or a .tgz of one")
    p.add_argument("--tokenizer", default="smollm2-135m", help="embedded model name or folder (its tokenizer)")
    p.add_argument("--loop-s", type=float, help="the study's loop seconds (wall), for the GPU's busy share")
    args = p.parse_args()
    from ropeshift.loader import load_tokenizer

    from estimate_compaction import records_folder

    tokenizer = load_tokenizer(args.tokenizer)
    with records_folder(args.records) as root:
        batches, ends = read_batches_and_ends(root, tokenizer)
    solo = price(batches, ends)
    gen = [b for b in batches if b["kind"] == "generation"]
    print(f"{len(batches)} batches ({len(gen)} generation), {sum(b.get('decode_steps', 0) for b in gen)} decode "
          f"steps, rank-seconds {sum(b['wall_s'] for b in batches):.0f}\n")
    print("| part | solo GPU-s |\n|---|---|")
    for part, s in solo.items():
        print(f"| {part} | {s:.0f} |")
    total = sum(solo.values())
    busy = f" (the loop: {args.loop_s:.0f} s, busy {total / args.loop_s:.0%})" if args.loop_s else ""
    print(f"| **sum (captures not counted)** | **{total:.0f}**{busy} |\n")
    coef, r2, parts = fit(batches, ends)
    print(f"decode seconds per generation batch ~ {coef[0] * 1e3:.2f} ms x steps + {coef[1]:.4f} s x KV TB "
          f"(R^2 {r2:.2f}; of {sum(b['decode_s'] for b in gen):.0f} rank-s: steps {parts[0]:.0f}, KV {parts[1]:.0f})")


if __name__ == "__main__":
    main()
