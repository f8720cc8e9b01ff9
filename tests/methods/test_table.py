"""The segment table reproduces every method's rel(m, n) and mask exactly (the oracle stays ``rel``/``visible``).

For every method over a grid of boundary settings (windows of 1, windows one below the length, G = 1, w = 0,
n_local above/below the limit, n_global 0, ...): the regions cover each visible causal pair exactly once, no
invisible pair, and q_map(m) - k_map(n) == rel(m, n) there. ``Region.classify`` (tile bounds -> empty / full /
partial) agrees with the element-wise membership on every tile of several tilings.
"""
import itertools

import pytest
import torch

from ropeshift.methods.dca import DualChunkMethod
from ropeshift.methods.lm_infinite import LMInfiniteMethod
from ropeshift.methods.rerope import ReRopeMethod
from ropeshift.methods.self_extend import SelfExtendMethod
from ropeshift.methods.string import StringMethod
from ropeshift.methods.table import PosMap

N = 70


def _settings():
    out = []
    for s, w in [(1, 0), (2, 1), (3, 1), (16, 4), (17, 16), (69, 0), (69, 68), (100, 5)]:
        out.append(StringMethod(shift=s, window=w))
    for w, k in itertools.product([1, 2, 7, 16, 69, 100], [None, 1.5, 4.0, 16.0]):
        out.append(ReRopeMethod(window=w, leaky=k))
    for g, w in [(1, 1), (1, 5), (2, 2), (3, 9), (4, 8), (8, 16), (5, 65), (16, 96)]:
        out.append(SelfExtendMethod(group_size=g, window=w))
    for c, w in [(2, 0), (2, 1), (5, 1), (9, 0), (12, 3), (12, 5), (12, 6), (12, 11), (16, 4), (70, 10), (200, 3)]:
        out.append(DualChunkMethod(chunk_size=c, local_window=w))
    for g, loc, lim in [(0, 1, 1), (0, 8, 12), (3, 8, 12), (2, 14, 9), (10, 70, 70), (1, 1, 69), (5, 30, 30),
                        (70, 3, 5), (4, 100, 2)]:
        out.append(LMInfiniteMethod(n_global=g, n_local=loc, distance_limit=lim))
    return out


SETTINGS = _settings()


def _grid(offset=0):
    pos = torch.arange(N) + offset
    qp, kp = pos[:, None].expand(N, N), pos[None, :].expand(N, N)
    return qp - kp, qp, kp


@pytest.mark.parametrize("method", SETTINGS, ids=repr)
def test_table_reproduces_rel_and_mask(method):
    table = method.table()
    for offset in (0, 37):  # later positions too (chunked prefill, decode)
        d, qp, kp = _grid(offset)
        vis = d >= 0
        extra = method.visible(d, qp, kp)
        if extra is not None:
            vis &= extra
        rel, covered = table.rel(d, qp, kp)
        assert torch.equal(covered, vis.long()), "regions must cover the visible pairs exactly once"
        expected = method.rel(d, qp, kp).double()
        assert torch.allclose(rel[vis], expected[vis], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", SETTINGS[::3], ids=repr)
def test_classify_agrees_with_elements(method):
    d, qp, kp = _grid()
    for region in method.table().regions:
        inside = region.contains(d, qp, kp) & (d >= 0)
        for tq, tk in [(8, 8), (5, 16), (16, 3), (1, 1)]:
            for q0, k0 in itertools.product(range(0, N, tq), range(0, N, tk)):
                q1, k1 = min(q0 + tq, N), min(k0 + tk, N)
                kind = region.classify(q0, q1 - 1, k0, k1 - 1)
                tile, causal = inside[q0:q1, k0:k1], (d >= 0)[q0:q1, k0:k1]
                if kind == "empty":
                    assert not tile.any(), (region.name, q0, k0)
                elif kind == "full":
                    assert torch.equal(tile, causal), (region.name, q0, k0)


def test_posmap_forms():
    pos = torch.arange(-3, 20)
    assert torch.equal(PosMap()(pos), pos) and PosMap().is_identity
    assert torch.equal(PosMap(a=0, c=1, g=4, b=3)(pos), torch.div(pos, 4, rounding_mode="floor") + 3)
    assert torch.equal(PosMap(c=-5, g=5)(pos), pos % 5)
    assert PosMap(b=-7).delta(pos) == -7 and PosMap(b=-7).is_constant_shift
    assert torch.allclose(PosMap(a=0.25, b=6.0).delta(pos), pos.double() * 0.25 + 6.0 - pos)
