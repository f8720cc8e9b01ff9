"""The tiled ``torch`` impl against the fp64 oracle for every baseline, on random tensors at region boundaries.

Tolerance (calibrated): max|tiled - ref64| <= 2 * max|eager_same_dtype - ref64| + 1e-6, where eager_same_dtype
is the oracle's own per-pair computation done in the input dtype (rotation in fp32 rounded to the dtype,
logits, softmax and the value product in the dtype). Also: general (non-``d_range``) regions at tiny tiles.

Run: pytest tests/methods/test_tiled.py -v
"""
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from ropeshift.attention.positions import positions_from
from ropeshift.attention.reference import reference_attention, visible_mask
from ropeshift.attention.tiled import tiled_attention
from ropeshift.remaps.base import PositionMethod, Segment
from ropeshift.rope import rotate

from .cases import APPLY_CASES, method_of


def _inv(dim):
    return 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def eager_same_dtype(q, k, v, method, inv, scale, qpos, kpos, kvalid):
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    d, vis = visible_mask(method, qpos, kpos, kvalid)
    rel = method.rel(d, qpos[:, :, None], kpos[:, None, :])
    delta = torch.where(vis, rel - d, torch.zeros_like(d))
    qr = rotate(q[:, :, :, None, :], delta[:, None], inv)  # [b, h, lq, lk, d] in q's dtype
    s = (qr * k[:, :, None]).sum(-1) * scale
    s = s.masked_fill(~vis[:, None], float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0) @ v


SHAPES = [  # b, h, h_kv, lq, lk, pad
    (1, 4, 2, 41, 41, 0),  # prefill, GQA 2
    (2, 4, 1, 40, 40, 7),  # left padding, GQA 4 (MQA)
    (2, 4, 2, 9, 45, 5),  # chunked continuation, lq != lk
    (3, 4, 4, 1, 45, 11),  # one decode step
]


def _inputs(shape, dtype, dim=32):
    b, h, h_kv, lq, lk, pad = shape
    q = torch.randn(b, h, lq, dim).to(dtype)
    k = torch.randn(b, h_kv, lk, dim).to(dtype)
    v = torch.randn(b, h_kv, lk, dim).to(dtype)
    mask = torch.ones(b, lk, dtype=torch.bool)
    mask[0, :pad] = False
    qpos, kpos, kvalid = positions_from(None, mask, b, lq, lk, "cpu")
    return q, k, v, qpos, kpos, kvalid


def _check(method, shape, dtype, tiles_list):
    q, k, v, qpos, kpos, kvalid = _inputs(shape, dtype)
    inv = _inv(q.shape[-1])
    ref, ref_lse = reference_attention(q, k, v, method, inv, scale=0.3, qpos=qpos, kpos=kpos, kvalid=kvalid)
    rows = kvalid[:, kvalid.shape[1] - q.shape[2]:][:, None].expand_as(ref[..., 0])  # padding queries aside
    eager = eager_same_dtype(q, k, v, method, inv, 0.3, qpos, kpos, kvalid)
    bound = 2 * (eager.double() - ref).abs()[rows].max() + 1e-6
    for q_tile, k_tile in tiles_list:
        out, lse = tiled_attention(q, k, v, method, inv, scale=0.3, qpos=qpos, kpos=kpos, kvalid=kvalid,
                                   q_tile=q_tile, k_tile=k_tile)
        assert out.dtype == dtype and not torch.isnan(out).any()
        err = (out.double() - ref).abs()[rows].max()
        assert err <= bound, f"tiles {q_tile}x{k_tile}: {err:.3g} > {bound:.3g}"
        if dtype == torch.float32:
            torch.testing.assert_close(lse.double()[rows], ref_lse[rows], atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=["prefill", "padded", "continuation", "decode"])
@pytest.mark.parametrize("case", list(APPLY_CASES))
def test_torch_matches_reference(case, shape, dtype):
    _check(method_of(case), shape, dtype, [(8, 8), (5, 16), (1024, 1024)])


@dataclass(frozen=True)
class Checkerboard(PositionMethod):
    """A synthetic method with only general regions: pairs with m + n odd see the query 2 back and the key
    moved by n mod 3; even pairs are plain RoPE; keys with n mod 5 == 4 are masked."""

    name: ClassVar[str] = "checkerboard"

    def visible(self, d, qpos, kpos):
        return kpos % 5 != 4

    def rel(self, d, qpos, kpos):
        odd = (qpos + kpos) % 2 == 1
        return torch.where(odd, d - 2 - kpos % 3, d)

    def segments(self):
        vis = lambda d, qp, kp: (d >= 0) & (kp % 5 != 4)  # noqa: E731
        return [
            Segment("even", lambda d, qp, kp: vis(d, qp, kp) & ((qp + kp) % 2 == 0)),
            Segment("odd", lambda d, qp, kp: vis(d, qp, kp) & ((qp + kp) % 2 == 1), q_delta=-2,
                    k_delta=lambda kp: kp % 3),
        ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=["prefill", "padded", "continuation", "decode"])
def test_general_regions_at_tiny_tiles(shape, dtype):
    _check(Checkerboard(), shape, dtype, [(2, 3), (8, 8), (7, 64)])
