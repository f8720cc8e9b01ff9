"""Triton STRING / causal attention vs the fp64 reference.

Run: PYTHONPATH=src pytest tests/kernels -v
Without CUDA the kernels run in Triton's interpreter on CPU (TRITON_INTERPRET=1, set in conftest.py) on
tiny shapes with 16 x 16 tiles, so every tile phase (far / mixed / near / diagonal / padded first tile) and
tile-boundary S +- 1 is hit. With CUDA the full grid (97, 1025, 4097; GQA 1/4/8; bf16/fp16) runs.
Tolerance: ||kernel - ref|| / ||ref|| <= 2 x the same ratio for PyTorch's own attention in the same dtype.
"""
import math

import pytest
import torch

from _helpers import explicit_attention, llama_inv_freq, lse_err, positions, rel_err

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"


def _inputs(b, h, h_kv, lq, lk, d, dtype, seed):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=gen).to(dtype=dtype, device=DEV)  # noqa: E731
    return mk(b, h, lq, d), mk(b, h_kv, lk, d), mk(b, h_kv, lk, d)


def _run(q, k, v, *, shift, window, inv_freq, scale, key_start, string=True):
    """Kernel through the launcher into NaN-poisoned outputs, then through the public op; both must agree."""
    from ropeshift import kernels
    from ropeshift.kernels import attention as A

    b, h, lq, d = q.shape
    out = torch.full_like(q, float("nan"))
    lse = torch.full((b, h, lq), float("nan"), device=q.device)
    is_string = string and shift < k.shape[2] and shift != window
    cs = A._cos_sin(inv_freq.to(q.device), window - shift, q.device) if is_string else q.new_empty((2, 0)).float()
    launch = A.launch_decode if lq == 1 else A.launch_prefill
    launch(q, k, v, cs, key_start, out, lse, shift=shift if is_string else 0, scale=scale, is_string=is_string)
    assert not out.isnan().any() and not lse.isnan().any(), "output not fully written (NaN poison left)"
    if string:
        out2, lse2 = kernels.string_attention(q, k, v, shift=shift, window=window, inv_freq=inv_freq.to(q.device),
                                              scale=scale, key_start=key_start)
    else:
        out2, lse2 = kernels.causal_attention(q, k, v, scale=scale, key_start=key_start)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)
    return out, lse


def _check(b, h, h_kv, lq, lk, d, shift, window, dtype, key_start=None, seed=0, string=True, rotary_frac=1.0):
    q, k, v = _inputs(b, h, h_kv, lq, lk, d, dtype, seed)
    inv_freq = llama_inv_freq(d, base=10000.0, rotary_frac=rotary_frac)
    scale = 1.0 / math.sqrt(d)
    if not string:
        shift = window = lk + 1  # the reference's causal path
    ks = None if key_start is None else torch.tensor(key_start, device=DEV, dtype=torch.int32)
    out, lse = _run(q, k, v, shift=shift, window=window, inv_freq=inv_freq, scale=scale, key_start=ks, string=string)
    kw = dict(shift=shift, window=window, inv_freq=inv_freq, scale=scale, key_start=ks)
    ref_out, ref_lse = explicit_attention(q, k, v, **kw)
    err, err_lse = rel_err(out, ref_out), lse_err(lse, ref_lse)
    if dtype == torch.float32:
        tol, tol_lse = 1e-4, 1e-4
    else:
        t_out, t_lse = explicit_attention(q, k, v, **kw, dtype=dtype)
        tol, tol_lse = 2 * rel_err(t_out, ref_out), 2 * lse_err(t_lse, ref_lse)
    assert err <= tol, f"out rel err {err:.3g} > {tol:.3g}"
    assert err_lse <= tol_lse, f"lse err {err_lse:.3g} > {tol_lse:.3g}"
    return err, tol


def test_reference_matches_oracle():
    """The long-sequence reference used below equals the project oracle (fp64) on small inputs."""
    from ropeshift.attention.reference import reference_attention
    from ropeshift.remaps.string import StringMethod

    b, h, h_kv, lq, lk, d = 2, 4, 2, 7, 19, 16
    q, k, v = (x.double().cpu() for x in _inputs(b, h, h_kv, lq, lk, d, torch.float32, 1))
    inv_freq = llama_inv_freq(d, rotary_frac=0.5)
    ks = torch.tensor([0, 5])
    qpos, kpos, kvalid = positions(b, lq, lk, ks, "cpu")
    m = StringMethod(shift=6, window=2)
    ref = reference_attention(q, k, v, m, inv_freq, scale=0.3, qpos=qpos, kpos=kpos, kvalid=kvalid)
    mine = explicit_attention(q, k, v, shift=6, window=2, inv_freq=inv_freq, scale=0.3, key_start=ks)
    torch.testing.assert_close(mine[0], ref[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mine[1], ref[1], rtol=1e-10, atol=1e-10)


# ---- CPU (interpreter) and GPU: small shapes, 16 x 16 tiles on CPU --------------------------------------

SMALL = [
    # b, h, h_kv, lq, lk, d, shift, window, key_start
    (1, 2, 2, 40, 40, 32, 16, 4, None),       # S on a tile boundary
    (1, 2, 2, 40, 40, 32, 17, 4, None),       # S = tile + 1
    (1, 4, 1, 37, 50, 32, 15, 3, None),       # S = tile - 1, GQA 4, lq != lk
    (2, 4, 2, 23, 57, 64, 31, 8, [0, 21]),    # left padding (pad queries in row 1), partial tiles
    (2, 2, 1, 40, 40, 32, 12, 4, [3, 25]),    # pad queries (index < key_start): out 0, lse -inf
    (1, 2, 1, 40, 40, 32, 64, 4, None),       # S >= lk: pure causal path
    (2, 8, 1, 1, 77, 32, 20, 5, [0, 13]),     # decode, GQA 8, padding
    (1, 4, 4, 1, 100, 32, 33, 7, None),       # decode, GQA 1
]


@pytest.mark.parametrize("case", SMALL, ids=lambda c: "x".join(map(str, c[:8])))
def test_small(case):
    b, h, h_kv, lq, lk, d, shift, window, ks = case
    dtype = torch.bfloat16 if CUDA else torch.float32
    _check(b, h, h_kv, lq, lk, d, shift, window, dtype, key_start=ks)


# Triton 3.9's interpreter mis-computes tl.dot on bf16 values produced by a cast in the kernel, so the CPU
# run checks half precision with fp16; bf16 is covered on CUDA.
HALF = torch.bfloat16 if CUDA else torch.float16


def test_small_half_partial_rotary():
    """Half precision, partial rotary (dims >= r untouched), and the STRING-off entry."""
    _check(1, 2, 1, 33, 41, 32, 9, 2, HALF, rotary_frac=0.5)
    _check(1, 2, 1, 1, 41, 32, 9, 2, HALF, rotary_frac=0.5)
    _check(1, 2, 1, 33, 41, 32, 9, 2, HALF, string=False)


def test_errors():
    from ropeshift import kernels

    q = torch.randn(1, 2, 4, 80, device=DEV)
    with pytest.raises(NotImplementedError, match="head_dim 80"):
        kernels.causal_attention(q, q, q, scale=1.0)
    q = torch.randn(1, 3, 4, 64, device=DEV)
    k = torch.randn(1, 2, 4, 64, device=DEV)
    with pytest.raises(ValueError, match="multiple"):
        kernels.causal_attention(q, k, k, scale=1.0)


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, ropeshift.kernels as K; assert 'triton' not in sys.modules; print(K.triton_available())"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_compile_fake():
    """The op has a fake implementation, so torch.compile can trace through it."""
    from ropeshift import kernels

    q, k, v = _inputs(1, 2, 1, 20, 20, 32, torch.float32, 3)
    inv = llama_inv_freq(32).to(DEV)
    fn = lambda q, k, v: kernels.string_attention(q, k, v, shift=8, window=2, inv_freq=inv, scale=0.2)  # noqa: E731
    with torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fq, fk, fv = (mode.from_tensor(x) for x in (q, k, v))
        out, lse = torch.ops.ropeshift.string_attention_fwd(fq, fk, fv, torch.empty(2, 16), None, 8, 0.2, True)
    assert out.shape == q.shape and lse.shape == (1, 2, 20) and lse.dtype == torch.float32
    if CUDA:
        ref = fn(q, k, v)
        got = torch.compile(fn, fullgraph=True)(q, k, v)
        assert torch.equal(ref[0], got[0])


# ---- GPU only: the full grid ----------------------------------------------------------------------------

GRID = [
    # lq, lk, h, h_kv, d, shift (relative to 128-row tiles: boundaries +- 1)
    (97, 97, 8, 8, 128, 40),
    (97, 1025, 8, 2, 64, 128),
    (1025, 1025, 32, 4, 128, 127),
    (1025, 1025, 32, 4, 64, 129),
    (1025, 1025, 8, 1, 128, 513),
    (1025, 4097, 16, 2, 128, 1024),
    (4097, 4097, 32, 4, 128, 1365),
    (4097, 4097, 8, 8, 64, 64),
    (4097, 4097, 32, 8, 128, 5000),   # S >= lk: causal
    (1, 4097, 32, 4, 128, 1365),
    (1, 4097, 32, 8, 64, 63),
    (1, 1025, 8, 8, 128, 65),
]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "x".join(map(str, c)))
def test_gpu_grid(case, dtype):
    lq, lk, h, h_kv, d, shift = case
    _check(1, h, h_kv, lq, lk, d, shift, 32, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("lq", [1, 300, 1025])
def test_gpu_padding_batch(lq):
    _check(3, 8, 2, lq, 1025, 128, 257, 16, torch.bfloat16, key_start=[0, 100, 1000 if lq == 1 else 900])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_fp32_and_causal():
    _check(1, 4, 2, 200, 333, 64, 100, 8, torch.float32)
    _check(1, 8, 2, 1025, 1025, 128, 0, 0, torch.bfloat16, string=False)
    _check(1, 8, 2, 1, 1025, 128, 0, 0, torch.bfloat16, string=False)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_int64_offsets_decode():
    """K/V with more than 2^31 elements (17 x 8 x 128k x 128): the last batch row must still be right."""
    from ropeshift import kernels

    b, h, h_kv, lk, d, shift = 17, 32, 8, 131072, 128, 43253
    gen = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(b, h, 1, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(b, h_kv, lk, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(b, h_kv, lk, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    inv_freq = llama_inv_freq(d, base=500000.0)
    kw = dict(shift=shift, window=128, inv_freq=inv_freq, scale=d ** -0.5)
    out, lse = kernels.string_attention(q, k, v, **{**kw, "inv_freq": inv_freq.cuda()})
    last = slice(b - 1, b)
    ref_out, ref_lse = explicit_attention(q[last], k[last], v[last], **kw)
    t_out, t_lse = explicit_attention(q[last], k[last], v[last], **kw, dtype=torch.bfloat16)
    assert rel_err(out[last], ref_out) <= 2 * rel_err(t_out, ref_out)
    assert lse_err(lse[last], ref_lse) <= 2 * lse_err(t_lse, ref_lse)
