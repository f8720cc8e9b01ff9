"""Row compaction for the static-cache decode loop (``graph_decode.static_generate``): at a stop check, once the
rows still open are at most half of the batch, the loop goes on with those rows only.

    policy = default_compaction()              # Compaction(fraction=0.5, min_steps_left=8), or None when off
    policy.wants(open_rows=20, batch_rows=48, steps_left=100)          # True: 48 -> 20 rows
    policy.kept(open_rows=1)                                            # 2: one ended row kept as padding
    select_cache_rows(cache, keep)             # a StaticCache keeps rows ``keep`` [k] of its batch, in that order
    decode_batch_sizes(ends=[9, 9, 120], max_new=128, check_every=4, warmup=2, policy=policy)  # rows per step

Why: a batch decodes until its last row has ended, and the stop rows (an answer line, EOS) end long before the
one row that rambles to its budget (benchmarks/RESULTS.md, issue 10: median row end 9 of 128 steps at 8k). A
decode step reads every row's whole KV cache, so the finished rows' share of each later step is waste.

How: the open rows' slices of every layer's static K/V move into smaller tensors through ``Cache.reorder_cache``
(beam search's batch reorder; in transformers 5.17 and 5.24 alike it ``index_select``s dim 0 of each layer's
keys and values and leaves the layer's written length, one 0-d tensor for the whole batch, as it is: every row
of a left-padded batch has the same slots written). The loop's buffers are cut the same way and its CUDA graph
captured again for the new batch size (one eager warm-up step first). Nothing is recomputed, so each kept row's
keys are the bits it had; the alternative, a new prefill of the open rows' prompts and tokens so far into a
smaller cache, would cost a prefill of up to half the batch and give other bits (prefill kernels instead of
decode steps, other padding), so a row's text could change with the batch's other rows' ends. In fp32 the kept
rows' tokens equal the whole batch's (tested); in bf16 the smaller batch's kernels (the decode split count, the
GEMM algorithm) round differently, so a borderline greedy token can flip (1.6-16.7 % of rows in the H200
measurement), as between any two batch compositions.

Threshold: at most ``fraction`` = 1/2 of the batch's rows open. Each compaction has a fixed price (the kept
rows' K/V copied once: about two decode steps of the smaller batch in memory traffic; one eager warm-up step and
a capture on the host), so the rule asks every compaction to at least halve what each later step reads, which
also bounds compactions per batch at floor(log2(rows)) (5 for the 48 rows of an 8k batch); ``benchmarks/
estimate_compaction.py`` compares fractions on the study's records. ``min_steps_left``: no compaction within 8
steps of the batch's budget, where a capture could not pay for itself.

Off by default, by measurement: on the H200 with SmolLM2-135M (benchmarks/RESULTS.md, issue 10, 2026-12-03,
``bench_graph_decode.py --compaction``) it cut the study batches' row-steps by 26-51 % but not their time
(0.93-1.00x): the batch still runs every step to its longest row's end, and a step of this small model costs
about the same for 48 rows as for 12 (launch-bound kernels), while each compaction adds an eager step and a
capture. Measured again with compiled decoder layers (2026-12-05, a whole study, batch log): decode seconds
-13 %, warm-up and capture seconds +80 %, a net loss. It pays where a step's cost grows with its rows (larger
models, longer caches). A compaction keeps at least ``min_rows`` = 2 rows (one ended row as padding when one is
open): with compiled layers a batch of one row would make dynamo specialise and compile again. On:
``ROPESHIFT_COMPACT_ROWS=1`` (or a fraction, e.g. 0.75), or ``COMPACT_ROWS = True`` here when the environment
does not set it; ``ROPESHIFT_COMPACT_ROWS=0`` forces it off.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Sequence

COMPACT_ENV = "ROPESHIFT_COMPACT_ROWS"  # "0": off; "1": on (COMPACTION); a number in (0, 1): on at that fraction
COMPACT_ROWS = False  # the default when the environment says nothing: off, by measurement (module docstring)


@dataclass(frozen=True)
class Compaction:
    """When the decode loop drops its finished rows: at a stop check, when at most ``fraction`` of the batch's
    rows are open and at least ``min_steps_left`` steps remain to the batch's budget."""

    fraction: float = 0.5
    min_steps_left: int = 8
    min_rows: int = 2  # a batch of one row would make torch.compile's dynamic shapes specialise (a recompile)

    def __post_init__(self):
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
        if self.min_steps_left < 1:
            raise ValueError(f"min_steps_left must be >= 1, got {self.min_steps_left}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be >= 1, got {self.min_rows}")

    def kept(self, open_rows: int) -> int:
        """Rows a compaction keeps: the open ones, padded with ended ones up to ``min_rows``."""
        return max(open_rows, self.min_rows)

    def wants(self, open_rows: int, batch_rows: int, steps_left: int) -> bool:
        """True when the batch should shrink from ``batch_rows`` to ``kept(open_rows)`` rows (open_rows > 0)."""
        k = self.kept(open_rows)
        return 0 < open_rows and k < batch_rows and k <= self.fraction * batch_rows \
            and steps_left >= self.min_steps_left


COMPACTION = Compaction()


def compaction_enabled() -> bool:
    """False when ``ROPESHIFT_COMPACT_ROWS=0``, or when it is unset and ``COMPACT_ROWS`` is False."""
    return default_compaction() is not None


def default_compaction() -> Compaction | None:
    """The policy ``static_generate`` uses unless told (the environment read at each call): ``COMPACTION``, None
    (off), or ``COMPACTION`` at the fraction ``ROPESHIFT_COMPACT_ROWS`` gives (e.g. 0.75, to time thresholds)."""
    env = os.environ.get(COMPACT_ENV, "").strip()
    if not env:
        return COMPACTION if COMPACT_ROWS else None
    if env in ("0", "1"):
        return COMPACTION if env == "1" else None
    try:
        fraction = float(env)
    except ValueError:
        fraction = math.nan
    if not 0 < fraction < 1:
        raise ValueError(f"{COMPACT_ENV} must be 0 (off), 1 (on) or a fraction in (0, 1), got {env!r}")
    return replace(COMPACTION, fraction=fraction)


def select_cache_rows(cache, keep) -> None:
    """Keep rows ``keep`` ([k] int64 on the cache's device, k < the batch) of every layer of a filled StaticCache,
    in that order; the written length (shared by the rows) stays. The layers' keys and values become new tensors
    (a captured CUDA graph over the old ones must be captured again). Raises RuntimeError when a layer did not
    shrink (a transformers version whose ``reorder_cache`` stopped selecting rows)."""
    cache.reorder_cache(keep)
    k = int(keep.shape[0])
    for i, layer in enumerate(cache.layers):
        for name in ("keys", "values"):
            x = getattr(layer, name, None)
            if x is not None and x.shape[0] != k:
                raise RuntimeError(f"row compaction: layer {i}'s {name} kept {x.shape[0]} rows, not {k} "
                                   f"(transformers' reorder_cache changed); set {COMPACT_ENV}=0")


def decode_batch_sizes(ends: Sequence[int], max_new: int, *, check_every: int, warmup: int, rewarm: int = 1,
                       policy: Compaction | None) -> list[int]:
    """Rows of each decode forward ``static_generate`` runs for a batch whose row i is ended by the stopper
    after ``ends[i]`` new tokens (1 <= ends[i] <= max_new; the prefill gives each row its first token).

    It replays the loop's schedule: stop checks after the prefill, after the warm-up steps (``warmup`` eager
    steps before the first capture and ``rewarm`` after each compaction; 0: the eager loop, no warm-ups) and
    every ``check_every`` steps; the batch stops at the first check where every row has ended, or at max_new.
    Used to estimate what compaction saves (``benchmarks/estimate_compaction.py``); a CPU test checks it
    against the eager loop's forwards."""
    sizes: list[int] = []
    rows = list(range(len(ends)))
    t = checked = 1

    def all_ended(n):
        return max(ends) <= n

    def compact(t):
        open_rows = [i for i in rows if ends[i] > t]
        if policy is not None and policy.wants(len(open_rows), len(rows), max_new - t):
            pad = [i for i in rows if ends[i] <= t][:policy.kept(len(open_rows)) - len(open_rows)]
            return sorted(open_rows + pad)
        return rows

    if max_new == 1 or all_ended(1):
        return sizes
    rows = compact(1)
    warm = warmup
    while t < max_new:
        if warm:
            for _ in range(min(warm, max_new - t)):
                sizes.append(len(rows))
                t += 1
            warm, checked = rewarm, t
            if all_ended(t) or t == max_new:
                break
            smaller = compact(t)
            if smaller is not rows:
                rows = smaller
                continue
        while t < max_new:
            sizes.append(len(rows))
            t += 1
            if t - checked >= check_every or t == max_new:
                checked = t
                if all_ended(t):
                    return sizes
                smaller = compact(t)
                if smaller is not rows:
                    rows = smaller
                    break
    return sizes


__all__ = ["COMPACTION", "COMPACT_ENV", "COMPACT_ROWS", "Compaction", "compaction_enabled", "decode_batch_sizes",
           "default_compaction", "select_cache_rows"]
