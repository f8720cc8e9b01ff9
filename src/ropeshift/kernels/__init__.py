"""Triton kernels (optional dependency, imported lazily).

    from ropeshift.kernels import triton_available, string_attention, causal_attention

`triton_available()` probes once whether the kernels can run here (Triton importable and CUDA present, or
TRITON_INTERPRET=1 for CPU testing). Importing this package never imports triton; the first call of a
kernel function does, and raises a clear error when it cannot run.
"""

import functools
import importlib.util
import os

__all__ = ["triton_available", "string_attention", "causal_attention"]


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


def string_attention(q, k, v, *, shift, window, inv_freq, scale, key_start=None):
    """STRING attention; see `ropeshift.kernels.attention.string_attention`. Returns (out, lse)."""
    return _impl().string_attention(q, k, v, shift=shift, window=window, inv_freq=inv_freq, scale=scale,
                                    key_start=key_start)


def causal_attention(q, k, v, *, scale, key_start=None):
    """Plain causal attention through the same kernel; see `ropeshift.kernels.attention.causal_attention`."""
    return _impl().causal_attention(q, k, v, scale=scale, key_start=key_start)
