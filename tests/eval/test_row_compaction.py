"""Row compaction in the static-cache decode loop (``ropeshift.eval.row_compaction``): dropping the ended rows
from the batch changes no row's tokens up to its end (fp32, CPU eager loop; the ``gpu`` test: the captured
graph), with left padding, per-row budgets and stops, rows ending at different checks and the batch compacted
more than once; the schedule model (``decode_batch_sizes``) matches the loop's forwards; the switch turns it off.

Run: pytest tests/eval/test_row_compaction.py -v
"""
from __future__ import annotations

import pytest
import torch

from ropeshift.eval.generation import AnswerEnd, _row_stopper, activate, deactivate, generate, left_pad
from ropeshift.eval.graph_decode import static_generate
from ropeshift.eval.options import MethodSpec
from ropeshift.eval.prompts import encode
from ropeshift.eval.row_compaction import (COMPACT_ENV, Compaction, compaction_enabled, decode_batch_sizes,
                                           default_compaction, select_cache_rows)

SPECS = [MethodSpec("rope", {}), MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2})]
TEXTS = ["The grass is green. The sky", "Here we go", "def f(x):\n    return the grass is green and the sky is blue",
         "a", "The sea is", "Once upon a time there was a", "x = 1\ny = 2\n", "green green green"]
BUDGETS = [2, 3, 5, 9, 14, 20, 24, 30]  # rows end at different checks: 8 -> 4 (t=9) -> 2 (t=20) -> 1 (t=24)
EVERY_STEP = Compaction(fraction=0.5, min_steps_left=1)


@pytest.fixture(scope="module")
def rows(tok):
    return [encode(tok, t, True) for t in TEXTS]


def _decode(model, tok, rows, budgets, stops, *, compaction, check_every=1, graphs=False, device="cpu"):
    """(tokens cut at each row's end, batch rows of each forward after the prefill)."""
    ids, mask = left_pad(rows, tok.pad_token_id)
    stopper = _row_stopper(tok, 0, stops, {tok.eos_token_id}, budgets)
    sizes = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]),
                                             with_kwargs=True)
    try:
        new = static_generate(model, ids.to(device), mask.to(device), stopper, max_new=max(budgets), graphs=graphs,
                              check_every=check_every, compaction=compaction)
    finally:
        handle.remove()
    cut = [r[:e].tolist() for r, e in zip(new, stopper.ends)]
    return cut, stopper.ends, sizes[1:]


def _stops(tok):
    first = tok.decode(encode(tok, "green", False))
    return [None, lambda t: len(t) >= 6, AnswerEnd([first]), None, lambda t: " " in t.strip(), None, None, None]


@pytest.mark.parametrize("model", SPECS, indirect=True, ids=[s.name for s in SPECS])
@pytest.mark.parametrize("check_every", [1, 4])
def test_compaction_keeps_every_rows_tokens(model, tok, rows, check_every):
    shapes = []
    for budgets, stops in ((BUDGETS, [None] * len(rows)), (BUDGETS[::-1], _stops(tok))):
        want, want_ends, full = _decode(model, tok, rows, budgets, stops, compaction=None, check_every=check_every)
        got, ends, sizes = _decode(model, tok, rows, budgets, stops, compaction=EVERY_STEP, check_every=check_every)
        assert ends == want_ends and got == want, (budgets, check_every)
        assert set(full) == {len(rows)}
        assert sizes == decode_batch_sizes(ends, max(budgets), check_every=check_every, warmup=0, policy=EVERY_STEP)
        assert len(sizes) == len(full)  # same steps: the batch still stops at the same check
        shapes.append(sorted(set(sizes), reverse=True))
    assert len(shapes[0]) >= 3, shapes  # the budgets-only batch shrank at least twice (8 -> 4 -> 2 -> 1 at every=1)


@pytest.mark.parametrize("model", SPECS[1:2], indirect=True, ids=["plain"])
def test_generate_texts_with_and_without_compaction(model, tok, rows, monkeypatch):
    first = tok.decode(encode(tok, "green", False))
    stops = [AnswerEnd([first]), lambda t: len(t) >= 3, None, lambda t: True, None, lambda t: "\n" in t, None, None]
    want = generate(model, tok, rows, BUDGETS, stop=stops, decode="generate")
    monkeypatch.setattr("ropeshift.eval.row_compaction.COMPACTION", EVERY_STEP)
    monkeypatch.setenv(COMPACT_ENV, "1")
    assert generate(model, tok, rows, BUDGETS, stop=stops, decode="loop") == want
    monkeypatch.setenv(COMPACT_ENV, "0")
    assert generate(model, tok, rows, BUDGETS, stop=stops, decode="loop") == want


def test_switch(monkeypatch):
    import ropeshift.eval.row_compaction as R

    monkeypatch.delenv(COMPACT_ENV, raising=False)
    assert not R.COMPACT_ROWS and not compaction_enabled()  # off by default (measured no faster on the H200)
    monkeypatch.setattr(R, "COMPACT_ROWS", True)
    assert compaction_enabled() and default_compaction() == R.COMPACTION
    monkeypatch.setenv(COMPACT_ENV, "0")
    assert not compaction_enabled() and default_compaction() is None
    monkeypatch.setenv(COMPACT_ENV, "1")
    monkeypatch.setattr(R, "COMPACT_ROWS", False)
    assert compaction_enabled()  # the environment wins
    monkeypatch.delenv(COMPACT_ENV)
    assert default_compaction() is None
    monkeypatch.setenv(COMPACT_ENV, "0.75")
    assert default_compaction() == Compaction(0.75, R.COMPACTION.min_steps_left)
    for bad in ("yes", "1.5", "-1"):
        monkeypatch.setenv(COMPACT_ENV, bad)
        with pytest.raises(ValueError, match=COMPACT_ENV):
            default_compaction()


@pytest.mark.parametrize("model", SPECS[1:2], indirect=True, ids=["plain"])
def test_env_off_keeps_the_whole_batch(model, tok, rows, monkeypatch):
    monkeypatch.setenv(COMPACT_ENV, "0")
    _, _, sizes = _decode(model, tok, rows, BUDGETS, [None] * len(rows), compaction="auto")
    assert set(sizes) == {len(rows)} and len(sizes) == max(BUDGETS) - 1


def test_policy():
    p = Compaction()
    assert p.wants(24, 48, 100) and not p.wants(25, 48, 100) and not p.wants(0, 48, 100)
    assert p.kept(1) == 2 and p.wants(1, 48, 100) and not p.wants(1, 2, 100) and not p.wants(1, 3, 100)
    assert p.wants(2, 4, 100) and Compaction(min_rows=1).wants(1, 2, 100)
    assert not p.wants(10, 48, p.min_steps_left - 1)
    for bad in (dict(fraction=0), dict(fraction=1), dict(min_steps_left=0)):
        with pytest.raises(ValueError):
            Compaction(**bad)


def test_schedule_model():
    # the graph loop: prefill token, 2 warm-up steps, check at 3, checks every 4 (7, 11, ...), 1 re-warm-up step
    # after a compaction, then a check
    ends = [1, 2, 3, 3, 9, 40]
    assert decode_batch_sizes(ends, 64, check_every=4, warmup=2, policy=None) == [6] * 42  # stops at the check at 43
    sizes = decode_batch_sizes(ends, 64, check_every=4, warmup=2, policy=Compaction())
    # check at 3: 2 of 6 rows open -> 2 rows; a re-warm-up step to 4 and a check; checks at 8, 12, ..., 40: 1 of 2
    # open from 12 on, but a batch keeps min_rows = 2 rows (no second compaction, no re-warm-up); at 40 every row
    # has ended
    assert sizes == [6, 6] + [2] * 37
    sizes = decode_batch_sizes(ends, 64, check_every=4, warmup=2, policy=Compaction(min_rows=1))
    # min_rows = 1: at 12, 1 of 2 open -> 1 row; a re-warm-up step to 13 and a check; checks at 17, ..., 41
    assert sizes == [6, 6] + [2] * 9 + [1] * 29
    assert decode_batch_sizes([1, 1], 8, check_every=4, warmup=2, policy=None) == []
    assert decode_batch_sizes([5, 5], 5, check_every=1, warmup=0, policy=Compaction()) == [2] * 4


def test_select_cache_rows_refuses_a_cache_that_did_not_shrink(tiny_llama, monkeypatch):
    from transformers import StaticCache

    from ropeshift.eval.graph_decode import cache_kwarg

    cache = StaticCache(config=tiny_llama.config, max_cache_len=8)
    with torch.inference_mode():
        tiny_llama(input_ids=torch.ones(3, 4, dtype=torch.long), use_cache=True, **{cache_kwarg(tiny_llama): cache})
    keys = cache.layers[0].keys.clone()
    select_cache_rows(cache, torch.tensor([2, 0]))
    assert torch.equal(cache.layers[0].keys, keys[[2, 0]])
    assert int(cache.layers[0].get_seq_length()) == 4
    monkeypatch.setattr(type(cache), "reorder_cache", lambda self, idx: None)
    with pytest.raises(RuntimeError, match="reorder_cache"):
        select_cache_rows(cache, torch.tensor([1]))


# ---- CUDA: the captured graph, compacted ---------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
GPU_SPECS = [MethodSpec("plain", {}), MethodSpec("string", {"shift": 8, "window": 2})]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("spec", GPU_SPECS, ids=[s.name for s in GPU_SPECS])
def test_cuda_graph_compaction_keeps_every_rows_tokens(tiny_llama, tok, rows, spec):
    import copy

    from ropeshift.eval.graph_decode import WARMUP_STEPS, graph_decode_reason

    model = copy.deepcopy(tiny_llama).cuda()
    activate(model, spec)
    try:
        assert graph_decode_reason(model) is None
        for budgets, stops in ((BUDGETS, [None] * len(rows)), (BUDGETS[::-1], _stops(tok))):
            kw = dict(check_every=4, graphs=True, device="cuda")
            want, want_ends, _ = _decode(model, tok, rows, budgets, stops, compaction=None, **kw)
            got, ends, _ = _decode(model, tok, rows, budgets, stops, compaction=EVERY_STEP, **kw)
            assert ends == want_ends and got == want, (spec.name, budgets)
            eager, _, _ = _decode(model, tok, rows, budgets, stops, compaction=EVERY_STEP, check_every=4,
                                  device="cuda")
            assert eager == want
        sizes = decode_batch_sizes(ends, max(budgets), check_every=4, warmup=WARMUP_STEPS, policy=EVERY_STEP)
        assert len(set(sizes)) >= 2
    finally:
        deactivate(model)
