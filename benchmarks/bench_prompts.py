"""Making a study's prompts: wall time, tokenisations and a digest of the prompts, for the current
``prompts.fit_largest`` or the one of another ``prompts.py`` (an older commit's), side by side.

Run (CPU; the embedded model's tokenizer, a suite's generation tasks at its lengths; ~1-2 minutes here):
    PYTHONPATH=src python benchmarks/bench_prompts.py --suite ruler-lite --samples 50 --workers 2
Against an older search (the galloping one before 2026-12-06's line search):
    git show 444dfcc:src/ropeshift/eval/prompts.py > /tmp/prompts_old.py
    PYTHONPATH=src python benchmarks/bench_prompts.py --suite ruler-lite --reference /tmp/prompts_old.py

Each search makes every generation task's prompts (``Task.make_samples``, the samples a study stores) in one
process (tokenisations counted: every ``count_tokens`` call) and then with ``--workers`` processes as the runner
does (``sample_store.prepare_samples``, wall time only); the digest is a hash of every prompt's text and token
count, so equal digests mean the two searches made the same prompts. Likelihood tasks do not search (their
windows are cut from token ids) and are left out.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def load_search(path: Path | None):
    """``fit_largest`` of the ``prompts.py`` at ``path`` (None: the installed one)."""
    if path is None:
        from ropeshift.eval.prompts import fit_largest

        return fit_largest
    spec = importlib.util.spec_from_file_location("reference_prompts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fit_largest


def digest(samples) -> str:
    from ropeshift.eval.prompts import prompt_hash

    return prompt_hash(json.dumps(sorted((s.task, s.length, s.index, s.prompt, s.n_tokens) for s in samples)))


def measure(tokenizer, tasks, lengths, samples: int, search, workers: int = 1) -> dict:
    """``{"prompts", "tokenisations", "seconds", "digest"}`` of one process making every (task, length)'s
    ``samples`` prompts with ``search`` as ``fit_largest``, and ``"workers_seconds"``: the same through
    ``prepare_samples`` with ``workers`` processes (when ``workers > 1``)."""
    import ropeshift.eval.tasks.base as base
    from ropeshift.eval.options import MethodSpec
    from ropeshift.eval.runner import RunConfig
    from ropeshift.eval.sample_store import prepare_samples
    from ropeshift.eval.tasks import TaskOptions, resolve_task

    calls = [0]
    real_search, real_count = base.fit_largest, base.count_tokens

    def counted(*a, **k):
        calls[0] += 1
        return real_count(*a, **k)

    base.fit_largest, base.count_tokens = search, counted
    try:
        t0 = time.perf_counter()
        made = [s for task in tasks for n in lengths
                for s in resolve_task(task).make_samples(tokenizer, n, samples, 0, TaskOptions())]
        out = {"prompts": len(made), "tokenisations": calls[0], "seconds": time.perf_counter() - t0,
               "digest": digest(made)}
        if workers > 1:
            folder = Path(tempfile.mkdtemp(prefix="bench_prompts_"))
            try:
                cfg = RunConfig(model="bench", tasks=tuple(tasks), lengths=tuple(lengths),
                                methods=(MethodSpec("rope"),), samples=samples, out=folder, workers=workers)
                t0 = time.perf_counter()
                prepare_samples(cfg, tokenizer, progress=False)  # forked workers inherit the search
                out["workers_seconds"] = time.perf_counter() - t0
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        base.fit_largest, base.count_tokens = real_search, real_count
    return out


def main(argv=None) -> int:
    from ropeshift.eval.options import parse_lengths
    from ropeshift.eval.suites import SUITES
    from ropeshift.eval.tasks import resolve_task
    from ropeshift.eval.records import GENERATION
    from ropeshift.loader import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--suite", default="ruler-lite", choices=sorted(SUITES))
    ap.add_argument("--samples", type=int, default=50, help="prompts per task and length (default 50, a study's)")
    ap.add_argument("--lengths", help="override the suite's lengths (e.g. 1k,8k)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the runner's way (1: skip it)")
    ap.add_argument("--reference", type=Path, help="another prompts.py whose fit_largest runs first, for comparison")
    args = ap.parse_args(argv)
    suite = SUITES[args.suite]
    tasks = [t for t in suite.tasks if resolve_task(t).kind == GENERATION]
    lengths = parse_lengths(args.lengths or suite.lengths)
    tokenizer = load_tokenizer(args.model)
    searches = ([("reference", load_search(args.reference))] if args.reference else []) + \
        [("current", load_search(None))]
    print(f"{args.suite}: {len(tasks)} generation tasks x {len(lengths)} lengths x {args.samples} samples")
    print("| search | prompts | tokenisations | one process s | workers s | digest |\n|---|---|---|---|---|---|")
    results = {}
    for name, search in searches:
        r = results[name] = measure(tokenizer, tasks, lengths, args.samples, search, args.workers)
        print(f"| {name} | {r['prompts']} | {r['tokenisations']} | {r['seconds']:.1f} "
              f"| {r.get('workers_seconds', float('nan')):.1f} | {r['digest']} |", flush=True)
    if len(results) == 2:
        ref, cur = results["reference"], results["current"]
        print(f"same prompts: {ref['digest'] == cur['digest']}; tokenisations x{ref['tokenisations'] / cur['tokenisations']:.2f} "
              f"fewer; one process x{ref['seconds'] / cur['seconds']:.2f} faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
