"""Where an evaluation's time went, from its batch log (``<run>/<model>/_batches/rank<R>.jsonl``,
``ropeshift.eval.batch_log``): seconds per phase summed per task bucket and length, and per rank.

    PYTHONPATH=src python benchmarks/batch_profile.py --records runs/ [--out profile.md]

Phases (seconds of wall time in the rank's process, each ending at a host sync): tokenize (prompts to ids),
prefill (prompt forward + first token), capture (eager warm-up steps + CUDA-graph captures), decode (replayed
steps), generate (``model.generate`` where the graph loop does not serve), likelihood (perplexity's forwards), host
(the rest: padding, texts, scoring, records, and the failed attempts of batches retried in halves on CUDA
out-of-memory: the per-rank table counts those splits and their batches' wall). With several ranks on one GPU
each phase includes the other ranks' time slices: compare a rank's sum of batch walls with its span (first batch
start to last batch end). On CUDA the per-rank table also gives the largest peak and reserved GiB of the rank's
batches and the least free GiB on the device after one (``batch_log.gpu_memory``; "-" elsewhere), and the seconds
``torch.compile`` spent inside its batches with the number of batches that compiled (``compile_s``). One line
gives what the first batch of each method and kind cost beyond its cell's median (``first_batch_excess``: on a
cold CUDA machine, Triton compiling ropeshift's kernels at their first launch; ``eval/kernel_warm.py``).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

PHASES = ("tokenize_s", "prefill_s", "capture_s", "decode_s", "generate_s")


def bucket(b: dict) -> str:
    return "+".join(sorted(b["tasks"]))


def first_batch_excess(batches: list[dict]) -> tuple[float, list[tuple]]:
    """Seconds the first batch of each (method, kind), across ranks, took beyond the median of its (method, kind,
    length) cell: the compile work a first launch does (Triton's kernels, on CUDA), where a cell has more than one
    batch. The measure is the prefill for generation batches (their decode depends on the answers) and the wall
    for likelihood ones. Returns the total and ``(method, kind, length, rank, first, median)`` per first batch,
    largest excess first."""
    import statistics

    def measure(b):
        return (b.get("prefill_s") or 0.0) if b["kind"] == "generation" else b["wall_s"]

    cells = defaultdict(list)
    for b in batches:
        cells[b["method"], b["kind"], b["length"]].append(measure(b))
    seen, rows = set(), []
    for b in sorted(batches, key=lambda b: b["t"] - b["wall_s"]):
        if (b["method"], b["kind"]) in seen:
            continue
        seen.add((b["method"], b["kind"]))
        med = statistics.median(cells[b["method"], b["kind"], b["length"]])
        rows.append((b["method"], b["kind"], b["length"], b["rank"], measure(b), med))
    rows.sort(key=lambda r: r[5] - r[4])
    return sum(r[4] - r[5] for r in rows), rows


def summarize(lines: list[dict]) -> str:
    """Markdown tables: phases per bucket and length, each rank's walls against its span, start-up per rank."""
    batches = [b for b in lines if b["kind"] != "startup"]
    rows = defaultdict(lambda: defaultdict(float))
    for b in batches:
        r = rows[bucket(b), b["length"]]
        r["batches"] += 1
        r["rows"] += b["rows"]
        r["tokens"] += b["tokens"]
        r["wall_s"] += b["wall_s"]
        for k in PHASES:
            r[k] += b.get(k, 0.0)
        if b["kind"] != "generation":
            r["likelihood_s"] += b["wall_s"]
        r["steps"] += b.get("steps", 0)
        # logs written before ``decode_steps`` existed (2026-12-05): a graph batch's steps after the prefill's
        # token and its 2 eager warm-up steps
        legacy = max(0, b.get("steps", 0) - 3) if b.get("decode") == "graphs" else 0
        r["decode_steps"] += b.get("decode_steps", legacy)
    head = ("| bucket | length | batches | rows | Mtok | wall s | tokenize | prefill | capture | decode | generate "
            "| likelihood | host | steps | us/tok prefill | ms/step |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    total = defaultdict(float)
    for (name, length), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        phases = sum(r[k] for k in PHASES) + r["likelihood_s"]
        host = r["wall_s"] - phases
        for k, v in r.items():
            total[k] += v
        total["host"] += host
        us = 1e6 * r["prefill_s"] / r["tokens"] if r["prefill_s"] and r["tokens"] else None
        ms = 1e3 * r["decode_s"] / r["decode_steps"] if r["decode_steps"] else None
        out.append(f"| {name} | {length} | {int(r['batches'])} | {int(r['rows'])} | {r['tokens'] / 1e6:.2f} "
                   f"| {r['wall_s']:.1f} | {r['tokenize_s']:.1f} | {r['prefill_s']:.1f} | {r['capture_s']:.1f} "
                   f"| {r['decode_s']:.1f} | {r['generate_s']:.1f} | {r['likelihood_s']:.1f} | {host:.1f} "
                   f"| {int(r['steps'])} | {'-' if us is None else f'{us:.2f}'} | {'-' if ms is None else f'{ms:.2f}'} |")
    t = total
    out.append(f"| **all** | | {int(t['batches'])} | {int(t['rows'])} | {t['tokens'] / 1e6:.2f} | {t['wall_s']:.1f} "
               f"| {t['tokenize_s']:.1f} | {t['prefill_s']:.1f} | {t['capture_s']:.1f} | {t['decode_s']:.1f} "
               f"| {t['generate_s']:.1f} | {t['likelihood_s']:.1f} | {t['host']:.1f} | {int(t['steps'])} | | |")
    ranks = defaultdict(list)
    for b in batches:
        ranks[b["rank"]].append(b)
    out += ["", "| rank | batches | sum of batch walls s | span s | walls / span | out-of-memory splits | "
            "their batches' wall s | peak GiB | reserved GiB, most | free GiB, least | torch.compile s (batches) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rank, bs in sorted(ranks.items()):
        walls = sum(b["wall_s"] for b in bs)
        span = max(b["t"] for b in bs) - min(b["t"] - b["wall_s"] for b in bs)
        split = [b for b in bs if b.get("oom_splits")]
        mem = [max((b[k] for b in bs if k in b), default=None) for k in ("peak_gib", "reserved_gib")] + \
            [min((b["free_gib"] for b in bs if "free_gib" in b), default=None)]  # CUDA runs only
        out.append(f"| {rank} | {len(bs)} | {walls:.1f} | {span:.1f} | {walls / span if span else 0:.2f} "
                   f"| {sum(b['oom_splits'] for b in split)} | {sum(b['wall_s'] for b in split):.1f} | "
                   + " | ".join("-" if m is None else f"{m:.1f}" for m in mem)
                   + f" | {sum(b.get('compile_s', 0.0) for b in bs):.1f} ({sum('compile_s' in b for b in bs)}) |")
    excess, firsts = first_batch_excess(batches)
    top = ", ".join(f"{m} {k[:3]} {n} {f:.1f}/{med:.1f}" for m, k, n, _, f, med in firsts[:6])
    out += ["", f"First batch of each method and kind beyond its cell's median: {excess:.1f} rank-s "
            f"(largest, first / median s: {top})"]
    starts = sorted((s for s in lines if s["kind"] == "startup"), key=lambda s: s["rank"])
    if starts:
        names = list(dict.fromkeys(k for s in starts for k in s["phases"]))
        out += ["", "| rank | start-up s | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for s in starts:
            out.append(f"| {s['rank']} | {s['total_s']:.1f} | "
                       + " | ".join(f"{s['phases'].get(k, 0.0):.1f}" for k in names) + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    from ropeshift.eval.batch_log import read_batches

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", required=True, type=Path, help="a run folder (or a model folder) with _batches/")
    ap.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = ap.parse_args(argv)
    batches = read_batches(args.records)
    if not batches:
        print(f"no batch log under {args.records} (_batches/rank*.jsonl)", file=sys.stderr)
        return 1
    text = summarize(batches)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
