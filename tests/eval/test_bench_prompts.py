"""benchmarks/bench_prompts.py: a study's prompts made with two searches, counted and compared by digest.
Run: pytest tests/eval/test_bench_prompts.py -v"""
from __future__ import annotations

import pytest

BISECTION = '''
def fit_largest(count, budget, lo, hi, hint=None):
    if count(lo) > budget:
        raise ValueError("budget of tokens is too small")
    good, bad = lo, hi + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if count(mid) <= budget else (good, mid)
    return good
'''


@pytest.fixture(scope="module")
def bench(benchmarks_path):
    import bench_prompts
    return bench_prompts


def test_the_current_search_makes_a_bisections_prompts_with_fewer_tokenisations(bench, tok, tmp_path):
    """Every prompt (text and token count) the same as a plain bisection's, found with fewer tokenisations; the
    runner's way (forked workers) timed as well; the task module's search is restored after."""
    import ropeshift.eval.tasks.base as base

    (tmp_path / "bisect.py").write_text(BISECTION)
    tasks, lengths = ["passkey", "niah_single_1", "vt"], [1536, 2048]
    ref = bench.measure(tok, tasks, lengths, 6, bench.load_search(tmp_path / "bisect.py"))
    cur = bench.measure(tok, tasks, lengths, 6, bench.load_search(None), workers=2)
    assert ref["prompts"] == cur["prompts"] == 36 and ref["digest"] == cur["digest"]
    assert cur["tokenisations"] < ref["tokenisations"] and cur["workers_seconds"] > 0
    assert base.fit_largest is bench.load_search(None)
