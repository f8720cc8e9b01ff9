"""The K1 cache: every cached key re-rotated once to the far region's key map, so that decode reads far keys
as plainly as near ones (``_decode``, ``HAS_K1``).

A region-1 logit is <R(dq) q, R(kmap(p) - p) k> with dq = qmap(qpos) - qpos (``spec.py``: one query map and one
key map per region). The second factor depends on the key alone, so it is computed once per key, when the key
is written, instead of in registers on every decode step::

    slot n ->   0 1 2 3 4 5 6 7            K  [b, h_kv, lk, d]  keys as cached (position p = n + pos_offset)
    K           k k k k k k k _            K1 [b, h_kv, lk, d]  K1[n] = R((kmap(p) - p) theta) K[n]
    K1          f f f f f f f _            (f: the far image of the same key; _ unwritten, never read)

Rotations as everywhere in ropeshift (``rope.rotate``): HF rotate_half over the first 2 r2 dims (dims beyond
untouched), angles in fp32 from ``inv_freq`` (fp64 for fp64 keys), the result in k's dtype; the delta
kmap(p) - p itself is exact (int64, or fp64 for a fractional a: leaky ReRoPE). No host sync: the per-row slot
write of a decode step is graph-capturable, and the decode kernel itself makes it where
``kernel_writes_slot`` allows (``_decode``'s WRITE_K1). On CUDA the other writes are one launch of the prefill
prologue kernel (``_write_kernel``: triton imported then, lazily); elsewhere torch ops.

Memory: one more K buffer per layer ([b, h_kv, lk, d] in k's dtype) while it lives (static decode only).
Shape legend: b batch, h_kv key/value heads, lk key slots, d head dim, r2 = len(inv_freq).
"""
from __future__ import annotations

import torch

from ..rope import rotate
from .spec import MAP_IDENTITY, KernelSpec, compile_table

BLOCK = 8192  # slots rotated per step of a whole-buffer fill (bounds the fp32 temporaries)


def _spec(table) -> KernelSpec:
    spec = table if isinstance(table, KernelSpec) else compile_table(table)
    if isinstance(spec, str):
        raise ValueError(spec)
    return spec


def needs_far_keys(table) -> bool:
    """True when the table's region 1 has a key map that is not the identity (ReRoPE, leaky ReRoPE, Self-Extend,
    DCA, LM-Infinite): the tables a K1 cache serves. ``table``: a ``SegmentTable`` or a ``KernelSpec``."""
    spec = _spec(table)
    return spec.has_r1 and spec.k_map[0] != MAP_IDENTITY


def kernel_writes_slot(spec: KernelSpec, dtype) -> bool:
    """Whether the decode kernel may write a static decode step's new K1 slot itself (``_decode``'s ``WRITE_K1``)
    instead of a separate launch: the query's own key is never far to it (region 0 holds d = 0: lo1, hi0 >= 1,
    so F <= pos), and the kernel's fp32 angles are the write's precision (not fp64 keys, rotated in fp64 here)."""
    return spec.has_r1 and spec.lo1 >= 1 and spec.hi0 >= 1 and dtype != torch.float64


def far_delta(pos: torch.Tensor, k_map: tuple) -> torch.Tensor:
    """kmap(pos) - pos = (a - 1) pos + c floor(pos / G) + b of integer positions (any shape): int64 when a and b
    are integers, else fp64. ``k_map``: a spec's (kind, a, c, G, b)."""
    _, a, c, g, b = k_map
    pos = pos.long()
    grouped = c * torch.div(pos, g, rounding_mode="floor") if c else 0
    if float(a).is_integer() and float(b).is_integer():
        return (int(a) - 1) * pos + grouped + int(b)
    return (a - 1.0) * pos.double() + grouped + b


def _offset(k, pos_offset, key_start) -> torch.Tensor:
    """[b] int64: the position of key slot 0 of each row (pos_offset, else -key_start, else 0)."""
    if pos_offset is not None:
        return pos_offset.to(device=k.device, dtype=torch.long)
    if key_start is not None:
        return -key_start.to(device=k.device, dtype=torch.long)
    return torch.zeros(k.shape[0], device=k.device, dtype=torch.long)


def far_keys(k, table, inv_freq, *, pos_offset=None, key_start=None, slots=None) -> torch.Tensor:
    """K1 rows of keys k [b, h_kv, lk, d] (post-RoPE, slot n at position n + pos_offset[b]).

    ``table``: a ``SegmentTable`` or a ``KernelSpec`` with a far key map (``needs_far_keys``); inv_freq [r2];
    pos_offset [b] or None (default -key_start, or 0). slots None: every slot, returns [b, h_kv, lk, d];
    slots [b] int tensor: one slot per row, returns [b, h_kv, 1, d]. Result in k's dtype."""
    spec = _spec(table)
    poff = _offset(k, pos_offset, key_start)
    b, h_kv, lk, d = k.shape
    if slots is None:
        n = torch.arange(lk, device=k.device)[None, :].expand(b, lk)
        rows = k
    else:
        n = slots.to(device=k.device, dtype=torch.long)[:, None]  # [b, 1]
        rows = k.gather(2, n[:, None, :, None].expand(b, h_kv, 1, d))
    delta = far_delta(n + poff[:, None], spec.k_map)  # [b, l]
    return rotate(rows, delta[:, None, :], inv_freq)


def write_far_keys(k1, k, table, inv_freq, *, pos_offset=None, key_start=None, start=0, stop=None,
                   slots=None) -> None:
    """Fill K1 in place from k (both [b, h_kv, lk, d]): slots [start, stop) of every row (host ints; stop None:
    lk), rotated BLOCK slots at a time, or with ``slots`` [b] (a device tensor: one slot per row, e.g. a decode
    step's key_end - 1) that slot of each row, without a host sync. Other arguments as ``far_keys``."""
    b, h_kv, lk, d = k.shape
    spec = _spec(table)
    stop = lk if stop is None else stop
    if k.is_cuda and k.dtype != torch.float64 and k1.stride() == k.stride():
        _write_kernel(k1, k, spec, inv_freq, pos_offset, key_start, start, stop, slots)
        return
    if slots is not None:
        idx = slots.to(device=k.device, dtype=torch.long)[:, None, None, None].expand(b, h_kv, 1, d)
        k1.scatter_(2, idx, far_keys(k, table, inv_freq, pos_offset=pos_offset, key_start=key_start, slots=slots))
        return
    poff = _offset(k, pos_offset, key_start)
    for s0 in range(start, stop, BLOCK):
        s1 = min(stop, s0 + BLOCK)
        n = torch.arange(s0, s1, device=k.device)[None, :] + poff[:, None]  # [b, l] positions
        k1[:, :, s0:s1] = rotate(k[:, :, s0:s1], far_delta(n, spec.k_map)[:, None, :], inv_freq)


def _write_kernel(k1, k, spec, inv_freq, pos_offset, key_start, start, stop, slots) -> None:
    """``write_far_keys`` on CUDA: one launch of the prologue kernel (``_prologue._rotate_keys_kernel``,
    fp32 angles as the decode kernel's own re-rotation), over slots [start, stop) or one slot per row (``slots``),
    instead of ~20 small torch kernels per decode step and layer."""
    import triton

    from ._prologue import _rotate_keys_kernel

    b, h_kv, lk, d = k.shape
    _, a, c, g, shift = spec.k_map
    inv = inv_freq.to(device=k.device, dtype=torch.float32).contiguous()
    if pos_offset is not None and pos_offset.dtype == torch.int32 and pos_offset.device == k.device:
        poff = pos_offset  # as the dispatch passes it: no cast kernels in a captured decode step
    else:
        poff = _offset(k, pos_offset, key_start).to(torch.int32)
    common = dict(HEAD_DIM=d, HAS_KS=False, HAS_POFF=True, HALVES=2 * inv.numel() == d,
                  num_warps=4 if slots is None else 1)
    args = (inv, k, poff, *k.stride(), h_kv, lk, inv.numel(), float(a), int(c), int(g), float(shift))
    if slots is not None:
        _rotate_keys_kernel[(1, b * h_kv)](k, k1, *args, BLOCK=16, SLOTS=slots.to(torch.int32),
                                           HAS_SLOTS=True, **common)
        return
    if stop <= start:
        return
    # the kernel covers slots [0, n) from its first program: shift both buffers' views to start at ``start``
    view = (slice(None), slice(None), slice(start, stop))
    sub_k, sub_k1 = k[view], k1[view]
    sub_poff = poff + start
    _rotate_keys_kernel[(triton.cdiv(stop - start, 64), b * h_kv)](
        sub_k, sub_k1, inv, k, sub_poff, *sub_k.stride(), h_kv, stop - start, inv.numel(), float(a), int(c), int(g),
        float(shift), BLOCK=64, **common)


__all__ = ["far_delta", "far_keys", "kernel_writes_slot", "needs_far_keys", "write_far_keys"]
