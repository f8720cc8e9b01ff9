"""Regression tests for issue 8's numerics (each case exact, or a clear error):

1. right padding: the valid tokens of a right-padded batch get the logits of each row alone, with and without
   ``position_ids``, for every attention-level method and every CPU impl;
2. static KV cache: ``generate(cache_implementation="static")`` and a forward over a ``StaticCache`` equal the
   dynamic cache (empty cache slots are never keys), also with no attention mask;
3. positions from the mask when ``position_ids`` is absent: a left-padded batch equals each row alone for every
   method (LM-Infinite's global keys, Self-Extend's groups and DCA's chunks use absolute positions).

Run: pytest tests/test_padding_cache.py -q
"""
import pytest
import torch

import ropeshift

from .tiny_models import pad_rows, tiny_model, with_cache

# Small parameters so that prompts of ~20 tokens cross every region of every method.
METHODS = [
    ("string", dict(shift=6, window=2)),
    ("rerope", dict(window=5)),
    ("rerope", dict(window=5, leaky=4.0)),
    ("self_extend", dict(group_size=2, window=4)),
    ("dca", dict(chunk_size=6, local_window=1)),
    ("lm_infinite", dict(n_global=2, n_local=5, distance_limit=4)),
]
METHOD_IDS = [f"{m}-{'-'.join(f'{k}{v}' for k, v in p.items())}" for m, p in METHODS]
IMPLS = ("torch", "reference")
LENGTHS = (21, 13, 6)
ATOL = 2e-5


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def rows():
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(3, 128, (n,), generator=gen) for n in LENGTHS]


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


def _position_ids(kind, mask):
    if kind is None:
        return None
    if kind == "arange":  # what transformers fills in itself: index positions, padding counted
        return torch.arange(mask.shape[1])[None].expand_as(mask)
    return (mask.cumsum(-1) - 1).clamp(min=0)  # "cumsum": what generate passes, padding at 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method, params", METHODS, ids=METHOD_IDS)
def test_padded_rows_equal_rows_alone(model, rows, method, params, impl):
    """Left- and right-padded batches, position_ids absent / transformers' index positions / generate's
    cumsum(mask) - 1: the valid tokens' logits are those of each row alone."""
    ropeshift.apply(model, method, impl=impl, **params)
    try:
        alone = [_logits(model, r[None])[0] for r in rows]
        for side in ("left", "right"):
            ids, mask = pad_rows(rows, side)
            width = ids.shape[1]
            for kind in (None, "arange", "cumsum"):
                out = _logits(model, ids, attention_mask=mask, position_ids=_position_ids(kind, mask))
                for i, r in enumerate(rows):
                    sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
                    torch.testing.assert_close(out[i, sl], alone[i], atol=ATOL, rtol=0,
                                               msg=lambda m: f"{side} padding, position_ids {kind}, row {i}: {m}")
    finally:
        ropeshift.remove(model)


def _generate(model, ids, mask=None, **kw):
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                         pad_token_id=0, output_logits=True, return_dict_in_generate=True, **kw)
    return out.sequences, torch.stack(out.logits, 1)


@pytest.mark.parametrize("method, params", [METHODS[0], METHODS[-1]], ids=[METHOD_IDS[0], METHOD_IDS[-1]])
def test_static_cache_generate_equals_dynamic(model, rows, method, params):
    ropeshift.apply(model, method, impl="torch", **params)
    try:
        for ids, mask in [(rows[0][None], None), pad_rows(rows, "left")]:
            seq_d, log_d = _generate(model, ids, mask)
            seq_s, log_s = _generate(model, ids, mask, cache_implementation="static")
            assert torch.equal(seq_s, seq_d)
            torch.testing.assert_close(log_s, log_d, atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_static_cache_forward_equals_dynamic(model, rows, impl, with_mask):
    """Prefill then two decode steps over a StaticCache longer than the input, mask given or None."""
    from transformers import DynamicCache, StaticCache

    ropeshift.apply(model, "lm_infinite", impl=impl, n_global=2, n_local=5, distance_limit=4)
    try:
        ids = rows[0][None]
        results = []
        for cache in (DynamicCache(config=model.config), StaticCache(config=model.config, max_cache_len=40)):
            outs = []
            for step in (ids[:, :15], ids[:, 15:16], ids[:, 16:18]):
                seen = cache.get_seq_length() + step.shape[1]
                kw = dict(attention_mask=torch.ones(1, seen, dtype=torch.long)) if with_mask else {}
                with torch.no_grad():
                    outs.append(model(step, **with_cache(model, cache), use_cache=True, **kw).logits)
            results.append(torch.cat(outs, 1))
        torch.testing.assert_close(results[1], results[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(results[0], _logits(model, ids[:, :18]), atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)


def test_mask_with_holes_and_index_positions_is_refused(model):
    """Valid tokens at non-consecutive index positions cannot be numbered consistently: a clear error."""
    ropeshift.apply(model, "string", impl="torch", shift=6, window=2)
    try:
        ids = torch.randint(3, 128, (1, 12))
        mask = torch.ones(1, 12, dtype=torch.long)
        mask[0, 5] = 0
        with pytest.raises(ValueError, match="position_ids"):
            _logits(model, ids, attention_mask=mask)
        # the same mask with positions that skip the hole (what generate passes) is exact
        pid = (mask.cumsum(-1) - 1).clamp(min=0)
        out = _logits(model, ids, attention_mask=mask, position_ids=pid)
        keep = mask[0].bool()
        torch.testing.assert_close(out[0, keep], _logits(model, ids[:, keep])[0], atol=ATOL, rtol=0)
    finally:
        ropeshift.remove(model)


def test_packed_sequences_are_refused(model):
    """position_ids restarting inside a row (packed sequences, no mask) would number keys across sequences."""
    ropeshift.apply(model, "string", impl="torch", shift=6, window=2)
    try:
        with pytest.raises(ValueError, match="packed sequences"):
            _logits(model, torch.randint(3, 128, (1, 12)), position_ids=torch.arange(12)[None] % 6)
    finally:
        ropeshift.remove(model)


def test_explicit_position_offset_is_honoured(model):
    """position_ids that are not transformers' defaults (a row continuing at position 40) are used as given:
    Self-Extend with G = 2 depends on positions only through m // 2 - n // 2, unchanged by an even offset."""
    ropeshift.apply(model, "self_extend", impl="torch", group_size=2, window=4)
    try:
        ids = torch.randint(3, 128, (1, 12))
        base = _logits(model, ids)
        torch.testing.assert_close(_logits(model, ids, position_ids=torch.arange(40, 52)[None]), base,
                                   atol=ATOL, rtol=0)
        assert (_logits(model, ids, position_ids=torch.arange(41, 53)[None]) - base).abs().max() > 1e-3
    finally:
        ropeshift.remove(model)


@pytest.mark.parametrize("impl", IMPLS)
def test_decoding_after_right_padding_needs_position_ids(model, rows, impl):
    """After a right-padded prefill the new tokens follow padding (a mask with holes): exact with
    position_ids = cumsum(mask) - 1, a clear error with transformers' default index positions."""
    from transformers import DynamicCache

    ropeshift.apply(model, "dca", impl=impl, chunk_size=6, local_window=1)
    try:
        ids, mask = pad_rows(rows, "right")
        nxt = torch.randint(3, 128, (len(rows), 1))
        mask2 = torch.cat((mask, torch.ones(len(rows), 1, dtype=torch.long)), 1)

        def prefilled():
            cache = DynamicCache(config=model.config)
            _logits(model, ids, attention_mask=mask, **with_cache(model, cache), use_cache=True)
            return cache

        with pytest.raises(ValueError, match="position_ids"):
            _logits(model, nxt, attention_mask=mask2, **with_cache(model, prefilled()), use_cache=True)
        cache = prefilled()
        pid = mask2.sum(-1, keepdim=True) - 1
        out = _logits(model, nxt, attention_mask=mask2, **with_cache(model, cache), use_cache=True, position_ids=pid)
        for i, r in enumerate(rows):
            alone = _logits(model, torch.cat((r, nxt[i]))[None])[0, -1]
            torch.testing.assert_close(out[i, -1], alone, atol=ATOL, rtol=0, msg=lambda m: f"row {i}: {m}")
    finally:
        ropeshift.remove(model)


def test_positions_number_valid_keys_from_zero_on_either_side():
    from ropeshift.attention.positions import positions_from

    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    index_ids = torch.arange(5)[None]  # transformers' default: the slot index, padding counted
    for pid in (None, index_ids):
        qpos, kpos, kvalid = positions_from(pid, mask, 3, 5, 5, "cpu")
        assert kpos[mask].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4] and torch.equal(kvalid, mask)
        assert torch.equal(qpos, kpos)
    # explicit positions offset the row (last valid query gets its value); padding slots are ignored
    qpos, kpos, _ = positions_from(torch.tensor([[0, 0, 40, 41, 42], [7, 8, 9, 0, 0], [5, 6, 7, 8, 9]]),
                                   mask, 3, 5, 5, "cpu")
    assert kpos[mask].tolist() == [40, 41, 42, 7, 8, 9, 5, 6, 7, 8, 9]


def test_positions_of_a_static_cache_ignore_its_empty_slots():
    from ropeshift.attention.positions import positions_from

    written = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)  # 4 of 7 slots written, 2 queries
    qpos, kpos, kvalid = positions_from(torch.tensor([[2, 3]]), written, 2, 2, 7, "cpu")
    assert kvalid.tolist() == [[False, True, True, True, False, False, False], [True] * 4 + [False] * 3]
    assert qpos.tolist() == [[1, 2], [2, 3]] and kpos[0, 1:4].tolist() == [0, 1, 2]


def test_mask_function_covers_written_slots_only():
    from ropeshift.attention.interface import key_valid_mask

    # dynamic cache, nothing padded: None (every key valid)
    assert key_valid_mask(2, 3, 8, q_offset=5, attention_mask=None) is None
    assert key_valid_mask(2, 3, 8, q_offset=5, attention_mask=torch.ones(2, 8)) is None
    # static cache of 16 slots with 8 written (q_offset is a tensor there), mask given or not
    assert key_valid_mask(2, 3, 16, q_offset=torch.tensor(5), attention_mask=None).tolist() == [[True] * 8] * 2
    pad = torch.tensor([[0] * 3 + [1] * 5, [1] * 8])
    assert torch.equal(key_valid_mask(2, 3, 16, q_offset=torch.tensor(5), attention_mask=pad), pad.bool())
    with pytest.raises(ValueError, match="attention_mask has 6 columns but the model has seen 8 tokens"):
        key_valid_mask(2, 3, 8, q_offset=5, attention_mask=torch.ones(2, 6))
    with pytest.raises(ValueError, match="sliding-window cache"):
        key_valid_mask(2, 1, 8, q_offset=9, kv_offset=2, attention_mask=None)


def test_inconsistent_positions_are_found():
    from ropeshift.attention.positions import inconsistent_rows

    holes = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    assert inconsistent_rows(None, holes, 2, 1, 4, "cpu") == [0]
    assert inconsistent_rows(torch.arange(3, 4)[None], holes, 2, 1, 4, "cpu") == [0]  # default index positions
    assert inconsistent_rows(torch.tensor([[2], [2]]), holes, 2, 1, 4, "cpu") == []  # cumsum positions
    packed = torch.tensor([[0, 1, 2, 0, 1, 2]])
    assert inconsistent_rows(packed, torch.ones(1, 6, dtype=torch.bool), 1, 6, 6, "cpu") == [0]


def test_all_ones_mask_prefill_runs_as_maskless(monkeypatch):
    """A prefill whose mask is all ones reaches the dispatcher as a maskless call (the fresh-prefill kernels serve
    it: the Hopper kernel, the composed route); a left-padded prefill and its decode steps keep their mask."""
    from ropeshift.attention import interface

    seen = []
    real = interface.attend

    def spy(*a, **kw):
        seen.append((a[1].shape[2], kw["mask_given"]))
        return real(*a, **kw)

    monkeypatch.setattr(interface, "attend", spy)
    model = tiny_model()
    ropeshift.apply(model, "string", shift=8, window=2)
    ids = torch.randint(3, 100, (2, 20))
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert {g for lq, g in seen if lq > 1} == {False}
    seen.clear()
    ids, mask = pad_rows([torch.randint(3, 100, (n,)) for n in (20, 13)], "left")
    model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert {g for _, g in seen} == {True}
