"""Cells where a method is exactly RoPE, or exactly an earlier row, take that row's records instead of
recomputing them.

A method is exactly RoPE at length n when its own definition says so for every query below n: logit scale 1,
``rel(m, k) = m - k`` and every causal key visible (``report_headline.rope_lengths``, checked from the method,
not from its name). STRING with S = L/3 at n <= S, DCA with n <= its chunk, LM-Infinite with n <= its window:

    rel(m, k) for STRING, S = 4, n = 4 (every d < S)     = RoPE's matrix
        k: 0  1  2  3
    m=0     0  .  .  .
    m=1     1  0  .  .
    m=2     2  1  0  .
    m=3     3  2  1  0

Likewise a row is exactly an earlier row of the run at n when both have the same RoPE scaling (none, or one
method with the same parameters) and attention parts that relate and show every causal pair below n alike, with
the same logit scale (``same_lengths``): the fair-protocol Self-Extend of ``ruler-lite`` (group 8, window 1024,
L' = 2/3 L) is Self-Extend's default row at every length, since L' enters neither; ``yarn`` is ``string+yarn``
at the lengths where STRING is exactly RoPE (1k, 2k). Its donor is then that earlier row (the
first one that matches, which is always computed there: one exactly RoPE would make the method RoPE too).

A task's length counts its prompt plus its answer budget (``tasks/base.py``), so every token a record depends on
is produced by a query below the length: such a cell computes the same attention as the donor row on the same
prompts (a sample breaking that contract, n_tokens + max_new_tokens > length, is computed), so the runner
copies the donor's record of each prompt (same prompt hash) with the method's own label, name and
parameters, ``seconds = 0`` (it cost nothing) and ``details["same_as"] = <donor label>``. The report marks
rope-equal lengths "(= rope)" either way.
``RunConfig.share_rope = False`` (``--compute-rope-equal``) computes them instead, e.g. to measure a kernel's
numerical drift against the plain path on real prompts.
"""
from __future__ import annotations

import json
from dataclasses import replace

from .options import MethodSpec
from .records import Record, read_cell
from .report_headline import BASELINE, _method, _rows_match, checks_on, rope_lengths

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


def same_lengths(info: dict, earlier: dict, lengths) -> list[int]:
    """The lengths at which the activated method ``info`` is exactly the row ``earlier`` (both ``activate``'s
    infos, or records' ``{"method": name, "params": ...}``): the same RoPE scaling (none, or one method with the
    same parameters) and attention parts that relate and show every causal pair below the length alike (none is
    RoPE; a logit scale must match). So ``yarn+string`` is the ``yarn`` row where STRING is exactly RoPE. Equal at
    n implies equal below n: lengths are checked upwards, each adding its new query rows after a probe of 4,096
    random pairs (a different row fails there, in ~1 ms)."""
    key = tuple(json.dumps([i.get("method"), i.get("params")], sort_keys=True, default=str) for i in (info, earlier))
    key += (tuple(sorted(lengths)),)
    if key not in _SAME:
        a, b = _parts(info), _parts(earlier)
        out, done = [], 0
        if a is not None and b is not None and a[0] == b[0]:
            x, y = a[1], b[1]
            if x is None:  # compare an attention part with RoPE (None), or RoPE with RoPE: every length
                x, y = y, None
            scale = lambda m: 1.0 if m is None else float(getattr(m, "logit_scale", 1.0))  # noqa: E731
            if x is None:
                out = sorted(lengths)
            elif scale(x) == scale(y):
                for n in sorted(lengths):
                    if not (_probe(x, y, n) and _rows_match(x, done, n, y)):
                        break
                    out.append(n)
                    done = n
        _SAME[key] = out
    return list(_SAME[key])


_SAME: dict[tuple, list[int]] = {}


def _parts(info: dict):
    """``(scaling, attention)`` of a row: scaling ``(name, params json)`` or None, attention a method instance or
    None (RoPE); None where a part is not known (an unregistered name, two parts of one kind, bad parameters)."""
    from dataclasses import fields

    from ropeshift.methods.registry import METHODS, is_rope_scaling

    name, params = info.get("method") or BASELINE, info.get("params") or {}
    if name == BASELINE:
        return None, None
    scaling, attention = None, None
    for part in name.split("+"):
        if part not in METHODS:
            return None
        cls = METHODS[part]
        own = {f.name: params[f.name] for f in fields(cls) if f.name in params}
        if is_rope_scaling(cls):
            if scaling is not None:
                return None
            scaling = (part, json.dumps(own, sort_keys=True, default=str))
        else:
            if attention is not None:
                return None
            attention = _method(part, own)
            if attention is None:
                return None
    return scaling, attention


def _probe(a, b, length: int, n: int = 4096) -> bool:
    """``a`` and ``b`` (None: RoPE) agree on ``n`` random causal (query, key) pairs below ``length`` (a necessary
    condition for ``_rows_match``)."""
    import torch

    g = torch.Generator().manual_seed(length)
    q = torch.randint(0, length, (n,), generator=g)
    k = (torch.rand(n, generator=g) * (q + 1)).long().clamp(max=q)
    d = q - k
    want = d if b is None else torch.as_tensor(b.rel(d, q, k))
    if not bool((torch.as_tensor(a.rel(d, q, k)) == want).all()):
        return False
    va, vb = a.visible(d, q, k), None if b is None else b.visible(d, q, k)
    va, vb = (torch.ones_like(d, dtype=torch.bool) if v is None else torch.as_tensor(v).expand_as(d) for v in (va, vb))
    return bool((va == vb).all())


def equal_lengths(model, methods, lengths, impl=None, plain_attention: str = "model", labels=None) -> dict:
    """``{label: {length: donor label}}`` for the rows of ``methods`` (MethodSpecs in run order) named in ``labels``
    (default: all but the rope row): where a row takes another's records, the donor at each length: ``rope`` where
    it is exactly RoPE (``rope_equal_lengths``) and the run has a rope row, else the first earlier row it equals
    there (``same_lengths``).
    Every row up to the last one asked for is activated once (``generation.activate``, then deactivated) for its
    resolved parameters. ~1-2 s for ruler-lite's 13 rows on a free 2-core CPU, mostly the checks' matrices at 8k; the
    runner has rank 0 find them while its prompt workers run and the other ranks compile (on the H100 host of
    2026-12-07 they took rank 0 9.1 s there, off the start-up's critical path; 4.2 s in the twenty-ninth session's
    studies, on it). The checks run on the model's device (``report_headline.checks_on``: a GPU, idle then)."""
    from .generation import activate, deactivate

    wanted = {m.label for m in methods if m.label != BASELINE} if labels is None else set(labels) - {BASELINE}
    last = max((i for i, m in enumerate(methods) if m.label in wanted), default=-1)
    rows = []
    for m in methods[:last + 1]:
        if m.label == BASELINE:
            continue
        rows.append((m.label, dict(activate(model, m, impl, plain_attention))))
        deactivate(model)
    with checks_on(next((p.device for p in model.parameters()), None)):
        return donors(rows, lengths, wanted, rope=baseline_row(methods) is not None)


def donors(rows: list[tuple[str, dict]], lengths, labels=None, rope: bool | None = None) -> dict:
    """``equal_lengths`` from the rows' infos (``[(label, activate's info or a record's {"method", "params"})]``
    in run order): ``{label: {length: donor label}}`` for the rows named in ``labels`` (default: all but rope).
    ``rope``: whether the run has a rope row to copy from (default: one of ``rows``); without it only earlier
    rows give records."""
    rope = any(label == BASELINE for label, _ in rows) if rope is None else rope
    out, earlier = {}, []
    for label, info in rows:
        if label == BASELINE:
            continue
        if labels is None or label in labels:
            given = {n: BASELINE for n in rope_equal_lengths(info, lengths)} if rope else {}
            for other, other_info in earlier:
                for n in same_lengths(info, other_info, [n for n in lengths if n not in given]):
                    given.setdefault(n, other)
            out[label] = given
        earlier.append((label, info))
    return out


def copy_from(out, model: str, method: MethodSpec, info: dict, length: int, cells: list,
              donor: str = BASELINE) -> tuple[list, list]:
    """``(records to write, cells still to compute)`` for one bucket of a method at a length where it is exactly
    the row ``donor`` (``equal_lengths``).

    ``cells``: ``[(task name, pending samples)]``. A sample whose donor record exists (same prompt hash) yields a
    copy; the rest stay pending (the donor row has not reached them, e.g. a partial run)."""
    copies, rest = [], []
    for name, samples in cells:
        base = {r.index: r for r in read_cell(out, model, name, donor, length)}
        left = []
        for s in samples:
            r = base.get(s.index)
            if r is None or r.prompt_hash != s.prompt_hash or s.n_tokens + s.max_new_tokens > length \
                    or r.details.get(SAME_AS):
                left.append(s)
                continue
            copies.append((name, _as_method(r, method, info, donor)))
        if left:
            rest.append((name, left))
    return copies, rest


def _as_method(r: Record, method: MethodSpec, info: dict, donor: str = BASELINE) -> Record:
    return replace(r, method=method.label, method_name=info.get("method", method.name),
                   params=info.get("params", method.params), impl=info.get("impl"), seconds=0.0,
                   details={**r.details, SAME_AS: donor})
