"""Data-parallel eval throughput: 1 rank vs N ranks (``ropeshift eval --workers N``), same prompts (CPU default).

Each configuration runs the same pending samples (prompts are generated once, before any timing, and copied to
each run's folder), in ``N`` processes spawned as ``--workers`` does; every rank loads the model, meets the
others at a barrier, and the time from that barrier to the last rank's end is the eval time (model loading and
process start-up are printed apart). On CPU the cores are shared out: N ranks get ``cores // N`` threads each,
one rank gets all of them (``--threads K``: K per rank instead, to separate the two effects: on a loaded
machine a single process's intra-op threads lose much to contention). Prints samples/s per configuration
and the ratio against one rank.

Run:
  python benchmarks/bench_eval_dp.py                                   # smollm2-135m, passkey 512, 16 samples, 1 vs 2
  python benchmarks/bench_eval_dp.py --workers 1,2,4 --samples 64 --lengths 1k --device cuda   # one GPU per rank
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ropeshift.eval import parallel
from ropeshift.eval.options import method_specs, parse_lengths, parse_names
from ropeshift.eval.records import iter_records, model_dir
from ropeshift.eval.runner import RunConfig, prepare_samples, run


def _load(model: str, device: str | None):
    from ropeshift.loader import load_model

    return load_model(model, device=device, progress=False)


def _timed_rank(cfg: RunConfig, model: str, device: str | None, result: Path, threads: int | None) -> None:
    """One rank: load, barrier, run, barrier; rank 0 writes the times."""
    import torch

    ranks = parallel.Ranks.from_env()
    created = parallel.init_group(ranks)
    try:
        dev = parallel.device_for(ranks, device)
        if dev in (None, "cpu"):
            torch.set_num_threads(threads or parallel.cpu_threads(ranks))
        t_load = time.perf_counter()
        m, tok = _load(model, dev)
        t_load = time.perf_counter() - t_load
        parallel.barrier(ranks)
        t0 = time.perf_counter()
        run(cfg, m, tok, progress=False, ranks=ranks)
        parallel.barrier(ranks)
        if ranks.main:
            result.write_text(json.dumps({"eval_s": time.perf_counter() - t0, "load_s": t_load,
                                          "threads": torch.get_num_threads()}))
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tasks", default="passkey")
    ap.add_argument("--lengths", default="512")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--methods", default="rope,string")
    ap.add_argument("--workers", default="1,2", help="comma-separated rank counts to compare")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads per rank (default: cores // ranks)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_eval_dp_"))
    base = RunConfig(model="bench", tasks=parse_names(args.tasks, "tasks"), lengths=parse_lengths(args.lengths),
                     methods=method_specs(parse_names(args.methods, "methods")), samples=args.samples,
                     out=root / "prompts", share_rope=False)  # every record computed: the work being timed
    _, tok = _load(args.model, "cpu")
    prepare_samples(base, tok, progress=False)
    print(f"model {args.model}  tasks {args.tasks}  lengths {args.lengths}  samples {args.samples}  methods "
          f"{args.methods}  device {args.device}  cores {os.cpu_count()}  {platform.processor() or platform.machine()}")
    print(f"{'ranks':>5} {'records':>8} {'eval s':>8} {'samples/s':>10} {'vs 1 rank':>10} {'load s':>7} {'threads':>8}")
    first = None
    try:
        for n in (int(w) for w in args.workers.split(",")):
            out = root / f"w{n}"
            shutil.copytree(model_dir(base.out, "bench") / "_prompts", model_dir(out, "bench") / "_prompts")
            cfg = replace(base, out=out)
            result = root / f"w{n}.json"
            parallel.spawn(_timed_rank, (cfg, args.model, args.device, result, args.threads), n)
            t = json.loads(result.read_text())
            records = len(list(iter_records(model_dir(out, "bench"))))
            rate = records / t["eval_s"]
            first = first or rate
            print(f"{n:>5} {records:>8} {t['eval_s']:>8.2f} {rate:>10.2f} {rate / first:>10.2f} {t['load_s']:>7.1f} "
                  f"{t['threads']:>8}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
