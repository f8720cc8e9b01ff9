"""The tiled ``torch`` impl against the fp64 oracle for every baseline, on random tensors at region boundaries.

Tolerance (calibrated): max|tiled - ref64| <= 2 * max|eager_same_dtype - ref64| + 1e-6, where eager_same_dtype
is the oracle's own per-pair computation done in the input dtype (rotation in fp32 rounded to the dtype,
logits, softmax and the value product in the dtype). Also: a synthetic
three-region table with every rule kind at tiny tiles.

Run: pytest tests/methods/test_tiled.py -v
"""
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from ropeshift.attention.positions import positions_from
from ropeshift.attention.reference import reference_attention, visible_mask
from ropeshift.attention.tiled import tiled_attention
from ropeshift.methods.base import PositionMethod
from ropeshift.methods.table import PosMap, Region, SegmentTable
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
class ThreeRegions(PositionMethod):
    """A synthetic table with three regions mixing every rule kind and map form: plain band d < 5; beyond it,
    chunk-near pairs (stride 7, window 2) see grouped queries, chunk-far pairs see the query at 9 and the key at
    n mod 7; keys with n >= 3 and d >= 30 are masked (the Lambda rule)."""

    name: ClassVar[str] = "three_regions"

    def table(self):
        lam = dict(rule="lambda", r1=30, r2=3)
        return SegmentTable((
            Region("near", 0, 5),
            Region("grouped", 5, 30, rule="chunk_near", r1=7, r2=2, q_map=PosMap(a=0, c=1, g=3, b=4),
                   k_map=PosMap(a=0, c=1, g=3)),
            Region("capped", 5, 30, rule="chunk_far", r1=7, r2=2, q_map=PosMap(a=0, b=9), k_map=PosMap(c=-7, g=7)),
            Region("global", 30, None, q_map=PosMap(b=-1.0), **lam),
        ))

    def visible(self, d, qpos, kpos):
        return (d < 30) | (kpos < 3)

    def rel(self, d, qpos, kpos):
        return self.table().rel(d, qpos, kpos)[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=["prefill", "padded", "continuation", "decode"])
def test_general_regions_at_tiny_tiles(shape, dtype):
    _check(ThreeRegions(), shape, dtype, [(2, 3), (8, 8), (7, 64)])
