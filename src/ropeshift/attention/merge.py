"""Merge partial attentions over disjoint key sets by their log-sum-exp.

out [..., l, d] (any float dtype), lse [..., l] (natural log of the scaled logits' sum of exp, -inf for a
row with no key). Merging attention over key sets A and B equals attention over A ∪ B:

    lse = log(e^lse_a + e^lse_b),   out = out_a e^(lse_a - lse) + out_b e^(lse_b - lse)

computed in fp32; rows empty in both stay (0, -inf) and never produce NaN.
"""
from __future__ import annotations

import torch


def merge_attention(out_a, lse_a, out_b, lse_b):
    """Return (out, lse) of the union; out in fp32 (cast by the caller), lse fp32."""
    lse_a = lse_a.float()
    lse_b = lse_b.float()
    lse = torch.logaddexp(lse_a, lse_b)
    empty = torch.isneginf(lse)
    safe = torch.where(empty, torch.zeros_like(lse), lse)
    w_a = torch.where(empty, torch.zeros_like(lse), torch.exp(lse_a - safe))
    w_b = torch.where(empty, torch.zeros_like(lse), torch.exp(lse_b - safe))
    out = out_a.float() * w_a.unsqueeze(-1) + out_b.float() * w_b.unsqueeze(-1)
    return out, lse
