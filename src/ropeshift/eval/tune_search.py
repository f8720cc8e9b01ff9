"""Successive halving over candidate settings, on the tuning split, through the eval runner.

    budget = Budget.parse("2000")            # samples (one prompt scored by one candidate); "300s": seconds
    plan = halving_plan(n_candidates=20, cells=6, budget=2000, eta=3)
    plan.rungs       # (Rung(candidates=20, samples=3), Rung(7, 9), Rung(3, 27)): samples per task x length
    plan.cost        # samples the whole search scores (<= budget)

Rung r scores ``rungs[r].candidates`` settings on the first ``rungs[r].samples`` prompts of every (task, length)
cell; the best ``ceil(n / eta)`` go on. Prompts are nested (sample i is the same prompt in every rung), so a
promoted setting only scores the new prompts: the runner resumes from its records. Rung 0 is as cheap as the
budget allows (the budget sets its size; later rungs are ``eta`` times larger). Ties go to the default, then to
grid order. A seconds budget first scores the default on two prompts per cell and measures the rate on the
second (the first carries compilation and CUDA-graph warm-up: on the H200 it read 0.66 samples/s where the
search then ran ~5; a resumed search whose default scores nothing new takes its stored records' seconds), plans
with that rate, and also stops between settings when the time is up (the last complete rung decides; when rung 0
is incomplete, the settings it scored).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace

from .records import read_cell
from .runner import RunConfig, prepare_samples, run

_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds|samples)?\s*$")


@dataclass(frozen=True)
class Budget:
    """``amount`` samples, or seconds when ``seconds`` is True."""

    amount: float
    seconds: bool = False

    def __post_init__(self):
        if not self.amount > 0:
            raise ValueError(f"--budget must be > 0, got {self.amount:g}")

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """``"2000"`` or ``"2000samples"`` -> 2000 samples; ``"300s"`` -> 300 seconds."""
        m = _BUDGET_RE.match(str(text))
        if not m:
            raise ValueError(f"--budget: bad value {text!r}: a number of samples (2000) or of seconds (300s)")
        return cls(float(m.group(1)), seconds=(m.group(2) or "samples") != "samples")

    def __str__(self) -> str:
        return f"{self.amount:g} s" if self.seconds else f"{int(self.amount)} samples"


@dataclass(frozen=True)
class Rung:
    candidates: int
    samples: int  # per (task, length) cell, cumulative


@dataclass(frozen=True)
class Plan:
    rungs: tuple[Rung, ...]
    cells: int
    eta: int

    @property
    def cost(self) -> int:
        """Samples scored by the whole search: each rung scores only the prompts its survivors have not seen."""
        total, prev = 0, 0
        for r in self.rungs:
            total += r.candidates * (r.samples - prev) * self.cells
            prev = r.samples
        return total

    def describe(self) -> str:
        steps = " -> ".join(f"{r.candidates} x {r.samples}" for r in self.rungs)
        return f"settings x samples per cell: {steps} ({self.cells} cells, eta {self.eta}): {self.cost} samples"


def schedule(n_candidates: int, cells: int, eta: int, k: int) -> Plan:
    """Rung r scores ``ceil(n / eta^r)`` settings on ``k eta^r`` prompts per cell, until one setting would remain."""
    if n_candidates < 1 or cells < 1:
        raise ValueError("the search needs at least one candidate and one (task, length) cell")
    if eta < 2:
        raise ValueError(f"--eta must be >= 2, got {eta}")
    counts = [n_candidates]
    while counts[-1] > 1 and math.ceil(counts[-1] / eta) > 1:
        counts.append(math.ceil(counts[-1] / eta))
    return Plan(tuple(Rung(n, k * eta**r) for r, n in enumerate(counts)), cells, eta)


def halving_plan(n_candidates: int, cells: int, budget: int, eta: int = 3, min_samples: int = 1) -> Plan:
    """The largest schedule (rung 0 at ``k`` >= ``min_samples`` prompts per cell) that costs at most ``budget``."""
    unit = schedule(n_candidates, cells, eta, 1).cost
    k = int(budget // unit)
    if k < min_samples:
        raise ValueError(
            f"--budget {budget} samples is too small for {n_candidates} settings on {cells} cells: the cheapest "
            f"search needs {schedule(n_candidates, cells, eta, min_samples).cost}; raise --budget or shrink the "
            "grid (--grid) or the cells"
        )
    return schedule(n_candidates, cells, eta, k)


@dataclass
class Search:
    """What the search did: per-rung scores, the winner, its cost. Scores are mean fractions over all cells."""

    plan: Plan
    rounds: list[dict[str, float]] = field(default_factory=list)  # rung -> {label: score}
    failed: dict[str, str] = field(default_factory=dict)          # label -> error
    winner: str | None = None
    samples: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the search stopped early


def score_of(cfg: RunConfig, label: str, n: int) -> tuple[float, set[str]]:
    """Mean score of ``label`` over the first ``n`` prompts of every cell, and those prompts' hashes."""
    scores, hashes = [], set()
    for task in cfg.tasks:
        for length in cfg.lengths:
            recs = [r for r in read_cell(cfg.out, cfg.model, task, label, length) if r.index < n]
            if len(recs) < n:
                raise RuntimeError(f"{label}: {task} at {length} has {len(recs)} of {n} records")
            scores += [float(r.score) for r in recs]
            hashes |= {r.prompt_hash for r in recs}
    return sum(scores) / len(scores), hashes


def stored_seconds(cfg: RunConfig, label: str, n: int) -> float | None:
    """Mean ``seconds`` of ``label``'s stored records among the first ``n`` prompts of every cell (a resumed
    search's rate), or None when there are none with a positive time."""
    secs = [r.seconds for task in cfg.tasks for length in cfg.lengths
            for r in read_cell(cfg.out, cfg.model, task, label, length) if r.index < n and r.seconds]
    return sum(secs) / len(secs) if secs else None


def rank(scores: dict[str, float], order: list[str]) -> list[str]:
    """Best first; ties go to the earlier label in ``order`` (the default comes first)."""
    return sorted(scores, key=lambda label: (-scores[label], order.index(label)))


def successive_halving(cfg: RunConfig, model, tokenizer, cands: list, budget: Budget, *, eta: int = 3,
                       progress: bool = True, log=print) -> tuple[Search, set[str]]:
    """Run the search on ``cfg`` (the tuning split; its ``methods`` and ``samples`` are ignored).

    Returns the search record and the hashes of every tuning prompt scored."""
    t0 = time.perf_counter()
    cells = len(cfg.tasks) * len(cfg.lengths)
    order = [c.label for c in cands]
    by_label = {c.label: c for c in cands}
    hashes: set[str] = set()

    def score(label: str, n: int) -> tuple[int, float]:
        """Run ``label`` up to ``n`` prompts per cell; return (samples newly scored, mean score)."""
        written = run(replace(cfg, methods=(by_label[label].spec,), samples=n), model, tokenizer, progress=progress)
        s, h = score_of(cfg, label, n)
        hashes.update(h)
        return written, s

    if budget.seconds:  # the rate from a second prompt per cell: the first carries compilation and warm-up
        prepare_samples(replace(cfg, samples=2), tokenizer, progress)
        spent, _ = score(order[0], 1)
        t1 = time.perf_counter()
        more, _ = score(order[0], 2)
        if more:
            rate = max((time.perf_counter() - t1) / more, 1e-6)
        else:  # resumed: the default's prompts were scored before; their stored times give the rate
            rate = max(stored_seconds(cfg, order[0], 2) or 1e-6, 1e-6)
        spent += more
        left = budget.amount - (time.perf_counter() - t0)
        try:
            plan = halving_plan(len(cands), cells, int(left / rate) + spent, eta)
        except ValueError:  # the first samples were slow (warm-up, compilation): the cheapest plan, stopped in time
            plan = schedule(len(cands), cells, eta, 1)
        log(f"measured {1 / rate:.2f} samples/s on the default: {plan.describe()}")
    else:
        plan = halving_plan(len(cands), cells, int(budget.amount), eta)
        spent = 0
        log(plan.describe())
    search = Search(plan, samples=spent)
    prepare_samples(replace(cfg, samples=plan.rungs[-1].samples), tokenizer, progress)
    alive = list(order)
    for i, rung in enumerate(plan.rungs):
        scores: dict[str, float] = {}
        for label in alive[:rung.candidates]:
            if budget.seconds and time.perf_counter() - t0 > budget.amount:
                search.stopped = f"time budget reached during rung {i}"
                break
            try:
                written, scores[label] = score(label, rung.samples)
            except ValueError as e:  # the model refused this setting (e.g. a transformers RoPE check)
                search.failed[label] = str(e)
                continue
            search.samples += written
        if search.stopped:
            if not search.rounds and scores:  # not even rung 0 finished: its settings scored so far decide
                search.rounds.append(scores)
                search.stopped += f" (after {len(scores)} of {rung.candidates} settings: they decide)"
            break
        search.rounds.append(scores)
        alive = rank(scores, order)
        log(f"rung {i}: {len(scores)} settings on {rung.samples} prompts per cell; best "
            + ", ".join(f"{label} {100 * scores[label]:.1f}" for label in alive[:3]))
        if i + 1 < len(plan.rungs):
            alive = alive[:plan.rungs[i + 1].candidates]
    if not search.rounds:
        raise RuntimeError(f"the search finished no rung ({search.stopped or 'every setting failed'})")
    last = search.rounds[-1]
    search.winner = rank(last, order)[0]
    search.seconds = time.perf_counter() - t0
    return search, hashes
