"""Evaluation throughput: samples/s per task, length and method, with generation stopped at the answer's end.

Run (GPU, the embedded model, the study's cells at 50 samples each; ~minutes):
    PYTHONPATH=src python benchmarks/bench_eval.py --compare-full --out $OUT/bench_eval
CPU smoke check (numbers mean little):
    PYTHONPATH=src python benchmarks/bench_eval.py --device cpu --lengths 512 --samples 2 --batch-size 2 \\
        --tasks passkey,niah_single_1,vt --methods rope,string --compare-full

The prompts are made once (``runner.prepare_samples``, stored under ``--out``) and tokenised once
(``generation.prompt_ids``) before any timing; the tokenisation time is printed on its own. Each cell then runs
what the runner runs: the method activated, samples sorted by length and cut into ``--batch-size`` batches, one
``generate`` per batch with every row stopped at its answer's end (``generation.answer_end``), or the task's
``evaluate`` for likelihood tasks. ``--compare-full`` also runs every generation cell without the stop (EOS or
the task's max new tokens only) and counts the samples whose score differs: the stop's cost in accuracy.
Columns: samples/s (wall clock of the cell, CUDA synchronised), mean new tokens per row, mean score (perplexity
for likelihood tasks).

From a study's records instead (no model; ``--records``): samples/s per task and method from the records' own
``seconds`` (the runner stores each batch's wall time / rows, per process), and the whole study's time
extrapolated from them::

    python benchmarks/bench_eval.py --records /root/fresh --baseline /root/base/study \
        --timeline timeline.tsv --suite ruler-lite

Per process, a cell costs the sum of its records' ``seconds``. Several processes share one GPU, so the GPU's wall
time is that sum over the concurrency C = (sum of every record's seconds) / (the evaluation loop's wall time);
the loop's wall time comes from ``--timeline`` (lines ``<epoch s> <records so far> <loop started 0/1>``, sampled
by scripts/gpu_study_call.sh; the first line ``# start <epoch s>``), else from the busiest writer's summed
seconds (records files ``<length>.w<rank>.jsonl``; inter-batch gaps not counted). The whole suite's estimate
takes each cell from the records (a partial cell scaled to the suite's samples), else from ``--baseline``'s
records of the same cell (an earlier run of the suite) times the fresh/baseline cost ratio over the cells both
hold (per record kind and length, else per kind; likelihood cells without a fresh one keep the baseline's cost:
the decode loop does not touch them; a cell the baseline lacks too: the baseline's mean over the same task and
length); every line says which share came from where. Tasks that share generate() calls (one decode bucket,
``batching.decode_bucket``) share each batch's seconds evenly, so their per-task rates are the mix's, not their own.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from ropeshift.eval.generation import activate, answer_end, deactivate, generate, prompt_ids
from ropeshift.eval.options import format_length, method_specs, parse_lengths, parse_names
from ropeshift.eval.records import LIKELIHOOD, NOT_RECORDS
from ropeshift.eval.runner import RunConfig, prepare_samples
from ropeshift.eval.tasks import resolve_task

TASKS = "passkey,niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah4,vt,kv_retrieval,cwe,perplexity"
METHODS = "rope,string,yarn,rerope,self_extend,dca,lm_infinite"


def _sync(model) -> None:
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()


def run_cell(task, model, tokenizer, samples, batch_size: int, stop: bool) -> tuple[float, list[float], list[int]]:
    """(seconds, scores, new tokens per row) for one task x length x method, as the runner batches it."""
    todo = sorted(samples, key=lambda s: (s.n_tokens, s.index))
    scores, new_tokens = [], []
    _sync(model)
    t0 = time.perf_counter()
    for i in range(0, len(todo), batch_size):
        batch = todo[i:i + batch_size]
        if task.kind == LIKELIHOOD:
            scores += [r["score"] for r in task.evaluate(model, tokenizer, batch)]  # perplexity
            continue
        rows = [prompt_ids(tokenizer, s.prompt, s.add_special_tokens) for s in batch]
        stops = [answer_end(task, s) for s in batch] if stop else None
        preds = generate(model, tokenizer, rows, task.max_new_tokens, stop=stops)
        scores += [task.score(s, p) for s, p in zip(batch, preds)]
        new_tokens += [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in preds]
    _sync(model)
    return time.perf_counter() - t0, scores, new_tokens


_WRITER = re.compile(r"\.w(\d+)\.jsonl$")


def record_costs(root: Path) -> tuple[dict, dict]:
    """``({(task, method, length): [n, seconds, kind]}, {writer rank: summed seconds})`` of the records under
    ``root`` (a run folder or a model folder; one record per sample key, as ``records.iter_records``)."""
    from ropeshift.eval.records import read_records

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no records folder {root}")
    cells, ranks, seen = {}, defaultdict(float), set()
    for p in sorted(root.rglob("*.jsonl")):
        if set(NOT_RECORDS) & set(p.relative_to(root).parts):
            continue
        m = _WRITER.search(p.name)
        for r in read_records(p):
            if r.key in seen or r.seconds is None:
                continue
            seen.add(r.key)
            c = cells.setdefault((r.task, r.method, r.length), [0, 0.0, r.kind])
            c[0] += 1
            c[1] += r.seconds
            ranks[int(m.group(1)) if m else 0] += r.seconds
    return cells, dict(ranks)


def read_timeline(path: Path) -> dict:
    """``{"start", "loop", "last"}`` epoch seconds from a timeline file: the run's start (``# start T``), the
    first sample that saw the loop started (third column 1; else the last sample before the first record), and
    the first sample that saw the final record count."""
    start, rows = None, []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if line.startswith("# start") and len(parts) >= 3:
            start = float(parts[2])
        elif len(parts) >= 2 and not line.startswith("#"):
            rows.append((float(parts[0]), int(parts[1]), int(parts[2]) if len(parts) > 2 else 0))
    if not rows:
        raise ValueError(f"{path}: no samples")
    start = rows[0][0] if start is None else start
    loop = next((t for t, _, on in rows if on), None)
    if loop is None:
        before = [t for t, n, _ in rows if n == 0]
        loop = before[-1] if before else start
    final = rows[-1][1]
    last = next(t for t, n, _ in rows if n == final)
    return {"start": start, "loop": loop, "last": last, "records": final}


def _ratio(fresh: dict, base: dict, match) -> float | None:
    """Fresh / baseline per-sample cost over the cells both hold that satisfy ``match(key, kind)``."""
    num = den = 0.0
    for k, (n, s, kind) in fresh.items():
        b = base.get(k)
        if b is None or not match(k, kind) or not n or not b[0]:
            continue
        num += s
        den += b[1] / b[0] * n
    return num / den if den > 0 else None


def method_settings(*roots: Path | None) -> dict[str, tuple[str, dict]]:
    """``{method label: (method name, resolved params)}`` from the first record of each records file."""
    import json

    out = {}
    for root in roots:
        if root is None:
            continue
        for p in sorted(Path(root).rglob("*.jsonl")):
            if set(NOT_RECORDS) & set(p.parts):
                continue
            with open(p, encoding="utf-8") as f:
                line = f.readline()
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "method" in r:
                out.setdefault(r["method"], (r.get("method_name"), r.get("params")))
    return out


def copied_cells(settings: dict, methods, lengths) -> set[tuple[str, int]]:
    """(method label, length) pairs whose records a run copies from another row (``eval/rope_share.donors``: the
    method is exactly RoPE there, or exactly an earlier row of ``methods``), when ``methods`` holds the rope row."""
    from ropeshift.eval.rope_share import BASELINE, donors

    if BASELINE not in methods:
        return set()
    rows = [(m, {"method": settings[m][0], "params": settings[m][1]}) for m in methods if m in settings]
    return {(m, n) for m, given in donors(rows, lengths, rope=True).items() for n in given}


def extrapolate(fresh: dict, base: dict, cells: list[tuple[str, str, int]], samples: int,
                copied: set = frozenset()) -> tuple[dict, list]:
    """Per-process seconds of every suite cell: ``({cell: (seconds, source)}, [cells without any estimate])``;
    source "copied" (0 s: exactly RoPE, ``copied`` holds its (method, length)), "measured", "scaled" (a partial
    fresh cell), "baseline x r" (another run's cost times the ratio; "baseline (other methods) x r" where that run
    lacks the cell: its mean over the same task and length)."""
    out, missing = {}, []
    for cell in cells:
        if cell[1:] in copied:
            out[cell] = (0.0, "copied")
            continue
        f = fresh.get(cell)
        if f and f[0] >= samples:
            out[cell] = (f[1] * samples / f[0], "measured")
            continue
        if f and f[0]:
            out[cell] = (f[1] * samples / f[0], "scaled")
            continue
        b, src = base.get(cell), "baseline"
        if not b or not b[0]:  # the baseline lacks this cell too: its other methods' mean at this task x length
            same = [c for k, c in base.items() if k[0] == cell[0] and k[2] == cell[2] and c[0]]
            if not same:
                missing.append(cell)
                continue
            b = [sum(c[0] for c in same), sum(c[1] for c in same), same[0][2]]
            src = "baseline (other methods)"
        kind, length = b[2], cell[2]
        r = (_ratio(fresh, base, lambda k, kd: kd == kind and k[2] == length)
             or _ratio(fresh, base, lambda k, kd: kd == kind))
        if r is None:
            r = 1.0  # no fresh cell of this kind: the baseline's cost as it was
        out[cell] = (b[1] * samples / b[0] * r, f"{src} x {r:.2f}")
    return out, missing


def records_report(records: Path, baseline: Path | None, timeline: Path | None, suite_name: str | None,
                   target_s: float = 300.0, tasks=None, methods=None, lengths=None, samples=None) -> str:
    """The markdown of ``--records``: samples/s per task and method, and the whole suite's extrapolated time."""
    from ropeshift.eval.suites import SUITES

    fresh, ranks = record_costs(records)
    if not fresh:
        raise ValueError(f"no records with seconds under {records}")
    base = record_costs(baseline)[0] if baseline else {}
    total_n = sum(c[0] for c in fresh.values())
    total_s = sum(c[1] for c in fresh.values())
    lines = [f"# throughput from the records under {records}", ""]
    tl = read_timeline(timeline) if timeline else None
    if tl:
        loop_wall = max(tl["last"] - tl["loop"], 1e-9)
        overhead = tl["loop"] - tl["start"]
        how = (f"timeline: {overhead:.0f} s from the run's start to its evaluation loop (processes, model loading, "
               f"prompts), {loop_wall:.0f} s of loop to the last record")
    else:
        loop_wall, overhead = max(ranks.values()), None
        how = (f"no timeline: loop wall = the busiest of {len(ranks)} writers' summed seconds, {loop_wall:.0f} s "
               "(gaps between batches not counted; load and prompts unknown)")
    conc = total_s / loop_wall
    lines += [f"{total_n:,} records, {total_s:.1f} process-seconds, {len(ranks)} writer(s); {how}.",
              f"GPU rate: {total_n / loop_wall:.2f} samples/s over the loop; concurrency C = {conc:.2f} "
              "(process-seconds per second of loop)", ""]
    task_names = list(dict.fromkeys(k[0] for k in fresh))
    method_names = list(dict.fromkeys(k[1] for k in fresh))
    if suite_name:
        suite = SUITES[suite_name]
        order = {t: i for i, t in enumerate(suite.tasks)}
        task_names.sort(key=lambda t: order.get(t, len(order)))
        morder = {m.label: i for i, m in enumerate(suite.methods)}
        method_names.sort(key=lambda m: morder.get(m, len(morder)))
    lines += ["Samples/s per process (records / their summed seconds; GPU rate = x C), per task and method:", "",
              "| task | samples | " + " | ".join(method_names) + " | all, per process | all, GPU |",
              "|---|---|" + "---|" * len(method_names) + "---|---|"]
    for t in task_names:
        row, tn, ts = [], 0, 0.0
        for m in method_names:
            n = sum(c[0] for k, c in fresh.items() if k[:2] == (t, m))
            s = sum(c[1] for k, c in fresh.items() if k[:2] == (t, m))
            row.append(f"{n / s:.2f}" if s else "-")
            tn, ts = tn + n, ts + s
        lines.append(f"| {t} | {tn} | " + " | ".join(row) + f" | {tn / ts:.2f} | {tn / ts * conc:.1f} |")
    lengths_seen = sorted({k[2] for k in fresh})
    lines += ["", "Per length (all tasks and methods): " + ", ".join(
        f"{format_length(L)} {sum(c[0] for k, c in fresh.items() if k[2] == L)} samples at "
        f"{sum(c[0] for k, c in fresh.items() if k[2] == L) / sum(c[1] for k, c in fresh.items() if k[2] == L) * conc:.1f}"
        "/s" for L in lengths_seen)]
    if base:
        rows = []
        for t in task_names:
            r = _ratio(fresh, base, lambda k, kd, t=t: k[0] == t)
            if r:
                rows.append(f"{t} {1 / r:.2f}x")
        if rows:
            lines += ["", "Per-process samples/s, fresh / baseline on the same cells: " + ", ".join(rows)]
    if suite_name:
        suite = SUITES[suite_name]
        s_tasks = tuple(tasks) if tasks else suite.tasks
        s_methods = tuple(methods) if methods else tuple(m.label for m in suite.methods)
        s_lengths = tuple(lengths) if lengths else parse_lengths(suite.lengths)
        n_samples = samples or suite.samples
        cells = [(t, m, L) for t in s_tasks for m in s_methods for L in s_lengths]
        copied = copied_cells(method_settings(records, baseline), s_methods, s_lengths)
        est, missing = extrapolate(fresh, base, cells, n_samples, copied)
        secs = sum(s for s, _ in est.values())
        share = defaultdict(float)
        for s, src in est.values():
            share[src if src in ("measured", "scaled", "copied") else "baseline"] += s
        n_copied = sum(1 for _, src in est.values() if src == "copied")
        ratios = sorted({src for _, src in est.values() if src.startswith("baseline")})
        loop_est = secs / conc
        total_samples = len(cells) * n_samples
        lines += ["", f"## whole study extrapolated: {suite_name}, {len(s_tasks)} tasks x {len(s_lengths)} lengths x "
                  f"{len(s_methods)} rows x {n_samples} samples = {total_samples:,} samples", "",
                  f"process-seconds {secs:.1f} (measured cells {share['measured']:.1f}, partial cells scaled "
                  f"{share['scaled']:.1f}, from the baseline's costs {share['baseline']:.1f}"
                  + (f"; {len(missing)} cells without any estimate" if missing else "")
                  + f"; {n_copied} cells copied at 0 s from rope or an earlier row, exactly equal there: "
                  "eval/rope_share.py)",
                  f"evaluation loop at C = {conc:.2f}: {loop_est:.0f} s"
                  + (f"; + {overhead:.0f} s start-up (as measured) = {loop_est + overhead:.0f} s" if overhead is not None
                     else "") + f" = {(loop_est + (overhead or 0)) / 60:.1f} GPU-minutes, "
                  f"{total_samples / (loop_est + (overhead or 0)):.1f} samples/s; target {target_s / 60:.0f} "
                  f"GPU-minutes: {'met' if loop_est + (overhead or 0) <= target_s else 'missed'}"]
        if ratios:
            lines += ["", "baseline costs used as: " + ", ".join(ratios)]
        per_task = defaultdict(float)
        for (t, _, _), (s, _) in est.items():
            per_task[t] += s
        lines += ["", "Estimated loop seconds per task: " + ", ".join(
            f"{t} {per_task[t] / conc:.0f}" for t in s_tasks if t in per_task)]
        if missing:
            lines += ["", "cells without an estimate: " + ", ".join(
                f"{t}/{m}/{format_length(L)}" for t, m, L in missing[:20]) + (" ..." if len(missing) > 20 else "")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--lengths", default="1k,4k,8k")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--impl", default="auto")
    p.add_argument("--haystack", default=None, help="e.g. kjv (as the study); default: each task's own")
    p.add_argument("--compare-full", action="store_true", help="also run without the stop; count changed scores")
    p.add_argument("--compile", choices=["auto", "layers", "blocks", "off"], default="auto", help="decoder layers "
                   "under torch.compile as the runner does (eval.dense_compile; auto: layers on CUDA)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_eval"), help="where the prompts are stored")
    g = p.add_argument_group("from stored records (no model run)")
    g.add_argument("--records", type=Path, default=None,
                   help="a study's records folder: samples/s per task and method from the records' seconds")
    g.add_argument("--baseline", type=Path, default=None,
                   help="an earlier run's records: cost of the cells --records lacks, for the extrapolation")
    g.add_argument("--timeline", type=Path, default=None, help="'<epoch s> <records> <loop 0/1>' lines of the run")
    g.add_argument("--suite", default=None, help="extrapolate to this suite's cells (e.g. ruler-lite); --tasks/"
                   "--methods/--lengths/--samples given explicitly narrow it")
    g.add_argument("--target", type=float, default=300.0, help="the whole study's target, seconds (default 300)")
    args = p.parse_args(argv)
    if args.records is not None:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        print(records_report(
            args.records, args.baseline, args.timeline, args.suite, args.target,
            tasks=parse_names(args.tasks, "tasks") if "--tasks" in given else None,
            methods=parse_names(args.methods, "methods") if "--methods" in given else None,
            lengths=parse_lengths(args.lengths) if "--lengths" in given else None,
            samples=args.samples if "--samples" in given else None), end="")
        return 0

    import ropeshift
    from ropeshift.eval.tasks import TaskOptions

    model, tokenizer = ropeshift.load_model(args.model, device=args.device, progress=False)
    from ropeshift.eval import dense_compile

    mode = dense_compile.resolve(args.compile, model)
    if mode:
        dense_compile.compile_model(model, mode)
    cfg = RunConfig(model=args.model, tasks=parse_names(args.tasks, "tasks"), lengths=parse_lengths(args.lengths),
                    methods=method_specs(parse_names(args.methods, "methods")), samples=args.samples,
                    options=TaskOptions(haystack=args.haystack), batch_size=args.batch_size, out=args.out,
                    impl=args.impl if args.impl != "auto" else None)
    t0 = time.perf_counter()
    cells = prepare_samples(cfg, tokenizer, progress=False)
    t_prompts = time.perf_counter() - t0
    t0 = time.perf_counter()
    for samples in cells.values():
        for s in samples:
            if resolve_task(s.task).kind != LIKELIHOOD:
                prompt_ids(tokenizer, s.prompt, s.add_special_tokens)
    t_tok = time.perf_counter() - t0
    dev = next(model.parameters()).device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"# {args.model} on {name} | torch {torch.__version__} | batch {args.batch_size} | "
          f"compile {args.compile} | {args.samples} samples per cell | prompts {t_prompts:.1f} s, tokenised once in {t_tok:.1f} s")
    head = "| task | length | method | samples/s | mean new tokens | mean score |"
    rule = "|---|---|---|---|---|---|"
    if args.compare_full:
        head += " samples/s, no stop | mean new tokens, no stop | scores changed by the stop |"
        rule += "---|---|---|"
    print(head + "\n" + rule, flush=True)
    total_s, total_n, full_s = 0.0, 0, 0.0
    for method in cfg.methods:
        activate(model, method, cfg.impl)
        try:
            for task_name in cfg.tasks:
                task = resolve_task(task_name)
                for length in cfg.lengths:
                    samples = cells[task_name, length]
                    secs, scores, toks = run_cell(task, model, tokenizer, samples, args.batch_size, stop=True)
                    total_s, total_n = total_s + secs, total_n + len(samples)
                    mean_tok = f"{statistics.mean(toks):.1f}" if toks else "-"
                    line = (f"| {task_name} | {format_length(length)} | {method.label} | {len(samples) / secs:.2f} | "
                            f"{mean_tok} | {statistics.mean(scores):.3f} |")
                    if args.compare_full:
                        if task.kind == LIKELIHOOD:
                            line += " - | - | - |"
                            full_s += secs
                        else:
                            fsecs, fscores, ftoks = run_cell(task, model, tokenizer, samples, args.batch_size,
                                                             stop=False)
                            full_s += fsecs
                            changed = sum(a != b for a, b in zip(scores, fscores))
                            line += (f" {len(samples) / fsecs:.2f} | {statistics.mean(ftoks):.1f} | "
                                     f"{changed} of {len(samples)} |")
                    print(line, flush=True)
        finally:
            deactivate(model)
    print(f"\ntotal: {total_n} samples in {total_s:.1f} s = {total_n / total_s:.2f} samples/s"
          + (f"; without the stop: {full_s:.1f} s" if args.compare_full else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
