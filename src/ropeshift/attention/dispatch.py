"""Choose and call an implementation (``impl=``) for one attention call.

impl: "reference" (fp64 oracle), "torch" (tiled, CPU and GPU), "triton" (fused segment-table kernels, CUDA;
CPU only under TRITON_INTERPRET=1), or "auto" (triton when the call is on CUDA and the kernel package serves the
method's table, dtype and head dim; else torch). Under "auto", a fresh prefill without a mask (Lq == Lk) takes
the composed vendor route (``kernels.routes``: cuDNN calls per table region, merged by LSE) where the measured
route table says it is faster. The device is checked first, so "auto" on CPU never touches
the kernels. An explicit impl never falls back: it raises with the reason.

Kernel positions come without a host sync: key_start = lk - (valid keys) per row, and (for tables that use
absolute positions) pos_offset = qpos[:, -1] - (lk - 1), the position of key index 0. A prefill call whose mask
is not left padding, or whose query positions are not consecutive, is refused by a device-side assert
(``torch._assert_async``) rather than silently computed; decode steps extend an already checked mask.
"""
from __future__ import annotations

import functools

import torch

from .reference import reference_attention
from .tiled import tiled_attention

IMPLS = ("auto", "torch", "reference", "triton")


@functools.lru_cache(maxsize=128)
def _compiled(method):
    """The method's table compiled for the kernels (a KernelSpec), or the reason it cannot be (str)."""
    from ..kernels.spec import compile_table

    return compile_table(method.table())


def triton_unsupported_reason(method, device, dtype=None, head_dim=None, *, interpreter=False) -> str | None:
    """Why the triton kernels cannot serve this method on this device/dtype (None when they can); device first.

    ``interpreter=True`` accepts CPU tensors under TRITON_INTERPRET=1 (an explicit impl="triton" call, for
    tests); ``apply`` and impl="auto" never do. Answers for CUDA devices are cached (one per method, device,
    dtype and head dim: the attention of every layer asks)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        try:
            return _cuda_reason(method, dev, dtype, head_dim, interpreter)
        except TypeError:  # unhashable method object
            pass
    return _reason(method, dev, dtype, head_dim, interpreter)


@functools.lru_cache(maxsize=256)
def _cuda_reason(method, dev, dtype, head_dim, interpreter):
    return _reason(method, dev, dtype, head_dim, interpreter)


def _reason(method, dev, dtype, head_dim, interpreter):
    from .. import kernels

    if dev is None or dev.type != "cuda":
        reason = kernels.unsupported_reason(None, dev, allow_interpreter=interpreter)
        if reason is not None:
            return reason
    try:
        spec = _compiled(method)
    except TypeError:  # unhashable method object: compile uncached
        from ..kernels.spec import compile_table

        spec = compile_table(method.table())
    return kernels.unsupported_reason(spec, dev, dtype, head_dim, allow_interpreter=interpreter)


def is_left_padded(kvalid) -> bool:
    """True when every row's valid keys are contiguous at the end (left padding or none). One host sync."""
    return mask_layout(kvalid)[0]


def mask_layout(kvalid) -> tuple[bool, bool]:
    """(left_padded, unpadded) of a key mask kvalid [b, lk] in one host sync: every row's valid keys contiguous
    at the end (left padding or none), and every key valid (the mask says nothing a causal call does not)."""
    lk = kvalid.shape[1]
    start = lk - kvalid.sum(dim=1, keepdim=True)
    left = ((torch.arange(lk, device=kvalid.device)[None, :] >= start) == kvalid).all()
    left_padded, unpadded = torch.stack([left, kvalid.all()]).tolist()
    return bool(left_padded), bool(unpadded)


def _kernel_positions(qpos, kvalid, mask_given: bool, positional: bool, key_end=None):
    """(key_start [b] int32 or None, pos_offset [b] int32 or None), without a host sync.

    The keys of a row end at ``key_end`` [b] (static decode: a static cache's written slots) or at lk."""
    b, lk = kvalid.shape
    lq = qpos.shape[1]
    key_start = pos_offset = None
    end = lk if key_end is None else key_end
    if mask_given:
        key_start = (end - kvalid.sum(dim=1)).to(torch.int32)
        if lq > 1:
            expected = torch.arange(lk, device=kvalid.device)[None, :] >= key_start[:, None]
            torch._assert_async((expected == kvalid).all(),
                                "ropeshift: impl='triton' needs left padding (valid keys contiguous at the end)")
    if positional:
        pos_offset = (qpos[:, -1] - (end - 1)).to(torch.int32)
        if lq > 1:  # valid queries only: left-padding slots (the first keys' slots) carry no position
            steps = torch.arange(lq - 1, -1, -1, device=qpos.device)
            consecutive = (qpos == qpos[:, -1:] - steps) | ~kvalid[:, lk - lq:]
            torch._assert_async(consecutive.all(),
                                "ropeshift: impl='triton' needs consecutive query positions in each row")
    return key_start, pos_offset


def _composed(q, k, v, method, inv_freq, scale, qpos):
    """A fresh prefill on the composed-vendor route when the measured route table prefers it, else None."""
    from ..kernels import routes

    table = method.table()
    spec = _compiled(method)
    fused = routes.fused_kernel(q, k, spec.for_keys(k.shape[2]), inv_freq) if not isinstance(spec, str) else "triton"
    if not routes.prefers_compose(table, q.shape[-1], q.shape[2], q.dtype, fused):
        return None
    return routes.composed(q, k, v, method, inv_freq, scale=scale, qpos=qpos, table=table)


def _far_keys(k1_store, k, spec, inv_freq, key_start, pos_offset, key_end):
    """(the layer's K1 cache or None, whether the decode kernel writes this step's slot of it): K1 from
    ``far_cache.decode_k1``; None without a store, or for a table whose far keys are read as cached."""
    from ..kernels.key_cache import kernel_writes_slot, needs_far_keys
    from .far_cache import decode_k1

    reduced = spec.for_keys(k.shape[2])
    if k1_store is None or not needs_far_keys(reduced):
        return None, False
    store, layer = k1_store
    by_kernel = kernel_writes_slot(reduced, k.dtype)
    k1 = decode_k1(store, layer, k, spec, inv_freq, key_start=key_start, pos_offset=pos_offset, key_end=key_end,
                   slot_by_kernel=by_kernel)
    return k1, by_kernel and k1 is not None


def attend(impl, q, k, v, method, inv_freq, *, scale, qpos, kpos, kvalid, mask_given: bool,
           left_padded: bool | None = None, memo=None, key_end=None, k1_store=None):
    """Returns (out [b, h, lq, d] in q's dtype, lse [b, h, lq] fp32).

    ``left_padded``: whether the mask is left padding (the kernels' layout), as the interface measured it at
    layer 0 of the prefill; None: measured here when the kernels would run (one host sync), except under
    torch.compile, where a device-side assert guards prefill calls instead. ``memo``: a dict living for one
    forward (the interface's per-forward cache; None: no reuse), so its later layers reuse the kernel positions
    instead of recomputing them (launches per layer). ``key_end`` [b] int32 or None: static decode (one query,
    k/v a static cache's whole buffer, keys written below key_end; ``_static_decode``). ``k1_store``: (store dict,
    layer) of the runtime state's K1 caches (static decode only; ``far_cache``), or None: no K1."""
    if impl == "reference":
        out, lse = reference_attention(q, k, v, method, inv_freq, scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid)
        return out.to(q.dtype), lse.float()
    use_kernels = impl == "triton" or (impl == "auto" and q.is_cuda)
    if use_kernels:
        reason = triton_unsupported_reason(method, q.device, q.dtype, q.shape[-1], interpreter=impl == "triton")
        if reason is None and mask_given:
            if left_padded is None and not torch.compiler.is_compiling():
                left_padded = is_left_padded(kvalid)
            if left_padded is False:
                reason = ("the triton kernels need left padding (valid keys contiguous at the end of each row); "
                          "this mask is right padded or has holes")
        if reason is None:
            from .. import kernels

            if impl == "auto" and not mask_given and key_end is None and q.shape[2] == k.shape[2] and q.is_cuda:
                composed = _composed(q, k, v, method, inv_freq, scale, qpos)
                if composed is not None:
                    return composed
            spec = _compiled(method)
            positional = spec.for_keys(k.shape[2]).positional
            memo_key = ("kernel_positions", mask_given, positional, key_end is not None)
            if memo is not None and memo_key in memo:
                key_start, pos_offset = memo[memo_key]
            else:
                key_start, pos_offset = _kernel_positions(qpos, kvalid, mask_given, positional, key_end)
                if memo is not None:
                    memo[memo_key] = (key_start, pos_offset)
            if key_end is not None:  # static decode (``interface`` module docstring): the whole buffer, no sync
                k1, by_kernel = _far_keys(k1_store, k, spec, inv_freq, key_start, pos_offset, key_end)
                return kernels.static_decode_attention(q, k, v, spec, inv_freq=inv_freq,
                                                       scale=scale * method.logit_scale, key_end=key_end,
                                                       key_start=key_start, pos_offset=pos_offset, k1=k1,
                                                       write_k1_slot=by_kernel)
            return kernels.table_attention(q, k, v, spec, inv_freq=inv_freq, scale=scale * method.logit_scale,
                                           key_start=key_start, pos_offset=pos_offset)
        if impl == "triton":
            raise RuntimeError(f"impl='triton' cannot run this call: {reason}")
    return tiled_attention(q, k, v, method, inv_freq, scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid)

