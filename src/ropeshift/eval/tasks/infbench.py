"""InfiniteBench synthetic tasks that are not noise retrieval (evals.md section 5).

    kv_retrieval  JSON of UUID pairs on one line; the gold pair's index is swept by the depth grid
                  (default 11 depths); the value must be one of the prediction's words
    math_find     a Python list of ints in [0, 99]; one of 7 questions (largest, ..., median) chosen by
                  the sample index; the first number in the prediction must equal the answer
"""
from __future__ import annotations

import statistics

from .. import words
from ..metrics import first_number, kv_match
from .base import Built, Prompted, Sample, Task, register


class _OwnFiller:
    """Mixin: the task builds its own filler (JSON pairs, lists, words), recorded as haystack "synthetic"."""

    haystack_label = "synthetic"


class KvRetrieval(_OwnFiller, Task):
    name = "kv_retrieval"
    description = "InfiniteBench/lost-in-the-middle UUID key-value retrieval, gold index swept"
    max_new_tokens = 50
    default_depths = 11
    template = "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}"
    prefix = "The value associated with the specified key is: "

    def build(self, ctx, rng, depth):
        hi = ctx.length // 20 + 8   # a pair is ~ 50+ tokens; never more pairs than tokens / 20
        pairs = [(k, words.uuid_str(rng)) for k in words.distinct(rng, words.uuid_str, hi)]
        depth = 100 * rng.random() if depth is None else depth

        def gold_index(n: int) -> int:
            return round(depth / 100 * (n - 1))

        def make(n: int) -> Prompted:
            g = gold_index(n)
            # the gold pair (pairs[0]) moves to index g among the first n pairs
            items = pairs[1:n]
            items.insert(g, pairs[0])
            body = ", ".join(f'"{k}": "{v}"' for k, v in items)
            user = self.template.format(context="JSON data:\n{" + body + "}", input=f'Key: "{pairs[0][0]}"')
            return Prompted(user, "\n" + self.prefix if not ctx.chat else self.prefix)

        return Built(make, hi, (pairs[0][1],), depth=depth, meta={"key": pairs[0][0]})

    def score(self, sample: Sample, output: str) -> float:
        return kv_match(output, sample.references[0])


_FIND = [
    ("the largest number", lambda xs: max(xs)),
    ("the second largest number", lambda xs: sorted(xs)[-2]),
    ("the third largest number", lambda xs: sorted(xs)[-3]),
    ("the smallest number", lambda xs: min(xs)),
    ("the second smallest number", lambda xs: sorted(xs)[1]),
    ("the third smallest number", lambda xs: sorted(xs)[2]),
    ("the median", lambda xs: statistics.median(xs)),
]


class MathFind(_OwnFiller, Task):
    name = "math_find"
    description = "InfiniteBench math_find: largest/smallest/median of a long integer list"
    max_new_tokens = 3

    def build(self, ctx, rng, depth):
        hi = ctx.length + 8   # every number costs >= 1 token
        numbers = [rng.randint(0, 99) for _ in range(hi)]
        what, fn = _FIND[rng.randrange(len(_FIND))]

        def make(n: int) -> Prompted:
            user = (f"What is {what} in the following list?\n\n{numbers[:n]}\n\n"
                    "You should answer with only one number, no other words.")
            return Prompted(user, f" The {what.removeprefix('the ')} of the list is:")

        def refs(n: int) -> list[str]:
            v = fn(numbers[:n])
            return [str(int(v)) if float(v).is_integer() else str(float(v))]

        return Built(make, hi, refs, meta={"question": what})

    def score(self, sample: Sample, output: str) -> float:
        v = first_number(output)
        return float(v is not None and abs(v - float(sample.references[0])) < 1e-9)


register(KvRetrieval())
register(MathFind())
