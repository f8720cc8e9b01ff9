"""How the runner cuts its work into batches: ranks' shares, buckets of tasks, row order, rows per batch.

    work = shard(work, ranks, lambda n: shard_block(cfg, n, ranks.world))   # this rank's prompts
    for method, length, cells in length_buckets(work, merged, ranks):  # bucket x length x method, staggered by rank
        rows = [(s, task) for task, todo in cells for s in todo]
        batches = cut_batches(rows, tasks, rows_per_batch(cfg, length), merged and ended_rows_free(model))

``work`` is ``runner.plan_work``'s ``[(method, task, length, pending samples)]``; ``cfg`` a ``runner.RunConfig``.
A merged run (``graph_decode.retire_possible``: CUDA, where the decode loop can retire ended rows) puts every
generation task of a length and method in one bucket; for a method whose ended rows are retired
(``graph_decode.ended_rows_free``) its rows are cut longest answer budget first, so the batches at 8k for one
method on one rank (73 rows each at 600k tokens) look like::

    today (power-of-4 buckets)              merged, longest budget first
    niah+cwe  73 rows   128 steps           niah+cwe  73 rows                  128 steps
    niah+cwe  29 rows   128 steps           niah 29 + kv 17 + vt 17 + pk 10     128 steps
    kv+vt     34 rows    50 steps           passkey    7 rows                     6 steps
    passkey   17 rows     6 steps
"""
from __future__ import annotations

import itertools

from . import parallel, rope_share
from .parallel import Ranks
from .records import GENERATION
from .tasks import resolve_task


def shard(work: list[tuple], ranks: Ranks, block=1) -> list[tuple]:
    """This rank's part of ``work``: whole sample groups (every method of one prompt), dealt round-robin in
    blocks of ``block`` consecutive prompts of one (task, length) cell, so each rank's generate calls stay
    full batches (``block = batch size``) instead of 1/world of one. ``block``: an int, or a function of the
    cell's length (the rows of one batch at that length)."""
    if ranks.world == 1:
        return work
    size = block if callable(block) else (lambda length: block)
    if any(size(length) < 1 for _, _, length, _ in work):
        raise ValueError(f"block must be >= 1, got {block}")
    groups = list(dict.fromkeys((task, length, s.index) for _, task, length, todo in work for s in todo))
    cells = {c: i for i, c in enumerate(dict.fromkeys(g[:2] for g in groups))}
    groups.sort(key=lambda g: (cells[g[:2]], g[2]))  # a cell's prompts in index order
    seen: dict[tuple, int] = {}
    blocks = {}
    for g in groups:
        k = seen.get(g[:2], 0)
        seen[g[:2]] = k + 1
        blocks[g] = (*g[:2], k // size(g[1]))
    owner = parallel.owners(list(dict.fromkeys(blocks.values())), ranks.world)
    mine = []
    for method, task, length, todo in work:
        todo = [s for s in todo if owner[blocks[task, length, s.index]] == ranks.rank]
        if todo:
            mine.append((method, task, length, todo))
    return mine


def rows_per_batch(cfg, length: int) -> int:
    """Rows of one generate() / evaluate() call at ``length``: ``batch_tokens // length`` when a token budget is
    set (short prompts get large batches, long ones small), else ``batch_size``."""
    return max(1, cfg.batch_tokens // length) if cfg.batch_tokens else cfg.batch_size


class MemoryCap:
    """Prompt tokens per batch that this process learned it can hold, per batch kind (generation, likelihood).

    Unbounded until a batch runs out of GPU memory (``runner._run_batch`` then retries it in halves and reports
    the smallest row count that failed); from then on that kind's batches hold at most half of those tokens,
    at every length (memory goes with tokens: KV cache and activations). Without it every later batch of the
    same size paid its own failed attempt: 28 of them, ~4-5 s each, in the 2026-12-06 H100 study (3 processes
    sharing the card at 600k tokens a batch)::

        cap = MemoryCap()
        for batch in cap.split(batches, length, kind):   # one entry's batches (one kind), longer ones cut in order
            ... run it; on an out-of-memory split: cap.learn(kind, smallest failed rows, length)
    """

    def __init__(self):
        self.tokens: dict[str, int] = {}

    def learn(self, kind: str, failed_rows: int, length: int) -> None:
        t = max(1, failed_rows * length // 2)
        self.tokens[kind] = min(self.tokens.get(kind, t), t)

    def rows(self, kind: str, length: int) -> int | None:
        """The most rows a batch of ``kind`` at ``length`` may hold (None: no bound learned)."""
        t = self.tokens.get(kind)
        return None if t is None else max(1, t // length)

    def split(self, batches, length: int, kind: str):
        """``batches`` (all of ``kind``) in order, each cut into pieces of at most ``rows(kind, length)``; the bound
        is read again before each batch, so one learned mid-bucket applies to the rest of it."""
        for batch in batches:
            cap = self.rows(kind, length)
            if cap is None or len(batch) <= cap:
                yield batch
            else:
                yield from (batch[i:i + cap] for i in range(0, len(batch), cap))


def shard_block(cfg, length: int, world: int) -> int:
    """Prompts of one cell dealt to a rank at a time: a batch's rows, but at most 1/world of the cell, so every
    rank gets a share of every cell (whole cells per rank left one rank with the costly ones: measured on the
    GPU, 2026-12-02); a rank's shares of one bucket's tasks still fill one batch together."""
    return max(1, min(rows_per_batch(cfg, length), -(-cfg.samples // world)))


def decode_bucket(task, merged: bool = False) -> tuple:
    """The bucket of a task's rows: tasks of one bucket share batches (at one length and method).

    Generation, ``merged`` (the decode loop can retire ended rows, ``graph_decode.retire_possible``): one bucket
    for every task. Where an ended row then costs a step only its few projections, not its KV reads, short answers
    (passkey 6 tokens, vt 30) ride in the long ones' batches (niah 128), ordered longest budget first
    (``cut_batches``): full batches, and the shortest budgets in the tail batch, which stops early.
    Otherwise budgets round up to the same power of 4 (passkey 6 and number_string 12 -> 16; vt 30,
    kv_retrieval 50 and needle 24 -> 64; niah 128 and cwe 120 -> 256), so a batch's rows run within 4x the
    decode steps they need. A likelihood task is its own bucket, or its ``batch_group``'s (both perplexity
    protocols: evaluate computes their shared windows once)."""
    if task.kind != GENERATION:
        return (task.batch_group or task.name,)
    if merged:
        return (GENERATION,)
    bucket = 1
    while bucket < task.max_new_tokens:
        bucket *= 4
    return (GENERATION, bucket)


def cut_batches(rows: list[tuple], tasks: dict, step: int, merged: bool = False) -> list[list[tuple]]:
    """``rows`` (``(sample, task name)``) of one ``length_buckets`` entry cut into batches of at most ``step``.

    Within a bucket rows go by prompt tokens (little padding), then task, then prompt index; a likelihood bucket
    keeps each prompt index's tasks together (a batch group's rows of one document share a batch). ``merged``
    (the active method's ended rows are retired, ``graph_decode.ended_rows_free``): generation rows of every
    budget together, longest budget first (``decode_bucket``). Otherwise an entry that holds several power-of-4
    buckets (a merged run's, for a method whose rows the loop does not retire) is cut bucket by bucket."""
    if not rows:
        return []
    if tasks[rows[0][1]].kind != GENERATION:
        groups = [sorted(rows, key=lambda x: (x[0].n_tokens, x[0].index, x[1]))]
    elif merged:
        groups = [sorted(rows, key=lambda x: (-tasks[x[1]].max_new_tokens, x[0].n_tokens, x[1], x[0].index))]
    else:
        by_bucket: dict[tuple, list] = {}
        for row in rows:
            by_bucket.setdefault(decode_bucket(tasks[row[1]]), []).append(row)
        groups = [sorted(g, key=lambda x: (x[0].n_tokens, x[1], x[0].index))
                  for _, g in sorted(by_bucket.items(), key=lambda kv: -kv[0][1])]
    return [g[i:i + step] for g in groups for i in range(0, len(g), step)]


def length_buckets(work: list[tuple], merged: bool = False, ranks: Ranks = Ranks()) -> list[tuple]:
    """``work`` (``(method, task, length, todo)``) regrouped into ``(method, length, [(task, todo), ...])``: one
    entry per decode bucket (``decode_bucket``, ``merged`` passed on) x length x method, in the order each first
    occurs (bucket-major, then length, then method, the rope row first: the methods that are exactly RoPE at a
    length copy its records, ``rope_share``; a partial run finishes whole buckets for every method). The runner
    cuts each entry into batches that mix its tasks, so a length holds few large generate() calls instead of one
    per task.

    With several ranks, rank r starts ``r / world`` of the way through that order (by prompt tokens, at the
    nearest (bucket, length) boundary) and wraps around. When every rank walked the same order the likelihood
    buckets (compute-bound forwards, no decode) ran on all ranks at once at the end, and a likelihood token cost
    2x a generation prefill token, whose forwards overlap other ranks' bandwidth-bound decode steps on a shared
    GPU (H100, 2026-12-06, benchmarks/RESULTS.md). Staggered (ruler-lite, 3 ranks: the likelihood buckets hold
    ~18 % of the prompt tokens, generation's 8k bucket ~31 %)::

        rank 0   gen 1k 2k 4k 6k 8k | lik 1k .. 8k
        rank 1   gen 6k 8k | lik 1k .. 8k | gen 1k 2k 4k
        rank 2   lik 1k .. 8k | gen 1k 2k 4k 6k 8k
    """
    groups: dict[tuple, list] = {}
    for method, task, length, todo in work:
        key = (decode_bucket(resolve_task(task), merged), length, method)
        groups.setdefault(key, []).append((task, todo))
    first: dict[tuple, int] = {}
    for i, key in enumerate(groups):
        first.setdefault(key[:2], i)
    heads = sorted(first, key=first.get)  # (bucket, length) in order of first occurrence
    if ranks.world > 1 and heads:
        tokens = dict.fromkeys(heads, 0)
        for key, cells in groups.items():
            tokens[key[:2]] += sum(s.n_tokens for _, todo in cells for s in todo)
        bounds = list(itertools.accumulate((tokens[h] for h in heads), initial=0))[:-1]
        target = sum(tokens.values()) * ranks.rank / ranks.world
        start = min(range(len(heads)), key=lambda i: abs(bounds[i] - target))
        first = {h: i for i, h in enumerate(heads[start:] + heads[:start])}
    order = sorted(groups, key=lambda k: (first[k[:2]], k[2].label != rope_share.BASELINE))
    return [(method, length, groups[_, length, method]) for _, length, method in order]
