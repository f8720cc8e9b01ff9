"""Triton kernels (optional dependency, imported lazily).

    from ropeshift.kernels import triton_available, unsupported_reason, table_attention, causal_attention
    from ropeshift.kernels import static_decode_attention      # decode over a static cache's whole buffer
    from ropeshift.kernels.key_cache import far_keys          # its K1 cache (torch; one Triton launch on CUDA)

`triton_available()` probes once whether the kernels can run here (Triton importable and CUDA present, or
TRITON_INTERPRET=1 for CPU testing). `unsupported_reason(table, device, dtype)` says why the kernels cannot
serve a segment table on a device/dtype (None when they can), device first. Importing this package never
imports triton; the first call of a kernel function does, and raises a clear error when it cannot run.
"""

import functools
import importlib.util
import os

__all__ = ["triton_available", "unsupported_reason", "table_attention", "causal_attention", "static_decode_attention"]


@functools.cache
def _has_triton():
    return importlib.util.find_spec("triton") is not None


def triton_available():
    """True when the Triton kernels can run: triton installed and (CUDA available or TRITON_INTERPRET=1)."""
    if not _has_triton():
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    import torch

    return torch.cuda.is_available()


_ATTENTION = None


def _impl():
    global _ATTENTION
    if _ATTENTION is None:  # a plain global, so torch.compile traces straight through once loaded
        if not _has_triton():
            raise RuntimeError("ropeshift.kernels needs triton (pip install 'ropeshift[triton]')")
        from . import attention

        _ATTENTION = attention
    return _ATTENTION


_DTYPES = ("torch.bfloat16", "torch.float16", "torch.float32")


def unsupported_reason(table, device, dtype=None, head_dim=None, *, allow_interpreter=False) -> str | None:
    """Why the kernels cannot serve this segment table on this device/dtype (None when they can).

    ``table``: a ``SegmentTable``, a compiled ``spec.KernelSpec``, a reason string from ``spec.compile_table``,
    or None (device/dtype question only). The device is checked first: CPU is refused unless
    ``allow_interpreter`` and TRITON_INTERPRET=1."""
    import torch

    dev = torch.device(device) if device is not None else None
    interp = allow_interpreter and os.environ.get("TRITON_INTERPRET", "0") == "1"
    if dev is None or (dev.type != "cuda" and not (interp and dev.type == "cpu")):
        return "the triton kernels need a CUDA device (the model is not on CUDA)"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "the triton kernels need a CUDA device (CUDA is not available)"
    if not _has_triton():
        return "Triton is not installed (pip install triton)"
    if dtype is not None and str(dtype) not in _DTYPES:
        return f"the triton kernels take bf16/fp16/fp32, not {dtype}"
    if head_dim is not None and head_dim not in (16, 32, 64, 128):
        return f"the triton kernels take head_dim 16/32/64/128, not {head_dim}"
    from .spec import KernelSpec, compile_table

    spec = table if table is None or isinstance(table, (KernelSpec, str)) else compile_table(table)
    return spec if isinstance(spec, str) else None


def table_attention(q, k, v, table, *, inv_freq, scale, key_start=None, pos_offset=None):
    """Segment-table attention; see `ropeshift.kernels.attention.table_attention`. Returns (out, lse)."""
    return _impl().table_attention(q, k, v, table, inv_freq=inv_freq, scale=scale, key_start=key_start,
                                   pos_offset=pos_offset)


def causal_attention(q, k, v, *, scale, key_start=None):
    """Plain causal attention through the same kernel; see `ropeshift.kernels.attention.causal_attention`."""
    return _impl().causal_attention(q, k, v, scale=scale, key_start=key_start)


def static_decode_attention(q, k, v, table, *, inv_freq, scale, key_end, key_start=None, pos_offset=None, k1=None,
                            write_k1_slot=False):
    """One-query attention over the first ``key_end[b]`` slots of a static cache's buffers (CUDA-graph decode),
    far keys from the K1 cache ``k1`` when given (``key_cache``; ``write_k1_slot``: the kernel writes the step's
    own slot of it); see `ropeshift.kernels.static_decode.static_decode_attention`. Returns (out, lse)."""
    _impl()
    from .static_decode import static_decode_attention as run

    return run(q, k, v, table, inv_freq=inv_freq, scale=scale, key_end=key_end, key_start=key_start,
               pos_offset=pos_offset, k1=k1, write_k1_slot=write_k1_slot)
