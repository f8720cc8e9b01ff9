"""Cells where a method is exactly RoPE take the rope row's records instead of recomputing them.

A method is exactly RoPE at length n when its own definition says so for every query below n: logit scale 1,
``rel(m, k) = m - k`` and every causal key visible (``report_headline.rope_lengths``, checked from the method,
not from its name). STRING with S = L/3 at n <= S, DCA with n <= its chunk, LM-Infinite with n <= its window:

    rel(m, k) for STRING, S = 4, n = 4 (every d < S)     = RoPE's matrix
        k: 0  1  2  3
    m=0     0  .  .  .
    m=1     1  0  .  .
    m=2     2  1  0  .
    m=3     3  2  1  0

A task's length counts its prompt plus its answer budget (``tasks/base.py``), so every token a record depends on
is produced by a query below the length: such a cell computes the same attention as the rope row on the same
prompts (a sample breaking that contract, n_tokens + max_new_tokens > length, is computed), so the runner
copies the rope row's record of each prompt (same prompt hash) with the method's own label, name and
parameters, ``seconds = 0`` (it cost nothing) and ``details["same_as"] = "rope"``. The report marks those lengths "(= rope)" either way.
``RunConfig.share_rope = False`` (``--compute-rope-equal``) computes them instead, e.g. to measure a kernel's
numerical drift against the plain path on real prompts.
"""
from __future__ import annotations

from dataclasses import replace

from .options import MethodSpec
from .records import Record, read_cell
from .report_headline import BASELINE, rope_lengths

SAME_AS = "same_as"


def baseline_row(methods) -> MethodSpec | None:
    """The run's unpatched RoPE row (label and name ``rope``), or None."""
    return next((m for m in methods if m.label == BASELINE and m.name == BASELINE), None)


def rope_equal_lengths(info: dict, lengths) -> set[int]:
    """The lengths at which the activated method (``generation.activate``'s info, or a record's
    ``{"method": name, "params": ...}``) is exactly RoPE."""
    name = info.get("method")
    if not name or name == BASELINE:
        return set()
    return set(rope_lengths(name, info.get("params"), list(lengths)))


def equal_lengths(model, methods, lengths, impl=None, plain_attention: str = "model") -> dict:
    """``{method label: lengths at which it is exactly RoPE}`` for ``methods`` (MethodSpecs; the rope row left out)
    on ``model``: each activated once (``generation.activate``, then deactivated) and checked
    (``rope_equal_lengths``). ~2 s for ruler-lite's 13 rows on a free 2-core CPU, mostly the check's matrices at 8k;
    run by rank 0 beside its prompt workers, it went with 7.8 s more of that rank's start-up in the H100 study of
    2026-12-07 (the runner now leaves it to the ranks that wait for rank 0's prompts)."""
    from .generation import activate, deactivate

    out = {}
    for m in methods:
        if m.label != BASELINE:
            out[m.label] = rope_equal_lengths(activate(model, m, impl, plain_attention), lengths)
            deactivate(model)
    return out


def copy_from_rope(out, model: str, method: MethodSpec, info: dict, length: int, cells: list) -> tuple[list, list]:
    """``(records to write, cells still to compute)`` for one bucket of a method at a rope-equal length.

    ``cells``: ``[(task name, pending samples)]``. A sample whose rope record exists (same prompt hash) yields a
    copy; the rest stay pending (the rope row has not reached them, e.g. a partial run)."""
    copies, rest = [], []
    for name, samples in cells:
        rope = {r.index: r for r in read_cell(out, model, name, BASELINE, length)}
        left = []
        for s in samples:
            r = rope.get(s.index)
            if r is None or r.prompt_hash != s.prompt_hash or s.n_tokens + s.max_new_tokens > length:
                left.append(s)
                continue
            copies.append((name, _as_method(r, method, info)))
        if left:
            rest.append((name, left))
    return copies, rest


def _as_method(r: Record, method: MethodSpec, info: dict) -> Record:
    return replace(r, method=method.label, method_name=info.get("method", method.name),
                   params=info.get("params", method.params), impl=info.get("impl"), seconds=0.0,
                   details={**r.details, SAME_AS: BASELINE})
