"""Tables over stored records: RULER-style method x length, per-task tables, perplexity, depth grids.

    recs = list(iter_records("runs/smollm2-135m"))
    summary = summarise(recs)                               # (model, method, task, length) -> Cell
    print(ruler_table(summary, Threshold(relative=0.85)))   # markdown

Scores are shown in percent with a Wilson 95 % interval. The effective length is RULER's: the
largest length such that it and every shorter length score above the threshold (absolute, e.g.
85.6, or relative to the method's shortest-length score); the non-prefix value is shown in brackets
when it differs.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from .metrics import binomial_ci, effective_length, perplexity
from .options import format_length
from .records import GENERATION


@dataclass(frozen=True)
class Cell:
    """Mean score (fraction) of ``n`` samples, with a 95 % interval."""

    mean: float
    n: int
    lo: float
    hi: float

    @classmethod
    def of(cls, scores: list[float]) -> "Cell":
        m = sum(scores) / len(scores)
        lo, hi = binomial_ci(m, len(scores))
        return cls(m, len(scores), lo, hi)


@dataclass(frozen=True)
class Threshold:
    """Pass mark for the effective length: ``absolute`` percent, or ``relative`` x shortest-length score."""

    absolute: float | None = None
    relative: float | None = 0.85

    def __post_init__(self):
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of an absolute or a relative threshold")
        if self.relative is not None and not 0 < self.relative <= 1:
            raise ValueError(f"relative threshold must be in (0, 1], got {self.relative}")
        if self.absolute is not None and not 0 <= self.absolute <= 100:
            raise ValueError(f"absolute threshold must be in [0, 100] percent, got {self.absolute}")

    def value(self, by_length: dict[int, float]) -> float:
        """Threshold in percent for one method's {length: percent} scores."""
        if self.absolute is not None:
            return self.absolute
        return self.relative * by_length[min(by_length)]

    def describe(self) -> str:
        if self.absolute is not None:
            return f"score > {self.absolute:g}"
        return f"score > {self.relative:g} x the shortest length's score"


def is_generation(r) -> bool:
    """A generation record (a ``Record``, or its JSON form as a dict), not a likelihood one."""
    return r["kind"] == GENERATION


def summarise(records: list[dict]) -> dict[tuple, Cell]:
    """Group generation records by (model, method, task, length) into Cells."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        if is_generation(r):
            groups[r.get("model", ""), r["method"], r["task"], r["length"]].append(float(r["score"]))
    return {k: Cell.of(v) for k, v in groups.items()}


def perplexities(records: list[dict]) -> dict[tuple, tuple[float, int, int]]:
    """(model, method, task, length) -> (perplexity, tokens scored, windows); sums divided once."""
    nll: dict[tuple, float] = defaultdict(float)
    tok: dict[tuple, int] = defaultdict(int)
    cnt: dict[tuple, int] = defaultdict(int)
    for r in records:
        if not is_generation(r):
            k = (r.get("model", ""), r["method"], r["task"], r["length"])
            nll[k] += r["nll"]
            tok[k] += r["n_scored"]
            cnt[k] += 1
    return {k: (perplexity(nll[k], tok[k]), tok[k], cnt[k]) for k in nll}


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def has_brackets(text: str) -> bool:
    """True when an effective-length cell carries the bracketed largest-passing length."""
    return "(" in text


def _eff(by_length: dict[int, float], threshold: Threshold) -> str:
    """"2k", ">=8k", "<1k", or "1k (4k)": prefix rule, then in brackets the largest passing length when it differs."""
    if not by_length:
        return "-"
    prefix, anyl = effective_length(by_length, threshold.value(by_length))
    lengths = sorted(by_length)
    if prefix == lengths[-1]:
        text = f">={format_length(prefix)}"
    elif prefix is None:
        text = f"<{format_length(lengths[0])}"
    else:
        text = format_length(prefix)
    if anyl is not None and anyl != prefix:
        text += f" ({format_length(anyl)})"
    return text


def complete_tasks(summary: dict[tuple, Cell], tasks: list[str] | None = None) -> dict[str, tuple[list, list]]:
    """model -> (tasks that have a cell for every method and length of that model, each length's cells holding
    the same number of samples for every method, tasks that do not).

    A mean over tasks is only comparable between methods and lengths when it averages the same tasks (and the
    same prompts), so an interrupted run's incomplete tasks, including cells stopped part-way, are left out of
    the mean (and named in the report)."""
    cells: dict[str, dict] = defaultdict(dict)
    for (model, method, task, length), cell in summary.items():
        if tasks is None or task in tasks:
            cells[model][method, task, length] = cell.n
    out = {}
    for model, have in cells.items():
        methods = {m for m, _, _ in have}
        lengths = {n for _, _, n in have}
        names = sorted({t for _, t, _ in have})

        def whole(t):
            return all(all((m, t, n) in have for m in methods)
                       and len({have[m, t, n] for m in methods}) == 1 for n in lengths)

        keep = [t for t in names if whole(t)]
        out[model] = (keep, [t for t in names if t not in keep])
    return out


def method_length_scores(summary: dict[tuple, Cell], tasks: list[str] | None = None):
    """(model, method) -> {length: (mean over tasks in percent, pooled Cell, tasks)}.

    Only tasks with a cell at every method and length of the model count (``complete_tasks``); when
    none is complete, the table is empty."""
    keep = {model: set(k) for model, (k, _) in complete_tasks(summary, tasks).items()}
    by_ml: dict[tuple, dict[int, dict[str, Cell]]] = defaultdict(lambda: defaultdict(dict))
    for (model, method, task, length), c in summary.items():
        if task in keep.get(model, ()):
            by_ml[model, method][length][task] = c
    out = {}
    for key, per_len in by_ml.items():
        out[key] = {}
        for length, cells in per_len.items():
            mean = sum(c.mean for c in cells.values()) / len(cells)
            n = sum(c.n for c in cells.values())
            lo, hi = binomial_ci(mean, n)
            out[key][length] = (100 * mean, Cell(mean, n, lo, hi), sorted(cells))
    return out


def ruler_table(summary: dict[tuple, Cell], threshold: Threshold, tasks: list[str] | None = None,
                ci: bool = True, rope_equal: dict[tuple, list[int]] | None = None) -> str:
    """Method x length table of the mean of task scores (percent), with the effective length."""
    return markdown(*ruler_rows(summary, threshold, tasks, ci, rope_equal))


ROPE_MARK = " (= rope)"


def ruler_rows(summary: dict[tuple, Cell], threshold: Threshold, tasks: list[str] | None = None,
               ci: bool = True, rope_equal: dict[tuple, list[int]] | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of ``ruler_table``; a cell where the method is exactly RoPE (``rope_equal``:
    (model, method) -> lengths, from ``report_headline.rope_equal_lengths``) is marked "(= rope)"."""
    rope_equal = rope_equal or {}
    scores = method_length_scores(summary, tasks)
    lengths = sorted({n for v in scores.values() for n in v})
    multi_model = len({m for m, _ in scores}) > 1
    headers = (["model"] if multi_model else []) + ["method"] + [format_length(n) for n in lengths] + [
        "avg", "effective"]
    rows = []
    for (model, method), per_len in sorted(scores.items()):
        cells = []
        for n in lengths:
            if n not in per_len:
                cells.append("-")
                continue
            pct, c, _ = per_len[n]
            text = f"{pct:.1f} [{_pct(c.lo)}, {_pct(c.hi)}]" if ci else f"{pct:.1f}"
            cells.append(text + (ROPE_MARK if n in rope_equal.get((model, method), ()) else ""))
        vals = {n: v[0] for n, v in per_len.items()}
        avg = sum(vals.values()) / len(vals)
        rows.append(([model] if multi_model else []) + [method] + cells + [f"{avg:.1f}", _eff(vals, threshold)])
    return headers, rows


def task_table(summary: dict[tuple, Cell], task: str) -> str:
    return markdown(*task_rows(summary, task))


def task_rows(summary: dict[tuple, Cell], task: str) -> tuple[list[str], list[list[str]]]:
    """Method x length table for one task: percent [95 % CI] (n)."""
    sub = {(m, meth, n): c for (m, meth, t, n), c in summary.items() if t == task}
    lengths = sorted({n for _, _, n in sub})
    keys = sorted({(m, meth) for m, meth, _ in sub})
    multi_model = len({m for m, _ in keys}) > 1
    headers = (["model"] if multi_model else []) + ["method"] + [format_length(n) for n in lengths]
    rows = []
    for m, meth in keys:
        cells = []
        for n in lengths:
            c = sub.get((m, meth, n))
            cells.append("-" if c is None else f"{_pct(c.mean)} [{_pct(c.lo)}, {_pct(c.hi)}] (n={c.n})")
        rows.append(([m] if multi_model else []) + [meth] + cells)
    return headers, rows


def perplexity_table(ppl: dict[tuple, tuple[float, int, int]], task: str) -> str:
    headers, rows, note = perplexity_rows(ppl, task)
    return markdown(headers, rows) + "\n\n" + note


def perplexity_rows(ppl: dict[tuple, tuple[float, int, int]], task: str):
    """(headers, rows, note): method x length perplexity, and the tokens scored per length."""
    sub = {(m, meth, n): v for (m, meth, t, n), v in ppl.items() if t == task}
    lengths = sorted({n for _, _, n in sub})
    keys = sorted({(m, meth) for m, meth, _ in sub})
    headers = ["method"] + [format_length(n) for n in lengths]
    rows = []
    for m, meth in keys:
        cells = []
        for n in lengths:
            v = sub.get((m, meth, n))
            cells.append("-" if v is None else (f"{v[0]:.2f}" if math.isfinite(v[0]) else "inf"))
        rows.append([meth] + cells)
    tokens = {n: max(v[1] for (m, meth, l), v in sub.items() if l == n) for n in lengths}
    note = "tokens scored per method: " + ", ".join(f"{format_length(n)}: {tokens[n]:,}" for n in lengths)
    return headers, rows, note


def depth_grid(records: list[dict], task: str, method: str, bins: int = 10):
    """(depth labels, lengths, matrix [depth][length] of mean score or None) for one task and method.

    Depths are used as they are when a run used a grid (<= 12 distinct values); otherwise binned.
    """
    rs = [r for r in records if r["task"] == task and r["method"] == method and r.get("depth") is not None
          and is_generation(r)]
    depths = sorted({float(r["depth"]) for r in rs})
    if len(depths) > 12:
        width = 100 / bins

        def key(d):
            return min(bins - 1, int(d // width))

        labels = [f"{i * width:.0f}-{(i + 1) * width:.0f}" for i in range(bins)]
    else:
        def key(d):
            return depths.index(d)

        labels = [f"{d:g}" for d in depths]
    lengths = sorted({r["length"] for r in rs})
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rs:
        acc[key(float(r["depth"])), lengths.index(r["length"])].append(float(r["score"]))
    matrix = [[(sum(acc[i, j]) / len(acc[i, j])) if acc.get((i, j)) else None for j in range(len(lengths))]
              for i in range(len(labels))]
    return labels, lengths, matrix
