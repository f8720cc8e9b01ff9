"""The task protocol: pure, seeded sample generation plus a scorer.

    task = TASKS["passkey"]
    samples = task.make_samples(tokenizer, length=4096, n=20, seed=0, options=TaskOptions())
    score = task.score(samples[0], "The pass key is 12345.")   # fraction in [0, 1]

Each sample is generated from its own RNG seeded by ``(task, length, index, seed)``, so sample 7
is the same whether 8 or 800 samples are asked for. On a depth grid, sample i takes depth
``sample_depth(k, i)``: every k consecutive samples cover the grid once, and any first n of them are
spread over the whole grid (4 samples on 11 depths: 0, 100, 50, 20 %), so few samples never test one end
only. ``length`` counts the model's own tokens of the whole prompt (chat template and answer prefix included) plus the task's ``max_new_tokens``.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable

from ropeshift.registry import Registry

from ..haystacks import Haystack, get_haystack
from ..prompts import count_tokens, fit_largest, prompt_hash, render
from ..records import GENERATION, Record


@dataclass(frozen=True)
class TaskOptions:
    """Run-level options a task may use.

    haystack: haystack spec for tasks that read text (None = the task's default).
    depths: number of evenly spaced depths (0..100 %) for depth-grid tasks (None = the task's default).
    chat: use the tokenizer's chat template (None = the task's default; ignored without a template).
    """

    haystack: str | None = None
    depths: int | None = None
    chat: bool | None = None

    def __post_init__(self):
        if self.depths is not None and self.depths < 1:
            raise ValueError(f"--depths must be >= 1, got {self.depths}")


@dataclass(frozen=True)
class Sample:
    """One prompt with its references. ``depth`` (percent) is the gold item's position, when defined."""

    task: str
    length: int
    index: int
    seed: int
    haystack: str
    prompt: str
    add_special_tokens: bool
    n_tokens: int
    max_new_tokens: int
    references: tuple[str, ...]
    depth: float | None = None
    depths: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.prompt)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        d["depths"] = list(self.depths) if self.depths is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        d = dict(d)
        d["references"] = tuple(d["references"])
        d["depths"] = tuple(d["depths"]) if d.get("depths") is not None else None
        return cls(**d)


def sample_rng(task: str, length: int, index: int, seed: int) -> random.Random:
    """The per-sample RNG; a string seed hashes deterministically across processes."""
    return random.Random(f"{task}|{length}|{index}|{seed}")


def depth_grid(k: int) -> list[float]:
    """``k`` evenly spaced depths in percent: 1 -> [50], 5 -> [0, 25, 50, 75, 100]."""
    if k == 1:
        return [50.0]
    return [round(100 * i / (k - 1), 4) for i in range(k)]


@lru_cache(maxsize=64)
def spread_order(k: int) -> tuple[int, ...]:
    """A permutation of grid indices ``0..k-1`` whose every prefix is spread over the grid: the two ends,
    then the van der Corput points 1/2, 1/4, 3/4, 1/8, 5/8, ... rounded to the grid, skipping indices
    already taken. ``spread_order(11)`` -> (0, 10, 5, 2, 8, 1, 6, 4, 9, 3, 7)."""
    if k == 1:
        return (0,)
    order, i = [0, k - 1], 1
    while len(order) < k:  # the sequence is dense in [0, 1], so every grid index is reached
        x, bits, f = 0.0, i, 0.5
        while bits:
            x, bits, f = x + f * (bits & 1), bits >> 1, f / 2
        j = round(x * (k - 1))
        if j not in order:
            order.append(j)
        i += 1
    return tuple(order)


def sample_depth(k: int, index: int) -> float:
    """Depth (percent) of sample ``index`` on a ``k``-depth grid: stratified for any number of samples
    (each depth is used ``n // k`` or ``n // k + 1`` times by samples ``0..n-1``) and independent of n."""
    return depth_grid(k)[spread_order(k)[index % k]]


@dataclass(frozen=True)
class Prompted:
    """The prompt for one haystack size: the user text and the answer prefix."""

    user: str
    answer_prefix: str


@dataclass(frozen=True)
class Built:
    """What ``Task.build`` returns for one sample.

    make: haystack size n (in [1, hi]) -> the prompt; the runner fits the largest n within the budget.
    hi: the largest haystack size ``make`` accepts.
    references: the expected answers, or ``f(size) -> answers`` when they depend on the fitted size.
    depth / depths: the gold item's depth and every needle's depth in percent (None: not defined).
    meta: task-specific fields stored with the sample (e.g. the key asked for).
    """

    make: Callable[[int], Prompted]
    hi: int
    references: tuple[str, ...] | Callable[[int], list[str]]
    depth: float | None = None
    depths: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """An extra report table a task adds for its own records (e.g. niah4's per-needle recall)."""

    heading: str
    headers: list[str]
    rows: list[list[str]]
    note: str | None = None


class Task:
    """Base class for generation tasks. Subclasses set the class attributes and implement ``build``."""

    name: str = ""
    description: str = ""
    max_new_tokens: int = 32
    chat: bool = True
    default_haystack: str = "noise"
    reads_haystack: bool = False      # True when --haystack applies to this task
    default_depths: int | None = None  # depth-grid tasks: how many depths by default
    kind: str = GENERATION             # the kind of record it makes: GENERATION or LIKELIHOOD
    batch_group: str | None = None     # likelihood tasks of one group share batches: one evaluate() over mixed rows

    # -- to implement -------------------------------------------------------------------------
    def build(self, ctx: "BuildContext", rng: random.Random, depth: float | None) -> Built:
        """The prompt maker, references and depths of one sample (``depth``: the grid depth, or None)."""
        raise NotImplementedError

    def score(self, sample: Sample, output: str) -> float:
        raise NotImplementedError

    def details(self, sample: Sample, output: str) -> dict:
        """Extra per-sample fields for the record (e.g. per-needle hits)."""
        return {}

    def report_tables(self, records: list[Record]) -> list[Table]:
        """Extra report tables over this task's records (all methods and lengths); none by default."""
        return []

    # -- shared ---------------------------------------------------------------------------------
    def haystack_for(self, options: TaskOptions) -> Haystack:
        spec = options.haystack if (self.reads_haystack and options.haystack) else self.default_haystack
        return get_haystack(spec)

    @property
    def haystack_label(self) -> str | None:
        """What records store as the haystack when the task makes its own filler (None: the haystack's name)."""
        return None

    def make_samples(self, tokenizer, length: int, n: int, seed: int, options: TaskOptions = TaskOptions()):
        if n < 1:
            raise ValueError(f"{self.name}: the number of samples must be >= 1, got {n}")
        budget = length - self.max_new_tokens
        if budget < 16:
            raise ValueError(f"{self.name}: length {length} leaves no room after {self.max_new_tokens} new tokens")
        haystack = self.haystack_for(options)
        chat = self.chat if options.chat is None else options.chat
        k = options.depths or self.default_depths
        ctx = BuildContext(tokenizer, length, haystack, chat)
        samples, hint = [], None
        for i in range(n):
            rng = sample_rng(self.name, length, i, seed)
            ctx.index = i
            depth = sample_depth(k, i) if k else None
            built = self.build(ctx, rng, depth)
            make, hi, refs = built.make, built.hi, built.references

            counted: dict[int, int] = {}  # the search's counts, reused for n_tokens (one tokenisation fewer)

            def count(m: int) -> int:
                if m not in counted:
                    counted[m] = ctx.count(make(m))
                return counted[m]

            if i == 0 and self.reads_haystack and not haystack.lines and hi >= haystack.n_words \
                    and count(hi) < budget - 32:
                raise ValueError(
                    f"{self.name}: haystack {haystack.name!r} ({haystack.n_words:,} words) is too short for "
                    f"length {length}; use a shorter length or a larger haystack (kjv, file:PATH)"
                )
            try:
                size = fit_largest(count, budget, 1, hi, hint)
            except ValueError as e:
                raise ValueError(f"{self.name} at length {length}: {e}") from None
            hint = size
            text, specials = ctx.render(make(size))
            if callable(refs):  # references that depend on the fitted size (e.g. math_find)
                refs = refs(size)
            samples.append(
                Sample(
                    task=self.name, length=length, index=i, seed=seed, haystack=self.haystack_label or haystack.name,
                    prompt=text, add_special_tokens=specials, n_tokens=count(size),
                    max_new_tokens=self.max_new_tokens, references=tuple(refs),
                    depth=built.depth if built.depth is not None else depth, depths=built.depths,
                    meta={"size": size, **built.meta},
                )
            )
        return samples


@dataclass
class BuildContext:
    tokenizer: Any
    length: int
    haystack: Haystack
    chat: bool
    index: int = 0

    def render(self, p: Prompted) -> tuple[str, bool]:
        return render(self.tokenizer, p.user, p.answer_prefix, chat=self.chat)

    def count(self, p: Prompted) -> int:
        text, specials = self.render(p)
        return count_tokens(self.tokenizer, text, specials)

    def word_cap(self) -> int:
        """Upper bound on haystack words for this length (never more than a text haystack holds)."""
        cap = 2 * self.length + 64
        return cap if self.haystack.lines else min(cap, self.haystack.n_words)


TASKS: Registry[Task] = Registry("task")
DESCRIPTIONS: dict[str, str] = {}


def register(task: Task) -> Task:
    TASKS.register(task.name, task)
    DESCRIPTIONS[task.name] = task.description
    return task


def resolve_task(spec: str) -> Task:
    """``name`` or ``name:ARG`` (only tasks that take an argument, e.g. ``qa:PATH``)."""
    name, _, arg = spec.partition(":")
    task = TASKS[name]
    takes = getattr(task, "with_arg", None)
    if takes is not None:
        return takes(arg or None)
    if arg:
        raise ValueError(f"task {name!r} takes no argument (got {spec!r})")
    return task

