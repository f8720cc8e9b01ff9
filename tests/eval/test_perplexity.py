"""Perplexity protocols against a direct computation on a tiny model. Run: pytest tests/eval/test_perplexity.py -v"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ropeshift.eval.tasks import TaskOptions, resolve_task
from ropeshift.eval.tasks.perplexity import windows


@pytest.mark.parametrize("n_bos", [0, 1])
def test_strided_windows_score_every_token_once(n_bos):
    n_doc, length, stride = 1000, 300, 64
    ws = windows(n_doc, length, stride, n_bos)
    assert sum(t for _, _, t in ws) == n_doc - (0 if n_bos else 1)
    for begin, end, trg in ws[1:]:
        assert end - begin <= length - n_bos
        assert (end - trg) - begin >= length - n_bos - stride  # context before the first scored token
    assert ws[-1][1] == n_doc


def test_windows_no_longer_than_the_stride_without_bos_score_what_has_context():
    """length <= stride without a BOS: each window's first token has no context and is not a target (this asked
    for one more target than the window had logits: a crash in the strided protocol at length 256)."""
    for n_doc, length, stride in ((1000, 256, 256), (1000, 200, 256)):
        ws = windows(n_doc, length, stride, 0)
        assert all(trg <= end - begin - 1 for begin, end, trg in ws)
        assert ws[-1][1] == n_doc
    for begin, end, trg in windows(1000, 256, 256, 1):  # with a BOS every token is scored once
        assert trg == end - begin


def test_strided_protocol_at_the_stride_length(tok, tiny_llama):
    task = resolve_task("perplexity")
    samples = task.make_samples(tok, 256, 2, 0, TaskOptions(haystack="pydoc"))
    res = task.evaluate(tiny_llama, tok, samples)
    assert all(math.isfinite(r["nll"]) and r["n_scored"] > 0 for r in res)


def _direct_nll(model, ids):
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return F.cross_entropy(logits[:-1].float(), torch.tensor(ids[1:]), reduction="sum").item()


def test_single_protocol_equals_direct_forward(tok, tiny_llama):
    task = resolve_task("perplexity:single")
    samples = task.make_samples(tok, 200, 3, 0, TaskOptions(haystack="pydoc"))
    assert all(len(s.meta["input_ids"]) == 200 for s in samples)
    res = task.evaluate(tiny_llama, tok, samples)
    for s, r in zip(samples, res):
        assert r["n_scored"] == 199
        assert math.isclose(r["nll"], _direct_nll(tiny_llama, s.meta["input_ids"]), rel_tol=1e-4)
        assert math.isclose(r["score"], math.exp(r["nll"] / r["n_scored"]), rel_tol=1e-6)


def test_strided_protocol_equals_window_loop(tok, tiny_llama):
    task = resolve_task("perplexity")
    samples = task.make_samples(tok, 300, 2, 0, TaskOptions(haystack="pydoc"))
    res = task.evaluate(tiny_llama, tok, samples)
    for s, r in zip(samples, res):
        ids = s.meta["input_ids"]
        total, count = 0.0, 0
        for begin, end, trg in windows(len(ids), 300, 256, 0):
            w = ids[begin:end]
            with torch.inference_mode():
                logits = tiny_llama(input_ids=torch.tensor([w])).logits[0]
            total += F.cross_entropy(logits[-trg - 1:-1].float(), torch.tensor(w[-trg:]), reduction="sum").item()
            count += trg
        assert r["n_scored"] == count == len(ids) - 1
        assert math.isclose(r["nll"], total, rel_tol=1e-4)


def test_haystack_too_short_is_an_error(tok):
    with pytest.raises(ValueError, match="holds .* tokens"):
        resolve_task("perplexity").make_samples(tok, 4096, 10_000, 0, TaskOptions(haystack="pydoc"))
    with pytest.raises(ValueError, match="strided or single"):
        resolve_task("perplexity:sliding")
