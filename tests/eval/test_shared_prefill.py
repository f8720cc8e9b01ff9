"""Prefix-shared prefill (``ropeshift.eval.shared_prefill``): the plan by hand, the cache and first logits equal to
one forward over the batch (fp32, CPU, several methods), and the decode loop's texts unchanged with it on.

Run: pytest tests/eval/test_shared_prefill.py -v
"""
from __future__ import annotations

import random

import pytest
import torch

from ropeshift.eval import shared_prefill as SP
from ropeshift.eval.options import MethodSpec

SPECS = [MethodSpec("plain", {}), MethodSpec("string", {"shift": 40, "window": 4}),
         MethodSpec("self_extend", {"group_size": 3, "window": 18}),
         MethodSpec("dca", {"chunk_size": 50, "local_window": 8})]


def _rows(vocab: int, seed: int = 0) -> list[list[int]]:
    """Two clusters sharing long prefixes (a 'haystack' with a 'needle' at different depths), one loner, and
    rows of different lengths (left padding)."""
    rng = random.Random(seed)
    hay = [rng.randrange(4, vocab) for _ in range(120)]
    other = [rng.randrange(4, vocab) for _ in range(100)]
    needle = [1, 2, 3]
    out = []
    for depth in (0.9, 0.6, 0.3, 0.75):
        k = int(depth * len(hay))
        out.append(hay[:k] + needle + hay[k:])
    for depth in (0.8, 0.5):
        k = int(depth * len(other))
        out.append(other[:k] + needle + other[k:len(other) - 7])
    out.append([rng.randrange(4, vocab) for _ in range(90)])
    return out


def test_plan_by_hand():
    """Rows 0-2 share 6 tokens with each other, row 3 nothing: one donor among 0-2 (the one sharing most: any, all
    share 6 here, so the first in sorted order), the loner its own donor; receivers' suffixes are 2 tokens."""
    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 9, 9], [1, 2, 3, 4, 5, 6, 8, 8], [7, 7, 7, 7, 7, 7, 7, 7]]
    p = SP.plan(rows, groups=2, min_shared=4)
    assert p.donors == (0, 3)
    assert p.groups == ((2, ((1, 0), (2, 0))),)
    assert p.tokens(8) == 8 + 8 + 2 * 2 < 4 * 8
    assert SP.plan(rows, min_shared=7) is None          # nothing shared enough: one forward
    assert SP.plan(rows[:1]) is None
    assert SP.plan(rows, groups=2, min_shared=4, min_saving=0.4) is None   # skips 12 of 32 query tokens: too few


def test_plan_groups_by_suffix_length():
    """Receivers with suffixes 2, 3, 10, 11 of a 12-token donor: two groups (Q = 3, Q = 11) beat one (Q = 11)."""
    donor = list(range(1, 13))
    rows = [donor] + [donor[:12 - s] + [99] * s for s in (2, 3, 10, 11)]
    one, two = (SP.plan(rows, groups=g, min_shared=1, min_saving=0.0) for g in (1, 2))
    assert [q for q, _ in one.groups] == [11]
    assert [q for q, _ in two.groups] == [3, 11]
    assert [len(pairs) for _, pairs in two.groups] == [2, 2]
    assert two.tokens(12) < one.tokens(12)


def test_enabled_reads_the_environment(monkeypatch):
    monkeypatch.delenv(SP.ENV, raising=False)
    assert not SP.enabled()
    monkeypatch.setenv(SP.ENV, "1")
    assert SP.enabled()
    monkeypatch.setenv(SP.ENV, "yes")
    with pytest.raises(ValueError, match=SP.ENV):
        SP.enabled()


def _check_against_one_forward(model, tok, seed: int, tol: float) -> None:
    """Every valid slot's keys and values, and each row's last-position logits, of ``SP.prefill`` on ``_rows``
    as one forward over the batch gives them (on the model's device)."""
    from ropeshift.eval.generation import left_pad
    from ropeshift.eval.graph_decode import _cache_class, cache_kwarg

    rows = _rows(len(tok), seed)
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in left_pad(rows, tok.pad_token_id or 0))
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    b, n0 = ids.shape
    plan = SP.plan(rows, groups=2, min_shared=16)
    assert plan is not None and len(plan.donors) == 3 and plan.tokens(n0) < b * n0
    kw = cache_kwarg(model)
    with torch.inference_mode():
        want_cache = _cache_class()(config=model.config, max_cache_len=n0 + 4)
        want = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                     **{kw: want_cache}).logits[:, -1]
        got_cache = _cache_class()(config=model.config, max_cache_len=n0 + 4)
        got = SP.prefill(model, kw, ids, mask, pos, got_cache, plan)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    valid = mask.bool()
    for lw, lg in zip(want_cache.layers, got_cache.layers):
        for x, y in ((lw.keys, lg.keys), (lw.values, lg.values)):
            torch.testing.assert_close(y[:, :, :n0].transpose(1, 2)[valid], x[:, :, :n0].transpose(1, 2)[valid],
                                       rtol=tol, atol=tol)
    assert int(got_cache.get_seq_length()) == n0


@pytest.mark.parametrize("model", SPECS, indirect=True, ids=[s.name for s in SPECS])
def test_cache_and_first_logits_equal_one_forward(model, tok):
    """Three donors (two clusters and a loner), two suffix groups; fp32 on the CPU."""
    _check_against_one_forward(model, tok, seed=0, tol=1e-4)


@pytest.mark.parametrize("model", SPECS[:2], indirect=True, ids=[s.name for s in SPECS[:2]])
def test_loop_texts_unchanged_with_sharing(model, tok, monkeypatch):
    """The decode loop (eager steps on CPU) gives the same tokens with the prefix-shared prefill, and says how many
    prompt positions it computed."""
    from ropeshift.eval.generation import generate

    rows = _rows(len(tok), seed=1)
    monkeypatch.setattr(SP.plan, "__defaults__", (SP.GROUPS, 16, SP.MIN_SAVING))
    monkeypatch.delenv(SP.ENV, raising=False)
    want = generate(model, tok, rows, 12, decode="loop")
    monkeypatch.setenv(SP.ENV, "1")
    stats = {}
    got = generate(model, tok, rows, 12, decode="loop", stats=stats)
    assert got == want
    assert 0 < stats["prefill_queries"] < len(rows) * max(len(r) for r in rows)


# ---- CUDA: the kernels' chunked prefill (queries at the end of a longer key range) ------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_cuda_shared_prefill_equals_one_forward(tiny_llama, tok, spec):
    """On CUDA (Triton kernels, fp32): first logits and valid cache slots as one forward gives them."""
    import copy

    from ropeshift.eval.generation import activate

    model = copy.deepcopy(tiny_llama).cuda()
    activate(model, spec)
    _check_against_one_forward(model, tok, seed=2, tol=1e-3)


def test_bench_smoke(benchmarks_path, capsys):
    """benchmarks/bench_shared_prefill.py on the CPU (tiny shape): a plan was made and its first logits match."""
    import bench_shared_prefill

    assert bench_shared_prefill.main(["--device", "cpu", "--tiny", "--methods", "plain", "--repeats", "1"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| plain"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].endswith("%") and float(cells[4][:-1]) < 90 and int(cells[5]) >= 2
    assert float(cells[6]) < 1e-4
