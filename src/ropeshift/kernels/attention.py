"""Public Triton STRING / causal attention: checks, the torch.library op, and the cos/sin table.

Layering: `_prefill._string_prefill_kernel` / `_decode._string_decode_split_kernel` (+ combine) → host
launchers `launch_prefill` / `launch_decode` → torch.library op `ropeshift::string_attention_fwd`
(custom_op + register_fake, opaque to torch.compile) → `string_attention` / `causal_attention`.

STRING position rule (An et al. 2024), for query index p and key index j (d = p - j >= 0)::

    rel(d) = d            if d <  S    near: scores from q
    rel(d) = d - S + W    if d >= S    far:  scores from q rotated by delta = -(S - W)

    key j ->  0 1 2 3 4 5 6 7 8          (lk = 9, S = 3, W = 1; F = far, N = near, . = masked)
    p = 8     F F F F F F N N N
    p = 5     F F F N N N . . .
    p = 2     N N N . . . . . .

Importing this module imports triton; `ropeshift.kernels` imports it lazily.
"""

import os

import torch

from ._decode import launch_decode
from ._prefill import launch_prefill

_SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
_SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check(q, k, v, key_start):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"expected q [b, h, lq, d], k/v [b, h_kv, lk, d]; got {tuple(q.shape)}, {tuple(k.shape)}")
    b, h, lq, d = q.shape
    if k.shape != v.shape or k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k/v shapes {tuple(k.shape)}, {tuple(v.shape)} do not match q {tuple(q.shape)}")
    if h % k.shape[1] != 0:
        raise ValueError(f"query heads {h} not a multiple of key/value heads {k.shape[1]}")
    if lq > k.shape[2] or lq == 0:
        raise ValueError(f"need 1 <= lq <= lk (bottom-right causal alignment); got lq={lq}, lk={k.shape[2]}")
    if d not in _SUPPORTED_HEAD_DIMS:
        raise NotImplementedError(
            f"head_dim {d} is not supported by the Triton kernels (supported: {_SUPPORTED_HEAD_DIMS}); "
            "use impl='torch'")
    if q.dtype not in _SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q/k/v must share one dtype of {_SUPPORTED_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.is_cuda and not _interpreting():
        raise RuntimeError("ropeshift Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for CPU testing)")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on one device")
    if key_start is not None and (key_start.shape != (b,) or key_start.device != q.device
                                  or key_start.dtype not in (torch.int32, torch.int64)):
        raise ValueError(f"key_start must be an int32/int64 tensor of shape [{b}] on {q.device}")
    for t in (q, k, v):
        if t.stride(-1) != 1:
            raise ValueError("q, k, v need a contiguous last dimension")


@torch.library.custom_op("ropeshift::string_attention_fwd", mutates_args=())
def _string_attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos_sin: torch.Tensor, key_start: torch.Tensor | None,
    shift: int, scale: float, is_string: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, lq, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty((b, h, lq), device=q.device, dtype=torch.float32)
    launch = launch_decode if lq == 1 else launch_prefill
    launch(q, k, v, cos_sin, key_start, out, lse, shift=shift, scale=scale, is_string=is_string)
    return out, lse


@_string_attention_fwd.register_fake
def _(q, k, v, cos_sin, key_start, shift, scale, is_string):
    b, h, lq, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, h, lq), dtype=torch.float32)


_CS_CACHE = {}


def _cos_sin(inv_freq, delta, device):
    """[2, r2] fp32 table of cos/sin(delta * inv_freq), the angle computed in fp32 (HF convention).

    Cached per (tensor, delta) so decode steps launch only the two attention kernels; under torch.compile the
    table is traced instead.
    """
    if torch.compiler.is_compiling():
        ang = inv_freq.to(device=device, dtype=torch.float32) * delta
        return torch.stack([ang.cos(), ang.sin()])
    if inv_freq.device.type == "cpu":  # key on the values: a CPU table is often re-copied per call
        ident = inv_freq.detach().to(torch.float32).numpy().tobytes()
    else:  # no host sync: key on the storage and its version counter
        try:
            version = inv_freq._version
        except RuntimeError:  # inference tensors keep no version counter (and cannot change in place)
            version = -1
        ident = (inv_freq.data_ptr(), version, inv_freq.numel(), inv_freq.dtype)
    key = (ident, delta, device)
    cs = _CS_CACHE.get(key)
    if cs is None:
        if len(_CS_CACHE) > 256:
            _CS_CACHE.clear()
        ang = inv_freq.to(device=device, dtype=torch.float32) * delta
        cs = _CS_CACHE[key] = torch.stack([ang.cos(), ang.sin()]).contiguous()
    return cs


def string_attention(q, k, v, *, shift, window, inv_freq, scale, key_start=None):
    """STRING attention forward over post-RoPE q/k (HF layout), one softmax, one pass over K/V.

    q [b, h, lq, d]; k, v [b, h_kv, lk, d] (GQA: h = g * h_kv, K/V not repeated); bf16/fp16/fp32 on CUDA
    (CPU only under TRITON_INTERPRET=1). Query i sits at key index lk - lq + i (bottom-right causal alignment);
    key j is visible iff key_start[b] <= j <= lk - lq + i. Far keys (d >= shift) are scored with q rotated by
    -(shift - window) over the first 2 * len(inv_freq) dims (rotate_half convention); near keys with q.
    shift >= lk (or shift == window) is plain causal attention. lq == 1 runs the split-KV decode kernels.

    key_start [b] int32/int64 or None: left-padding count of each row. Pass int32 on the decode path under
    CUDA graphs so no cast kernel is added.

    Returns out [b, h, lq, d] (q.dtype) and lse [b, h, lq] fp32 (natural log of the scaled logits);
    rows with no visible key give out 0 and lse -inf.
    """
    _check(q, k, v, key_start)
    shift, window = int(shift), int(window)
    if shift < 0 or window < 0:
        raise ValueError(f"shift and window must be >= 0; got {shift}, {window}")
    delta = window - shift
    is_string = shift < k.shape[2] and delta != 0
    cos_sin = _cos_sin(inv_freq, delta, q.device) if is_string else q.new_empty((2, 0), dtype=torch.float32)
    if is_string and 2 * cos_sin.shape[-1] > q.shape[-1]:
        raise ValueError(f"rotary dim {2 * cos_sin.shape[-1]} exceeds head_dim {q.shape[-1]}")
    return _string_attention_fwd(q, k, v, cos_sin, key_start, shift if is_string else 0, float(scale), is_string)


def causal_attention(q, k, v, *, scale, key_start=None):
    """Plain causal attention through the same kernels (STRING off). Same shapes and returns as string_attention."""
    _check(q, k, v, key_start)
    cos_sin = q.new_empty((2, 0), dtype=torch.float32)
    return _string_attention_fwd(q, k, v, cos_sin, key_start, 0, float(scale), False)
