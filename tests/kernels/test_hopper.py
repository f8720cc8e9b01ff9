"""The Hopper (Gluon, warp-specialised) prefill kernel: which calls it serves, and its results on sm_90.

The per-method GPU grid of test_table_attention.py already runs every fresh-prefill case through it (the op
takes it where it serves; both kernels are checked against the fp64 reference there). Here: the serving rule
(CPU), and on an sm_90 GPU the cases that grid does not reach: HF-transposed q, k, v, a batch whose rows start at
other absolute positions (general maps read them), lengths that are not tile multiples, the route itself.
"""
import math

import pytest
import torch

from _helpers import build, llama_inv_freq, lse_err, method_cases, rel_err, table_reference

CUDA = torch.cuda.is_available()
SM90 = CUDA and torch.cuda.get_device_capability() == (9, 0)
DEV = "cuda" if CUDA else "cpu"  # the prologue kernel's tests: compiled on a GPU, interpreted on the CPU
SERVED = ["string", "string_p1", "rerope", "rerope_leaky", "self_extend", "dca", "plain"]
NOT_SERVED = ["lm_infinite", "lm_infinite_cap"]


def _ws():
    try:
        from ropeshift.kernels import _prefill_hopper_ws
    except ImportError as e:  # a Triton without Gluon's Hopper module
        pytest.skip(f"Gluon unavailable: {e}")
    return _prefill_hopper_ws


def _spec(name, tile=128):
    from ropeshift.kernels.spec import compile_table

    case = {c[0]: c for c in method_cases(4 * tile, tile)}[name]
    return compile_table(build(*case[1:]).table())


@pytest.mark.parametrize("name", SERVED + NOT_SERVED)
def test_serving_rule(name):
    ws = _ws()
    q = torch.empty(1, 4, 300, 128, dtype=torch.bfloat16)
    k = torch.empty(1, 2, 300, 128, dtype=torch.bfloat16)
    reason = ws.unserved_reason(_spec(name), q, k, None, 64)
    assert (reason is None) == (name in SERVED), reason


def test_serving_rule_shapes():
    ws = _ws()
    spec = _spec("rerope")
    q = torch.empty(1, 4, 300, 128, dtype=torch.bfloat16)
    k = torch.empty(1, 2, 300, 128, dtype=torch.bfloat16)
    assert "fresh prefill" in ws.unserved_reason(spec, q[:, :, :10], k, None, 64)  # Lq != Lk
    assert "fresh prefill" in ws.unserved_reason(spec, q, k, torch.zeros(1, dtype=torch.int32), 64)
    assert "bf16/fp16" in ws.unserved_reason(spec, q.float(), k.float(), None, 64)
    assert "head_dim" in ws.unserved_reason(spec, q[..., :96], k[..., :96], None, 48)
    assert "full rotary" in ws.unserved_reason(spec, q, k, None, 32)
    assert ws.unserved_reason(_spec("plain"), q, k, None, 32) is None  # no region 1: no rotation at all


def test_cpu_never_takes_it():
    from ropeshift.kernels import attention as A

    q = torch.empty(1, 4, 300, 128, dtype=torch.bfloat16)
    assert A.hopper_reason(q, q[:, :2], None, _spec("string")) is not None


# ---- sm_90 only ----------------------------------------------------------------------------------------


def _inputs(b, h, h_kv, n, d, dtype, seed, hf_layout):
    gen = torch.Generator().manual_seed(seed)
    if hf_layout:  # [b, n, h, d] transposed, as transformers hands q, k, v over (read in place)
        return tuple(torch.randn(b, n, hx, d, generator=gen).to("cuda", dtype).transpose(1, 2)
                     for hx in (h, h_kv, h_kv))
    return tuple(torch.randn(b, hx, n, d, generator=gen).to("cuda", dtype) for hx in (h, h_kv, h_kv))


@pytest.mark.gpu
@pytest.mark.skipif(not SM90, reason="needs an sm_90 GPU (H100 / H200)")
@pytest.mark.parametrize("fold", [None, frozenset(), frozenset({64, 128})])
@pytest.mark.parametrize("n", [300, 2049])
@pytest.mark.parametrize("name", SERVED)
def test_offsets_and_layout(name, n, fold, monkeypatch):
    """Rows at other absolute positions (pos_offset 0 and 77) and HF-transposed q: the Hopper kernel against the
    portable fp32 kernel (itself exact against the fp64 oracle), within 2x PyTorch's own bf16 error; with the
    default and both ways of applying a constant query shift (re-rotating q or k, ``FOLD_SHIFT_DIMS``)."""
    if fold is not None:
        monkeypatch.setattr(_ws(), "FOLD_SHIFT_DIMS", fold)

    case = {c[0]: c for c in method_cases(n, 128)}[name]
    _check_against_portable(build(*case[1:]), 2, 8, 2, n, 1, hf_layout=True)


def _check_against_portable(method, b, h, h_kv, n, seed, hf_layout):
    """The Hopper kernel (asserted to be the route) at pos_offset 0 and 77 against the portable fp32 kernel, within
    2x PyTorch's own bf16 error on the same inputs (positions from 0); D = 128."""
    from ropeshift import kernels
    from ropeshift.kernels import attention as A
    from ropeshift.kernels.spec import compile_table

    d = 128
    q, k, v = _inputs(b, h, h_kv, n, d, torch.bfloat16, seed, hf_layout=hf_layout)
    inv = llama_inv_freq(d, base=10000.0).cuda()
    scale = 1 / math.sqrt(d)
    spec = method.table()
    assert A.hopper_reason(q, k, None, compile_table(spec), inv) is None  # the route under test
    poff = torch.tensor([0, 77], dtype=torch.int32, device="cuda")
    out, lse = kernels.table_attention(q, k, v, spec, inv_freq=inv, scale=scale, pos_offset=poff)
    ref_o, ref_l = kernels.table_attention(q.float(), k.float(), v.float(), spec, inv_freq=inv, scale=scale,
                                           pos_offset=poff)
    r64_o, _ = table_reference(q, k, v, method, inv_freq=inv, scale=scale)
    rbf_o, _ = table_reference(q, k, v, method, inv_freq=inv, scale=scale, dtype=torch.bfloat16)
    tol = 2 * rel_err(rbf_o, r64_o) + 1e-6
    assert torch.isfinite(out).all()
    assert rel_err(out, ref_o) <= tol, f"out rel err {rel_err(out, ref_o):.3g} > {tol:.3g}"
    assert lse_err(lse, ref_l) <= 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not SM90, reason="needs an sm_90 GPU (H100 / H200)")
@pytest.mark.parametrize("chunk_size, local_window", [(256, 128), (384, 128), (200, 0), (130, 1), (161, 33)])
def test_dca_chunk_settings(chunk_size, local_window):
    """DCA's chunk rule in the Hopper kernel (a key threshold per row, chunk zones from the first and last rows)
    at the settings its table change is about: s and w at multiples of the 128-row block (no block straddles the
    rule), w = 0 and w = 1 (only slot 0 sees the previous chunk), and blocks spanning chunks; against the portable
    fp32 kernel at pos_offset 0 and 77, within 2x PyTorch's own bf16 error."""
    _check_against_portable(build("dca", dict(chunk_size=chunk_size, local_window=local_window)), 2, 4, 2, 1100, 2,
                            hf_layout=False)


@pytest.mark.gpu
@pytest.mark.skipif(not SM90, reason="needs an sm_90 GPU (H100 / H200)")
@pytest.mark.parametrize("d", [64, 128])
def test_causal_entry_takes_it(d):
    """Plain causal attention (one identity region) through the Hopper kernel vs the fp64 reference."""
    from ropeshift import kernels
    from ropeshift.kernels import attention as A
    from ropeshift.kernels.spec import PLAIN

    q, k, v = _inputs(1, 8, 2, 1000, d, torch.float16, 2, hf_layout=False)
    assert A.hopper_reason(q, k, None, PLAIN) is None
    method = build("plain", {})
    out, lse = kernels.causal_attention(q, k, v, scale=d ** -0.5)
    r64_o, r64_l = table_reference(q, k, v, method, inv_freq=llama_inv_freq(d).cuda(), scale=d ** -0.5)
    r16_o, _ = table_reference(q, k, v, method, inv_freq=llama_inv_freq(d).cuda(), scale=d ** -0.5,
                               dtype=torch.float16)
    assert rel_err(out, r64_o) <= 2 * rel_err(r16_o, r64_o) + 1e-6
    assert lse_err(lse, r64_l) <= 1e-2


# ---- CPU: the kernel compiles for sm_90 (no GPU needed) ------------------------------------------------


@pytest.mark.skipif(CUDA, reason="compile-only stand-in for machines without a GPU")
def test_compiles_for_sm90():
    """The whole compile (Gluon -> PTX -> ptxas) for sm_90 of the variants with q1 and re-rotated keys (the Q1 tile:
    the most shared memory), within the 227 KB a block may hold. In a subprocess: the kernel
    tests here run under TRITON_INTERPRET=1, which the compiler must not see."""
    from _sm90_compile import compile_in_subprocess

    _ws()
    results = compile_in_subprocess(["rerope_leaky:128", "string:128:nofold", "string:64:fold", "dca:64", "dca:128",
                                     "string:128"], timeout=600)
    assert len(results) == 6
    for r in results:
        assert r["wgmma"], r
        assert r["shared"] <= 232448, r
        # what plain causal attention holds (the K / V ring of two bf16 tiles each, Q) plus Q1 where the query
        # map re-rotates, and 1 KB of barriers and layout slack: no buffer for edge tiles' second key tile
        tile = 128 * r["d"] * 2
        q1 = not (r["name"] == "string" and r["variant"] != "nofold")  # STRING's shift folds into K here
        assert r["shared"] <= (5 + q1) * tile + 1024, r


@pytest.mark.parametrize("d", [64, 128])
def test_constant_shift_folded_into_keys_scores_alike(d):
    """STRING's constant query shift: ``_maps`` folds it into the key map at the head dims of FOLD_SHIFT_DIMS and
    keeps it on the queries elsewhere; either way the prologue's rotations give the same region-1 scores
    (q1 . k = q . R(-b) k), fp32 through the portable prologue kernel (interpreter on CPU)."""
    ws = _ws()
    spec = _spec("string")
    q_map, k_map = ws._maps(spec, d)
    assert (q_map is None) == (d in ws.FOLD_SHIFT_DIMS) and (k_map is None) != (d in ws.FOLD_SHIFT_DIMS)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 40, d, generator=gen).to(DEV)
    k = torch.randn(1, 2, 40, d, generator=gen).to(DEV)
    inv = llama_inv_freq(d, base=10000.0).to(DEV)
    unfolded = ws._rotated(q, spec.q_map, inv, None) @ k.transpose(-1, -2)
    old = ws.FOLD_SHIFT_DIMS
    try:
        ws.FOLD_SHIFT_DIMS = frozenset({d})
        q_f, k_f = ws._maps(spec, d)
    finally:
        ws.FOLD_SHIFT_DIMS = old
    assert q_f is None
    folded = q @ ws._rotated(k, k_f, inv, None).transpose(-1, -2)
    assert torch.allclose(folded, unfolded, rtol=1e-4, atol=1e-4 * unfolded.abs().max().item())


# ---- CPU: the launcher's operands (q1 or q's copy inside out), against an emulation of the kernel's memory order --


def _emulate(q, q1, k, k1, v, out, lo1, scale, gen):
    """The Hopper kernel's memory behaviour for a band table (rule none), program by program in a random order,
    every operand read through its 2-D TMA view (``_prefill_hopper_ws._Rows``): program (m, bh) copies its Q and
    Q1 tiles, rows [base + BLOCK_M m, +BLOCK_M) (past n: the next head's or batch's rows, as the descriptor
    reads them; past the view's end: zeros), before it stores the rows of that range below n into out (Q's
    view); keys and values from rows [base, + n) of K, K1, V's views; region 1 (q1 . k1) where d >= lo1, region 0
    (q . k) below."""
    ws = _ws()
    b, h, n, d = out.shape
    g = h // k.shape[1]
    bm = ws.BLOCK_M
    rq, rk, rv = ws._rows(q), ws._rows(k), ws._rows(v)
    assert ws._rows(q1) == rq == ws._rows(out) and ws._rows(k1) == rk
    views = {name: r.view(x) for name, x, r in (("q", q, rq), ("q1", q1, rq), ("out", out, rq), ("k", k, rk),
                                                   ("k1", k1, rk), ("v", v, rv))}
    programs = [(m, bh) for m in range(-(-n // bm)) for bh in range(b * h)]

    def tile(x, r0, c0, rows):  # a TMA load: a copy taken now, zero-filled past the view's end
        t = x[r0:r0 + rows, c0:c0 + d].clone()
        return torch.cat((t, t.new_zeros(rows - t.shape[0], d))).double()

    for i in torch.randperm(len(programs), generator=gen).tolist():
        m, bh = programs[i]
        bi, hq = divmod(bh, h)
        hk = hq // g
        r0, c0 = bi * rq.rb + hq * rq.rh + m * bm, hq * rq.ch
        qt, q1t = tile(views["q"], r0, c0, bm), tile(views["q1"], r0, c0, bm)  # both loaded before any store
        kr, kc = bi * rk.rb + hk * rk.rh, hk * rk.ch
        kt, k1t = tile(views["k"], kr, kc, n), tile(views["k1"], kr, kc, n)
        vt = tile(views["v"], bi * rv.rb + hk * rv.rh, hk * rv.ch, n)
        rows = m * bm + torch.arange(bm)
        dist = rows[:, None] - torch.arange(n)[None, :]
        s = torch.where(dist >= lo1, q1t @ k1t.T, qt @ kt.T) * scale
        o = torch.softmax(s.masked_fill(dist < 0, float("-inf")), -1) @ vt
        keep = int((rows < n).sum())
        views["out"][r0:r0 + keep, c0:c0 + d] = o[:keep].to(out.dtype)
    return out


def _laid_out(x, layout, gen):
    """x [b, hx, n, d] with x's values in ``layout``: heads (contiguous), tokens (a transposed [b, n, hx, d], as
    transformers hands q, k, v over) or cache (the first n slots of a longer head-major buffer: neither)."""
    if layout == "tokens":
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "cache":
        buf = torch.randn(x.shape[0], x.shape[1], x.shape[2] + 50, x.shape[3], generator=gen).to(x.device)
        buf[:, :, :x.shape[2]] = x
        return buf[:, :, :x.shape[2]]
    return x.contiguous()


# (q, k, v, out) layouts: transformers' (all token-major), all head-major, mixed, a cache slice (copied), and a
# q in another layout than out (copied into out)
LAYOUTS = {"hf": ("tokens", "tokens", "tokens", "tokens"), "heads": ("heads", "heads", "heads", "heads"),
           "mixed": ("tokens", "heads", "tokens", "tokens"), "cache": ("heads", "cache", "cache", "heads"),
           "q_not_out": ("tokens", "tokens", "tokens", "heads")}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name,d", [("rerope", 64), ("self_extend", 64), ("string", 64), ("string", 128),
                                    ("plain", 64)])
def test_operands_alias_out_exactly(name, d, layout):
    """``_operands`` reads transformers' token-major q, k, v in place and puts q1 (re-rotating query maps) or q's
    copy (q in another layout than out) into out, which the kernel then overwrites: exact because each program
    reads its Q / Q1 rows before it stores out rows, and only its own. Emulated through the TMA views in random
    program order, the aliased operands give bit for bit what separate contiguous buffers give, and both match
    the fp64 reference; out starts as NaN (any row read before being written, or never written, shows)."""
    ws = _ws()
    case = {c[0]: c for c in method_cases(512, 128)}[name]
    method = build(*case[1:])
    spec = _spec(name)
    b, h, h_kv, n = 2, 4, 2, 300  # 300: the last tile of a head reads the next head's (batch's) first rows
    gen = torch.Generator().manual_seed(5)
    lq, lk, lv, lo = LAYOUTS[layout]
    q = _laid_out(torch.randn(b, h, n, d, generator=gen).to(DEV), lq, gen)
    k, v = (_laid_out(torch.randn(b, h_kv, n, d, generator=gen).to(DEV), lay, gen) for lay in (lk, lv))
    inv = llama_inv_freq(d, base=10000.0).to(DEV)
    scale = d ** -0.5

    out = _laid_out(torch.full((b, h, n, d), float("nan"), device=DEV), lo, gen)
    qa, q1a, ka, k1a, va = ws._operands(q, k, v, inv, out, spec)
    q_map, k_map = ws._maps(spec, d)
    assert (ka is k) == (lk != "cache") and (va is v) == (lv != "cache")  # dense layouts read in place
    if q_map is not None:
        assert q1a is out and qa is not out  # q1 written into out
    else:
        assert q1a is qa and (qa is out) == (lq != lo)  # q in another layout than out copied into out
    assert (k1a is ka) == (k_map is None)

    qc, kc = q.contiguous(), ka.contiguous()  # separate contiguous buffers: the launcher before aliasing
    sep = (qc, ws._rotated(qc, q_map, inv, None) if q_map is not None else qc, kc,
           ws._rotated(kc, k_map, inv, None) if k_map is not None else kc, v.contiguous())
    # the emulation runs on the CPU; one host copy per device tensor keeps the aliasing (q1 or q is out)
    host = {}
    cpu = lambda t: host.setdefault(id(t), t.cpu())  # noqa: E731
    q, k, v, inv = (t.cpu() for t in (q, k, v, inv))
    qa, q1a, ka, k1a, va, out = map(cpu, (qa, q1a, ka, k1a, va, out))
    sep = tuple(t.cpu() for t in sep)
    lo1 = spec.lo1 if spec.has_r1 else 1 << 30
    want = _emulate(*sep, torch.full((b, h, n, d), float("nan")), lo1, scale, torch.Generator().manual_seed(0))
    got = _emulate(qa, q1a, ka, k1a, va, out, lo1, scale, torch.Generator().manual_seed(1))
    assert torch.isfinite(got).all()
    assert torch.equal(got, want)
    ref, _ = table_reference(q, k, v, method, inv_freq=inv, scale=scale)
    assert rel_err(got, ref) < 1e-5, rel_err(got, ref)


def test_rows_of_the_two_dense_layouts():
    """``_rows``: head-major and token-major dense tensors map to their 2-D views (every element where the
    kernel's row / column formula puts it), sizes-1 dims' strides ignored; a cache slice maps to none."""
    ws = _ws()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 16, generator=gen)
    for layout in ("heads", "tokens"):
        y = _laid_out(x, layout, gen)
        r = ws._rows(y)
        view = r.view(y)
        for bi, hi, t in [(0, 0, 0), (1, 2, 4), (1, 0, 3), (0, 2, 1)]:
            assert torch.equal(view[bi * r.rb + hi * r.rh + t, hi * r.ch:hi * r.ch + 16], x[bi, hi, t])
    assert ws._rows(_laid_out(x, "cache", gen)) is None
    assert ws._rows(torch.randn(3, 1, 5, 16).expand(3, 1, 5, 16)[:1]) == ws._rows(torch.randn(1, 1, 5, 16))


@pytest.mark.parametrize("setting", ["0", "q", "1"])
def test_in_place_setting_copies_the_others(monkeypatch, setting):
    """ROPESHIFT_HOPPER_IN_PLACE (``in_place``): the token-major operands it names are read in place, the others
    copied to head-major ("0": all, as before the in-place views; "q": K and V); out follows q (``empty_out``)."""
    ws = _ws()
    names = {"1": "qkv", "0": ""}.get(setting, setting)
    monkeypatch.setenv(ws.IN_PLACE_ENV, setting)
    assert ws.in_place() == frozenset(names)
    gen = torch.Generator().manual_seed(0)
    x = _laid_out(torch.randn(2, 3, 5, 16, generator=gen), "tokens", gen)
    assert ws._rows(x, False) is None and ws._rows(x.contiguous(), False) is not None
    out = ws.empty_out(x)
    assert (out.stride() == x.stride()) == ("q" in names) and (out.is_contiguous() != ("q" in names))
    qa, q1a, ka, k1a, va = ws._operands(x, x, x, llama_inv_freq(16), out, _spec("plain"))
    assert (qa is x) == ("q" in names) and (ka is x) == ("k" in names) and (va is x) == ("v" in names)
    assert all(t.is_contiguous() for t, n in ((ka, "k"), (va, "v")) if n not in names)
    monkeypatch.setenv(ws.IN_PLACE_ENV, "qx")
    with pytest.raises(ValueError, match="letters of 'qkv'"):
        ws.empty_out(x)


def test_operands_refuse_a_foreign_out():
    """q1 goes into out only when out has q's shape and layout (the prologue kernel uses one set of strides)."""
    ws = _ws()
    q = torch.randn(1, 2, 40, 64)
    with pytest.raises(ValueError, match="layout"):
        ws._rotated(q, _spec("rerope").q_map, llama_inv_freq(64), None, out=torch.empty(1, 40, 2, 64).transpose(1, 2))
