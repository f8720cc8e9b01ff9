"""RULER QA from user-supplied files (evals.md section 1.6): ``--tasks qa:PATH``.

PATH is SQuAD v2 dev JSON (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``) or HotpotQA
dev-distractor JSON (a list of ``{"question", "answer", "context": [[title, [sentences]], ...]}``).
Neither ships with ropeshift (CC BY-SA; no hub at run time). Sample i asks question i; its gold
documents plus as many random distractor documents as fit are shuffled and rendered as
"Document k:\\n...". Scored by ``string_match_part`` (any reference answer).
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from ..metrics import string_match_part
from .base import Built, Prompted, Sample, Task, register

TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any "
            "other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the "
            "given documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
PREFIX = " Answer:"


@lru_cache(maxsize=4)
def load_qa(path: str) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...]]:
    """``(docs, questions)``; a question is ``(text, answers, gold doc indices)``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"qa file not found: {path}")
    data = json.loads(p.read_text(encoding="utf-8"))
    docs: dict[str, int] = {}
    qs = []
    if isinstance(data, dict) and "data" in data:  # SQuAD
        for article in data["data"]:
            for para in article["paragraphs"]:
                d = docs.setdefault(para["context"], len(docs))
                for qa in para["qas"]:
                    if qa.get("is_impossible"):
                        continue
                    answers = tuple(a["text"] for a in qa["answers"])
                    if answers:
                        qs.append((qa["question"], answers, (d,)))
    elif isinstance(data, list) and data and "context" in data[0]:  # HotpotQA
        for item in data:
            gold = tuple(docs.setdefault(f"{t}\n{''.join(s)}", len(docs)) for t, s in item["context"])
            qs.append((item["question"], (item["answer"],), gold))
    else:
        raise ValueError(f"{path} is neither SQuAD v2 nor HotpotQA JSON")
    if not qs:
        raise ValueError(f"{path} holds no answerable questions")
    return tuple(docs), tuple(qs)


class QA(Task):
    name = "qa"
    description = "RULER QA over user-supplied SQuAD/HotpotQA JSON: --tasks qa:PATH"
    max_new_tokens = 32

    def __init__(self, path: str | None = None):
        self.path = path
        if path:
            self.name = f"qa:{path}"

    def with_arg(self, arg: str | None) -> "QA":
        if not arg:
            raise ValueError("task qa needs a SQuAD v2 or HotpotQA JSON file: --tasks qa:PATH "
                             "(the datasets are not shipped and no hub is used)")
        return QA(arg)

    def build(self, ctx, rng, depth):
        docs, qs = load_qa(self.path)
        index = ctx.index
        if index >= len(qs):
            raise ValueError(f"{self.path} holds {len(qs)} questions; asked for sample {index}")
        question, answers, gold = qs[index]
        others = [i for i in rng.sample(range(len(docs)), min(len(docs), 4000)) if i not in gold]

        def make(n: int) -> Prompted:
            chosen = list(gold) + others[:max(0, n - len(gold))]
            order = chosen[:]
            random.Random(index).shuffle(order)
            context = "\n\n".join(f"Document {k + 1}:\n{docs[d]}" for k, d in enumerate(order))
            return Prompted(TEMPLATE.format(context=context, query=question), PREFIX)

        return Built(make, len(others) + len(gold), tuple(answers), meta={"question": question})

    def score(self, sample: Sample, output: str) -> float:
        return string_match_part(output, list(sample.references))


register(QA())
