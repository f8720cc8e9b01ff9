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


def test_single_reads_the_strided_protocols_first_windows(tok):
    """Where the haystack holds the strided spans, single sample i is strided sample i's first window (same
    tokens, same offset); where it does not, single keeps its own, denser chunks."""
    from ropeshift.eval.haystacks import get_haystack
    from ropeshift.eval.tasks.perplexity import _doc_ids

    opts = TaskOptions(haystack="pydoc")
    strided = resolve_task("perplexity").make_samples(tok, 300, 3, 0, opts)
    single = resolve_task("perplexity:single").make_samples(tok, 300, 3, 0, opts)
    for a, b in zip(strided, single):
        assert len(b.meta["input_ids"]) == 300 - len(b.meta["bos"]) < len(a.meta["input_ids"])
        assert b.meta["input_ids"] == a.meta["input_ids"][:len(b.meta["input_ids"])]
        assert b.meta["offset"] == a.meta["offset"]
    span = 300 - len(single[0].meta["bos"])
    n = len(_doc_ids(tok, get_haystack("pydoc"))) // span  # fits single's own chunks, not the strided spans
    dense = resolve_task("perplexity:single").make_samples(tok, 300, n, 0, opts)
    assert [s.meta["offset"] for s in dense[:3]] == [0, span, 2 * span]


def test_mixed_batch_forwards_each_shared_window_once(tok, tiny_llama):
    """A batch mixing both protocols on the same documents: single's windows are strided's first ones, forwarded
    once; every sample's NLL equals its protocol evaluated alone."""
    opts = TaskOptions(haystack="pydoc")
    strided, single = resolve_task("perplexity"), resolve_task("perplexity:single")
    a, b = strided.make_samples(tok, 300, 2, 0, opts), single.make_samples(tok, 300, 2, 0, opts)
    rows: list[int] = []
    hook = tiny_llama.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["input_ids"].shape[0]),
                                                with_kwargs=True)
    try:
        alone = strided.evaluate(tiny_llama, tok, a)
        n_alone = sum(rows)
        rows.clear()
        own = single.evaluate(tiny_llama, tok, b)
        assert sum(rows) == 2
        rows.clear()
        mixed = strided.evaluate(tiny_llama, tok, [a[0], b[0], a[1], b[1]])
    finally:
        hook.remove()
    assert sum(rows) == n_alone == 2 * len(windows(len(a[0].meta["input_ids"]), 300, 256, len(a[0].meta["bos"])))
    for got, want in zip(mixed, [alone[0], own[0], alone[1], own[1]]):
        assert got["n_scored"] == want["n_scored"]
        assert math.isclose(got["nll"], want["nll"], rel_tol=1e-5)


def test_document_prefix_ids_equal_the_whole_texts(tok):
    """``_doc_ids`` tokenises only the words a call needs: its ids are the whole text's first ids, and a later call
    that needs more grows the prefix (the samples are those of the whole text's tokenisation)."""
    from ropeshift.eval.haystacks import get_haystack
    from ropeshift.eval.tasks import perplexity

    hay = get_haystack("pydoc")
    whole = tuple(tok(hay.text(hay.n_words), add_special_tokens=False)["input_ids"])
    perplexity._DOCS.clear()
    try:
        for need in (1_000, 5_000, 20_000, len(whole) + 1):
            ids = perplexity._doc_ids(tok, hay, need)
            assert ids == whole[:len(ids)] and len(ids) >= min(need, len(whole))
        assert perplexity._DOCS[tok, hay][0] == hay.n_words and perplexity._doc_ids(tok, hay) == whole
        perplexity._DOCS.clear()
        assert len(perplexity._doc_ids(tok, hay, 1_000)) < len(whole)   # a prefix, not the whole text
    finally:
        perplexity._DOCS.clear()


def test_forwards_come_in_even_parts_never_a_lone_remainder(tok, tiny_llama, monkeypatch):
    """Windows of one shape beyond the logits cap go in even parts (a 1-row forward makes a compiled model compile
    again): 5 windows at most 4 a forward are 3 + 2, not 4 + 1; the NLL is the same as in one forward."""
    from ropeshift.eval.tasks import perplexity as ppl

    assert sorted(len(p) for p in ppl.even_parts(list(range(50)), 7)) == [6, 6, 6, 6, 6, 6, 7, 7]
    assert sorted(len(p) for p in ppl.even_parts(list(range(5)), 4)) == [2, 3]
    assert sum(ppl.even_parts(list(range(50)), 7), []) == list(range(50))  # in order, each once
    assert ppl.even_parts([1], 4) == [[1]] and ppl.even_parts([], 4) == []
    single = resolve_task("perplexity:single")
    samples = single.make_samples(tok, 300, 5, 0, TaskOptions(haystack="pydoc"))
    whole = single.evaluate(tiny_llama, tok, samples)
    v = tiny_llama.get_output_embeddings().weight
    monkeypatch.setattr(ppl, "LOGITS_BYTES", 4 * 301 * v.shape[0] * v.element_size())  # 4 rows a forward
    rows: list[int] = []
    hook = tiny_llama.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["input_ids"].shape[0]),
                                                with_kwargs=True)
    try:
        parts = single.evaluate(tiny_llama, tok, samples)
    finally:
        hook.remove()
    assert sorted(rows) == [2, 3]
    for got, want in zip(parts, whole):
        assert got["n_scored"] == want["n_scored"]
        assert math.isclose(got["nll"], want["nll"], rel_tol=1e-5)
