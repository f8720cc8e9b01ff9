"""The prompts of a run, made once per (task, length) from the seed and stored under ``<out>/<model>/_prompts/``.

    samples = prepare_samples(cfg, tokenizer)           # {(task, length): [Sample]}: read back, or made and stored
    pending = start_samples(cfg, tokenizer)             # the same without waiting: worker processes make them
    ...                                                 # (load the model, compile) meanwhile
    samples = pending.result()

A stored file is reused when its header (task, length, seed, haystack, depths, chat) matches and it holds enough
samples; every method of a run reads the same stored prompts, so all methods see identical inputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .records import prompts_path, read_jsonl, write_atomic
from .tasks import Sample, TaskOptions, resolve_task

if TYPE_CHECKING:
    from .runner import RunConfig

_TOKENIZER = None  # set before forking prompt workers; children inherit it
# the prompt workers' niceness: below the processes that wait for their prompts with work of their own (model
# loads, compiles: on the H100 host of 2026-12-07 sixteen workers held all 16 cores for 6 s while the other
# evaluation ranks compiled, and were done ~12 s before anything needed their prompts)
WORKER_NICE = 10


def _lower_priority() -> None:
    import os

    try:
        os.nice(WORKER_NICE)
    except (AttributeError, OSError):  # no nice on this platform: the default priority
        pass


def _make(task: str, length: int, n: int, seed: int, options: TaskOptions, path=None, header=None) -> list[Sample]:
    """One (task, length)'s samples; stored at ``path`` (with ``header``) when given, by the worker that made them:
    rank 0 writing all of ruler-lite's 55 files after the last job was ~2 s of one core on a 2-core CPU and ~5 s
    of the H100 host's start-up (the second study of 2026-12-07), where the workers write theirs in parallel."""
    samples = resolve_task(task).make_samples(_TOKENIZER, length, n, seed, options)
    if path is not None:
        write_atomic(path, [{"header": header}, *(s.to_dict() for s in samples)])
    return samples


def prepare_samples(cfg: "RunConfig", tokenizer, progress: bool = True) -> dict[tuple[str, int], list[Sample]]:
    """Load stored prompts, or generate (in parallel worker processes) and store them, per (task, length)."""
    return start_samples(cfg, tokenizer, progress).result()


class PendingSamples:
    """Prompts being made by worker processes (``start_samples``); ``result()`` waits for them, stores them under
    ``_prompts/`` and returns ``{(task, length): [Sample]}``."""

    def __init__(self, cfg: "RunConfig", out: dict, missing: list, pool, futures, progress: bool):
        self.cfg, self.out, self.missing, self.pool, self.futures, self.progress = cfg, out, missing, pool, futures, progress

    def close(self) -> None:
        """Stop the workers (``result()`` does, and a caller that failed before it must): the jobs not started
        are cancelled, the running ones finish, and the workers exit. Without it a rank that raised waited
        forever at its exit for workers that were waiting for work."""
        global _TOKENIZER
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        _TOKENIZER = None

    def result(self) -> dict[tuple[str, int], list[Sample]]:
        from tqdm.auto import tqdm

        cfg, results = self.cfg, []
        bar = tqdm(total=len(self.missing), desc="prompts", disable=not self.progress or not self.missing)
        try:
            if self.futures is not None:   # made and stored by the workers
                for k, f in self.futures:
                    results.append((k, f.result()))
                    bar.update()
            else:
                for task, length, header in self.missing:
                    results.append(((task, length, header), _make(task, length, cfg.samples, cfg.seed, cfg.options,
                                                                  prompts_path(cfg.out, cfg.model, task, length),
                                                                  header)))
                    bar.update()
        finally:
            bar.close()
            self.close()  # the workers stopped: all done, unless a job raised
        for (task, length, _), samples in results:
            self.out[task, length] = samples
        self.missing, self.futures = [], None
        return self.out


def start_samples(cfg: "RunConfig", tokenizer, progress: bool = True) -> PendingSamples:
    """``prepare_samples`` without waiting: the stored prompts are read now, the missing ones handed to worker
    processes (forked here, before any later CUDA work of the caller; one per CPU core, at most one per
    (task, length)); the caller goes on (loads its model, compiles) and calls ``result()``. With one worker
    (or no fork) the prompts are made in ``result()``."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    global _TOKENIZER
    out, missing = {}, []
    for task in cfg.tasks:
        for length in cfg.lengths:
            header = {"task": task, "length": length, "seed": cfg.seed, "haystack": cfg.options.haystack,
                      "depths": cfg.options.depths, "chat": cfg.options.chat}
            stored = read_jsonl(prompts_path(cfg.out, cfg.model, task, length))
            if stored and stored[0] == {"header": header} and len(stored) - 1 >= cfg.samples:
                out[task, length] = [Sample.from_dict(d) for d in stored[1:cfg.samples + 1]]
            else:
                missing.append((task, length, header))
    workers = min(cfg.workers or os.cpu_count() or 1, len(missing))
    _TOKENIZER = tokenizer  # the workers inherit it when they are forked (at the first submit: all of them)
    pool = futures = None
    if workers > 1 and "fork" in mp.get_all_start_methods():
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_lower_priority)
        # longest first: a (task, length)'s cost grows with its length, and an 8k job handed out last (the
        # plan's order: task by task, lengths upwards) kept one worker busy after the others were done
        futures = [(k, pool.submit(_make, k[0], k[1], cfg.samples, cfg.seed, cfg.options,
                                   prompts_path(cfg.out, cfg.model, k[0], k[1]), k[2]))
                   for k in sorted(missing, key=lambda k: -k[1])]
    return PendingSamples(cfg, out, missing, pool, futures, progress)
