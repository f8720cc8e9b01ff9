"""The per-layer K1 cache of static decode: where it lives, when it is built, and how it follows the key buffer.

Re-rotating methods (a far key map that is not the identity: ReRoPE, leaky ReRoPE, Self-Extend, DCA,
LM-Infinite) read their far keys pre-rotated from a second key buffer K1 during static decode
(``kernels.key_cache``; the decode kernel's ``HAS_K1`` path), so no decode step re-rotates keys::

    forward                           K1 of the layer (state.far_keys[layer] = (buffer signature, K1))
    first static decode step          allocated like the static key buffer, every slot rotated
                                      (``key_cache.write_far_keys``)
    later static decode steps         slot key_end - 1 of each row (device index, no host sync: capturable),
                                      by the decode kernel itself where ``key_cache.kernel_writes_slot``
    any other forward into the buffer its new slots [lk - lq, lk) of the cut view (a prefill into a live K1)
    static_decode_mode exits          dropped (state.far_keys cleared): nothing survives into another generation

The buffer signature is (data_ptr, shape, strides, dtype, device) of the static cache's whole key buffer; a new
buffer (another cache, or row compaction's selected rows) rebuilds K1 at its first decode step, which is eager
(warm-up steps precede every capture; under a capture a missing K1 falls back to the kernel's own re-rotation).
Memory: one more K buffer per layer while static decode runs (at 32k, B = 1, 8 layers the peak stays the
prefill's: 9.88 GiB with and without it, benchmarks/RESULTS.md; with a cache that fills the device it is +50 %
of the keys and values, and a K1 that cannot be allocated is done without).

Switch: ROPESHIFT_K1_CACHE, on unless "0". On by default since the decode kernel writes each step's slot itself
(no launch of its own): at 32k, B = 1, 8 layers, end to end, K1 on against off in the same run gave rerope
338.5 / 331.3, self_extend 338.0 / 302.0, dca 357.9 / 326.1 tok/s, and the decode kernel 1.000-1.015x plain at
64k-128k, B = 1 and 8 (H200, 2026-12-03 fifth session).
"""
from __future__ import annotations

import os

import torch

K1_ENV = "ROPESHIFT_K1_CACHE"


def k1_wanted() -> bool:
    """Whether static decode keeps a K1 cache (the ``K1_ENV`` switch, read per call; on unless "0")."""
    if torch.compiler.is_compiling():
        return False
    return os.environ.get(K1_ENV, "1") != "0"


def _signature(k) -> tuple:
    return k.data_ptr(), tuple(k.shape), k.stride(), k.dtype, k.device


def _capturing(k) -> bool:
    return k.is_cuda and torch.cuda.is_current_stream_capturing()


def decode_k1(store: dict, layer, k, spec, inv_freq, *, key_start, pos_offset, key_end, slot_by_kernel=False):
    """The layer's K1 [b, h_kv, lk, d] for a static decode step over the whole key buffer k, with the step's new
    key (slot key_end - 1 of each row) written, unless ``slot_by_kernel``: then the decode kernel writes that
    slot (``write_k1_slot``) and only a new K1 is filled here; None when it cannot be had here (a new buffer
    under a CUDA graph capture, a non-contiguous k, or no memory left for it: the decode kernel then re-rotates
    the far keys in registers, as without K1). key_start, pos_offset [b] or None as the kernels take them."""
    from ..kernels.key_cache import write_far_keys

    entry = store.get(layer)
    if entry is not None and entry[0] == _signature(k):
        k1 = entry[1]
        if not slot_by_kernel:
            write_far_keys(k1, k, spec, inv_freq, pos_offset=pos_offset, key_start=key_start, slots=key_end - 1)
        return k1
    store.pop(layer, None)
    if _capturing(k) or not k.is_contiguous():  # the kernel reads K1 with k's strides: a static cache's buffer
        return None
    try:
        k1 = torch.empty_like(k)
    except torch.OutOfMemoryError:  # a cache near the device's memory: K1 would be +50 % of it; go without
        return None
    write_far_keys(k1, k, spec, inv_freq, pos_offset=pos_offset, key_start=key_start)
    store[layer] = (_signature(k), k1)
    return k1


def follow_new_keys(store: dict, layer, k, spec, inv_freq, qpos) -> None:
    """After a forward other than a static decode step wrote its lq = qpos.shape[1] keys into the last slots of
    k [b, h_kv, lk, d] (a cut view of a buffer with a live K1): write their K1 slots [lk - lq, lk). Positions:
    qpos [b, lq], the last query at key index lk - 1. A k that is not a view of the layer's buffer: nothing."""
    from ..kernels.key_cache import write_far_keys

    entry = store.get(layer)
    if entry is None:
        return
    (ptr, shape, stride, dtype, device), k1 = entry
    lk, lq = k.shape[2], qpos.shape[1]
    if (k.data_ptr(), k.stride(), k.dtype, k.device) != (ptr, stride, dtype, device) or \
            (k.shape[0], k.shape[1], k.shape[3]) != (shape[0], shape[1], shape[3]) or lk > shape[2]:
        return
    pos_offset = qpos[:, -1] - (lk - 1)
    write_far_keys(k1[:, :, :lk], k, spec, inv_freq, pos_offset=pos_offset, start=lk - lq, stop=lk)


__all__ = ["K1_ENV", "decode_k1", "follow_new_keys", "k1_wanted"]
