"""``ropeshift tune``: pick a method's parameters on a tuning split, judge them on a held-out split.

    cfg = TuneConfig(model="smollm2-135m", method="string", budget=Budget.parse("600"))
    result = tune(cfg, model, tokenizer)      # search, held-out comparison, settings file
    print(result.table)                       # default vs tuned vs rope on the held-out split
    ropeshift.apply(model, config=result.settings_path)

The tuning split (its tasks, haystack and seed, lengths L/2..L by default) is what successive halving
(``tune_search``) scores the grid (``tune_space``) on. The held-out split has other tasks, another haystack and
another seed; the check that no held-out prompt was ever scored while tuning runs on the prompts' hashes and is
an error, never a warning. Everything runs through the eval runner, so records land as usual:
``<out>/tuning/<model>/...`` and ``<out>/heldout/<model>/...`` (``ropeshift report <out>/heldout`` works), plus
``<out>/<model>-<method>-tune.json`` (the search trace and the held-out table as data) and the settings file.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .options import MethodSpec, format_length
from .records import prompts_path, read_cell, read_jsonl
from .report_tables import Cell, markdown
from .runner import RunConfig, run
from .tasks import TaskOptions
from .tune_search import Budget, Search, successive_halving
from .tune_space import Candidate, candidates, space_for

TUNE_TASKS = ("niah_single_2", "niah_multikey_1", "vt")
HELDOUT_TASKS = ("passkey", "niah_single_3", "niah_multivalue")


@dataclass(frozen=True)
class Split:
    """Tasks, lengths (None: L/2, 3L/4, L), seed and haystack of one split."""

    tasks: tuple[str, ...]
    seed: int
    haystack: str
    lengths: tuple[int, ...] | None = None
    samples: int = 20  # held-out: samples per task x length (the tuning split's come from the budget)


@dataclass(frozen=True)
class TuneConfig:
    model: str
    method: str
    budget: Budget
    tuning: Split = Split(TUNE_TASKS, 1000, "pydoc")
    heldout: Split = Split(HELDOUT_TASKS, 2000, "kjv")
    grid: str | None = None
    logit_scales: tuple[float, ...] | None = None
    fixed: dict = field(default_factory=dict, hash=False)
    train_length: int | None = None
    eta: int = 3
    batch_size: int = 1
    batch_tokens: int | None = None
    out: Path = Path("runs/tune")
    save: Path | None = None
    impl: str | None = None
    chat: bool | None = None

    def __post_init__(self):
        t, h = self.tuning, self.heldout
        shared = sorted(set(t.tasks) & set(h.tasks))
        if shared:
            raise ValueError(f"--heldout-tasks must differ from --tasks (shared: {', '.join(shared)})")
        if t.seed == h.seed:
            raise ValueError(f"--heldout-seed must differ from --seed (both {t.seed})")
        if t.haystack == h.haystack:
            raise ValueError(f"--heldout-haystack must differ from --haystack (both {t.haystack!r})")
        if h.samples < 1:
            raise ValueError(f"--heldout-samples must be >= 1, got {h.samples}")

    @property
    def settings_path(self) -> Path:
        return Path(self.save) if self.save else Path(self.out) / f"{self.model}-{self.method}.json"


def default_lengths(train_length: int) -> tuple[int, ...]:
    """L/2, 3L/4 and L (multiples of 64 tokens)."""
    return tuple(sorted({max(64, int(train_length * f) // 64 * 64) for f in (0.5, 0.75, 1.0)}))


def run_config(cfg: TuneConfig, split: Split, lengths: tuple[int, ...], where: str, methods, samples: int) -> RunConfig:
    return RunConfig(model=cfg.model, tasks=split.tasks, lengths=lengths, methods=tuple(methods), samples=samples,
                     seed=split.seed, options=TaskOptions(haystack=split.haystack, chat=cfg.chat),
                     batch_size=cfg.batch_size, batch_tokens=cfg.batch_tokens, out=Path(cfg.out) / where,
                     impl=cfg.impl)


def paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of ``a[i] - b[i]`` (same prompts) with a normal 95 % interval."""
    d = [x - y for x, y in zip(a, b)]
    m = sum(d) / len(d)
    half = 1.96 * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return m, m - half, m + half


def _scores(rc: RunConfig, label: str, length: int) -> dict[tuple[str, int], float]:
    out = {}
    for task in rc.tasks:
        for r in read_cell(rc.out, rc.model, task, label, length):
            if r.index < rc.samples:
                out[task, r.index] = float(r.score)
    return out


def heldout_table(rc: RunConfig, roles: dict[str, str]) -> tuple[str, list[dict]]:
    """Markdown and rows: per length (and over all), each role's mean score % [95 % CI] and the paired gains
    of tuned over default and over rope. ``roles`` maps role (rope, default, tuned) -> method label."""
    rows, data = [], []
    for length in [*rc.lengths, None]:
        lengths = rc.lengths if length is None else (length,)
        by_role = {}
        for role, label in roles.items():
            merged = {}
            for n in lengths:
                merged.update({(n, *k): v for k, v in _scores(rc, label, n).items()})
            by_role[role] = merged
        keys = sorted(set.intersection(*(set(v) for v in by_role.values())))
        if not keys:
            continue
        cells = {role: Cell.of([v[k] for k in keys]) for role, v in by_role.items()}
        gains = {ref: paired([by_role["tuned"][k] for k in keys], [by_role[ref][k] for k in keys])
                 for ref in ("default", "rope")}
        name = format_length(length) if length else f"all ({'-'.join(format_length(n) for n in (rc.lengths[0], rc.lengths[-1]))})"
        rows.append([name, str(len(keys))] + [f"{100 * c.mean:.1f} [{100 * c.lo:.0f}, {100 * c.hi:.0f}]" for c in cells.values()]
                    + [f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" for m, lo, hi in gains.values()])
        data.append({"length": length, "n": len(keys), **{role: asdict(c) for role, c in cells.items()},
                     **{f"tuned_minus_{ref}": dict(zip(("mean", "lo", "hi"), g)) for ref, g in gains.items()}})
    headers = ["length", "n", *(f"{role} %" for role in roles), "tuned - default (pp)", "tuned - rope (pp)"]
    return markdown(headers, rows), data


def verdict(data: list[dict], same: bool) -> str:
    """One sentence on the held-out result over all lengths."""
    if not data:
        return "no held-out result"
    g = data[-1]["tuned_minus_default"]
    if same:
        return "the search kept the default settings (tuned = default)"
    sig = g["lo"] > 0 or g["hi"] < 0
    word = "beats" if g["mean"] > 0 else "trails"
    ci = f"{100 * g['mean']:+.1f} pp, 95 % CI [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]"
    if sig:
        return f"on the held-out split the tuned setting {word} the default ({ci})"
    return f"on the held-out split the tuned setting does not differ significantly from the default ({ci})"


@dataclass
class TuneResult:
    search: Search
    candidates: list[Candidate]
    winner: Candidate
    train_length: int
    table: str
    rows: list[dict]
    verdict: str
    settings_path: Path
    trace_path: Path


def tune(cfg: TuneConfig, model, tokenizer, *, progress: bool = True, log=print) -> TuneResult:
    """Search on the tuning split, compare rope / default / tuned on the held-out split, save the settings."""
    from ropeshift.api import model_info
    from ropeshift.settings import write_settings

    info = model_info(model, cfg.train_length)
    L = info.train_length
    if L is None:
        raise ValueError("the model has no max_position_embeddings: pass --train-length")
    fixed = {**cfg.fixed, **({"train_length": cfg.train_length} if cfg.train_length else {})}
    space = space_for(cfg.method, cfg.grid, cfg.logit_scales)
    cands, dropped = candidates(cfg.method, space, info, fixed)
    log(f"{cfg.method}: {len(cands)} settings (L = {L}; {len(dropped)} refused by the method"
        + (f", e.g. {dropped[0][1]}" if dropped else "") + ")")
    lengths = cfg.tuning.lengths or default_lengths(L)
    tuning = run_config(cfg, cfg.tuning, lengths, "tuning", [c.spec for c in cands[:1]], 1)
    search, tuned_hashes = successive_halving(tuning, model, tokenizer, cands, cfg.budget, eta=cfg.eta,
                                              progress=progress, log=log)
    log(f"search cost: {search.samples} samples, {search.seconds:.1f} s (budget {cfg.budget})"
        + (f"; {search.stopped}" if search.stopped else ""))
    winner = next(c for c in cands if c.label == search.winner)
    default = cands[0]
    roles = {"rope": MethodSpec("rope"), "default": default.spec, "tuned": winner.spec}
    specs = list(dict.fromkeys(roles.values()))
    hl = cfg.heldout.lengths or lengths
    held = run_config(cfg, cfg.heldout, hl, "heldout", specs, cfg.heldout.samples)
    run(held, model, tokenizer, progress=progress)
    check_disjoint(tuned_hashes, held)
    table, rows = heldout_table(held, {role: spec.label for role, spec in roles.items()})
    sentence = verdict(rows, winner is default)
    path = write_settings(cfg.settings_path, cfg.method, winner.resolved)
    trace = Path(cfg.out) / f"{cfg.model}-{cfg.method}-tune.json"
    trace.write_text(json.dumps({
        "model": cfg.model, "method": cfg.method, "train_length": L, "budget": str(cfg.budget),
        "tuning": {**asdict(cfg.tuning), "lengths": list(lengths), "samples": search.plan.rungs[-1].samples}, "heldout": {**asdict(cfg.heldout), "lengths": list(hl)},
        "space": [asdict(a) for a in space.axes], "dropped": [{"params": p, "reason": r} for p, r in dropped],
        "candidates": [{"label": c.label, "params": c.params, "resolved": c.resolved, "default": c.default} for c in cands],
        "plan": [asdict(r) for r in search.plan.rungs], "rounds": search.rounds, "failed": search.failed,
        "cost": {"samples": search.samples, "seconds": round(search.seconds, 2), "stopped": search.stopped},
        "winner": {"label": winner.label, "params": winner.resolved, "default": winner.default},
        "heldout_table": rows, "verdict": sentence, "settings": str(path),
    }, indent=1, default=str))
    return TuneResult(search, cands, winner, L, table, rows, sentence, path, trace)


def heldout_hashes(held: RunConfig) -> set[str]:
    """Hashes of every stored held-out prompt (all samples of every task and length)."""
    from .prompts import prompt_hash

    return {prompt_hash(d["prompt"]) for task in held.tasks for n in held.lengths
            for d in read_jsonl(prompts_path(held.out, held.model, task, n)) if "prompt" in d}


def check_disjoint(tuned_hashes: set[str], held: RunConfig) -> None:
    """Raise when a held-out prompt (by hash) was scored during tuning."""
    shared = tuned_hashes & heldout_hashes(held)
    if shared:
        raise RuntimeError(f"{len(shared)} held-out prompts were also tuning prompts: the held-out result is void")
