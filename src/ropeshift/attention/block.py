"""One block of attention returning (out, lse): the fused primitive the tiled path is built on.

q [b, h, lq, d], k/v [b, h, lk, d] (same head count), mask None or bool [b, 1, lq, lk] (True = attend);
``causal=True`` (with mask None) means the top-left aligned causal mask (query i sees keys j <= i).
Returns out [b, h, lq, d] (q's dtype) and lse [b, h, lq] fp32; rows with no visible key give out 0, lse -inf.

Backends, chosen per call: PyTorch's fused CPU flash kernel (``aten._scaled_dot_product_flash_attention_for_cpu``,
which returns the log-sum-exp), PyTorch's CUDA flash kernel for unmasked fp16/bf16 blocks, else an explicit
matmul-softmax in fp32. ``FORCE_BACKEND`` ("fused" / "explicit" / None) overrides the choice in tests.
"""
from __future__ import annotations

import torch

FORCE_BACKEND: str | None = None


def _causal_mask(lq, lk, device):
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril()[None, None]


def explicit_block(q, k, v, mask, scale, causal=False):
    if causal:
        mask = _causal_mask(q.shape[-2], k.shape[-2], q.device)
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1))
    if mask is not None:
        p = torch.nan_to_num(p, nan=0.0)
    out = torch.matmul(p, v.float()).to(q.dtype)
    return out, lse


def _cpu_fused(q, k, v, mask, scale, causal=False):
    if causal:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True, scale=scale)
        return out, lse.float()
    bias = None
    if mask is not None:
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, False, attn_mask=bias, scale=scale
    )
    if mask is not None:  # fully masked rows: force the documented (0, -inf)
        empty = ~mask.any(-1)  # [b, 1, lq]
        if bool(empty.any()):
            out = out.masked_fill(empty.unsqueeze(-1), 0.0)
            lse = lse.masked_fill(empty, float("-inf"))
    return out, lse.float()


def _cuda_fused(q, k, v, scale, causal=False):
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
    return res[0], res[1].float()


def block_attention(q, k, v, mask, scale, causal=False):
    backend = FORCE_BACKEND
    if backend != "explicit" and q.shape[-1] <= 256:
        if q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16, torch.float16):
            if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
                return _cpu_fused(q, k, v, mask, scale, causal)
        if q.device.type == "cuda" and mask is None and q.dtype in (torch.float16, torch.bfloat16):
            return _cuda_fused(q, k, v, scale, causal)
    if backend == "fused":
        raise RuntimeError(f"no fused block backend for {q.device.type} {q.dtype}")
    return explicit_block(q, k, v, mask, scale, causal)
