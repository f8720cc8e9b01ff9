"""Triton segment-table attention vs the fp64 reference, for every attention-level method.

Run: PYTHONPATH=src pytest tests/kernels -v
Without CUDA the kernels run in Triton's interpreter on CPU (TRITON_INTERPRET=1, set in conftest.py) on tiny
shapes with 16 x 16 tiles, region edges at 16 +- 1 (so every zone: region 1 / mixed / region 0 / diagonal /
padded first tile, and the Lambda skip, is hit), prefill fp32 (keys re-rotated by the prologue: lq >= 32),
left padding + Lq != Lk + GQA 4 in fp16 (keys re-rotated per tile), decode
GQA 8 with padding. With CUDA the full grid runs (97 / 1025 / 4097, edges at 128 +- 1, GQA 1/4/8, bf16/fp16, fp32,
left padding, Lq != Lk, decode). Outputs are NaN-poisoned before the launch. Tolerance: ||kernel - ref|| / ||ref||
<= 2 x the same ratio for PyTorch's own attention in the same dtype (fp32: 1e-4).
"""
import math

import pytest
import torch

from _helpers import calibrated_tol, build, llama_inv_freq, lse_err, method_cases, positions, rel_err, table_reference

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
# Triton 3.9's interpreter mis-computes tl.dot on bf16 values produced by a cast in the kernel, so the CPU
# run checks half precision with fp16; bf16 is covered on CUDA.
HALF = torch.bfloat16 if CUDA else torch.float16


def _inputs(b, h, h_kv, lq, lk, d, dtype, seed):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=gen).to(dtype=dtype, device=DEV)  # noqa: E731
    return mk(b, h, lq, d), mk(b, h_kv, lk, d), mk(b, h_kv, lk, d)


def _run(q, k, v, method, *, inv_freq, scale, key_start):
    """Kernel through the launcher into NaN-poisoned outputs, then through the public op; both must agree."""
    from ropeshift import kernels
    from ropeshift.kernels import attention as A
    from ropeshift.kernels.spec import compile_table

    b, h, lq, d = q.shape
    out = torch.full_like(q, float("nan"))
    lse = torch.full((b, h, lq), float("nan"), device=q.device)
    spec = compile_table(method.table()).for_keys(k.shape[2])
    inv = inv_freq.to(q.device)
    qpos, _, _ = positions(b, lq, k.shape[2], key_start, q.device)
    poff = (qpos[:, -1] - (k.shape[2] - 1)).to(torch.int32) if spec.positional else None
    launch = A.launch_decode if lq == 1 else A.launch_prefill
    launch(q, k, v, inv, key_start, poff, out, lse, spec=spec, scale=scale * method.logit_scale)
    assert not out.isnan().any() and not lse.isnan().any(), "output not fully written (NaN poison left)"
    out2, lse2 = kernels.table_attention(q, k, v, method.table(), inv_freq=inv, scale=scale * method.logit_scale,
                                         key_start=key_start, pos_offset=poff)
    if lq > 1 and A.hopper_reason(q, k, key_start, spec, inv) is None:
        return [(out, lse), (out2, lse2)]  # the op took the Hopper kernel: both are checked against the reference
    assert torch.equal(out, out2) and torch.equal(lse, lse2)
    return [(out, lse)]


def _check(method, b, h, h_kv, lq, lk, d, dtype, key_start=None, seed=0, rotary_frac=1.0):
    q, k, v = _inputs(b, h, h_kv, lq, lk, d, dtype, seed)
    inv_freq = llama_inv_freq(d, base=10000.0, rotary_frac=rotary_frac)
    scale = 1.0 / math.sqrt(d)
    ks = None if key_start is None else torch.tensor(key_start, device=DEV, dtype=torch.int32)
    results = _run(q, k, v, method, inv_freq=inv_freq, scale=scale, key_start=ks)
    kw = dict(inv_freq=inv_freq, scale=scale, key_start=ks)
    ref_out, ref_lse = table_reference(q, k, v, method, **kw)
    tol, tol_lse = calibrated_tol(q, k, v, method, kw, dtype, ref_out, ref_lse)
    for kernel, (out, lse) in zip(("triton", "hopper"), results):
        err, err_lse = rel_err(out, ref_out), lse_err(lse, ref_lse)
        assert err <= tol, f"{kernel}: out rel err {err:.3g} > {tol:.3g}"
        assert err_lse <= tol_lse, f"{kernel}: lse err {err_lse:.3g} > {tol_lse:.3g}"
    return err, tol


SMALL_METHODS = method_cases(50, 16)


@pytest.mark.parametrize("case", SMALL_METHODS, ids=lambda c: c[0])
def test_reference_matches_oracle(case):
    """The long-sequence reference used below equals the project oracle (fp64) on small inputs."""
    from ropeshift.attention.reference import reference_attention

    method = build(*case[1:])
    b, h, h_kv, lq, lk, d = 2, 4, 2, 7, 40, 16
    q, k, v = (x.double().cpu() for x in _inputs(b, h, h_kv, lq, lk, d, torch.float32, 1))
    inv_freq = llama_inv_freq(d, rotary_frac=0.5)
    ks = torch.tensor([0, 5])
    qpos, kpos, kvalid = positions(b, lq, lk, ks, "cpu")
    ref = reference_attention(q, k, v, method, inv_freq, scale=0.3, qpos=qpos, kpos=kpos, kvalid=kvalid)
    mine = table_reference(q, k, v, method, inv_freq=inv_freq, scale=0.3, key_start=ks)
    torch.testing.assert_close(mine[0], ref[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(mine[1], ref[1], rtol=1e-9, atol=1e-9)


# ---- CPU (interpreter) and GPU: small shapes, 16 x 16 tiles on CPU --------------------------------------

@pytest.mark.skipif(CUDA, reason="interpreter shapes (16 x 16 tiles); the CUDA grid covers these paths")
@pytest.mark.parametrize("case", SMALL_METHODS, ids=lambda c: c[0])
def test_small(case):
    method = build(*case[1:])
    _check(method, 1, 2, 1, 40, 40, 32, torch.float32)  # prefill, edges at 16 +- 1
    _check(method, 2, 4, 1, 23, 50, 32, HALF, key_start=[0, 13], rotary_frac=0.5)  # padding, lq != lk, GQA 4
    _check(method, 2, 8, 1, 1, 45, 32, torch.float32, key_start=[0, 7])  # decode, GQA 8, padding


@pytest.mark.skipif(CUDA, reason="interpreter shapes (16 x 16 tiles); the CUDA grid covers these paths")
@pytest.mark.parametrize("name", ["dca", "self_extend", "string"])
def test_key_view_of_a_static_cache(name):
    """K/V as a static cache hands them over: the written part of a longer buffer (a non-contiguous view). Keys
    that need re-rotation still take the prologue (on a contiguous copy); every result equals the reference."""
    from ropeshift.kernels._prefill import PROLOGUE_MIN_Q

    params = dict(next(c for c in SMALL_METHODS if c[0] == name)[2])
    method = build(name, params)
    gen = torch.Generator().manual_seed(3)
    b, h, h_kv, lq, d, spare = 2, 4, 2, 40, 32, 9
    q = torch.randn(b, h, lq, d, generator=gen).to(DEV)
    kbuf, vbuf = (torch.randn(b, h_kv, lq + spare, d, generator=gen).to(DEV) for _ in range(2))
    k, v = kbuf[:, :, :lq], vbuf[:, :, :lq]
    assert not k.is_contiguous()
    inv = llama_inv_freq(d, base=10000.0)
    ks = torch.tensor([0, 5], device=DEV, dtype=torch.int32)
    (out, _), = _run(q, k, v, method, inv_freq=inv, scale=d ** -0.5, key_start=ks)  # left padded: one kernel
    ref, _ = table_reference(q, k.contiguous(), v.contiguous(), method, inv_freq=inv, scale=d ** -0.5, key_start=ks)
    assert rel_err(out, ref) <= 1e-4
    assert PROLOGUE_MIN_Q[False] <= lq  # self_extend's per-key map takes the prologue at this lq


@pytest.mark.skipif(CUDA, reason="interpreter shapes (16 x 16 tiles); the CUDA grid covers these paths")
def test_pad_queries_and_plain():
    """Pad queries (index < key_start) give out 0, lse -inf; a table beyond lk runs the plain causal path."""
    _check(build("rerope", dict(window=12)), 2, 2, 1, 40, 40, 32, torch.float32, key_start=[3, 25])
    _check(build("string", dict(shift=64, window=4)), 1, 2, 1, 40, 40, 32, HALF)


@pytest.mark.skipif(CUDA, reason="interpreter shapes (16 x 16 tiles); the CUDA grid covers these paths")
def test_causal_entry():
    from ropeshift import kernels

    q, k, v = _inputs(1, 2, 1, 33, 41, 32, torch.float32, 4)
    out, lse = kernels.causal_attention(q, k, v, scale=0.2)
    plain = build("string", dict(shift=100, window=4))  # S >= lk: plain RoPE
    ref, ref_lse = table_reference(q, k, v, plain, inv_freq=llama_inv_freq(32), scale=0.2)
    assert rel_err(out, ref) < 1e-4 and lse_err(lse, ref_lse) < 1e-4


def test_dispatch_without_mask_and_auto_on_cpu(monkeypatch):
    """impl='triton' with no attention mask (every key valid) runs the kernels and matches the tiled path;
    impl='auto' on CPU never reaches the kernels."""
    from ropeshift import kernels
    from ropeshift.attention.dispatch import attend
    from ropeshift.attention.positions import positions_from

    method = build("self_extend", dict(group_size=2, window=8))
    q, k, v = _inputs(1, 2, 1, 20, 20, 32, torch.float32, 5)
    inv = llama_inv_freq(32, base=10000.0)
    qpos, kpos, kvalid = positions_from(None, None, 1, 20, 20, q.device)
    kw = dict(scale=0.2, qpos=qpos, kpos=kpos, kvalid=kvalid, mask_given=False)
    out, _ = attend("triton", q, k, v, method, inv, **kw)
    ref, _ = attend("torch", q, k, v, method, inv, **kw)
    assert rel_err(out, ref) < 1e-4
    if not CUDA:
        monkeypatch.setattr(kernels, "table_attention", lambda *a, **k: pytest.fail("auto picked triton on CPU"))
        attend("auto", q, k, v, method, inv, **kw)


@pytest.mark.parametrize("name, params", [("dca", dict(chunk_size=8, local_window=2)),
                                          ("self_extend", dict(group_size=2, window=4))])
def test_dispatch_left_padded_batch_with_positional_tables(name, params):
    """A left-padded batch through impl='triton' for methods whose table depends on absolute positions:
    the padding slots' positions are not consecutive with the row's, and must not trip the layout check."""
    from ropeshift.attention.dispatch import attend
    from ropeshift.attention.positions import positions_from

    method = build(name, params)
    q, k, v = _inputs(3, 2, 1, 24, 24, 32, torch.float32, 6)
    inv = llama_inv_freq(32, base=10000.0)
    mask = torch.ones(3, 24, dtype=torch.bool, device=DEV)
    mask[1, :5], mask[2, :17] = False, False
    qpos, kpos, kvalid = positions_from(None, mask, 3, 24, 24, q.device)
    kw = dict(scale=0.2, qpos=qpos, kpos=kpos, kvalid=kvalid, mask_given=True, left_padded=True)
    out, _ = attend("triton", q, k, v, method, inv, **kw)
    ref, _ = attend("torch", q, k, v, method, inv, **kw)
    valid = kvalid[:, None, :, None].expand_as(out)
    assert rel_err(out[valid], ref[valid]) < 1e-4


def test_unsupported_reasons():
    from ropeshift import kernels
    from ropeshift.methods.table import PosMap, Region, SegmentTable

    method = build("string", dict(shift=8, window=2))
    assert "CUDA" in kernels.unsupported_reason(method.table(), "cpu", torch.bfloat16)
    three = SegmentTable((Region("a", 0, 4), Region("b", 4, 9), Region("c", 9, None, q_map=PosMap(b=-2))))
    assert "at most 2 regions" in kernels.unsupported_reason(three, DEV, allow_interpreter=True)
    assert kernels.unsupported_reason(method.table(), DEV, torch.float32, allow_interpreter=True) is None


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
    from ropeshift.kernels import attention  # noqa: F401 - registers the op (test order varies under xdist)
    from ropeshift.kernels.spec import compile_table

    method = build("rerope", dict(window=8))
    q, k, v = _inputs(1, 2, 1, 20, 20, 32, torch.float32, 3)
    inv = llama_inv_freq(32).to(DEV)
    spec = compile_table(method.table())
    with torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fq, fk, fv = (mode.from_tensor(x) for x in (q, k, v))
        out, lse = torch.ops.ropeshift.table_attention_fwd(fq, fk, fv, inv, None, None, spec.to_list(), 0.2)
    assert out.shape == q.shape and lse.shape == (1, 2, 20) and lse.dtype == torch.float32
    if CUDA:
        fn = lambda q, k, v: kernels.table_attention(q, k, v, spec, inv_freq=inv, scale=0.2)  # noqa: E731
        ref = fn(q, k, v)
        got = torch.compile(fn, fullgraph=True)(q, k, v)
        assert torch.equal(ref[0], got[0])



@pytest.mark.parametrize("hopper", [True, False])
def test_fake_layout_follows_the_route(monkeypatch, hopper):
    """The fake gives out the layout ``_forward`` returns: q's strides for HF's transposed q on both routes (the
    Hopper kernel writes token-major rows in place), and contiguous on the Hopper route for a q in neither layout
    its TMA views take (a cache slice), so a compiled graph's strides match the op's."""
    from ropeshift.kernels import attention as A
    from ropeshift.kernels.spec import compile_table

    monkeypatch.setattr(A, "hopper_reason", lambda *a: None if hopper else "not here")
    k = torch.randn(1, 1, 20, 32)
    spec = compile_table(build("rerope", dict(window=8)).table()).to_list()
    q = torch.randn(1, 20, 2, 32).transpose(1, 2)  # [b, h, n, d] over [b, n, h, d] memory
    out, lse = A._fake(q, k, k, torch.ones(16), None, None, spec, 0.2)
    assert out.shape == q.shape and lse.shape == (1, 2, 20)
    assert out.stride() == q.stride()
    sliced = torch.randn(1, 2, 30, 32)[:, :, :20]  # the written part of a longer buffer
    out, _ = A._fake(sliced, k, k, torch.ones(16), None, None, spec, 0.2)
    assert out.shape == sliced.shape
    if hopper:
        assert out.is_contiguous()


# ---- GPU only: the full grid ----------------------------------------------------------------------------

GRID = [
    # lq, lk, h, h_kv, d  (lq >= 64 re-rotates keys in a prologue, fewer queries per tile in registers)
    (97, 97, 8, 8, 128),
    (33, 1025, 8, 2, 128),
    (97, 1025, 8, 2, 64),
    (1025, 1025, 32, 4, 128),
    (1025, 1025, 8, 1, 64),
    (1025, 4097, 16, 2, 128),
    (4097, 4097, 32, 8, 128),
    (1, 4097, 32, 4, 128),
    (1, 1025, 8, 8, 64),
    (1, 97, 32, 8, 128),
]
GPU_METHODS = [c[0] for c in method_cases(1025, 128)]


def _gpu_method(name, lk):
    tile = 128 if lk > 200 else 32
    case = {c[0]: c for c in method_cases(lk, tile)}[name]
    return build(*case[1:])


# fp16 on the grid for one constant-map and one general-map method (each dtype is a compile per table kind)
GPU_DTYPES = [(n, torch.bfloat16) for n in GPU_METHODS] + [(n, torch.float16) for n in ("string", "rerope_leaky")]


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("case", GRID, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("name,dtype", GPU_DTYPES, ids=lambda x: str(x).replace("torch.", ""))
def test_gpu_grid(name, dtype, case):
    lq, lk, h, h_kv, d = case
    _check(_gpu_method(name, lk), 1, h, h_kv, lq, lk, d, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("lq", [1, 300, 1025])
@pytest.mark.parametrize("name", GPU_METHODS)
def test_gpu_padding_batch(name, lq):
    _check(_gpu_method(name, 1025), 3, 8, 2, lq, 1025, 128, torch.bfloat16,
           key_start=[0, 100, 1000 if lq == 1 else 900])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", GPU_METHODS)
def test_gpu_fp32(name):
    _check(_gpu_method(name, 333), 1, 4, 2, 200, 333, 64, torch.float32)
    _check(_gpu_method(name, 333), 2, 8, 2, 1, 333, 64, torch.float32, key_start=[0, 40])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", ["string", "rerope"])
def test_gpu_int64_offsets_decode(name):
    """K/V with more than 2^31 elements (17 x 8 x 128k x 128): the last batch row must still be right."""
    from ropeshift import kernels

    b, h, h_kv, lk, d = 17, 32, 8, 131072, 128
    method = build(name, dict(shift=43253, window=128) if name == "string" else dict(window=43253))
    gen = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(b, h, 1, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(b, h_kv, lk, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(b, h_kv, lk, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    inv_freq = llama_inv_freq(d, base=500000.0)
    kw = dict(inv_freq=inv_freq, scale=d ** -0.5)
    out, lse = kernels.table_attention(q, k, v, method.table(), inv_freq=inv_freq.cuda(), scale=d ** -0.5)
    last = slice(b - 1, b)
    ref_out, ref_lse = table_reference(q[last], k[last], v[last], method, **kw)
    t_out, t_lse = table_reference(q[last], k[last], v[last], method, **kw, dtype=torch.bfloat16)
    assert rel_err(out[last], ref_out) <= 2 * rel_err(t_out, ref_out) + 1e-6
    assert lse_err(lse[last], ref_lse) <= 2 * lse_err(t_lse, ref_lse) + 1e-6


def test_cos_sin_range_reduction():
    """The kernels' cos/sin reduce angles up to 2e5 rad (128k positions) before the approximation."""
    from _cos_sin_kernel import cos_sin_kernel

    ang = torch.cat([torch.linspace(-2e5, 2e5, 120), torch.tensor([0.0, 3.14159, 1e5 + 0.5, -7.0, 131071.0, 6.2831855,
                                                                   -6.2831855, 1.0])]).to(DEV)
    c, s = torch.empty_like(ang), torch.empty_like(ang)
    cos_sin_kernel[(1,)](ang, c, s, N=128)
    exact = ang.double()
    assert (c.double() - exact.cos()).abs().max() < 2e-5 and (s.double() - exact.sin()).abs().max() < 2e-5


def test_apply_on_cpu_with_logit_scale():
    """Issue 8 item 8: the official-code recipe runs on CPU with the default impl (auto never picks triton)."""
    import ropeshift
    from transformers import LlamaConfig, LlamaForCausalLM

    from ropeshift.methods.string import OFFICIAL_LOGIT_SCALE

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).eval()
    ropeshift.apply(model, "string", logit_scale=OFFICIAL_LOGIT_SCALE)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(0, 64, (1, 120))).logits).all()


@pytest.mark.skipif(CUDA, reason="interpreter run; the CUDA tests run the same path at full size")
def test_kernel_positions_once_per_forward(monkeypatch):
    """Through a model (2 layers, left-padded batch, impl='triton'): the kernels' key positions are computed once
    per forward and shared by its layers, a new forward recomputes them, and the logits equal the tiled path's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_models import tiny_model

    import ropeshift
    from ropeshift.attention import dispatch
    from ropeshift.state import get_state

    calls = []
    real = dispatch._kernel_positions
    monkeypatch.setattr(dispatch, "_kernel_positions", lambda *a: calls.append(1) or real(*a))
    model = tiny_model("llama")
    ids = torch.randint(3, 128, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, :9] = 0
    out = {}
    for impl in ("torch", "triton"):
        ropeshift.apply(model, "self_extend", group_size=3, window=9, impl="torch")
        get_state(model.config).impl = impl  # apply refuses triton on CPU; the interpreter runs it here
        with torch.inference_mode():
            out[impl] = model(input_ids=ids, attention_mask=mask).logits
            if impl == "triton":
                assert len(calls) == 1  # 2 layers, one computation
                model(input_ids=ids, attention_mask=mask.clone())
                assert len(calls) == 2  # a new forward: new mask object, recomputed
        ropeshift.remove(model)
    valid = mask.bool()
    assert rel_err(out["triton"][valid], out["torch"][valid]) < 1e-4


def test_grad_inputs_take_the_op_and_refuse_backward():
    """In eager inference the launcher runs directly; with inputs that need grad the call goes through the custom
    op, so a backward pass raises instead of silently returning no gradient."""
    from ropeshift import kernels

    q, k, v = _inputs(1, 2, 1, 20, 20, 32, torch.float32, 7)
    table = build("string", dict(shift=8, window=2)).table()
    inv = llama_inv_freq(32).to(DEV)
    with torch.inference_mode():
        out, _ = kernels.table_attention(q, k, v, table, inv_freq=inv, scale=0.2)
    assert out.grad_fn is None
    q.requires_grad_(True)
    out, _ = kernels.table_attention(q, k, v, table, inv_freq=inv, scale=0.2)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        out.sum().backward()


@pytest.mark.parametrize("chunk_size, local_window", [(20, 0), (20, 1), (21, 5), (37, 16), (13, 12), (48, 16)])
def test_dca_chunk_zones_prefill(chunk_size, local_window):
    """DCA's chunk zones in the portable prefill: query blocks spanning chunks, w = 0 and 1 (rule window 0),
    w near s, s at tile multiples; left padding moves the positions (key_start 9: negative positions)."""
    method = build("dca", dict(chunk_size=chunk_size, local_window=local_window))
    _check(method, 2, 2, 1, 97, 97, 16, torch.float32, key_start=[0, 9])
    _check(method, 1, 2, 1, 40, 130, 16, torch.float32)  # lq < lk: a continuation
