"""Prefill a left-padded batch whose rows share prompt prefixes, each shared prefix computed once (issue 10; off by
default, by measurement: ``ROPESHIFT_SHARE_PREFIX=1`` turns it on for ``generation.generate``'s static-cache loop,
which plans on the host's ids and hands the plan to ``graph_decode.static_generate``).

Measured on the H100 (benchmarks/RESULTS.md, 2026-12-07, ``benchmarks/bench_shared_prefill.py``): one 75-row 8k
batch of two NIAH-like cells computes 67.4 % of its query tokens in 4 forwards and takes 0.967x (plain) and 0.958x
(STRING) of one forward's time, the extra forwards' fixed costs taking back most of the third; in a whole study it
cost more than it saved (each method's first shared batch compiles new kernel variants and graphs).

A position's states depend only on the tokens up to it and on how the method relates their positions, so rows that
begin with the same tokens (a task's haystack before its needle) have the same keys and values there, under every
method. Here one donor row per cluster of such rows is prefilled whole; every other row takes the donor's keys and
values below their common prefix and computes only its suffix. Suffixes are right-aligned (left padding already
aligns every row's end) and computed in a few forwards, rows grouped by suffix length (a row computes its group's
longest suffix Q; the first slots of that block may still be shared ones, recomputed)::

    slot            0 ...                                  n0 - Q          n0
    donor    [ pad | ===================================================== ]   forward 1: whole rows
    row a    [ pad | donor's keys / values ............... | ============= ]   forward 2: slots [n0 - Q, n0)
    row b    [ donor's keys / values ..................... | ===== ....... ]   (its suffix is shorter than Q)

Each forward runs on its own rows with a ``DynamicCache`` (a suffix forward's cache first holds slots
[0, n0 - Q), gathered from the donor's: the donor's slot for the row's slot t is t + len_row - len_donor);
afterwards every layer's keys and values are put back in batch order and written into the caller's cache with one
``update`` per layer. ``benchmarks/estimate_prefix_sharing.py`` prices this plan over a study's prompts
(``plan_flops``, per task cell). Numerics: as between two batch sizes (bf16 GEMMs of other shapes), not bit-equal
to one forward over the batch.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

ENV = "ROPESHIFT_SHARE_PREFIX"  # "1": on
MIN_SHARED = 256  # a row takes a donor's prefix only when they share at least this many tokens
GROUPS = 3        # suffix forwards at most
MIN_SAVING = 0.10  # a plan skipping less of the batch's query tokens is not worth its extra forwards (a guess)


def enabled() -> bool:
    """Whether ``generation.generate`` shares prefixes (the environment read at each call)."""
    value = os.environ.get(ENV, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 0 or 1, got {value!r}")
    return value == "1"


@dataclass(frozen=True)
class Plan:
    """Which rows are prefilled how. ``donors``: rows prefilled whole; ``groups``: per suffix forward, its query
    block length Q and its (row, donor) pairs."""

    donors: tuple[int, ...]
    groups: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]

    def tokens(self, n0: int) -> int:
        """Query slots the plan's forwards compute for a batch padded to ``n0`` (the donors' whole padded rows,
        each group's Q per row), against ``b * n0`` for one forward."""
        return len(self.donors) * n0 + sum(q * len(pairs) for q, pairs in self.groups)


def _common(a, b) -> int:
    m = min(len(a), len(b))
    diff = torch.nonzero(a[:m] != b[:m])
    return int(diff[0, 0]) if len(diff) else m


def plan(rows, groups: int = GROUPS, min_shared: int = MIN_SHARED, min_saving: float = MIN_SAVING) -> Plan | None:
    """The plan for ``rows`` (each row's valid token ids, 1-D tensors or lists), or None when it would not skip
    ``min_saving`` of the query tokens of one forward over the batch.

    Rows sorted by their tokens fall into clusters of neighbours sharing >= ``min_shared`` tokens; in each the
    donor is the row sharing the most with the others (the common prefix of two rows of a cluster is the least
    of the neighbour prefixes between them). Receivers are then grouped by suffix length into at most ``groups``
    forwards, cut where the query tokens are fewest."""
    rows = [torch.as_tensor(r).cpu() for r in rows]
    n = len(rows)
    if n < 2:
        return None
    # big-endian bytes of non-negative ids sort as the id sequences do (memcmp instead of Python lists)
    keys = [r.numpy().astype(">u4").tobytes() for r in rows]
    order = sorted(range(n), key=keys.__getitem__)
    near = [_common(rows[a], rows[b]) for a, b in zip(order, order[1:])]  # near[k]: order[k] with order[k + 1]
    clusters, first = [], 0
    for k in range(n):
        if k == n - 1 or near[k] < min_shared:
            clusters.append(order[first:k + 1])
            first = k + 1
    donors, receivers = [], []  # receivers: (suffix, row, donor)
    start = 0
    for members in clusters:
        k = len(members)
        links = near[start:start + k - 1]  # links[j]: members[j] with members[j + 1]
        start += k
        if k == 1:
            donors.append(members[0])
            continue
        # with_each[p][q]: prefix members[p] shares with members[q] (running minimum of the links between)
        with_each = [[0] * k for _ in range(k)]
        for p in range(k):
            run = None
            for q in range(p + 1, k):
                run = links[q - 1] if run is None else min(run, links[q - 1])
                with_each[p][q] = with_each[q][p] = run
        p = max(range(k), key=lambda p: sum(with_each[p]))
        donor = members[p]
        donors.append(donor)
        for q, i in enumerate(members):
            if q != p:
                s = min(with_each[p][q], len(rows[i]) - 1)  # the last position's logits give the first token
                receivers.append((len(rows[i]) - s, i, donor))
    if not receivers:
        return None
    receivers.sort()
    suffix = torch.tensor([r[0] for r in receivers], dtype=torch.float64)
    m = len(receivers)
    # best[k][j]: fewest query tokens for receivers[:j] in k groups; cut[k][j]: where its last group starts
    best = [torch.full((m + 1,), float("inf"), dtype=torch.float64)]
    best[0][0] = 0.0
    cut = [None]
    for k in range(1, groups + 1):
        row, back = torch.full((m + 1,), float("inf"), dtype=torch.float64), torch.zeros(m + 1, dtype=torch.long)
        row[0] = 0.0
        for j in range(1, m + 1):
            starts = torch.arange(j, dtype=torch.float64)
            costs = best[k - 1][:j] + (j - starts) * suffix[j - 1]
            i = int(costs.argmin())
            row[j], back[j] = costs[i], i
        best.append(row)
        cut.append(back)
    k = min(range(1, groups + 1), key=lambda k: float(best[k][m]))
    bounds, j = [], m
    while j > 0:
        i = int(cut[k][j])
        bounds.append((i, j))
        j, k = i, k - 1
    out = Plan(tuple(sorted(donors)),
               tuple((receivers[j - 1][0], tuple((r, d) for _, r, d in receivers[i:j])) for i, j in reversed(bounds)
                     if j > i))
    n0 = max(len(r) for r in rows)
    return out if out.tokens(n0) <= (1 - min_saving) * n * n0 else None


@functools.cache
def _eager_dynamic_cache():
    """transformers' ``DynamicCache`` with its ``update`` left out of ``torch.compile``'s traces (as
    ``graph_decode._cache_class`` does for the static cache: no recompile per layer)."""
    from transformers import DynamicCache

    class EagerUpdateDynamicCache(DynamicCache):
        update = torch.compiler.disable(DynamicCache.update)

    return EagerUpdateDynamicCache


def _forward(model, cache_kw: str, ids, mask, pos, cache):
    """Last-position logits [rows, V] of one forward that extends ``cache`` by ids' columns."""
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                 **{cache_kw: cache}).logits[:, -1]


def prefill(model, cache_kw: str, ids, mask, pos, target, the_plan: Plan):
    """Fill ``target`` (the caller's cache, empty) with every row's keys and values as one forward over ``ids`` would,
    following ``the_plan``; returns the last position's logits [b, V].

    ids, mask, pos [b, n0] on the model's device (left padding; ``pos`` the valid tokens' positions from 0)."""
    b, n0 = ids.shape
    device = ids.device
    layers = model.config.num_hidden_layers
    lengths = mask.sum(1).tolist()
    logits = [None] * b
    stage_kv = []  # (rows, cache) of each forward, every cache n0 slots long

    rows = list(the_plan.donors)
    at = torch.tensor(rows, device=device)
    donor_cache = _eager_dynamic_cache()()
    out = _forward(model, cache_kw, ids[at], mask[at], pos[at], donor_cache)
    for k, r in enumerate(rows):
        logits[r] = out[k]
    stage_kv.append((rows, donor_cache))
    donor_index = {r: k for k, r in enumerate(rows)}
    for q, pairs in the_plan.groups:
        rows = [r for r, _ in pairs]
        at = torch.tensor(rows, device=device)
        # receiver slot t (< n0 - q) holds the donor's slot t + len_row - len_donor (clamped: padding, masked)
        shift = torch.tensor([lengths[r] - lengths[d] for r, d in pairs], device=device)
        slots = (torch.arange(n0 - q, device=device)[None, :] + shift[:, None]).clamp_(0, n0 - 1)
        src = torch.tensor([donor_index[d] for _, d in pairs], device=device)
        cache = _eager_dynamic_cache()()
        for layer in range(layers):
            keys, values = donor_cache.layers[layer].keys, donor_cache.layers[layer].values
            index = slots[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[3])
            cache.update(torch.gather(keys[src], 2, index), torch.gather(values[src], 2, index), layer)
        out = _forward(model, cache_kw, ids[at, n0 - q:], mask[at], pos[at, n0 - q:], cache)
        for k, r in enumerate(rows):
            logits[r] = out[k]
        stage_kv.append((rows, cache))
    where = torch.empty(b, dtype=torch.long)  # batch row -> row of the stages' concatenation
    where[torch.tensor([r for rows, _ in stage_kv for r in rows])] = torch.arange(b)
    where = where.to(device)
    positions = torch.arange(n0, device=device)
    for layer in range(layers):
        keys = torch.cat([c.layers[layer].keys for _, c in stage_kv])[where]
        values = torch.cat([c.layers[layer].values for _, c in stage_kv])[where]
        for _, c in stage_kv:  # each stage's layer goes as soon as it is copied: peak ~ one more layer
            c.layers[layer].keys = c.layers[layer].values = None
        # cache_position for caches that index by it (transformers 5.17); 5.2x's static layer counts its own
        target.update(keys, values, layer, {"cache_position": positions})
    return torch.stack(logits)
