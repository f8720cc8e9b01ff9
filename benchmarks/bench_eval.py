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
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from ropeshift.eval.generation import activate, answer_end, deactivate, generate, prompt_ids
from ropeshift.eval.options import format_length, method_specs, parse_lengths, parse_names
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
        if task.kind == "loglik":
            scores += [r["score"] for r in task.evaluate(model, tokenizer, batch)]  # perplexity
            continue
        rows = [prompt_ids(tokenizer, s.prompt, s.add_special_tokens) for s in batch]
        stops = [answer_end(task, s) for s in batch] if stop else None
        preds = generate(model, tokenizer, rows, task.max_new_tokens, stop=stops)
        scores += [task.score(s, p) for s, p in zip(batch, preds)]
        new_tokens += [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in preds]
    _sync(model)
    return time.perf_counter() - t0, scores, new_tokens


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
    p.add_argument("--out", type=Path, default=Path("runs/bench_eval"), help="where the prompts are stored")
    args = p.parse_args(argv)

    import ropeshift
    from ropeshift.eval.tasks import TaskOptions

    model, tokenizer = ropeshift.load_model(args.model, device=args.device, progress=False)
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
            if resolve_task(s.task).kind != "loglik":
                prompt_ids(tokenizer, s.prompt, s.add_special_tokens)
    t_tok = time.perf_counter() - t0
    dev = next(model.parameters()).device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"# {args.model} on {name} | torch {torch.__version__} | batch {args.batch_size} | "
          f"{args.samples} samples per cell | prompts {t_prompts:.1f} s, tokenised once in {t_tok:.1f} s")
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
                        if task.kind == "loglik":
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
