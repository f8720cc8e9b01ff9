"""The STRING definition and its oracle, checked independently of the rotation trick.

Run: pytest tests/test_string_oracle.py -v
"""
import torch

from ropeshift.attention.reference import reference_attention
from ropeshift.methods.base import draw_matrix
from ropeshift.methods.string import StringMethod
from ropeshift.rope import rotate

FIGURE_5 = """\
0
1 0
2 1 0
1 2 1 0
2 1 2 1 0
3 2 1 2 1 0
4 3 2 1 2 1 0
5 4 3 2 1 2 1 0
6 5 4 3 2 1 2 1 0"""


def test_paper_figure_5_matrix():
    drawn = draw_matrix(StringMethod(shift=3, window=1), 9)
    rows = [" ".join(c for c in line.split() if c != ".") for line in drawn.splitlines()]
    assert "\n".join(rows) == FIGURE_5


def test_rel_at_the_boundary():
    m = StringMethod(shift=100, window=8)
    d = torch.tensor([0, 99, 100, 101, 500])
    assert m.rel(d).tolist() == [0, 99, 8, 9, 408]


def _inv(dim):
    return 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def test_oracle_equals_attention_built_from_pre_rope_vectors():
    """Place each (query, key) pair at positions (n + rel, n) from raw vectors: no post-RoPE delta involved."""
    b, h, h_kv, n, dim = 1, 4, 2, 23, 16
    inv = _inv(dim)
    method = StringMethod(shift=7, window=2)
    q_raw = torch.randn(b, h, n, dim, dtype=torch.float64)
    k_raw = torch.randn(b, h_kv, n, dim, dtype=torch.float64)
    v = torch.randn(b, h_kv, n, dim, dtype=torch.float64)
    pos = torch.arange(n)
    q = rotate(q_raw, pos, inv)
    k = rotate(k_raw, pos, inv)
    out, lse = reference_attention(q, k, v, method, inv, scale=0.25, qpos=pos[None], kpos=pos[None])

    kr = k_raw.repeat_interleave(h // h_kv, 1)
    vr = v.repeat_interleave(h // h_kv, 1)
    expected = torch.zeros(b, h, n, dim, dtype=torch.float64)
    for m in range(n):
        logits = []
        for j in range(m + 1):
            rel = int(method.rel(torch.tensor(m - j)))
            qm = rotate(q_raw[:, :, m], j + rel, inv)
            kj = rotate(kr[:, :, j], j, inv)
            logits.append((qm * kj).sum(-1) * 0.25)
        p = torch.softmax(torch.stack(logits, -1), -1)
        expected[:, :, m] = (p.unsqueeze(-1) * vr[:, :, : m + 1]).sum(-2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_window_equal_shift_limit_is_vanilla():
    """W = S makes Eq. 4 the identity; construct it via rel directly (StringMethod forbids W >= S)."""
    method = StringMethod(shift=5, window=4)
    d = torch.arange(0, 50)
    assert torch.equal(torch.where(d < 5, d, d - 5 + 5), d)
    assert (method.rel(d) <= d).all() and (method.rel(d)[d >= 5] == d[d >= 5] - 1).all()
