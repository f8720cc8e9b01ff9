"""RULER's non-needle synthetic tasks (evals.md sections 1.3-1.5): vt, cwe, fwe.

    vt   variable tracking: one chain of 4 hops ("VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE ", ...)
         in noise lines, with RULER's one-shot example (fresh names and value per sample)
    cwe  common words: 10 words x 30 (6 below 4k) among others x 3 (1 below 4k), numbered list, one example
         (from 2k tokens on; it does not fit shorter prompts)
    fwe  frequent coded words: Zipf(2) counts over random 6-letter words, "..." the noise word

All scored with ``string_match_all`` over the expected words. Sizes (noise lines, words) are fitted
to the token budget per sample.
"""
from __future__ import annotations

import math
import random
import string

from .. import words
from ..haystacks import NOISE_SENTENCE
from ..metrics import string_match_all
from .base import Built, Prompted, Sample, Task, register


class _OwnFiller:
    """Mixin: the task builds its own filler (JSON pairs, lists, words), recorded as haystack "synthetic"."""

    haystack_label = "synthetic"
from .placement import insert_lines

VT_TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
               "{context}\nQuestion: Find all variables that are assigned the value {query} in the text above.")
VT_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
             "are assigned the value {query}, they are: ")
CWE_TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. "
                "Memorize the ones that appear most often.\n{context}\n"
                "Question: What are the 10 most common words in the above list?")
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
                "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please "
                "ignore the dots '....'. What are the three most frequently appeared words in the above coded text?")
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"


def _names(rng: random.Random, n: int, size: int) -> list[str]:
    return words.distinct(rng, lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(size)), n)


def _chain_text(names: list[str], value: str, fractions: list[float], n_lines: int) -> str:
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {b} = VAR {a} " for a, b in zip(names, names[1:])]
    lines = insert_lines([NOISE_SENTENCE] * n_lines, chain, [100 * f for f in fractions])
    return "\n".join(lines).replace(". \n", ".\n")


class VariableTracking(Task):
    name = "vt"
    description = "RULER variable tracking: 1 chain x 4 hops in noise, one-shot example"
    max_new_tokens = 30
    hops = 4
    example_lines = 5

    def build(self, ctx, rng, depth):
        names = _names(rng, self.hops + 1, 5)
        value = str(rng.randint(10000, 99999))
        fractions = sorted(rng.random() for _ in names)
        ex_names = _names(rng, self.hops + 1, 3)
        ex_value = str(rng.randint(10000, 99999))
        ex_fr = sorted(rng.random() for _ in ex_names)
        example = VT_TEMPLATE.format(context=_chain_text(ex_names, ex_value, ex_fr, self.example_lines),
                                     query=ex_value)
        example += VT_PREFIX.format(num_v=len(ex_names), query=ex_value) + " ".join(ex_names) + "\n"

        def make(n: int) -> Prompted:
            user = example + "\n" + VT_TEMPLATE.format(context=_chain_text(names, value, fractions, n), query=value)
            return Prompted(user, VT_PREFIX.format(num_v=len(names), query=value))

        return Built(make, ctx.length // 8 + 8, tuple(names), depths=tuple(round(100 * f, 2) for f in fractions))

    def score(self, sample: Sample, output: str) -> float:
        return string_match_all(output, list(sample.references))


def _numbered(ws: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(ws))


class CommonWords(_OwnFiller, Task):
    name = "cwe"
    description = "RULER common words extraction: the 10 most repeated words of a numbered list"
    max_new_tokens = 120
    example_from = 2048  # the one-shot example alone needs ~700 tokens: left out below this length

    def build(self, ctx, rng, depth):
        vocab = list(words.vocabulary())
        random.Random(42).shuffle(vocab)
        small = ctx.length < 4096
        freq_cw, freq_ucw = (6, 1) if small else (30, 3)
        hi = min(len(vocab) - 50, ctx.length // 4 + 20)
        pool = rng.sample(vocab, hi + 50)
        ex_words, pool = pool[:40], pool[40:]
        ex_n, ex_c, ex_u = (20, 3, 1) if small else (40, 10, 3)
        ex_list = ex_words[:10] * ex_c + ex_words[10:ex_n] * ex_u
        random.Random(rng.random()).shuffle(ex_list)
        example = (CWE_TEMPLATE.format(context=_numbered(ex_list)) + CWE_PREFIX + " "
                   + _numbered(ex_words[:10]) + "\n") if ctx.length >= self.example_from else ""
        shuffle_seed = rng.random()

        def make(n: int) -> Prompted:
            n = max(n, 11)
            ws = pool[:10] * freq_cw + pool[10:n] * freq_ucw
            random.Random(shuffle_seed).shuffle(ws)
            return Prompted((example + "\n" if example else "") + CWE_TEMPLATE.format(context=_numbered(ws)), CWE_PREFIX)

        return Built(make, hi, tuple(pool[:10]))

    def score(self, sample: Sample, output: str) -> float:
        return string_match_all(output, list(sample.references))


class FrequentWords(_OwnFiller, Task):
    name = "fwe"
    description = "RULER frequent words extraction: the 3 most frequent coded words (Zipf, alpha 2)"
    max_new_tokens = 50
    alpha = 2.0

    def build(self, ctx, rng, depth):
        budget = ctx.length - self.max_new_tokens
        size = max(8, budget // 50)
        vocab = sorted(words.distinct(rng, lambda r: "".join(r.choice(string.ascii_lowercase) for _ in range(6)),
                                      size))
        rng.shuffle(vocab)
        vocab[0] = "..."
        zeta = math.pi**2 / 6 if self.alpha == 2.0 else sum(k**-self.alpha for k in range(1, 10**5))
        shuffle_seed = rng.random()

        def make(n: int) -> Prompted:
            ws = [w for k, w in enumerate(vocab, 1) for _ in range(int(n * k**-self.alpha / zeta))]
            random.Random(shuffle_seed).shuffle(ws)
            return Prompted(FWE_TEMPLATE.format(context=" ".join(ws)), FWE_PREFIX)

        return Built(make, 2 * ctx.length + 64, tuple(vocab[1:4]))

    def score(self, sample: Sample, output: str) -> float:
        return string_match_all(output, list(sample.references))


register(VariableTracking())
register(CommonWords())
register(FrequentWords())
