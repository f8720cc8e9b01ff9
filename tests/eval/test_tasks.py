"""Task generators and scorers on a tiny in-memory tokenizer. Run: pytest tests/eval/test_tasks.py -v

Checks, per task: exact token count within the budget and tight (one more haystack unit would not
fit), determinism per seed, answers present as specified, needles at the requested depth, and
scorers on hand-made outputs.
"""
from __future__ import annotations

import re

import pytest

from ropeshift.eval.prompts import count_tokens
from ropeshift.eval.tasks import TASKS, TaskOptions, resolve_task
from ropeshift.eval.records import GENERATION
from ropeshift.eval.tasks.base import BuildContext, sample_depth, sample_rng

GEN_TASKS = [n for n in TASKS.names() if TASKS[n].kind == GENERATION and n != "qa"]
LENGTH = 2048


def _samples(task, tok, n=3, seed=0, length=LENGTH, **opts):
    return task.make_samples(tok, length, n, seed, TaskOptions(**opts))


@pytest.mark.parametrize("name", GEN_TASKS)
def test_exact_and_tight_token_budget(name, tok):
    task = TASKS[name]
    budget = LENGTH - task.max_new_tokens
    for s in _samples(task, tok):
        assert s.n_tokens == count_tokens(tok, s.prompt, s.add_special_tokens)
        assert s.n_tokens <= budget
        # rebuild the sample and check one more haystack unit would overflow the budget
        hay = task.haystack_for(TaskOptions())
        ctx = BuildContext(tok, LENGTH, hay, task.chat, s.index)
        k = task.default_depths
        depth = sample_depth(k, s.index) if k else None
        built = task.build(ctx, sample_rng(name, LENGTH, s.index, 0), depth)
        make, hi = built.make, built.hi
        size = s.meta["size"]
        assert ctx.count(make(size)) == s.n_tokens
        if size < hi:
            assert ctx.count(make(size + 1)) > budget


@pytest.mark.parametrize("name", GEN_TASKS)
def test_deterministic_per_seed(name, tok):
    task = TASKS[name]
    a, b, c = _samples(task, tok, seed=1), _samples(task, tok, seed=1), _samples(task, tok, seed=2)
    assert [s.prompt for s in a] == [s.prompt for s in b]
    assert [s.prompt for s in a] != [s.prompt for s in c]
    # sample i does not depend on how many samples were asked for
    assert _samples(task, tok, n=1, seed=1)[0].prompt == a[0].prompt


def _count(text: str, ref: str) -> int:
    return len(re.findall(rf"(?<![\w-]){re.escape(ref)}(?![\w-])", text))


EXPECTED_COUNT = {"passkey": 2, "number_string": 2}


@pytest.mark.parametrize("name", [n for n in GEN_TASKS if n not in ("vt", "cwe", "fwe", "math_find")])
def test_answers_present_as_specified(name, tok):
    for s in _samples(TASKS[name], tok):
        for ref in s.references:
            assert _count(s.prompt, ref) == EXPECTED_COUNT.get(name, 1), (ref, name)


def test_vt_chain_and_cwe_fwe_counts(tok):
    for s in _samples(TASKS["vt"], tok):
        names = s.references
        assert _count(s.prompt, f"VAR {names[0]}") == 2 and re.search(rf"VAR {names[0]} = \d{{5}}", s.prompt)
        for a, b in zip(names, names[1:]):
            assert f"VAR {b} = VAR {a} " in s.prompt
    for s in _samples(TASKS["cwe"], tok, length=2048):
        listing = s.prompt.rsplit("\nQuestion:", 1)[0].rsplit("\n", 1)[1]  # the real list, after the example
        counts = {w: len(re.findall(rf"\d+\. {re.escape(w)}(?= |$)", listing)) for w in s.references}
        assert set(counts.values()) == {6}  # below 4k: common words x 6, others x 1
    for s in _samples(TASKS["fwe"], tok, length=1024):
        text = s.prompt.split("coded words. ")[1].split("\nQuestion")[0].split(" ")
        freq = sorted({w: text.count(w) for w in set(text) if w != "..."}.items(), key=lambda kv: -kv[1])
        assert [w for w, _ in freq[:3]] == list(s.references)


@pytest.mark.parametrize("name,start,end", [("needle", "afterwards.\n", "\nWhat is"),
                                             ("passkey", "information.\n\n", "\n\nWhat is")])
def test_needle_at_requested_depth(name, start, end, tok):
    # the noise text has short sentences, so the nearest boundary is close to the exact depth
    samples = _samples(TASKS[name], tok, n=5, length=1024, depths=5, haystack="noise")
    assert sorted(s.depth for s in samples) == [0, 25, 50, 75, 100]
    for s in samples:
        context = s.prompt.split(start, 1)[1].rsplit(end, 1)[0]
        where = context.find(s.references[0]) / len(context)
        assert abs(where - s.depth / 100) < 0.08, (s.depth, where)


def test_kv_gold_index_sweeps(tok):
    for s in _samples(TASKS["kv_retrieval"], tok, n=3, length=2048, depths=3):
        keys = re.findall(r'"([0-9a-f-]{36})": ', s.prompt)
        gold = keys.index(s.meta["key"])
        assert gold == round(s.depth / 100 * (len(keys) - 1))


@pytest.mark.parametrize("name", GEN_TASKS)
def test_scorers_on_hand_made_outputs(name, tok):
    task = TASKS[name]
    s = _samples(task, tok, n=1)[0]
    perfect = " ".join(s.references)
    assert task.score(s, perfect) == 1.0
    assert task.score(s, "I do not know.") == 0.0


def test_niah4_two_of_four_rule(tok):
    task = TASKS["niah4"]
    s = _samples(task, tok, n=1, length=1024)[0]
    k = s.references
    assert len(s.depths) == 4 and all(j * 24.75 <= d <= (j + 1) * 24.75 for j, d in enumerate(s.depths))
    assert task.score(s, f"{k[0]} and {k[3]}") == 1.0
    assert task.score(s, f"{k[1]} only") == 0.0
    assert task.details(s, f"{k[1]}, {k[2]}, {k[3]}") == {"needle_hits": [False, True, True, True], "recall": 0.75}


def test_math_find_reference_matches_the_list(tok):
    for s in _samples(TASKS["math_find"], tok, n=7, length=1024):
        xs = [int(x) for x in re.search(r"\[([\d, ]+)\]", s.prompt).group(1).split(", ")]
        assert len(xs) == s.meta["size"]
        q = s.meta["question"]
        if q == "the largest number":
            assert s.references == (str(max(xs)),)
        if q == "the smallest number":
            assert s.references == (str(min(xs)),)


def test_errors(tok):
    with pytest.raises(KeyError, match="Did you mean: passkey"):
        resolve_task("pasky")
    with pytest.raises(ValueError, match="qa:PATH"):
        resolve_task("qa")
    with pytest.raises(ValueError, match=">= 1"):
        TASKS["passkey"].make_samples(tok, 1024, 0, 0)
    with pytest.raises(ValueError, match="too short"):
        TASKS["needle"].make_samples(tok, 400_000, 1, 0, TaskOptions(haystack="pydoc"))


def test_qa_from_user_file(tmp_path, tok):
    import json

    squad = {"data": [{"paragraphs": [
        {"context": f"Paragraph {i} says the colour is c{i}.", "qas": [
            {"question": f"What colour does paragraph {i} give?", "answers": [{"text": f"c{i}"}],
             "is_impossible": False}]} for i in range(30)]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(squad))
    task = resolve_task(f"qa:{path}")
    s = task.make_samples(tok, 512, 2, 0)[1]
    assert "Paragraph 1 says the colour is c1." in s.prompt and s.references == ("c1",)
    assert task.score(s, "c1") == 1.0 and task.score(s, "c2") == 0.0


def test_few_samples_spread_over_the_whole_depth_grid(tok):
    """Regression (issue 8 item 7): --samples 4 on an 11-depth task tested depths 0-30 % only."""
    depths = [s.depth for s in _samples(TASKS["passkey"], tok, n=4, length=1024)]
    assert TASKS["passkey"].default_depths == 11
    assert min(depths) == 0 and max(depths) == 100 and any(40 <= d <= 60 for d in depths), depths
    for k in (1, 2, 3, 5, 11, 40):
        grid = [round(100 * i / (k - 1), 4) for i in range(k)] if k > 1 else [50.0]
        for n in range(1, 3 * k + 2):
            got = [sample_depth(k, i) for i in range(n)]
            counts = [got.count(d) for d in grid]
            assert max(counts) - min(counts) <= 1, (k, n, counts)        # stratified for any n
            if n >= 2 and k >= 2:
                assert min(got) == 0 and max(got) == 100                 # both ends from two samples on
            if 3 <= n <= k:                        # no gap wider than ~2x the ideal (plus one grid step)
                gaps = [b - a for a, b in zip(sorted(got), sorted(got)[1:])]
                assert max(gaps) <= 2 * 100 / (n - 1) + 100 / (k - 1) + 1e-9, (k, n, sorted(got))


def test_fit_largest_finds_the_boundary_in_few_counts():
    """``prompts.fit_largest``: the largest n with count(n) <= budget for any non-decreasing count (random
    near-linear staircases, with no hint, an exact one, a near one and a far one), the same answer a plain
    bisection gives; from the exact hint it mostly needs 3 counts (lo, the hint, the hint + 1; more where
    several n share a count); a budget that ``lo`` already exceeds raises."""
    import random

    from ropeshift.eval.prompts import fit_largest

    rng = random.Random(7)
    spent = {"exact": [], "other": []}
    for _ in range(400):
        hi, rate, base = rng.randint(1, 3000), rng.uniform(0.3, 80.0), rng.randint(0, 300)
        values, v = [], base
        for n in range(hi + 2):
            v = max(v, int(base + rate * n + rng.randint(0, 2)))
            values.append(v)
        budget = rng.randint(values[1], values[hi] + 10)
        truth = max(n for n in range(1, hi + 1) if values[n] <= budget)
        for kind, hint in (("other", None), ("exact", truth), ("other", truth + rng.randint(-20, 20)),
                           ("other", rng.randint(1, hi))):
            calls = []
            got = fit_largest(lambda n: calls.append(n) or values[n], budget, 1, hi, hint)
            assert got == truth
            spent[kind].append(len(calls))
    exact, other = spent["exact"], spent["other"]
    assert sum(n == 3 for n in exact) > 0.9 * len(exact) and max(exact) <= 6
    assert sum(other) / len(other) < 8
    with pytest.raises(ValueError, match="too small"):
        fit_largest(lambda n: 100 + n, 50, 1, 10)
