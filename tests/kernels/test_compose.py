"""Composed vendor attention (ropeshift.kernels.compose) against the fp64 oracle, for every band method.

Runs on CPU through PyTorch's fused CPU flash kernel (fp32); the one-pass Triton merge runs under
TRITON_INTERPRET (set by tests/kernels/conftest.py when there is no CUDA). Lengths are not multiples of the band
widths, shifts/windows sit at and beyond the sequence length, GQA 1/2/4, batch 1 and 2.

Run: pytest tests/kernels/test_compose.py -q
"""
import pytest
import torch

from ropeshift.attention.merge import merge_attention
from ropeshift.attention.reference import reference_attention
from ropeshift.kernels.compose import Band, Chunk, Piece, band_pieces, compose_attention, merge_pieces
from ropeshift.kernels.compose_segments import cost_flops, segment_regions, unsupported_reason
from ropeshift.methods.dca import DualChunkMethod
from ropeshift.methods.lm_infinite import LMInfiniteMethod
from ropeshift.methods.rerope import ReRopeMethod
from ropeshift.methods.self_extend import SelfExtendMethod
from ropeshift.methods.string import StringMethod

from _helpers import llama_inv_freq

D = 16
SCALE = 0.3


METHODS = {
    "string": StringMethod(shift=7, window=2),
    "string_s_near_n": StringMethod(shift=36, window=5),  # n = 37: one far row
    "string_s_eq_n": StringMethod(shift=37, window=5),
    "string_s_gt_n": StringMethod(shift=50, window=5),
    "string_scaled": StringMethod(shift=10, window=3, logit_scale=1.1434),
    "rerope": ReRopeMethod(window=5),
    "rerope_w1": ReRopeMethod(window=1),
    "rerope_leaky": ReRopeMethod(window=6, leaky=16.0),
    "self_extend": SelfExtendMethod(group_size=3, window=6),
    "self_extend_g1": SelfExtendMethod(group_size=1, window=4),
    "lm_infinite": LMInfiniteMethod(n_local=6, distance_limit=9, n_global=3),
    "lm_infinite_capped_local": LMInfiniteMethod(n_local=12, distance_limit=5, n_global=2),
    "lm_infinite_no_global": LMInfiniteMethod(n_local=8, distance_limit=20, n_global=0),
    "dca": DualChunkMethod(chunk_size=9, local_window=2),  # s = 7
    "dca_w0": DualChunkMethod(chunk_size=5, local_window=0),
    "dca_one_chunk": DualChunkMethod(chunk_size=80, local_window=8),
}


def _qkv(b, h, h_kv, n, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(b, heads, n, D, generator=g, dtype=dtype) for heads in (h, h_kv, h_kv))


def _oracle(method, q, k, v, inv):
    pos = torch.arange(q.shape[2])[None].expand(q.shape[0], -1)
    return reference_attention(q, k, v, method, inv, scale=SCALE, qpos=pos, kpos=pos)


def _check(out, lse, ref_o, ref_l, tol=2e-5):
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_l))
    torch.testing.assert_close(out.double(), ref_o, atol=tol, rtol=0)
    fin = torch.isfinite(ref_l)
    torch.testing.assert_close(lse.double()[fin], ref_l[fin], atol=tol, rtol=0)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("b,h,h_kv,n", [(1, 4, 1, 37), (2, 4, 2, 29), (1, 4, 4, 64)])
def test_compose_matches_oracle(name, b, h, h_kv, n):
    method = METHODS[name]
    q, k, v = _qkv(b, h, h_kv, n)
    inv = llama_inv_freq(D, base=10000.0)
    regions = segment_regions(method, q, k, inv)
    out, lse = compose_attention(regions, v, scale=SCALE * method.logit_scale, backend="cpu")
    _check(out, lse, *_oracle(method, q, k, v, inv))


@pytest.mark.parametrize("name", ["self_extend", "rerope_leaky", "string"])
def test_positions_not_starting_at_zero(name):
    """pos0 > 0 (a prefill whose first position is p0): per-position deltas use the true positions."""
    method, p0, n = METHODS[name], 5, 30
    q, k, v = _qkv(1, 4, 2, n)
    inv = llama_inv_freq(D, base=10000.0)
    out, lse = compose_attention(segment_regions(method, q, k, inv, pos0=p0), v, scale=SCALE, backend="cpu")
    pos = torch.arange(p0, p0 + n)[None]
    _check(out, lse, *reference_attention(q, k, v, method, inv, scale=SCALE, qpos=pos, kpos=pos))


def _band_oracle(q, k, v, lo, hi, key_end=None):
    """Plain attention of one band lo <= i - j < hi (hi None: unbounded), keys j < key_end, GQA repeated."""
    n = q.shape[2]
    g = q.shape[1] // k.shape[1]
    kk, vv = k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    d = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    mask = (d >= lo) if hi is None else (d >= lo) & (d < hi)
    if key_end is not None:
        mask &= torch.arange(n)[None, :] < key_end
    s = (q.double() @ kk.transpose(-1, -2) * SCALE).masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, -1)
    return torch.softmax(s, -1).nan_to_num(0.0) @ vv, lse


@pytest.mark.parametrize("n", [1, 2, 9, 31, 32, 33, 40])
@pytest.mark.parametrize("lo,hi", [(0, 1), (0, 2), (0, 8), (3, 4), (3, 11), (5, None), (0, None), (8, 16), (31, 33)])
def test_single_band_block_decomposition(n, lo, hi):
    """Every (lo, hi) / n combination: blocks of T = hi - lo, the tail, the strictly upper prev blocks."""
    q, k, v = _qkv(1, 2, 1, n)
    out, lse = compose_attention([Band(lo, hi, q, k)], v, scale=SCALE, backend="cpu")
    _check(out, lse, *_band_oracle(q, k, v, lo, hi))


def _chunk_oracle(q, k, v, s, o, slots, beyond):
    n = q.shape[2]
    g = q.shape[1] // k.shape[1]
    kk, vv = k.double().repeat_interleave(g, 1), v.double().repeat_interleave(g, 1)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    off = i // s - j // s
    mask = (i >= j) & ((off >= o) if beyond else (off == o))
    if slots is not None:
        mask &= (i % s >= slots[0]) & (i % s < slots[1])
    sc = (q.double() @ kk.transpose(-1, -2) * SCALE).masked_fill(~mask, float("-inf"))
    return torch.softmax(sc, -1).nan_to_num(0.0) @ vv, torch.logsumexp(sc, -1)


@pytest.mark.parametrize("n", [5, 21, 23, 34])
@pytest.mark.parametrize("s,o,slots,beyond", [(7, 0, None, False), (7, 0, None, True), (7, 1, None, True),
                                              (7, 2, None, True), (7, 1, (0, 3), False), (7, 1, (3, 7), False),
                                              (7, 2, (2, 5), False), (1, 1, None, True), (4, 3, None, True)])
def test_chunk_decomposition(n, s, o, slots, beyond):
    q, k, v = _qkv(1, 2, 1, n)
    out, lse = compose_attention([Chunk(s, o, q, k, slots=slots, beyond=beyond)], v, scale=SCALE, backend="cpu")
    _check(out, lse, *_chunk_oracle(q, k, v, s, o, slots, beyond))


@pytest.mark.parametrize("lo,hi,key_end", [(0, None, 3), (4, 9, 2), (6, None, 40), (2, 5, 1)])
def test_key_prefix_band(lo, hi, key_end):
    q, k, v = _qkv(2, 4, 2, 23)
    out, lse = compose_attention([Band(lo, hi, q, k, key_end)], v, scale=SCALE, backend="cpu")
    _check(out, lse, *_band_oracle(q, k, v, lo, hi, key_end))


def test_short_band_tensors_are_rows_lo_on():
    """A band may carry only q rows [lo, n) and keys [0, n - lo) (what segment_regions builds)."""
    q, k, v = _qkv(1, 2, 2, 30)
    full = compose_attention([Band(0, 4, q, k), Band(4, None, q, k)], v, scale=SCALE, backend="cpu")
    short = compose_attention([Band(0, 4, q, k), Band(4, None, q[:, :, 4:], k[:, :, :26])], v, scale=SCALE,
                              backend="cpu")
    torch.testing.assert_close(full[0], short[0], atol=0, rtol=0)
    torch.testing.assert_close(full[1], short[1], atol=0, rtol=0)


def test_prev_blocks_are_one_batched_call(monkeypatch):
    """A finite band is at most 5 vendor calls whatever its length, each batched over all its blocks, and
    does no padded work: full diag blocks, full prev blocks, tail diag, tail x prev-block rectangle, tail
    triangle."""
    from ropeshift.kernels import compose

    calls = []
    real = compose.vendor
    def spy(*a, **kw):
        calls.append((a[1].shape, a[2].shape[2], kw.get("causal", True)))
        return real(*a, **kw)

    monkeypatch.setattr(compose, "vendor", spy)
    q, k, v = _qkv(1, 2, 1, 1000)
    pieces = band_pieces(Band(0, 64, q, k), v, SCALE, "cpu")
    assert len(calls) == 5 and len(pieces) == 5
    full, tail = divmod(1000, 64)
    assert [c[0] for c in calls] == [(full, 2, 64, D), (1, 2, tail, D), (full - 1, 2, 63, D), (1, 2, tail, D),
                                     (1, 2, tail - 1, D)]
    assert calls[3][1:] == (64 - tail, False)  # the unmasked rectangle
    pairs = sum(c[0][0] * c[0][2] * (c[1] if c[2] is False else (c[1] + 1) / 2) for c in calls)
    assert pairs == cost_flops(1000, 1, 1, [(0, 64)]) / 4
    calls.clear()
    band_pieces(Band(0, 64, q[:, :, :640], k[:, :, :640]), v[:, :, :640], SCALE, "cpu")
    assert len(calls) == 2  # a multiple of T: diag + prev only


TRITON_DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: TRITON_INTERPRET (tests/kernels/conftest.py)


def test_fused_merge_equals_merge_attention():
    """The Triton one-pass merge (interpreted on CPU) gives merge_attention's result on every piece layout."""
    pytest.importorskip("triton")
    from dataclasses import replace

    q, k, v = _qkv(2, 2, 1, 29)
    inv = llama_inv_freq(D, base=10000.0)
    method = METHODS["lm_infinite"]
    bands = segment_regions(method, q, k, inv)
    pieces = [p for bd in segment_regions(StringMethod(shift=8, window=2), q, k, inv)
              for p in band_pieces(bd, v, SCALE, "cpu")]
    assert any(p.flip for p in pieces) and any(p.blocks > 1 for p in pieces)
    eager = merge_pieces(pieces, (2, 2, 29, D), torch.float32, fused=False)
    moved = [replace(p, out=p.out.to(TRITON_DEV), lse=p.lse.to(TRITON_DEV)) for p in pieces]
    fused = merge_pieces(moved, (2, 2, 29, D), torch.float32, fused=True)
    torch.testing.assert_close(fused[0].cpu(), eager[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(fused[1].cpu(), eager[1], atol=1e-6, rtol=0)
    if TRITON_DEV == "cpu":
        out, lse = compose_attention(bands, v, scale=SCALE, backend="cpu", fused_merge=True)
        _check(out, lse, *_oracle(method, q, k, v, inv))


@pytest.mark.parametrize("delta", ["int", "rows", "fractional"])
def test_fused_rotate_equals_rotate(delta):
    """The one-pass Triton re-rotation (interpreted on CPU) equals rope.rotate, partial rotary and strided rows."""
    pytest.importorskip("triton")
    from ropeshift.kernels._compose_triton import fused_rotate
    from ropeshift.rope import rotate

    x = torch.randn(2, 3, 21, D, device=TRITON_DEV)[:, :, 3:]
    inv = llama_inv_freq(D, base=10000.0, rotary_frac=0.75).to(TRITON_DEV)  # r = 12: half 6, tail 4
    dl = {"int": -7, "rows": torch.arange(18) * 3 - 5, "fractional": torch.arange(18) * 0.37}[delta]
    dl = dl if isinstance(dl, int) else dl.to(TRITON_DEV)
    want = rotate(x, dl if isinstance(dl, int) else dl.reshape(1, 1, -1), inv)
    torch.testing.assert_close(fused_rotate(x, dl, inv), want, atol=1e-5, rtol=0)


def test_merge_of_two_pieces_is_merge_attention():
    a = Piece(torch.randn(1, 2, 5, D), torch.randn(1, 2, 5), 0, 5, 5, 5)
    b = Piece(torch.randn(1, 2, 3, D), torch.randn(1, 2, 3), 2, 3, 3, 3)
    out, lse = merge_pieces([a, b], (1, 2, 5, D), torch.float32, fused=False)
    ref_o, ref_l = merge_attention(a.out[:, :, 2:], a.lse[:, :, 2:], b.out, b.lse)
    torch.testing.assert_close(out[:, :, 2:], ref_o)
    torch.testing.assert_close(lse[:, :, 2:], ref_l)
    torch.testing.assert_close(out[:, :, :2], a.out[:, :, :2])


def test_kv_repeated_once_when_the_backend_lacks_gqa(monkeypatch):
    """A backend without native GQA gets each distinct K / V repeated once per call, same result."""
    from ropeshift.kernels import compose

    method = METHODS["rerope"]
    q, k, v = _qkv(1, 4, 1, 40)
    inv = llama_inv_freq(D, base=10000.0)
    want = compose_attention(segment_regions(method, q, k, inv), v, scale=SCALE, backend="cpu")
    heads = []
    real = compose.vendor
    monkeypatch.setattr(compose, "native_gqa", lambda backend, q: False)
    monkeypatch.setattr(compose, "vendor", lambda *a, **kw: heads.append(a[2].shape[1]) or real(*a, **kw))
    got = compose_attention(segment_regions(method, q, k, inv), v, scale=SCALE, backend="cpu")
    assert set(heads) == {4}
    torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=1e-6, rtol=0)


def test_bf16_inputs_keep_dtype():
    q, k, v = _qkv(1, 4, 2, 33, dtype=torch.bfloat16)
    out, lse = compose_attention(segment_regions(METHODS["string"], q, k, llama_inv_freq(D)), v, scale=SCALE,
                                 backend="cpu")
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32 and out.shape == q.shape


def test_cost_flops_counts_band_pairs():
    n = 50
    for lo, hi in [(0, 7), (7, None), (3, 60), (49, None), (50, None)]:
        d = torch.arange(n)[:, None] - torch.arange(n)[None, :]
        pairs = int(((d >= lo) & ((d < hi) if hi else True)).sum())
        assert cost_flops(n, 1, 1, [(lo, hi)]) == 4 * pairs


def test_errors_name_the_parameter():
    q, k, v = _qkv(1, 2, 1, 10)
    with pytest.raises(ValueError, match="backend must be one of"):
        compose_attention([Band(0, None, q, k)], v, scale=SCALE, backend="cudnnn")
    with pytest.raises(ValueError, match="needs CUDA"):
        compose_attention([Band(0, None, q, k)], v, scale=SCALE, backend="cudnn")
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        compose_attention([Band(4, 4, q, k)], v, scale=SCALE, backend="cpu")
    with pytest.raises(ValueError, match="at least one band"):
        compose_attention([], v, scale=SCALE)


def test_unsupported_reason_for_the_dispatcher():
    q, k, _ = _qkv(2, 4, 2, 12)
    pos = torch.arange(12)[None].expand(2, -1)
    ok = torch.ones(2, 12, dtype=torch.bool)
    assert unsupported_reason(METHODS["string"], q, k, qpos=pos, kpos=pos, kvalid=ok) is None
    assert unsupported_reason(METHODS["string"], q, k, qpos=pos + 3, kpos=pos + 3, kvalid=ok) is None
    assert "lq == lk" in unsupported_reason(METHODS["string"], q[:, :, :1], k, qpos=pos[:, :1], kpos=pos, kvalid=ok)
    pad = ok.clone()
    pad[0, 0] = False
    assert "no padding" in unsupported_reason(METHODS["string"], q, k, qpos=pos, kpos=pos, kvalid=pad)
    dca = METHODS["dca"]
    assert unsupported_reason(dca, q, k, qpos=pos, kpos=pos, kvalid=ok) is None
    assert "position 0" in unsupported_reason(dca, q, k, qpos=pos + 1, kpos=pos + 1, kvalid=ok)


def test_start_position_is_one_rule_for_every_route():
    """Distance-only tables compose at 0 from any offset; absolute-position tables need one common start, and
    key-index rules (chunk, lambda's global keys) need it at 0."""
    from ropeshift.kernels.compose_segments import start_position

    pos = torch.arange(12)[None].expand(2, -1)
    assert start_position(METHODS["string"].table(), pos + 5) == 0
    assert start_position(METHODS["self_extend"].table(), pos + 4) == 4
    assert "different positions" in start_position(METHODS["self_extend"].table(), pos + torch.tensor([[0], [1]]))
    for name in ("dca", "lm_infinite"):
        assert start_position(METHODS[name].table(), pos) == 0
        assert "position 0" in start_position(METHODS[name].table(), pos + 2)
    q, k, _ = _qkv(2, 4, 2, 12)
    ok = torch.ones(2, 12, dtype=torch.bool)
    assert "position 0" in unsupported_reason(METHODS["lm_infinite"], q, k, qpos=pos + 2, kpos=pos + 2, kvalid=ok)


def test_a_band_that_cuts_a_chunk_rule_is_refused():
    """Regions compile by rule; a chunk rule whose band is narrower than the rule implies has no vendor form."""
    from ropeshift.kernels.compose_segments import region_specs
    from ropeshift.methods.table import Region

    assert region_specs(Region("near", 0, 10, rule="chunk_near", r1=7, r2=2)) == [
        ("chunk", 7, 0, None, False), ("chunk", 7, 1, (0, 3), False)]
    assert "cuts its chunk rule" in region_specs(Region("near", 0, 5, rule="chunk_near", r1=7, r2=2))
    assert "cuts its chunk rule" in region_specs(Region("far", 4, 20, rule="chunk_far", r1=7, r2=2))
    assert region_specs(Region("lam", 0, 9, rule="lambda", r1=6, r2=3)) == [("band", 0, 6, None), ("band", 6, 9, 3)]
    assert region_specs(Region("lam", 9, None, rule="lambda", r1=6, r2=0)) == []
