"""Generation: per-row stopping cuts each row at its answer's end and never changes what was generated before it;
the batch ends when every row has; prompts are tokenised once; ``answer_end`` never changes a multi-reference
score or its per-reference details.

Run: pytest tests/eval/test_generation.py -v
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropeshift.eval.generation import answer_end, batch_prompt_ids, generate, left_pad, prompt_ids
from ropeshift.eval.prompts import encode
from ropeshift.eval.tasks import TASKS, Sample

MAX_NEW = 24


@pytest.fixture(scope="module")
def rows(tok):
    texts = ["The grass is green. The sky", "Here we go", "def f(x):\n    return"]
    return [encode(tok, t, True) for t in texts]


@pytest.fixture(scope="module")
def full(tiny_llama, tok, rows):
    return generate(tiny_llama, tok, rows, MAX_NEW)


def _forward_calls(model):
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_stopped_rows_are_prefixes_of_the_full_rows(tiny_llama, tok, rows, full):
    stops = [lambda t: len(t) >= 3, None, lambda t: len(t) >= 8]
    got = generate(tiny_llama, tok, rows, MAX_NEW, stop=stops)
    assert got[1] == full[1]  # no predicate: the row runs to EOS / max_new_tokens
    for g, f, s in zip(got, full, stops):
        assert f.startswith(g)
        if s is not None and len(f) >= 8:
            assert s(g) and len(g) < len(f)


def test_each_row_stops_at_the_first_text_that_satisfies_it(tiny_llama, tok, rows, full):
    seen = [[] for _ in rows]

    def stop(i):
        def pred(text):
            seen[i].append(text)
            return len(text) >= 5
        return pred

    got = generate(tiny_llama, tok, rows, MAX_NEW, stop=[stop(i) for i in range(len(rows))])
    for g, f, texts in zip(got, full, seen):
        first = next((t for t in texts if len(t) >= 5), None)
        assert g == (first if first is not None else f)


def test_the_batch_ends_when_every_row_has_stopped(tiny_llama, tok, rows):
    calls, handle = _forward_calls(tiny_llama)
    try:
        generate(tiny_llama, tok, rows, MAX_NEW, stop=[lambda t: True] * len(rows))
        stopped = len(calls)
        calls.clear()
        generate(tiny_llama, tok, rows, MAX_NEW, stop=[lambda t: True, lambda t: False, lambda t: True])
        one_open = len(calls)
    finally:
        handle.remove()
    assert stopped == 1  # the prefill's token satisfies every predicate: no decode step
    assert one_open > stopped


def test_stop_needs_one_predicate_per_row(tiny_llama, tok, rows):
    with pytest.raises(ValueError, match="one predicate per row"):
        generate(tiny_llama, tok, rows, 4, stop=[None])


def test_prompt_ids_are_tokenised_once(tok):
    text = "Some prompt for the cache."
    a = prompt_ids(tok, text, True)
    assert prompt_ids(tok, text, True) is a
    assert a.tolist() == encode(tok, text, True)
    ids, mask = left_pad([a, torch.tensor([5])], pad_id=0)
    assert ids[0].tolist() == a.tolist() and ids[1].tolist()[-1] == 5 and mask.sum() == len(a) + 1


def test_batch_prompt_ids_equal_one_by_one_and_share_the_cache(tok, monkeypatch):
    """A batch's prompts are tokenised in one call per special-token setting: the same ids as one by one, cached
    for ``prompt_ids``; a prompt met again is not tokenised again."""
    from ropeshift.eval import generation

    texts = [f"Prompt number {i} of a batch, with some words." for i in range(5)]
    texts.append(texts[0])
    specials = [True, False, True, False, True, True]
    got = batch_prompt_ids(tok, texts, specials)
    assert [g.tolist() for g in got] == [encode(tok, t, a) for t, a in zip(texts, specials)]
    assert got[0] is got[5] and prompt_ids(tok, texts[1], False) is got[1]
    again = batch_prompt_ids(tok, texts[:3], specials[:3])
    assert all(a is g for a, g in zip(again, got))       # cached: not tokenised again
    monkeypatch.setattr(generation, "IDS_CACHED", 2)
    batch_prompt_ids(tok, ["another prompt"], [True])
    assert len(generation._IDS) == 2                     # the least recent ones dropped


def _sample(task: str, refs: tuple[str, ...]) -> Sample:
    return Sample(task=task, length=1024, index=0, seed=0, haystack="noise", prompt="p", add_special_tokens=False,
                  n_tokens=1, max_new_tokens=8, references=refs)


def test_answer_end_single_reference_stops_after_the_answer_line():
    done = answer_end(TASKS["niah_single_1"], _sample("niah_single_1", ("1234567",)))
    assert not done(" 1234567.")  # the line is still open
    assert not done("\n\n 1234567")  # leading newlines are not the end of an answer
    assert done(" 1234567.\nAnd")
    assert done(" I do not know.\n")


def test_answer_end_several_references_wait_for_every_reference():
    task = TASKS["niah_multivalue"]
    done = answer_end(task, _sample("niah_multivalue", ("11", "22", "33")))
    assert not done(" 11, 22\n")  # a line ended, but one reference is missing: keep generating
    assert done(" 11, 22\n33\n")


_MULTI = [name for name in ("niah_multivalue", "niah_multiquery", "vt", "cwe", "niah4") if name in TASKS]


@settings(max_examples=200, deadline=None)
@given(task=st.sampled_from(_MULTI),
       parts=st.lists(st.sampled_from(["11", "22", "33", "x", " ", "\n", "1"]), max_size=12),
       tail=st.text(alphabet="123 x\n", max_size=8))
def test_answer_end_never_changes_a_multi_reference_score(task, parts, tail):
    t = TASKS[task]
    sample = _sample(task, ("11", "22", "33"))
    text = "".join(parts)
    if answer_end(t, sample)(text):
        assert t.score(sample, text + tail) == t.score(sample, text) == 1.0
        assert t.details(sample, text + tail) == t.details(sample, text)  # e.g. niah4's per-needle hits


def test_per_row_budgets_cut_each_row_as_if_alone(tiny_llama, tok, rows, full):
    budgets = [3, MAX_NEW, 7]
    got = generate(tiny_llama, tok, rows, budgets)
    for g, row, m in zip(got, rows, budgets):
        assert g == generate(tiny_llama, tok, [row], m)[0]
    with pytest.raises(ValueError, match="one budget per row"):
        generate(tiny_llama, tok, rows, [3, 4])


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.sampled_from(["a", " 11", "\n", " 22", "x\n", "\n\n", " 33", "."]), min_size=1, max_size=14),
       refs=st.sampled_from([("11",), ("11", "22"), ("11", "22", "33")]))
def test_newline_armed_stop_ends_where_the_eager_predicate_does(tok, steps, refs):
    """``AnswerEnd`` is asked only once its row has produced a newline token; the row ends at the same step as a
    predicate asked at every step."""
    from ropeshift.eval.generation import AnswerEnd, _row_stopper

    prompt = [1, 2]
    ids = prompt + [t for s in steps for t in tok(s, add_special_tokens=False)["input_ids"]]
    lazy_pred = AnswerEnd(refs)
    stoppers = [_row_stopper(tok, len(prompt), [p], set(), [10_000]) for p in (lazy_pred, lambda t: lazy_pred(t))]
    for n in range(len(prompt) + 1, len(ids) + 1):
        for s in stoppers:
            s(torch.tensor([ids[:n]]), None)
    assert stoppers[0].ends == stoppers[1].ends
