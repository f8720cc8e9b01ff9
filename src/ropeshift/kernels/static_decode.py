"""Decode attention over a static KV cache's whole buffer: the entry CUDA-graph decode uses.

A static cache hands the attention its full preallocated buffer, ``lk`` slots of which only the first
``key_end[b]`` are written. Cutting the buffer to the written length makes every step's shapes differ (and
needs the length on the host); this entry keeps ``lk`` fixed and passes the written length as a device tensor,
so one captured step replays for every later one::

    key slot j ->   0 1 2 3 4 5 6 7 8 9        key_start = 2, key_end = 7, lk = 10
    row b           . . k k k k q _ _ _        (. padding, k cached, q the query's own key, _ unwritten)

The query sits at key index ``key_end - 1``; keys in [key_start, key_end) are visible (and the table's rule
applies); keys from ``key_end`` on are never read, whatever they hold. Shapes and returns as
``attention.table_attention`` with lq == 1. Eager only (no torch.library op): graph capture records eager
launches; under torch.compile use ``table_attention`` on the cut key view.
"""

import torch

from ._decode import launch_decode
from .attention import _check, _prepare


def static_decode_attention(q, k, v, table, *, inv_freq, scale, key_end, key_start=None, pos_offset=None, k1=None,
                            write_k1_slot=False):
    """One-query segment-table attention over the first ``key_end[b]`` slots of k/v.

    q [b, h, 1, d]; k, v [b, h_kv, lk, d] (a static cache's buffers); ``table``: a ``SegmentTable`` or a
    compiled ``KernelSpec``; key_end [b] int32/int64 (1 <= key_end <= lk; not checked on the host: no sync);
    key_start [b] or None: first valid key (left padding); pos_offset [b] or None: the position of key index 0
    (default -key_start). k1 [b, h_kv, lk, d] or None: the K1 cache of k (``key_cache``; k's dtype and strides,
    slots below key_end written with the same pos_offset), read for the far keys of a table with a far key
    map (others ignore it). write_k1_slot (with k1): the kernel also writes k1's slot key_end - 1, the step's
    new key, rotated as ``key_cache.far_keys`` does (the spec must allow it: ``key_cache.kernel_writes_slot``;
    slots below it must be written already). Returns out [b, h, 1, d] (q.dtype) and lse [b, h, 1] fp32; no
    visible key: 0, -inf.
    """
    _check(q, k, v, key_start, pos_offset)
    b = q.shape[0]
    if q.shape[2] != 1:
        raise ValueError(f"static_decode_attention takes one query per row, got lq={q.shape[2]}")
    if key_end.shape != (b,) or key_end.device != q.device or key_end.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"key_end must be an int32/int64 tensor of shape [{b}] on {q.device}")
    spec, inv, pos_offset = _prepare(q, k, table, inv_freq, pos_offset)
    out = torch.empty_like(q)
    lse = torch.empty((b, q.shape[1], 1), device=q.device, dtype=torch.float32)
    launch_decode(q, k, v, inv, key_start, pos_offset, out, lse, spec=spec, scale=float(scale), key_end=key_end,
                  k1=k1, write_k1=write_k1_slot)
    return out, lse
