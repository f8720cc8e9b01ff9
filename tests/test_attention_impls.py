"""The tiled ``torch`` impl against the fp64 oracle, with tolerances calibrated against PyTorch's own error.

Tolerance rule: max|impl - ref64| <= 2 * max|eager_same_dtype - ref64| + eps, where eager_same_dtype is the
straightforward PyTorch computation of the same STRING attention in that dtype.

Run: pytest tests/test_attention_impls.py -v
"""
import pytest
import torch

from ropeshift.attention import block
from ropeshift.attention.positions import positions_from
from ropeshift.attention.reference import reference_attention
from ropeshift.attention.tiled import tiled_attention
from ropeshift.methods.string import StringMethod
from ropeshift.rope import rotate


def _inv(dim):
    return 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def eager_string(q, k, v, method, inv, scale, qpos, kpos, kvalid):
    """Plain PyTorch STRING attention in the inputs' dtype (the calibration baseline)."""
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    q_far = rotate(q, -(method.shift - method.window), inv)
    d = (qpos[:, :, None] - kpos[:, None, :])[:, None]
    s = torch.where(d < method.shift, q @ k.transpose(-1, -2), q_far @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~((d >= 0) & kvalid[:, None, None, :]), float("-inf"))
    return torch.softmax(s, -1) @ v


CASES = [  # b, h, h_kv, lq, lk, pad, shift
    (1, 4, 2, 64, 64, 0, 31),
    (2, 4, 1, 64, 64, 9, 32),
    (2, 8, 2, 16, 97, 5, 33),  # chunked continuation, lq != lk
    (3, 4, 4, 1, 97, 11, 40),  # decode
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_torch_matches_reference_at_boundary(dtype, case, offset):
    b, h, h_kv, lq, lk, pad, shift = case
    shift += offset
    dim = 32
    inv = _inv(dim)
    method = StringMethod(shift=shift, window=4)
    q = torch.randn(b, h, lq, dim).to(dtype)
    k = torch.randn(b, h_kv, lk, dim).to(dtype)
    v = torch.randn(b, h_kv, lk, dim).to(dtype)
    mask = torch.ones(b, lk, dtype=torch.bool)
    mask[0, :pad] = False
    qpos, kpos, kvalid = positions_from(None, mask, b, lq, lk, "cpu")
    ref, _ = reference_attention(q, k, v, method, inv, scale=0.18, qpos=qpos, kpos=kpos, kvalid=kvalid)
    eager = eager_string(q, k, v, method, inv, 0.18, qpos, kpos, kvalid)
    rows = kvalid[:, lk - lq :]  # padding query rows are not compared
    err_pt = (eager.double() - ref).abs()[rows[:, None].expand_as(ref[..., 0])].max()
    for tiles in [(16, 16), (8, 32), (1024, 1024)]:
        out, lse = tiled_attention(q, k, v, method, inv, scale=0.18, qpos=qpos, kpos=kpos, kvalid=kvalid,
                                   q_tile=tiles[0], k_tile=tiles[1])
        assert out.dtype == dtype and not torch.isnan(out).any()
        err = (out.double() - ref).abs()[rows[:, None].expand_as(ref[..., 0])].max()
        assert err <= 2 * err_pt + 1e-6, f"tiles {tiles}: {err:.3g} > 2 x {err_pt:.3g}"


@pytest.mark.parametrize("backend", ["fused", "explicit"])
def test_block_backends_agree(backend, monkeypatch):
    monkeypatch.setattr(block, "FORCE_BACKEND", backend)
    q, k, v = torch.randn(2, 3, 13, 16), torch.randn(2, 3, 21, 16), torch.randn(2, 3, 21, 16)
    mask = torch.rand(2, 1, 13, 21) > 0.3
    mask[0, 0, 4] = False  # a row without keys
    o, l = block.block_attention(q, k, v, mask, 0.4)
    eo, el = block.explicit_block(q.double(), k.double(), v.double(), mask, 0.4)
    torch.testing.assert_close(o.double(), eo, atol=1e-5, rtol=0)
    finite = el.isfinite()
    assert torch.equal(finite, l.isfinite())
    torch.testing.assert_close(l.double()[finite], el.double()[finite], atol=1e-5, rtol=0)
    assert torch.equal(o[0, :, 4], torch.zeros(3, 16))


def test_positions_from_mask_and_position_ids_agree():
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    qpos, kpos, _ = positions_from(None, mask, 2, 2, 6, "cpu")
    assert kpos[0, 2:].tolist() == [0, 1, 2, 3] and qpos[0].tolist() == [2, 3]
    pid = torch.tensor([[2, 3], [4, 5]])
    qpos2, kpos2, _ = positions_from(pid, mask, 2, 2, 6, "cpu")
    assert torch.equal(kpos2[:, 2:], kpos[:, 2:]) and torch.equal(qpos2, qpos)
