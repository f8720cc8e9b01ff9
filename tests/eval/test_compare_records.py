"""benchmarks/compare_records.py: two studies of the same prompts compared record by record.
Run: pytest tests/eval/test_compare_records.py -v"""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cmp(benchmarks_path):
    import compare_records
    return compare_records


def _rec(task, method, index, prompt_hash, prediction, score, kind="generation"):
    from ropeshift.eval.records import Record

    extra = {"nll": 1.0, "n_scored": 4} if kind == "likelihood" else {"prediction": prediction}
    return Record(kind=kind, model="tiny", task=task, length=256, index=index, method=method,
                  prompt_hash=prompt_hash, score=score, **extra)


def test_compare_counts_prompts_texts_and_scores(cmp):
    """Keys in both runs are matched; another prompt hash counts as matched but not compared; texts and scores
    are compared separately (another text may score the same)."""
    a = {("needle", "rope", 256, i): _rec("needle", "rope", i, "h", t, s)
         for i, (t, s) in enumerate([("7", 1.0), ("7", 1.0), ("x", 0.0), ("y", 0.0)])}
    a[("needle", "string", 256, 0)] = _rec("needle", "string", 0, "h", "7", 1.0)
    b = {("needle", "rope", 256, 0): _rec("needle", "rope", 0, "h", "7", 1.0),           # same text and score
         ("needle", "rope", 256, 1): _rec("needle", "rope", 1, "h", "7 ", 1.0),          # other text, same score
         ("needle", "rope", 256, 2): _rec("needle", "rope", 2, "h", "7", 1.0),           # other text and score
         ("needle", "rope", 256, 3): _rec("needle", "rope", 3, "other", "y", 0.0),       # another prompt
         ("needle", "rope", 256, 9): _rec("needle", "rope", 9, "h", "7", 1.0)}           # only in b
    got = cmp.compare(a, b)
    assert set(got) == {"rope"}
    assert dict(got["rope"]) == {"matched": 4, "same_prompt": 3, "same_text": 1, "same_score": 2}


def test_generation_records_skip_likelihood(cmp, tmp_path):
    """Only generation records are read (likelihood records have no text to compare)."""
    from ropeshift.eval.records import open_writer

    with open_writer(tmp_path, "tiny", "needle", "rope", 256) as w:
        w.write(_rec("needle", "rope", 0, "h", "7", 1.0))
    with open_writer(tmp_path, "tiny", "perplexity", "rope", 256) as w:
        w.write(_rec("perplexity", "rope", 0, "h", None, 3.0, kind="likelihood"))
    got = cmp.generation_records(tmp_path)
    assert list(got) == [("needle", "rope", 256, 0)] and got["needle", "rope", 256, 0].prediction == "7"
