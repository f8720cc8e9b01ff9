"""Which CUDA route serves a prefill call under impl="auto": the fused table kernel or the composed vendor kernels.

Two routes consume the same segment table (``ropeshift.methods.table``):

    fused     ``table_attention``: one Triton kernel, every call shape (prefill, decode, padding, Lq != Lk)
    compose   ``compose.compose_attention`` on ``compose_segments.segment_regions``: cuDNN/flash calls per
              region, merged by log-sum-exp; a fresh prefill only (Lq == Lk, no mask, contiguous positions)

The choice is a measured table, not a guess: ``COMPOSE_FROM[(form, head_dim, fused)]`` is the shortest sequence
length at which compose beat the fused kernel in ``benchmarks/bench_attention.py`` (bf16; the rows are in
benchmarks/RESULTS.md). ``fused`` is the kernel ``table_attention`` would run: "hopper" (the Gluon kernel, sm_90,
where it serves the table) or "triton" (the portable one). ``form`` is what the table's rules need from the
vendor kernels, not a method name:

    band     every region a distance band (rule "all")
    lambda   some region restricted to a key prefix (rule "lambda")
    chunk    some region under a chunk rule ("chunk_near" / "chunk_far")

A key not in the table, fp32, or a shape compose cannot serve takes the fused route.
"""
from __future__ import annotations

import torch

# (form, head_dim, fused kernel) -> the smallest Lq = Lk at which compose is faster (measured, see the docstring)
COMPOSE_FROM = {
    # against the portable Triton kernel (H100, 2026-11-25)
    ("band", 128, "triton"): 32768,
    ("band", 64, "triton"): 32768,
    ("lambda", 128, "triton"): 16384,
    ("lambda", 64, "triton"): 8192,
    ("chunk", 128, "triton"): 16384,
    ("chunk", 64, "triton"): 32768,
    # against the Hopper kernel (H200, 2026-12-03): it beat compose for every band and chunk table at 32k and 128k
    # (D = 128; benchmarks/RESULTS.md), so those forms have no entry (never compose); "lambda" (LM-Infinite) is not
    # a table it serves: the "triton" rows apply
}
_HALF = (torch.bfloat16, torch.float16)


def table_form(table) -> str:
    rules = {r.rule for r in table.regions}
    if rules & {"chunk_near", "chunk_far"}:
        return "chunk"
    return "lambda" if "lambda" in rules else "band"


def fused_kernel(q, k, spec, inv_freq) -> str:
    """The kernel ``table_attention`` runs for a fresh prefill of this compiled table: "hopper" or "triton"."""
    from .attention import hopper_reason

    return "hopper" if hopper_reason(q, k, None, spec, inv_freq) is None else "triton"


def prefers_compose(table, head_dim: int, n: int, dtype, fused: str = "triton") -> bool:
    """True when the measured route table says compose is faster for this call than the ``fused`` kernel."""
    start = COMPOSE_FROM.get((table_form(table), head_dim, fused))
    return dtype in _HALF and start is not None and n >= start


def composed(q, k, v, method, inv_freq, *, scale, qpos, table):
    """(out, lse) through compose for a fresh prefill without a mask, or None when compose cannot serve it.

    q [b, h, n, d], k / v [b, h_kv, n, d] post-RoPE; qpos [b, n] (all rows contiguous, from the interface).
    Tables that read absolute positions cost one host sync (the first position of the rows); band tables none.
    """
    from .compose import compose_attention
    from .compose_segments import segment_regions, start_position, table_reason

    if table_reason(table) is not None:
        return None
    pos0 = start_position(table, qpos)
    if isinstance(pos0, str):
        return None  # the fused kernel serves it
    regions = segment_regions(method, q, k, inv_freq, pos0=pos0)
    return compose_attention(regions, v, scale=scale * method.logit_scale)


__all__ = ["COMPOSE_FROM", "composed", "fused_kernel", "prefers_compose", "table_form"]
