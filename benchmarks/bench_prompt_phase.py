"""The evaluation's prompt phase as a run's rank 0 does it: every (task, length) job of a suite handed to forked
prompt workers (``eval.sample_store.start_samples``), timed; prints the wall seconds and the workers' CPU seconds.

    PYTHONPATH=src python benchmarks/bench_prompt_phase.py --workers 16        # ruler-lite, the embedded model
    PYTHONPATH=src python benchmarks/bench_prompt_phase.py --workers 16 --tasks perplexity --lengths 8k

Run it once per commit (e.g. from a ``git worktree`` of the older one) on the same machine to compare; the H100
host has 16 cores, so ``--workers 16`` on a smaller machine measures the same jobs per worker, oversubscribed.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def measure(tokenizer, tasks, lengths, samples: int, workers: int, haystack: str = "kjv") -> dict:
    """``{"wall_s", "workers_cpu_s", "cells"}`` of one prompt phase into a fresh folder (nothing reused)."""
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig
    from ropeshift.eval.sample_store import start_samples
    from ropeshift.eval.tasks import TaskOptions

    cfg = RunConfig(model="bench", tasks=tuple(tasks), lengths=tuple(lengths), methods=(MethodSpec("rope"),),
                    samples=samples, out=Path(tempfile.mkdtemp()), workers=workers,
                    options=TaskOptions(haystack=haystack))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cells = start_samples(cfg, tokenizer, progress=False).result()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"wall_s": round(wall, 2), "workers_cpu_s": round(cpu, 2), "cells": len(cells)}


def main(argv=None) -> None:
    from ropeshift.eval.options import parse_lengths, parse_names
    from ropeshift.eval.suites import SUITES
    from ropeshift.loader import load_tokenizer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--suite", default="ruler-lite")
    p.add_argument("--tasks", default=None, help="comma-separated (default: the suite's)")
    p.add_argument("--lengths", default=None, help="e.g. 1k,8k (default: the suite's)")
    p.add_argument("--samples", type=int, default=None, help="per cell (default: the suite's)")
    p.add_argument("--workers", type=int, default=16)
    a = p.parse_args(argv)
    suite = SUITES[a.suite]
    tasks = parse_names(a.tasks, "task") if a.tasks else suite.tasks
    lengths = parse_lengths(a.lengths or suite.lengths)
    got = measure(load_tokenizer(a.model), tasks, lengths, a.samples or suite.samples, a.workers, suite.haystack)
    print(f"{a.suite}: {got['cells']} (task, length) jobs, {a.workers} workers: wall {got['wall_s']} s, "
          f"workers' CPU {got['workers_cpu_s']} s")


if __name__ == "__main__":
    main()
