"""Choose and call an implementation (``impl=``) for one attention call.

impl: "reference" (fp64 oracle), "torch" (tiled, CPU and GPU), "triton" (fused STRING kernels, CUDA), or
"auto" (triton when the call is on CUDA, the kernels are importable and the method/mask are supported; else
torch). An explicit impl never falls back: it raises with the reason.
"""
from __future__ import annotations

import torch

from .reference import reference_attention
from .tiled import tiled_attention

IMPLS = ("auto", "torch", "reference", "triton")


def triton_unsupported_reason(method, device: torch.device | str | None) -> str | None:
    """Why the triton kernels cannot serve this method/device (None when they can)."""
    from ..remaps.string import StringMethod

    if not isinstance(method, StringMethod):
        return f"the triton kernels implement STRING only, not {method.name!r}"
    if method.logit_scale != 1.0:
        return None if _kernels_accept_logit_scale() else "the triton kernels do not take logit_scale"
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_available():
        return "impl='triton' needs a CUDA device (the model is not on CUDA)"
    try:
        from .. import kernels
    except ImportError as e:  # pragma: no cover - kernels package missing
        return f"ropeshift.kernels is unavailable ({e})"
    probe = getattr(kernels, "triton_available", None)
    if probe is not None and not probe():
        return "Triton is not installed or cannot run here (pip install triton)"
    if not hasattr(kernels, "string_attention"):
        return "ropeshift.kernels.string_attention is not available in this build"
    return None


def _kernels_accept_logit_scale() -> bool:
    return True  # folded into the softmax scale below


def _left_padding_start(kvalid, check: bool = True):
    """key_start [b] if every row is [pad..., valid...] (left padding), else None.

    ``check=False`` skips the layout check (a host sync): used for CUDA decode steps, whose mask extends the
    prefill's mask, already checked, with ones.
    """
    lk = kvalid.shape[1]
    start = lk - kvalid.sum(dim=1)
    if not check:
        return start.to(torch.int32)
    expected = torch.arange(lk, device=kvalid.device)[None, :] >= start[:, None]
    if not torch.equal(expected, kvalid):
        return None
    return start.to(torch.int32)


def attend(impl, q, k, v, method, inv_freq, *, scale, qpos, kpos, kvalid, mask_given: bool):
    """Returns (out [b, h, lq, d] in q's dtype, lse [b, h, lq] fp32)."""
    if impl == "reference":
        out, lse = reference_attention(q, k, v, method, inv_freq, scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid)
        return out.to(q.dtype), lse.float()
    if impl in ("triton", "auto"):
        reason = triton_unsupported_reason(method, q.device)
        key_start = None
        if reason is None and mask_given:
            key_start = _left_padding_start(kvalid, check=not (q.is_cuda and q.shape[2] == 1))
            if key_start is None:
                reason = "the triton kernels need left padding (valid keys contiguous at the end of each row)"
        if reason is None:
            from .. import kernels

            inv = inv_freq.to(q.device)
            return kernels.string_attention(
                q, k, v, shift=method.shift, window=method.window, inv_freq=inv,
                scale=scale * method.logit_scale, key_start=key_start,
            )
        if impl == "triton":
            raise RuntimeError(f"impl='triton' cannot run this call: {reason}")
    return tiled_attention(q, k, v, method, inv_freq, scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid)
