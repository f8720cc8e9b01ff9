"""merge_attention: merging attention over disjoint key sets equals attention over their union.

Run: pytest tests/test_merge.py -v
"""
import torch

from ropeshift.attention.block import explicit_block
from ropeshift.attention.merge import merge_attention


def test_merge_disjoint_equals_concatenated():
    q = torch.randn(2, 3, 11, 16, dtype=torch.float64)
    k = torch.randn(2, 3, 29, 16, dtype=torch.float64)
    v = torch.randn(2, 3, 29, 16, dtype=torch.float64)
    full_o, full_l = explicit_block(q, k, v, None, 0.3)
    a_o, a_l = explicit_block(q, k[:, :, :10], v[:, :, :10], None, 0.3)
    b_o, b_l = explicit_block(q, k[:, :, 10:], v[:, :, 10:], None, 0.3)
    o, l = merge_attention(a_o, a_l, b_o, b_l)
    torch.testing.assert_close(o.double(), full_o, atol=1e-5, rtol=0)
    torch.testing.assert_close(l.double(), full_l.double(), atol=1e-5, rtol=0)


def test_merge_with_empty_rows_never_nan():
    o = torch.randn(1, 1, 4, 8)
    l = torch.tensor([[[0.5, float("-inf"), 1.0, float("-inf")]]])
    empty_o = torch.zeros(1, 1, 4, 8)
    empty_l = torch.full((1, 1, 4), float("-inf"))
    m_o, m_l = merge_attention(o, l, empty_o, empty_l)
    assert not torch.isnan(m_o).any()
    torch.testing.assert_close(m_o[0, 0, 0], o[0, 0, 0])
    assert torch.equal(m_o[0, 0, 1], torch.zeros(8)) and torch.isneginf(m_l[0, 0, 1])


def test_masked_block_rows_without_keys():
    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 1, :] = False
    o, l = explicit_block(q, k, v, mask, 1.0)
    assert torch.equal(o[:, :, 1], torch.zeros(1, 2, 8)) and torch.isneginf(l[:, :, 1]).all()
