"""Vendor attention calls for ``ropeshift.kernels.compose``: backends, their probes, the explicit fallback.

Backends (``backend=``): "cudnn" (``aten._scaled_dot_product_cudnn_attention``), "flash"
(``aten._scaled_dot_product_flash_attention``), "efficient" (``aten._scaled_dot_product_efficient_attention``,
fp32 on CUDA), "cpu" (``aten._scaled_dot_product_flash_attention_for_cpu``), "auto" (CUDA: cudnn when its probe
passes, else flash; fp32: efficient; CPU: cpu). All return the log-sum-exp; ``is_causal`` is top-left aligned.
Each CUDA backend is probed once per (dtype, head dim, GQA, layout) against an fp32 computation: native GQA
and strided block views are used only where the probe passes, else K/V are repeated (once per compose call)
or blocks copied.

Shapes: q [B, h, lq, d], k/v [B, h_kv, lk, d]; out [B, h, lq, d] (q's dtype), lse [B, h, lq] fp32.
"""
from __future__ import annotations

import functools

import torch

BACKENDS = ("auto", "cudnn", "flash", "efficient", "cpu")


def check_backend(backend, device):
    if backend not in BACKENDS:
        raise ValueError(f"compose: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"compose: backend 'cpu' needs CPU tensors, got {device}")
    if backend in ("cudnn", "flash", "efficient") and device.type != "cuda":
        raise ValueError(f"compose: backend {backend!r} needs CUDA tensors, got {device}")


def raw_call(backend, q, k, v, scale, causal=True):
    """One vendor call, causal (top-left) or unmasked: (out [B, h, L, d], lse [B, h, L] fp32)."""
    lq = q.shape[2]
    if lq == 0 or k.shape[2] == 0:  # the CPU kernel divides by zero on empty blocks
        raise ValueError(f"compose: empty vendor call (lq={lq}, lk={k.shape[2]})")
    if backend == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
    elif backend == "cudnn":
        res = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False,
                                                                 scale=scale)
        out, lse = res[0], res[1]
    elif backend == "flash":
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
        out, lse = res[0], res[1]
    else:  # efficient
        res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, causal,
                                                                     scale=scale)
        out, lse = res[0], res[1]
    if lse.dim() == 4:
        lse = lse[..., 0]
    return out, lse[..., :lq].float()


def explicit(q, k, v, scale, mask):
    """fp32 attention with a bool mask [lq, lk] (True = attend), GQA folded: (out, lse [b, h, lq])."""
    b, h, lq, d = q.shape
    h_kv = k.shape[1]
    g = h // h_kv
    s = torch.matmul(q.float().reshape(b, h_kv, g * lq, d), k.float().transpose(-1, -2)) * scale
    s = s.view(b, h_kv, g, lq, -1).masked_fill(~mask, float("-inf")).view(b, h_kv, g * lq, -1)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1)).nan_to_num(0.0)
    out = torch.matmul(p, v.float()).view(b, h, lq, d)
    return out.to(q.dtype), lse.view(b, h, lq)


@functools.cache
def probe(backend, dtype, d, grouped, strided):
    """True when the backend computes a tiny causal call (GQA if grouped, strided block views if strided) right."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    h, h_kv, n, nblocks = 4, (2 if grouped else 4), 96, 3

    def rnd(heads):
        return torch.randn(1, heads, nblocks * n, d, device="cuda", dtype=dtype, generator=gen)

    q, k, v = rnd(h), rnd(h_kv), rnd(h_kv)
    if strided:  # the zero-copy block view compose uses for b == 1
        qb, kb, vb = (blocks(x, 0, nblocks, n) for x in (q, k, v))
    else:
        qb, kb, vb = (x[:, :, :n] for x in (q, k, v))
    try:
        out, lse = raw_call(backend, qb, kb, vb, d**-0.5)
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001 - any failure means "do not use this layout/backend"
        return False
    mask = torch.ones(n, n, dtype=torch.bool, device="cuda").tril()
    ref_o, ref_l = explicit(qb.contiguous(), kb.contiguous(), vb.contiguous(), d**-0.5, mask)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    return bool((out.float() - ref_o.float()).abs().max() < tol and (lse - ref_l).abs().max() < tol)


def resolve_backend(backend, q):
    """The concrete backend for q's device and dtype ("auto" resolved): on CUDA cuDNN when its probe passes
    (the fastest Hopper kernel in PyTorch, ~1.6x FA2; K/V repeated for GQA when it needs that), else flash."""
    check_backend(backend, q.device)
    if backend != "auto":
        return backend
    if q.device.type != "cuda":
        return "cpu"
    if q.dtype == torch.float32:
        return "efficient"
    return "cudnn" if probe("cudnn", q.dtype, q.shape[-1], False, False) else "flash"


def native_gqa(backend, q):
    """True when the backend takes K/V with fewer heads than q as they are (the CPU kernel does)."""
    return backend == "cpu" or probe(backend, q.dtype, q.shape[-1], True, False)


def vendor(backend, q, k, v, scale, strided=False, causal=True):
    """raw_call after the probes: strided block views copied and GQA K/V repeated where the backend needs it
    (compose repeats them once per call up front, so the repeat here is a safety net)."""
    if backend != "cpu":
        d, g = q.shape[-1], q.shape[1] // k.shape[1]
        if strided and not probe(backend, q.dtype, d, g > 1, True):
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        if g > 1 and not probe(backend, q.dtype, d, True, False):
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    return raw_call(backend, q, k, v, scale, causal)


def blocks(x, start, count, size):
    """[b, h, ..., d] rows [start, start + count * size) as [b * count, h, size, d]; a view when b == 1."""
    b, h, _, d = x.shape
    x = x[:, :, start : start + count * size]
    return x.unflatten(2, (count, size)).transpose(1, 2).reshape(b * count, h, size, d)
