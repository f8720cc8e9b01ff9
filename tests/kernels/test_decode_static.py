"""Decode over a static cache's whole buffer (``static_decode_attention``, per-row ``key_end``) vs the fp64
reference over the written keys only, for every method of the shared cases.

Each row of one batch has its own written length and left padding; the slots from key_end on are poisoned
(NaN in K and V), so any read of them shows. The result must equal the reference of the cut call (bottom-right
alignment over k[:, :, :key_end]) and, within fp32 rounding, the kernel's own cut call.

Run: PYTHONPATH=src pytest tests/kernels/test_decode_static.py -v   (CPU: TRITON_INTERPRET=1 from conftest.py)
"""
import math

import pytest
import torch

from _helpers import calibrated_tol, build, llama_inv_freq, lse_err, method_cases, rel_err, table_reference
from test_table_attention import CUDA, DEV, HALF, _inputs

TILE = 64 if CUDA else 16


def static_inputs(b, h, h_kv, lk, d, dtype, key_end, key_start, seed=0):
    """q [b, h, 1, d], k, v [b, h_kv, lk, d] (a static cache's buffers: NaN beyond each row's key_end), key_end and
    key_start as int32 device tensors."""
    q, k, v = _inputs(b, h, h_kv, 1, lk, d, dtype, seed)
    ke = torch.tensor(key_end, device=DEV, dtype=torch.int32)
    ks = torch.tensor(key_start, device=DEV, dtype=torch.int32)
    for i, e in enumerate(key_end):  # unwritten slots: poison
        k[i, :, e:] = float("nan")
        v[i, :, e:] = float("nan")
    return q, k, v, ke, ks


def rows_vs_reference(q, k, v, out, lse, method, inv, scale, ks, key_end, dtype):
    """Row by row of a static decode (out [b, h, 1, d], lse [b, h, 1]; row i reads keys [0, key_end[i])): assert
    out and lse against the fp64 reference within the calibrated tolerance, then yield (i, row slice, reference
    out, tol, tol_lse) for the caller's own per-row checks. ``scale`` includes the method's logit scale."""
    for i, e in enumerate(key_end):
        row = slice(i, i + 1)
        qi, ki, vi = q[row], k[row, :, :e], v[row, :, :e]
        kw = dict(inv_freq=inv, scale=scale / method.logit_scale, key_start=ks[row])
        ref_out, ref_lse = table_reference(qi, ki, vi, method, **kw)
        tol, tol_lse = calibrated_tol(qi, ki, vi, method, kw, dtype, ref_out, ref_lse)
        err, err_lse = rel_err(out[row], ref_out), lse_err(lse[row], ref_lse)
        assert err <= tol, f"row {i}: out rel err {err:.3g} > {tol:.3g}"
        assert err_lse <= tol_lse, f"row {i}: lse err {err_lse:.3g} > {tol_lse:.3g}"
        yield i, row, ref_out, tol, tol_lse


def _static_vs_cut(method, b, h, h_kv, lk, d, dtype, key_end, key_start, seed=0, rotary_frac=1.0):
    from ropeshift.kernels import static_decode_attention, table_attention
    from ropeshift.kernels.spec import compile_table

    q, k, v, ke, ks = static_inputs(b, h, h_kv, lk, d, dtype, key_end, key_start, seed)
    inv = llama_inv_freq(d, base=10000.0, rotary_frac=rotary_frac)
    scale = 1.0 / math.sqrt(d) * method.logit_scale
    spec = compile_table(method.table())
    poff = -ks if spec.for_keys(lk).positional else None  # position of key index 0: -key_start
    out, lse = static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=scale, key_end=ke,
                                       key_start=ks, pos_offset=poff)
    assert out.shape == q.shape and lse.shape == (b, h, 1)
    for i, row, _, tol, tol_lse in rows_vs_reference(q, k, v, out, lse, method, inv, scale, ks, key_end, dtype):
        qi, ki, vi = q[row], k[row, :, :key_end[i]], v[row, :, :key_end[i]]
        cut_out, cut_lse = table_attention(qi, ki.contiguous(), vi.contiguous(), method.table(), inv_freq=inv,
                                           scale=scale, key_start=ks[row])
        assert rel_err(out[row], cut_out) <= tol and lse_err(lse[row], cut_lse) <= tol_lse


@pytest.mark.parametrize("case", method_cases(80, TILE), ids=lambda c: c[0])
def test_static_decode_equals_the_cut_call(case):
    method = build(*case[1:])
    t = TILE
    lk = 5 * t + 3
    # written lengths: inside a tile, one past a tile edge, below the far region's start (t), the whole buffer
    _static_vs_cut(method, 4, 8, 2, lk, 32, torch.float32, key_end=[3 * t + 5, 2 * t + 1, t - 2, lk],
                   key_start=[0, 7, 3, t + 1])
    _static_vs_cut(method, 2, 4, 1, lk, 32, HALF, key_end=[4 * t, 2 * t + 9], key_start=[5, 0], seed=2,
                   rotary_frac=0.5)


def test_key_end_checks():
    from ropeshift.kernels import static_decode_attention

    method = build("string", dict(shift=TILE, window=4))
    q, k, v = _inputs(2, 2, 1, 1, 40, 32, torch.float32, 0)
    inv = llama_inv_freq(32)
    with pytest.raises(ValueError, match="key_end"):
        static_decode_attention(q, k, v, method.table(), inv_freq=inv, scale=0.2,
                                key_end=torch.tensor([40], device=DEV, dtype=torch.int32))
    q2, _, _ = _inputs(2, 2, 1, 3, 40, 32, torch.float32, 0)
    with pytest.raises(ValueError, match="one query"):
        static_decode_attention(q2, k, v, method.table(), inv_freq=inv, scale=0.2,
                                key_end=torch.tensor([40, 40], device=DEV, dtype=torch.int32))
