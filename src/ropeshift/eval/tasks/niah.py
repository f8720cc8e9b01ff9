"""RULER needle-in-a-haystack tasks and the single-needle depth-grid ``needle`` task.

RULER niah (evals.md section 1.2): needles "One of the special magic {numbers} for {key} is: {value}."
in a haystack, question and answer prefix from RULER's template, scored by ``string_match_all``.

    niah_single_1    noise haystack, word key, 7-digit value
    niah_single_2    text haystack (RULER: essays; here --haystack, default pydoc), word key, number
    niah_single_3    text haystack, word key, UUID value
    niah_multikey_1  text, 4 keys (3 distractor needles), 1 query
    niah_multikey_2  every haystack line is a distractor needle (word keys, numbers)
    niah_multikey_3  every haystack line is a distractor needle (UUID keys and values)
    niah_multivalue  text, 1 key with 4 values (all 4 are references)
    niah_multiquery  text, 4 keys, all 4 queried
    needle           niah_single_2 on a depth grid (default 5 depths): the ``ropeshift needle`` task

With a depth grid the (first) gold needle goes at the grid depth and any others at random RULER depths;
without one every needle goes at a random RULER depth. Records carry the gold needle's depth.
The singular rewording (RULER's "Some"->"A", "are"->"is" quirk) is applied to the task template and
answer prefix only, never to the model's own chat template.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .. import words
from ..haystacks import NOISE_SENTENCE
from ..metrics import string_match_all
from .base import Built, Prompted, Sample, Task, register
from .placement import RULER_DEPTHS, insert_lines, insert_sentences

TEMPLATE = (
    "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
    "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
)
ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
_SINGULAR = (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer"))
_GEN = {"words": words.word_key, "numbers": words.number, "uuids": words.uuid_str}


def singularise(text: str) -> str:
    for old, new in _SINGULAR:
        text = text.replace(old, new)
    return text


def join_query(keys: list[str]) -> str:
    """RULER's "k1, k2, and k3" (or just "k1")."""
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + ", and " + keys[-1]


@dataclass(frozen=True)
class NiahSpec:
    haystack: str   # "noise" (lines), "text" (sentences of --haystack) or "needle" (distractor lines)
    key: str        # words | numbers | uuids
    value: str      # words | numbers | uuids
    n_keys: int = 1
    n_values: int = 1
    n_queries: int = 1


class NiahTask(Task):
    def __init__(self, name: str, spec: NiahSpec, description: str, *, max_new_tokens: int = 128,
                 default_depths: int | None = None):
        self.name, self.spec, self.description = name, spec, description
        self.max_new_tokens = max_new_tokens
        self.default_depths = default_depths
        self.reads_haystack = spec.haystack == "text"
        self.default_haystack = "pydoc" if spec.haystack == "text" else "noise"

    def build(self, ctx, rng: random.Random, depth: float | None):
        s = self.spec
        n_keys = max(s.n_keys, s.n_queries)
        keys = words.distinct(rng, _GEN[s.key], n_keys)
        values = [words.distinct(rng, _GEN[s.value], s.n_values) for _ in keys]
        plural = s.value
        needles, owners = [], []
        for ki, (k, vs) in enumerate(zip(keys, values)):
            for v in vs:
                needles.append(NEEDLE.format(type_needle_v=plural, key=k, value=v))
                owners.append(ki)
        queried = list(range(s.n_queries))
        refs = [v for ki in queried for v in values[ki]]
        free = [d for d in RULER_DEPTHS if d != depth]
        depths = [float(d) for d in rng.sample(free, len(needles))]
        if depth is not None:
            depths[0] = depth
        gold = [d for d, o in zip(depths, owners) if o in queried]

        type_v, template, prefix = plural, TEMPLATE, ANSWER_PREFIX
        if s.n_queries * s.n_values == 1:
            template, prefix, type_v = singularise(TEMPLATE), singularise(ANSWER_PREFIX), plural[:-1]
        query = join_query([keys[ki] for ki in queried])
        distractors = _Distractors(rng.random(), plural, set(keys)) if s.haystack == "needle" else None

        def make(n: int) -> Prompted:
            if s.haystack == "text":
                context = insert_sentences(ctx.haystack.text(n), needles, depths)
            else:
                lines = distractors.take(n) if distractors else [NOISE_SENTENCE] * n
                context = "\n".join(insert_lines(lines, needles, depths))
            user = template.format(type_needle_v=type_v, context=context, query=query)
            return Prompted(user, prefix.format(type_needle_v=type_v, query=query))

        hi = ctx.word_cap() if s.haystack == "text" else ctx.length // 8 + 8
        return Built(make, hi, tuple(refs), depth=gold[0] if len(gold) == 1 else None, depths=tuple(gold),
                     meta={"query": query})

    def score(self, sample: Sample, output: str) -> float:
        return string_match_all(output, list(sample.references))


class _Distractors:
    """RULER's "needle" haystack: a lazily grown list of distractor needles with fresh keys."""

    def __init__(self, seed: float, plural: str, exclude: set[str]):
        self.rng, self.plural, self.lines, self.seen = random.Random(seed), plural, [], set(exclude)
        self.key = words.uuid_str if plural == "uuids" else words.word_key

    def take(self, n: int) -> list[str]:
        while len(self.lines) < n:
            (k,) = words.distinct(self.rng, self.key, 1, self.seen)
            self.seen.add(k)
            v = _GEN[self.plural](self.rng)
            self.lines.append(NEEDLE.format(type_needle_v=self.plural, key=k, value=v))
        return self.lines[:n]


for _name, _spec, _desc in [
    ("niah_single_1", NiahSpec("noise", "words", "numbers"), "RULER single needle in noise (~passkey)"),
    ("niah_single_2", NiahSpec("text", "words", "numbers"), "RULER single needle (number) in real text"),
    ("niah_single_3", NiahSpec("text", "words", "uuids"), "RULER single needle (UUID) in real text"),
    ("niah_multikey_1", NiahSpec("text", "words", "numbers", n_keys=4), "RULER 1 of 4 needles in real text"),
    ("niah_multikey_2", NiahSpec("needle", "words", "numbers"), "RULER needle among distractor needles"),
    ("niah_multikey_3", NiahSpec("needle", "uuids", "uuids"), "RULER UUID key-value among distractors"),
    ("niah_multivalue", NiahSpec("text", "words", "numbers", n_values=4), "RULER 4 values of one key"),
    ("niah_multiquery", NiahSpec("text", "words", "numbers", n_keys=4, n_queries=4), "RULER 4 keys queried"),
]:
    register(NiahTask(_name, _spec, _desc))

register(NiahTask("needle", NiahSpec("text", "words", "numbers"),
                  "single 7-digit needle in real text on a depth grid (the needle command)",
                  max_new_tokens=24, default_depths=5))
