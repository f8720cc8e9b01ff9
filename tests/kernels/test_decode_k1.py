"""The K1 cache (``kernels.key_cache``) and the decode kernel's K1 path (``HAS_K1``).

* ``far_keys`` of keys rotated to p equals the raw keys rotated straight to kmap(p) (fp64, the method's own map).
* Decode over a static cache's whole, poisoned buffer with K1 equals the fp64 reference over the written keys
  and the kernel's own no-K1 path, for every method whose far key map is not the identity (left padding, GQA,
  partial rotary, fp32 and half precision); a wrong K1 (K itself) fails the same comparison.

Run: PYTHONPATH=src pytest tests/kernels/test_decode_k1.py -v   (CPU: TRITON_INTERPRET=1 from conftest.py)
"""
import math

import pytest
import torch

from _helpers import build, llama_inv_freq, lse_err, method_cases, rel_err
from ropeshift.rope import rotate
from test_decode_static import rows_vs_reference, static_inputs
from test_table_attention import CUDA, DEV, HALF, _inputs

TILE = 64 if CUDA else 16
K1_CASES = [c for c in method_cases(80, TILE) if c[1] not in ("string", "plain")]


def test_cases_cover_every_far_key_map():
    from ropeshift.kernels.key_cache import needs_far_keys

    for cid, name, params in method_cases(80, TILE):
        assert needs_far_keys(build(name, params).table()) == (name not in ("string", "plain")), cid


@pytest.mark.parametrize("case", K1_CASES, ids=lambda c: c[0])
def test_far_keys_equal_keys_rotated_to_the_key_map(case, monkeypatch):
    from ropeshift.kernels import key_cache

    method = build(*case[1:])
    kmap = method.table().regions[1].k_map
    b, h_kv, lk, d = 3, 2, 37, 32
    inv = llama_inv_freq(d, base=10000.0, rotary_frac=0.5)
    raw = torch.randn(b, h_kv, lk, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ks = torch.tensor([0, 5, 11])
    pos = torch.arange(lk)[None, :] - ks[:, None]  # [b, lk], negative in the padding
    k = rotate(raw, pos[:, None, :], inv)
    want = rotate(raw, torch.as_tensor(kmap(pos))[:, None, :], inv)
    got = key_cache.far_keys(k, method.table(), inv, key_start=ks)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # one slot per row (the decode step's write) and the blockwise in-place fill give the same rows
    slots = torch.tensor([36, 5, 20])
    one = key_cache.far_keys(k, method.table(), inv, pos_offset=-ks, slots=slots)
    torch.testing.assert_close(one, want[torch.arange(b), :, slots][:, :, None], rtol=0, atol=1e-10)
    monkeypatch.setattr(key_cache, "BLOCK", 5)
    k1 = torch.full_like(k, float("nan"))
    key_cache.write_far_keys(k1, k, method.table(), inv, key_start=ks, start=3, stop=30)
    torch.testing.assert_close(k1[:, :, 3:30], want[:, :, 3:30], rtol=0, atol=1e-10)
    assert k1[:, :, :3].isnan().all() and k1[:, :, 30:].isnan().all()
    key_cache.write_far_keys(k1, k, method.table(), inv, pos_offset=-ks, slots=torch.tensor([0, 1, 2]))
    for i, s in enumerate((0, 1, 2)):
        torch.testing.assert_close(k1[i, :, s], want[i, :, s], rtol=0, atol=1e-10)
    assert k1[0, :, 1:3].isnan().all()  # nothing but the slot


def _k1_vs_reference(method, b, h, h_kv, lk, d, dtype, key_end, key_start, seed=0, rotary_frac=1.0):
    """Static decode with K1 (into NaN-poisoned outputs through the launcher, then the public entry) vs the fp64
    reference of each row's written keys and the no-K1 kernel; returns [(out rel err, tol)] per row of a wrong K1
    (K itself: rows with visible far keys must fail)."""
    from ropeshift.kernels import static_decode_attention
    from ropeshift.kernels._decode import launch_decode
    from ropeshift.kernels.key_cache import far_keys, write_far_keys
    from ropeshift.kernels.spec import compile_table

    q, k, v, ke, ks = static_inputs(b, h, h_kv, lk, d, dtype, key_end, key_start, seed)
    inv = llama_inv_freq(d, base=10000.0, rotary_frac=rotary_frac).to(DEV)
    scale = 1.0 / math.sqrt(d) * method.logit_scale
    spec = compile_table(method.table()).for_keys(lk)
    poff = -ks
    k1 = torch.full_like(k, float("nan"))
    write_far_keys(k1, k, spec, inv, pos_offset=poff, stop=min(key_end) - 1)  # the prefill's slots
    for j in range(min(key_end) - 1, lk):  # then one slot per row per step, capped at each row's last written one
        write_far_keys(k1, k, spec, inv, pos_offset=poff, slots=torch.minimum(ke - 1, torch.tensor(j)).to(DEV))
    # the written slots of row 0 at positions >= 0 (padding slots are never read); CUDA writes with the kernel's
    # fp32 deltas and cos/sin (key_cache._write_kernel), as the in-register path computes them
    tol = dict(rtol=1e-3, atol=1e-4) if k.is_cuda and dtype == torch.float32 else {}
    s0 = key_start[0]
    torch.testing.assert_close(k1[0, :, s0:key_end[0]], far_keys(k, spec, inv, pos_offset=poff)[0, :, s0:key_end[0]],
                               **tol)
    out = torch.full_like(q, float("nan"))
    lse = torch.full((b, h, 1), float("nan"), device=DEV)
    launch_decode(q, k, v, inv, ks, poff, out, lse, spec=spec, scale=scale, key_end=ke, k1=k1)
    assert not out.isnan().any() and not lse.isnan().any(), "output not fully written (NaN poison left)"
    out2, lse2 = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke,
                                         key_start=ks, pos_offset=poff, k1=k1)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)
    plain_out, plain_lse = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke,
                                                   key_start=ks, pos_offset=poff)
    wrong_out, _ = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke,
                                           key_start=ks, pos_offset=poff, k1=k)
    wrong = []
    for i, row, ref_out, tol, tol_lse in rows_vs_reference(q, k, v, out, lse, method, inv, scale, ks, key_end,
                                                           dtype):
        assert rel_err(out[row], plain_out[row]) <= tol and lse_err(lse[row], plain_lse[row]) <= tol_lse
        wrong.append((rel_err(wrong_out[row], ref_out), tol))
    return wrong


@pytest.mark.parametrize("case", K1_CASES, ids=lambda c: c[0])
def test_k1_decode_equals_reference(case):
    method = build(*case[1:])
    t = TILE
    lk = 5 * t + 3
    # written lengths: inside a tile, one past a tile edge, below the far region's start (t), the whole buffer
    wrong = _k1_vs_reference(method, 4, 8, 2, lk, 32, torch.float32, key_end=[3 * t + 5, 2 * t + 1, t - 2, lk],
                             key_start=[0, 7, 3, t + 1])
    wrong += _k1_vs_reference(method, 2, 4, 1, lk, 32, HALF, key_end=[4 * t, 2 * t + 9], key_start=[5, 0],
                              seed=2, rotary_frac=0.5)
    assert any(err > 10 * tol for err, tol in wrong), f"K read as K1 went unnoticed: {wrong}"


def test_k1_ignored_without_a_far_key_map():
    """STRING (keys as cached) and plain: k1 changes nothing, even a wrong one."""
    from ropeshift.kernels import static_decode_attention

    for name, params in (("string", dict(shift=TILE, window=4)), ("plain", {})):
        method = build(name, params)
        q, k, v = _inputs(2, 4, 2, 1, 3 * TILE, 32, torch.float32, 0)
        inv = llama_inv_freq(32).to(DEV)
        ke = torch.tensor([3 * TILE, 2 * TILE], device=DEV, dtype=torch.int32)
        got = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=0.2, key_end=ke,
                                      k1=torch.full_like(k, float("nan")))
        want = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=0.2, key_end=ke)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_k1_layout_checked():
    from ropeshift.kernels import static_decode_attention

    method = build("rerope", dict(window=TILE - 1))
    q, k, v = _inputs(2, 4, 2, 1, 3 * TILE, 32, torch.float32, 0)
    ke = torch.tensor([3 * TILE, 2 * TILE], device=DEV, dtype=torch.int32)
    with pytest.raises(ValueError, match="k1 must match"):
        static_decode_attention(q, k, v, method.table(), inv_freq=llama_inv_freq(32), scale=0.2, key_end=ke,
                                k1=k[:, :, :-1])


def _decode_cases():
    from test_decode import CASES

    return [c for c in CASES if c[1] != "string"]


@pytest.mark.parametrize("case", _decode_cases(), ids=lambda c: c[0])
def test_k1_decode_every_key_path(case):
    """test_decode's cases (every in-register key path: in-tile table, per-tile table, group step, DCA's rule
    windows) read from K1 instead: rows with padding past the region edges, several splits, d = 16."""
    method = build(case[1], case[2])
    wrong = _k1_vs_reference(method, 4, 4, 1, 150, 32, torch.float32, key_end=[150, 131, 97, 60],
                             key_start=[0, 7, 35, 3])
    wrong += _k1_vs_reference(method, 2, 2, 1, 97, 16, torch.float32, key_end=[97, 70], key_start=[0, 5])
    assert any(err > 10 * tol for err, tol in wrong), f"K read as K1 went unnoticed: {wrong}"


@pytest.mark.parametrize("lk", [40, 41, 47, 48, 63, 64, 80])
def test_k1_decode_dca_query_chunk_edges(lk):
    """DCA's one-query far edge F moves with the query's offset in its chunk; K1 holds each key's own chunk slot."""
    _k1_vs_reference(build("dca", dict(chunk_size=20, local_window=3)), 2, 2, 1, lk + 5, 32, torch.float32,
                     key_end=[lk, lk - 1], key_start=[0, 2])


@pytest.mark.parametrize("case", K1_CASES, ids=lambda c: c[0])
def test_k1_write_kernel_equals_torch(case):
    """The one-launch K1 writes CUDA uses (``key_cache._write_kernel``: a slot range, one slot per row) equal the
    torch rotation on every slot at a position >= 0 (padding slots are never read), and touch nothing else."""
    from ropeshift.kernels.key_cache import _write_kernel, far_keys
    from ropeshift.kernels.spec import compile_table

    method = build(*case[1:])
    spec = compile_table(method.table())
    b, h_kv, lk, d = 3, 2, 45, 32
    inv = llama_inv_freq(d, base=10000.0, rotary_frac=0.5).to(DEV)
    k = torch.randn(b, h_kv, lk, d, generator=torch.Generator().manual_seed(2)).to(DEV)
    ks = torch.tensor([0, 5, 11], device=DEV, dtype=torch.int32)
    want = far_keys(k, spec, inv, key_start=ks)
    k1 = torch.full_like(k, float("nan"))
    _write_kernel(k1, k, spec, inv, None, ks, 3, 40, None)
    for i in range(b):
        lo = max(3, int(ks[i]))
        torch.testing.assert_close(k1[i, :, lo:40], want[i, :, lo:40], rtol=1e-5, atol=1e-5)
    assert k1[:, :, :3].isnan().all() and k1[:, :, 40:].isnan().all()
    slots = torch.tensor([44, 5, 20], device=DEV)
    k1 = torch.full_like(k, float("nan"))
    _write_kernel(k1, k, spec, inv, -ks, None, 0, lk, slots)
    for i, s in enumerate(slots.tolist()):
        torch.testing.assert_close(k1[i, :, s], want[i, :, s], rtol=1e-5, atol=1e-5)
        k1[i, :, s] = float("nan")
    assert k1.isnan().all()  # nothing but the slots


@pytest.mark.parametrize("case", K1_CASES, ids=lambda c: c[0])
def test_decode_kernel_writes_the_step_slot(case):
    """``write_k1_slot``: the decode kernel writes K1's slot key_end - 1 of every row (the step's new key) as the
    torch rotation does, touches no other slot, and returns what the same call without the write returns."""
    from ropeshift.kernels import static_decode_attention
    from ropeshift.kernels.key_cache import far_keys, kernel_writes_slot, write_far_keys
    from ropeshift.kernels.spec import compile_table

    method = build(*case[1:])
    lk = 5 * TILE + 3
    q, k, v, ke, ks = static_inputs(3, 8, 2, lk, 32, torch.float32, [lk, 2 * TILE + 1, 3 * TILE + 7], [0, 7, 3], 4)
    inv = llama_inv_freq(32, base=10000.0, rotary_frac=0.5).to(DEV)
    spec = compile_table(method.table()).for_keys(lk)
    assert kernel_writes_slot(spec, torch.float32) and not kernel_writes_slot(spec, torch.float64)
    poff = -ks
    k1 = torch.full_like(k, float("nan"))
    for i, e in enumerate(ke.tolist()):
        write_far_keys(k1[i:i + 1], k[i:i + 1], spec, inv, pos_offset=poff[i:i + 1], stop=e - 1)
    before = k1.clone()
    scale = 0.2 * method.logit_scale
    # the slot the kernel writes is never read in the same call (the step's own key is near to its query): with it
    # NaN-poisoned the output is finite, and equals the output with it filled (below)
    unread = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke, key_start=ks,
                                     pos_offset=poff, k1=before.clone())
    assert unread[0].isfinite().all() and unread[1].isfinite().all()
    got = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke, key_start=ks,
                                  pos_offset=poff, k1=k1, write_k1_slot=True)
    want = far_keys(k, spec, inv, pos_offset=poff)
    for i, e in enumerate(ke.tolist()):
        torch.testing.assert_close(k1[i, :, e - 1], want[i, :, e - 1], rtol=1e-5, atol=1e-5)
        k1[i, :, e - 1] = before[i, :, e - 1]
    torch.testing.assert_close(k1, before, equal_nan=True, rtol=0, atol=0)  # nothing but the slots
    k1_done = k1.clone()
    for i, e in enumerate(ke.tolist()):
        k1_done[i, :, e - 1] = want[i, :, e - 1]
    again = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke, key_start=ks,
                                    pos_offset=poff, k1=k1_done)
    torch.testing.assert_close(got, again, rtol=1e-6, atol=1e-6)  # the write is the only difference
    torch.testing.assert_close(unread, again, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="write_k1 needs key_end"):
        from ropeshift.kernels._decode import launch_decode

        launch_decode(q, k, v, inv, ks, poff, torch.empty_like(q), torch.empty(3, 8, 1, device=DEV), spec=spec,
                      scale=scale, k1=k1, write_k1=True)
