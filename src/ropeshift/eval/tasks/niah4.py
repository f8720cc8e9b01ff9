"""STRING's 4-needle test (HKUNLP/STRING ``niah/test_niah_llama.py``; evals.md section 2).

Four needles " One of the magic number is: {key}. " (6-digit keys, fresh per trial) go one per
quarter of the text, needle j at depth ``j*s + U(0, s)`` with ``s = 0.99/4``; base-model prompt (no
chat template by default). A trial succeeds when at least 2 of the 4 keys appear in the output
(the paper's rule, after the Llama 3 report); records also carry per-needle hits and the recall.
"""
from __future__ import annotations

from ..metrics import postprocess
from ..options import format_length
from .base import Built, Prompted, Sample, Table, Task, register
from .placement import insert_sentences

DESCRIPTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
               "I will quiz you about the important information there.\n")
QUESTION = "\n\nWhat are the magic numbers mentioned in the provided text?\n"
PREFIX = "The numbers are"
NEEDLE = "One of the magic number is: {key}."


class Niah4(Task):
    name = "niah4"
    description = "STRING 4-needle NIAH: success = at least 2 of 4 keys (per-needle recall recorded)"
    max_new_tokens = 128
    chat = False
    reads_haystack = True
    default_haystack = "pydoc"

    def build(self, ctx, rng, depth):
        keys = [str(rng.randint(100000, 999999)) for _ in range(4)]
        s = 0.99 / 4
        depths = [100 * (j * s + rng.uniform(0, s)) for j in range(4)]
        needles = [NEEDLE.format(key=k) for k in keys]

        def make(n: int) -> Prompted:
            context = insert_sentences(ctx.haystack.text(n), needles, depths)
            return Prompted(DESCRIPTION + context + QUESTION, PREFIX)

        return Built(make, ctx.word_cap(), tuple(keys), depths=tuple(round(d, 3) for d in depths))

    def hits(self, sample: Sample, output: str) -> list[bool]:
        out = " ".join(postprocess(output).split()).lower()
        return [k.lower() in out for k in sample.references]

    def score(self, sample: Sample, output: str) -> float:
        return float(sum(self.hits(sample, output)) >= 2)

    def details(self, sample: Sample, output: str) -> dict:
        h = self.hits(sample, output)
        return {"needle_hits": h, "recall": sum(h) / len(h)}

    def report_tables(self, records) -> list[Table]:
        """Per-needle recall (percent) by needle order, per method and length."""
        acc: dict[tuple, list[list[bool]]] = {}
        for r in records:
            if "needle_hits" in r.details:
                acc.setdefault((r.method, r.length), []).append(r.details["needle_hits"])
        if not acc:
            return []
        k = max(len(h[0]) for h in acc.values())
        headers = ["method", "length"] + [f"needle {j + 1}" for j in range(k)] + ["recall", ">=2 of 4"]
        rows = []
        for (method, length), hits in sorted(acc.items()):
            per = [100 * sum(h[j] for h in hits) / len(hits) for j in range(k)]
            ok = 100 * sum(sum(h) >= 2 for h in hits) / len(hits)
            rows.append([method, format_length(length)] + [f"{v:.0f}" for v in per]
                        + [f"{sum(per) / k:.1f}", f"{ok:.1f}"])
        return [Table(f"{self.name} per-needle recall (%)", headers, rows,
                      note="needle j sits in quarter j of the text")]


register(Niah4())
