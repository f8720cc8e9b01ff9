"""The oracle: brute-force attention from a method's position-matrix definition, in fp64.

For every (query m, key n) pair the post-RoPE query is rotated by rel(m, n) - d (``ropeshift.rope.rotate``),
so the logit is exactly the RoPE logit at relative distance rel(m, n); then one softmax over the visible keys.
Memory is O(b * h * lq * lk * d): tests only.

Shapes: q [b, h, lq, d], k/v [b, h_kv, lk, d], qpos [b, lq], kpos/kvalid [b, lk].
Returns out [b, h, lq, d] fp64 and lse [b, h, lq] fp64 (rows without a visible key: out 0, lse -inf).
"""
from __future__ import annotations

import torch

from ..rope import rotate


def visible_mask(method, qpos, kpos, kvalid):
    """[b, lq, lk] bool: causal (d >= 0), valid key, and the method's own mask."""
    d = qpos[:, :, None] - kpos[:, None, :]
    vis = (d >= 0) & kvalid[:, None, :]
    extra = method.visible(d, qpos[:, :, None], kpos[:, None, :])
    if extra is not None:
        vis = vis & extra
    return d, vis


def reference_attention(q, k, v, method, inv_freq, *, scale, qpos, kpos, kvalid=None):
    b, h, lq, dim = q.shape
    h_kv = k.shape[1]
    if kvalid is None:
        kvalid = torch.ones(k.shape[0], k.shape[2], dtype=torch.bool, device=k.device)
    q64, k64, v64 = q.double(), k.double(), v.double()
    k64 = k64.repeat_interleave(h // h_kv, dim=1)
    v64 = v64.repeat_interleave(h // h_kv, dim=1)
    d, vis = visible_mask(method, qpos, kpos, kvalid)
    rel = method.rel(d, qpos[:, :, None], kpos[:, None, :])
    delta = torch.where(vis, rel - d, torch.zeros_like(d))  # [b, lq, lk]
    q_pair = rotate(q64[:, :, :, None, :], delta[:, None], inv_freq.double())  # [b, h, lq, lk, d]
    logits = (q_pair * k64[:, :, None, :, :]).sum(-1) * (scale * method.logit_scale)
    logits = logits.masked_fill(~vis[:, None], float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    p = torch.exp(logits - lse.unsqueeze(-1))
    p = torch.nan_to_num(p, nan=0.0)
    out = p @ v64
    return out, lse
