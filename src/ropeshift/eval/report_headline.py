"""The headline: one table and one sentence a user reads first (``needle``, ``eval`` and ``report`` print it).

    head = build_headline(records, train_length=8192)
    print(head.markdown())
    # | method | effective (> 85.6) | effective (> 0.85 x 1k) | mean 4k-8k [95 % CI] | gain over rope [95 % CI] | ...
    # STRING raises the mean at 4k-8k from 57.3 to 62.7 (+5.3 points, 95 % CI +1.2 to +9.5).

Per method: the effective length by RULER's absolute rule (score > 85.6 at that length and every shorter
one) and by the relative rule (> 0.85 x the method's shortest-length score), the mean score over the
tested lengths in [L/2, L] (L: the training length; the longest tested length M, [M/2, M], when no tested
length lies in [L/2, L]) with its Wilson
interval, and its paired gain over rope on the same prompts (``metrics.paired_difference``, strata =
task x length cells). Every number comes from ``report_tables.method_length_scores`` (the mean-over-tasks
table), so the headline equals the tables. Lengths at which a method is exactly RoPE (its position
matrix equals RoPE's for every query and key, e.g. STRING at lengths <= S) are listed: identical rows
are expected there.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import warnings
from collections import defaultdict
from dataclasses import dataclass

from .metrics import PairedDiff, binomial_ci, paired_difference
from .options import format_length
from .report_tables import Cell, Threshold, _eff, complete_tasks, is_generation, markdown, method_length_scores, \
    summarise

BASELINE = "rope"
RULER_ABSOLUTE = Threshold(absolute=85.6, relative=None)
RELATIVE = Threshold(relative=0.85)


def _method(name: str, params: dict):
    """The attention method instance a record describes, or None (rope scaling, composition, unknown)."""
    from ropeshift.methods.registry import METHODS, is_rope_scaling

    if not name or "+" in name or name not in METHODS or params is None:
        return None
    cls = METHODS[name]
    if is_rope_scaling(cls):
        return None  # RoPE scaling changes the frequencies: never RoPE
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    except (TypeError, ValueError):
        return None


_CHUNK = 1 << 20  # elements per slice of the check: 1 << 22 (32 MB of int64 a tensor) took 2.5 s for ruler-lite's
# rows on a 2-core CPU, 1 << 20 (cache-sized) 0.9 s


@contextlib.contextmanager
def one_thread():
    """torch's CPU ops on one intra-op thread for the duration (the previous count restored after).

    The checks below are many small element-wise ops on ~1M-element slices. With the default one thread per core,
    in a rank that checks while rank 0's 16 prompt workers hold the cores, every op's parallel region waits for
    its slowest thread: in the 10 s after their model loads ranks 1 and 2 used 63 and 74 CPU-seconds on the H100
    host (ps, the second study of 2026-12-07: results/throughput_2026-12-07_h100_cpu), these checks being the
    one multi-threaded CPU work there; one thread does them in ~0.5 s on a free 2-core CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_DEVICE: contextvars.ContextVar = contextvars.ContextVar("ropeshift_checks_device", default=None)
_ONE_THREAD = "cpu, one thread"  # ``checks_on``'s CPU (None, outside it: the CPU with torch's threads)
_CHUNK_DEVICE = 1 << 23  # elements per slice on a GPU (64 MB of int64 a tensor): fewer, larger launches


@contextlib.contextmanager
def checks_on(device):
    """``_rows_match``'s checks on ``device`` for the duration (None or a CPU: the CPU, on one thread, beside the
    prompt workers; any other device is tried first). The runner's rank 0 finds the run's joins
    (``rope_share.equal_lengths``) on its GPU, idle then: on the H100 host they took it 4.2 s on the CPU, on its
    start-up's critical path (benchmarks/RESULTS.md). The
    answers are exact integer and boolean comparisons, the same on every device; a check that fails there
    (a method's definition making CPU tensors, say) is warned about once and made on the CPU."""
    import torch

    dev = None if device is None else torch.device(device)
    token = _DEVICE.set(_ONE_THREAD if dev is None or dev.type == "cpu" else dev)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def _rows_match(method, start: int, length: int, other=None) -> bool:
    """For queries ``start..length-1`` over keys ``0..length-1``: ``method`` relates and shows every causal
    (query, key) pair as ``other`` does (None: RoPE, rel == d and every causal key visible). On the device of
    ``checks_on``, or on the CPU on one thread (``one_thread``) there; outside it (a report, a command's closing
    summary: nothing else runs) on the CPU with torch's threads (ruler-lite's rows: 0.83 s on one thread, 0.45 s
    on two, 2-core CPU, 2026-12-08)."""
    device = _DEVICE.get()
    if device not in (None, _ONE_THREAD):
        try:
            return _match(method, start, length, other, device, _CHUNK_DEVICE)
        except (RuntimeError, TypeError, NotImplementedError) as e:
            warnings.warn(f"ropeshift: the RoPE-equality check of {type(method).__name__} failed on {device} "
                          f"({type(e).__name__}: {e}); made on the CPU", stacklevel=2)
            _DEVICE.set(_ONE_THREAD)  # the rest of this context on the CPU too (one warning)
    with one_thread() if device is not None else contextlib.nullcontext():
        return _match(method, start, length, other, None, _CHUNK)


def _match(method, start: int, length: int, other, device, chunk: int) -> bool:
    """``_rows_match`` on ``device`` (None: the CPU), ``chunk`` elements per slice."""
    import torch

    keys = torch.arange(length, device=device).view(1, 1, length)
    step = max(1, chunk // length)
    for stop in range(length, start, -step):  # longest distances first: a difference shows up early
        qpos = torch.arange(max(start, stop - step), stop, device=device).view(1, -1, 1)
        d = qpos - keys
        causal = d >= 0
        acausal = ~causal  # pairs that need not match (or-ed in: no gather of the causal ones)
        want = d if other is None else torch.as_tensor(other.rel(d, qpos, keys))
        if not bool(((torch.as_tensor(method.rel(d, qpos, keys)) == want) | acausal).all()):
            return False
        vis = method.visible(d, qpos, keys)
        ref = None if other is None else other.visible(d, qpos, keys)
        if vis is None and ref is None:
            continue
        vis, ref = (torch.as_tensor(True) if v is None else torch.as_tensor(v) for v in (vis, ref))
        if not bool(((vis == ref) | acausal).all()):
            return False
    return True


def rope_lengths(method_name: str | None, params: dict | None, lengths) -> list[int]:
    """The lengths (of ``lengths``) at which the method, as resolved in a record, is exactly RoPE.

    Checked from the method's own definition, whatever the method: logit scale 1, ``rel`` = d and every
    causal key visible for all positions below the length. RoPE-scaling methods and compositions are never
    RoPE. Identity at n implies identity below n, so lengths are checked upwards, each adding only its new
    query rows, and the first failure ends the search."""
    if method_name == BASELINE:
        return sorted(lengths)
    key = (method_name, json.dumps(params, sort_keys=True, default=str), tuple(sorted(lengths)))
    if key not in _ROPE_LENGTHS:
        _ROPE_LENGTHS[key] = _rope_lengths(method_name, params, lengths)
    return list(_ROPE_LENGTHS[key])


_ROPE_LENGTHS: dict[tuple, list[int]] = {}  # the check costs seconds at 8k: the CLI asks twice per run


def _rope_lengths(method_name: str | None, params: dict | None, lengths) -> list[int]:
    method = _method(method_name, params)
    if method is None or float(getattr(method, "logit_scale", 1.0)) != 1.0:
        return []
    out, done = [], 0
    for n in sorted(lengths):
        if not _rows_match(method, done, n):
            break
        out.append(n)
        done = n
    return out


def rope_equal_lengths(records: list[dict]) -> dict[tuple, list[int]]:
    """(model, method label) -> sorted tested lengths at which that method is exactly RoPE (rope excluded)."""
    seen: dict[tuple, dict] = defaultdict(dict)
    for r in records:
        if r["method"] != BASELINE:
            seen[r.get("model", ""), r["method"]].setdefault(r["length"], (r.get("method_name"), r.get("params")))
    out = {}
    for key, by_len in sorted(seen.items()):
        settings = set(repr(v) for v in by_len.values())
        if len(settings) == 1:  # one resolved setting for every length (the usual case)
            name, params = next(iter(by_len.values()))
            same = rope_lengths(name, params, list(by_len))
        else:
            same = [n for n, (name, params) in sorted(by_len.items()) if rope_lengths(name, params, [n])]
        if same:
            out[key] = same
    return out


def prefetch_rope_lengths(records, lengths) -> None:
    """Make now, on one thread (``checks_on``: a run goes on beside), the checks ``rope_equal_lengths`` will ask
    for once ``records``' methods have every one of ``lengths``: the launcher of ``ropeshift eval --workers``
    does it for the records it reads during the run (``record_follower``), so that its closing summary finds
    them in ``rope_lengths``' cache."""
    first = {}  # a label's first record: its resolved setting (``rope_equal_lengths`` takes one per length)
    for r in records:
        if r["method"] != BASELINE:
            first.setdefault(r["method"], r)
    with checks_on(None):
        for r in first.values():
            rope_lengths(r.get("method_name"), r.get("params"), lengths)


@dataclass(frozen=True)
class HeadlineRow:
    model: str
    method: str
    eff_absolute: str
    eff_relative: str
    window_mean: Cell | None       # mean over the window's lengths (fraction), pooled Wilson interval
    gain: PairedDiff | None        # paired gain over rope (fraction); None for rope or without rope
    rope_equal: tuple[int, ...]    # tested lengths where the method is exactly RoPE


@dataclass(frozen=True)
class Headline:
    rows: tuple[HeadlineRow, ...]
    window: tuple[int, ...]        # tested lengths in [L/2, L]
    shortest: int | None
    sentence: str

    def window_label(self) -> str:
        if not self.window:
            return "-"
        lo, hi = format_length(self.window[0]), format_length(self.window[-1])
        return lo if lo == hi else f"{lo}-{hi}"

    def table(self) -> tuple[list[str], list[list[str]]]:
        multi = len({r.model for r in self.rows}) > 1
        short = format_length(self.shortest) if self.shortest else "shortest"
        headers = (["model"] if multi else []) + [
            "method", f"effective ({RULER_ABSOLUTE.describe()})", f"effective (> {RELATIVE.relative:g} x {short})",
            f"mean {self.window_label()} [95 % CI]", f"gain over {BASELINE} [95 % CI]", f"= {BASELINE} at"]
        rows = []
        for r in self.rows:
            mean = "-" if r.window_mean is None else (
                f"{100 * r.window_mean.mean:.1f} [{100 * r.window_mean.lo:.1f}, {100 * r.window_mean.hi:.1f}]")
            gain = "-" if r.gain is None else _gain_text(r.gain)
            same = ", ".join(format_length(n) for n in r.rope_equal) or "-"
            rows.append(([r.model] if multi else []) + [r.method, r.eff_absolute, r.eff_relative, mean, gain,
                                                        "all" if r.method == BASELINE else same])
        return headers, rows

    def markdown(self) -> str:
        return markdown(*self.table()) + "\n\n" + self.sentence


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def _gain_text(g: PairedDiff) -> str:
    if g.lo != g.lo:  # NaN: too few pairs
        return f"{_signed(g.mean)} [n/a]"
    star = " *" if g.significant else ""
    return f"{_signed(g.mean)} [{_signed(g.lo)}, {_signed(g.hi)}]{star}"


def _window(lengths: list[int], train_length: int | None) -> tuple[int, ...]:
    """Tested lengths in [L/2, L]; when none lies there, in [M/2, M] with M the longest tested length."""
    if train_length:
        inside = tuple(n for n in lengths if train_length / 2 <= n <= train_length)
        if inside:
            return inside
    top = max(lengths)
    return tuple(n for n in lengths if top / 2 <= n <= top)


def _pairs(records: list[dict]) -> dict[tuple, dict[int, tuple[str | None, float]]]:
    """``{(model, task, length, method): {index: (prompt_hash, score)}}`` over the generation records: one pass,
    so each ``_paired_gain`` is a lookup (35,750 records x 12 methods: 1.2 s of the CLI's summary before)."""
    out: dict[tuple, dict] = defaultdict(dict)
    for r in records:
        if is_generation(r):
            out[r.get("model", ""), r["task"], r["length"], r["method"]][r["index"]] = (r.get("prompt_hash"),
                                                                                        float(r["score"]))
    return out


def _paired_gain(pairs: dict, model: str, method: str, tasks: set, window: tuple) -> PairedDiff | None:
    """Stratified paired difference method - rope over (task, length) cells of ``window`` (``pairs``: ``_pairs``)."""
    strata = []
    for task in sorted(tasks):
        for n in window:
            base, other = pairs.get((model, task, n, BASELINE), {}), pairs.get((model, task, n, method), {})
            idx = sorted(i for i in base.keys() & other.keys() if base[i][0] == other[i][0])
            if idx:
                strata.append(([base[i][1] for i in idx], [other[i][1] for i in idx]))
    return paired_difference(strata) if strata else None


def build_headline(records: list[dict], train_length: int | None = None, summary=None) -> Headline:
    """The headline over generation records (see the module docstring); ``summary`` = ``summarise(records)``."""
    summary = summarise(records) if summary is None else summary
    scores = method_length_scores(summary)
    lengths = sorted({n for v in scores.values() for n in v})
    if not lengths:
        return Headline((), (), None, "No generation task has a result for every method and length yet.")
    window = _window(lengths, train_length)
    keep = {model: set(k) for model, (k, _) in complete_tasks(summary).items()}
    same = rope_equal_lengths(records)
    pairs = _pairs(records)
    rows = []
    for (model, method), per_len in sorted(scores.items(), key=lambda kv: (kv[0][0], kv[0][1] != BASELINE, kv[0])):
        pct = {n: v[0] for n, v in per_len.items()}
        inside = [per_len[n] for n in window if n in per_len]
        mean = None
        if inside:
            m = sum(v[0] for v in inside) / len(inside) / 100
            n = sum(v[1].n for v in inside)
            mean = Cell(m, n, *binomial_ci(m, n))
        gain = None
        if method != BASELINE and (model, BASELINE) in scores:
            gain = _paired_gain(pairs, model, method, keep.get(model, set()), window)
        rows.append(HeadlineRow(model, method, _eff(pct, RULER_ABSOLUTE), _eff(pct, RELATIVE), mean, gain,
                                tuple(same.get((model, method), ()))))
    head = Headline(tuple(rows), window, lengths[0], "")
    return Headline(head.rows, window, lengths[0], _sentence(head))


def _sentence(head: Headline) -> str:
    """One sentence on the method with the largest gain over rope (per model when several)."""
    out = []
    for model in sorted({r.model for r in head.rows}):
        rows = [r for r in head.rows if r.model == model]
        base = next((r for r in rows if r.method == BASELINE), None)
        cands = [r for r in rows if r.gain is not None and r.window_mean is not None]
        where = f" on {model}" if len({r.model for r in head.rows}) > 1 else ""
        if base is None or base.window_mean is None or not cands:
            out.append(f"No method can be compared with {BASELINE}{where} at {head.window_label()} "
                       f"(it needs {BASELINE} and the method on the same prompts).")
            continue
        best = max(cands, key=lambda r: r.gain.mean)
        g = best.gain
        ci = "95 % CI n/a" if g.lo != g.lo else f"95 % CI {_signed(g.lo)} to {_signed(g.hi)}"
        frm, to = 100 * base.window_mean.mean, 100 * best.window_mean.mean
        if g.significant and g.mean > 0:
            out.append(f"{best.method}{where} raises the mean at {head.window_label()} from {frm:.1f} to {to:.1f} "
                       f"({_signed(g.mean)} points, {ci}, paired over {g.n} prompts).")
        else:
            verdict = "lowers" if g.significant else "does not significantly change"
            out.append(f"No method raises the mean at {head.window_label()}{where} significantly over "
                       f"{BASELINE}: the largest gain, {best.method}'s ({frm:.1f} -> {to:.1f}, {_signed(g.mean)} "
                       f"points, {ci}, paired over {g.n} prompts), {verdict} it.")
    return " ".join(out)


def headline_markdown(records: list[dict], train_length: int | None = None) -> str:
    """The headline table and sentence as markdown (what the CLI prints first)."""
    head = build_headline(records, train_length)
    return "\n".join(_heading_note(head)) + "\n\n" + head.markdown()


def _heading_note(head: Headline) -> list[str]:
    return [f"Headline: mean over the tasks complete for every method; window {head.window_label()} = tested "
            f"lengths in [L/2, L] (L the training length, else the longest tested); gain = paired difference",
            f"from {BASELINE} on the same prompts (* = 95 % CI excludes 0); '= {BASELINE} at' = lengths where the "
            f"method is exactly {BASELINE}."]


def paired_rows(records: list[dict], summary=None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): per method and length, the paired difference from rope in points [95 % CI].

    Strata are the tasks complete for every method and length (those of the mean-over-tasks table), so
    each cell's estimate equals that table's method cell minus its rope cell when every sample is paired."""
    summary = summarise(records) if summary is None else summary
    scores = method_length_scores(summary)
    keep = {model: set(k) for model, (k, _) in complete_tasks(summary).items()}
    lengths = sorted({n for v in scores.values() for n in v})
    multi = len({m for m, _ in scores}) > 1
    headers = (["model"] if multi else []) + ["method"] + [format_length(n) for n in lengths]
    pairs = _pairs(records)
    rows = []
    for model, method in sorted(scores):
        if method == BASELINE or (model, BASELINE) not in scores:
            continue
        cells = []
        for n in lengths:
            g = _paired_gain(pairs, model, method, keep.get(model, set()), (n,))
            cells.append("-" if g is None else f"{_gain_text(g)} (n={g.n})")
        rows.append(([model] if multi else []) + [method] + cells)
    return headers, rows


def cli_headline(records: list[dict], root) -> str:
    """What ``needle`` and ``eval`` print first: the headline over ``records``, L read from ``run.json``."""
    from .records import read_manifests

    train = next((m.get("train_length") for m in read_manifests(root).values() if m.get("train_length")), None)
    return headline_markdown(records, train)
