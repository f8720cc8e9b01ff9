"""Passkey-style retrieval in noise lines (InfiniteBench forms, evals.md sections 4-5).

    passkey        5 random digits; "The pass key is {key}. Remember it. {key} is the pass key."
    number_string  10 digits with runs (5 digits, 5 duplications); "The sequence of digits is ..."

The info line sits after ``round(depth x N)`` of the N noise lines (default grid: 11 depths,
0..100 %); lines end in "\\n". Scored by the first run of digits == key (``first_int``).
"""
from __future__ import annotations

import random

from .. import words
from ..haystacks import NOISE_SENTENCE
from ..metrics import first_int
from .base import Built, Prompted, Sample, Task, register
from .placement import insert_lines


class _NoiseRetrieval(Task):
    default_depths = 11
    template: str
    info: str
    question: str
    prefix: str

    def key(self, rng: random.Random) -> str:
        raise NotImplementedError

    def build(self, ctx, rng, depth):
        key = self.key(rng)
        depth = 100 * rng.random() if depth is None else depth
        info = self.info.format(key=key)

        def make(n: int) -> Prompted:
            lines = insert_lines([NOISE_SENTENCE + "\n"] * n, [info], [depth])
            return Prompted(self.template.format(context="".join(lines), input=self.question), self.prefix)

        return Built(make, ctx.length // 8 + 8, (key,), depth=depth)

    def score(self, sample: Sample, output: str) -> float:
        return float(first_int(output) == sample.references[0])


class Passkey(_NoiseRetrieval):
    name = "passkey"
    description = "InfiniteBench passkey: 5 digits in noise lines, depth grid, first-integer match"
    max_new_tokens = 6
    template = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                "I will quiz you about the important information.\n\n{context}\n\n{input}")
    info = "The pass key is {key}. Remember it. {key} is the pass key.\n"
    question = "What is the pass key?"
    prefix = "\n\nThe pass key is"

    def key(self, rng):
        return words.digit_string(rng, 5)


class NumberString(_NoiseRetrieval):
    name = "number_string"
    description = "InfiniteBench number_string: 10 digits with runs in noise lines, first-integer match"
    max_new_tokens = 12
    template = ("There is an important info hidden inside a lot of irrelevant text. Find it. "
                "I will quiz you about the important information there.\n\n{context}\n\n{input}")
    info = "The sequence of digits is {key}. Remember it. {key} is the sequence of digits.\n"
    question = "What is the sequence of digits?"
    prefix = "\n\nThe sequence of digits is"

    def key(self, rng):
        digits = list(words.digit_string(rng, 5))
        for _ in range(5):
            pos = rng.randrange(len(digits))
            digits.insert(pos, digits[pos])
        return "".join(digits)


register(Passkey())
register(NumberString())
