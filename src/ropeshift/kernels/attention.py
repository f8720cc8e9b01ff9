"""Public Triton segment-table / causal attention: checks, the torch.library op.

Layering: `_prefill._table_prefill_kernel` / `_decode._table_decode_split_kernel` (+ combine) → host
launchers `launch_prefill` / `launch_decode` → torch.library op `ropeshift::table_attention_fwd`
(custom_op + register_fake, opaque to torch.compile) → `table_attention` / `causal_attention`.

The kernels take a method's segment table compiled to scalars (``ropeshift.kernels.spec``), never a method:
region 0 = band [0, hi0) from q and k as cached, region 1 = band [lo1, inf) from q and k re-rotated by the
region's maps. STRING (S = 3, W = 1), lk = 9 (F = region 1, N = region 0, . = masked)::

    key j ->  0 1 2 3 4 5 6 7 8
    p = 8     F F F F F F N N N
    p = 5     F F F N N N . . .
    p = 2     N N N . . . . . .

Importing this module imports triton; `ropeshift.kernels` imports it lazily.
"""

import functools
import os

import torch

from ._decode import launch_decode
from ._prefill import launch_prefill
from .spec import PLAIN, KernelSpec, compile_table

_SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)
_SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check(q, k, v, key_start, pos_offset=None):
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
    for name, t in (("key_start", key_start), ("pos_offset", pos_offset)):
        if t is not None and (t.shape != (b,) or t.device != q.device or t.dtype not in (torch.int32, torch.int64)):
            raise ValueError(f"{name} must be an int32/int64 tensor of shape [{b}] on {q.device}")
    for t in (q, k, v):
        if t.stride(-1) != 1:
            raise ValueError("q, k, v need a contiguous last dimension")


# the Hopper (Gluon, warp-specialised) prefill kernel serves the calls it can on sm_90 (``_prefill_hopper_ws``);
# ROPESHIFT_HOPPER=0 (or setting this False) sends them to the portable Triton kernel (side-by-side benchmarks)
HOPPER = os.environ.get("ROPESHIFT_HOPPER", "1") != "0"


@functools.lru_cache(maxsize=16)
def _hopper_device(device) -> bool:
    """True on an sm_90 device whose Triton ships Gluon's Hopper module (checked once per device)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) != (9, 0):
        return False
    try:
        from . import _prefill_hopper_ws  # noqa: F401 - imports triton.experimental.gluon
    except ImportError:
        return False
    return True


def hopper_reason(q, k, key_start, spec: KernelSpec, inv_freq=None) -> str | None:
    """Why the Hopper prefill kernel does not serve this call (None when it does); ``inv_freq`` [r2]: the
    rotary frequencies (None: full rotary)."""
    if not HOPPER:
        return "disabled (ROPESHIFT_HOPPER=0)"
    if _interpreting() or not _hopper_device(q.device):
        return "needs an sm_90 GPU (H100 / H200) and Triton with Gluon"
    from ._prefill_hopper_ws import unserved_reason

    return unserved_reason(spec, q, k, key_start, q.shape[-1] // 2 if inv_freq is None else inv_freq.numel())


def _outputs(q, k, key_start, spec: KernelSpec, inv_freq):
    """(out, lse, hopper) of one call, unfilled, each allocated once: lse [b, h, lq] fp32; out [b, h, lq, d] with q's
    strides, except on the Hopper prefill route (hopper True) when q is in neither layout its TMA views take
    (``_prefill_hopper_ws._rows``): contiguous then (it reads q or q1 from out first). The op's fake takes its
    shapes and strides from here too."""
    b, h, lq, _ = q.shape
    hopper = lq > 1 and hopper_reason(q, k, key_start, spec, inv_freq) is None
    if hopper:
        from ._prefill_hopper_ws import empty_out

        out = empty_out(q)
    else:
        out = torch.empty_like(q)
    return out, q.new_empty((b, h, lq), dtype=torch.float32), hopper


def _forward(q, k, v, inv_freq, key_start, pos_offset, spec: KernelSpec, scale: float):
    out, lse, hopper = _outputs(q, k, key_start, spec, inv_freq)
    if hopper:
        from ._prefill_hopper_ws import launch_hopper_ws_prefill

        launch_hopper_ws_prefill(q, k, v, inv_freq, out, lse, spec=spec, scale=scale, pos_offset=pos_offset)
    elif q.shape[2] == 1:
        launch_decode(q, k, v, inv_freq, key_start, pos_offset, out, lse, spec=spec, scale=scale)
    else:
        launch_prefill(q, k, v, inv_freq, key_start, pos_offset, out, lse, spec=spec, scale=scale)
    return out, lse


@torch.library.custom_op("ropeshift::table_attention_fwd", mutates_args=())
def _table_attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, key_start: torch.Tensor | None,
    pos_offset: torch.Tensor | None, spec: list[float], scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, inv_freq, key_start, pos_offset, KernelSpec.from_list(spec), scale)


def _call(q, k, v, inv_freq, key_start, pos_offset, spec: KernelSpec, scale: float):
    """The op under torch.compile or autograd (opaque to the compiler; it refuses a backward pass); in eager
    inference the launcher directly, skipping the op's dispatch (part of the ~250 us of host time per attention
    call profiled on an 8k decode, benchmarks/RESULTS.md; not timed alone)."""
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad
                                                                        or v.requires_grad)):
        return _table_attention_fwd(q, k, v, inv_freq, key_start, pos_offset, spec.to_list(), scale)
    return _forward(q, k, v, inv_freq, key_start, pos_offset, spec, scale)


@_table_attention_fwd.register_fake
def _fake(q, k, v, inv_freq, key_start, pos_offset, spec, scale):
    """The op's outputs as ``_forward`` allocates them (``_outputs``)."""
    out, lse, _ = _outputs(q, k, key_start, KernelSpec.from_list(spec), inv_freq)
    return out, lse


def table_attention(q, k, v, table, *, inv_freq, scale, key_start=None, pos_offset=None):
    """Segment-table attention forward over post-RoPE q/k (HF layout), one softmax, one pass over K/V.

    q [b, h, lq, d]; k, v [b, h_kv, lk, d] (GQA: h = g * h_kv, K/V not repeated); bf16/fp16/fp32 on CUDA
    (CPU only under TRITON_INTERPRET=1). ``table``: a ``SegmentTable`` (``method.table()``) or a compiled
    ``KernelSpec``. Query i sits at key index lk - lq + i (bottom-right causal alignment); key j is visible iff
    key_start[b] <= j <= lk - lq + i and the table's rule allows it. Region re-rotations act on the first
    2 * len(inv_freq) dims (rotate_half convention), angles in fp32. lq == 1 runs the split-KV decode kernels.

    key_start [b] int or None: left-padding count of each row. pos_offset [b] int or None: the position of key
    index 0 (default -key_start); only tables whose maps or rules use absolute positions read it.

    Returns out [b, h, lq, d] (q.dtype) and lse [b, h, lq] fp32 (natural log of the scaled logits);
    rows with no visible key give out 0 and lse -inf.
    """
    _check(q, k, v, key_start, pos_offset)
    spec, inv, pos_offset = _prepare(q, k, table, inv_freq, pos_offset)
    return _call(q, k, v, inv, key_start, pos_offset, spec, float(scale))


def _prepare(q, k, table, inv_freq, pos_offset):
    """(spec reduced for k's length, inv_freq fp32 on q's device, pos_offset or None when the spec needs none)."""
    spec = table if isinstance(table, KernelSpec) else compile_table(table)
    if isinstance(spec, str):
        raise ValueError(spec)
    spec = spec.for_keys(k.shape[2])
    inv = inv_freq.to(device=q.device, dtype=torch.float32).contiguous()
    if 2 * inv.numel() > q.shape[-1]:
        raise ValueError(f"rotary dim {2 * inv.numel()} exceeds head_dim {q.shape[-1]}")
    return spec, inv, pos_offset if spec.positional else None


def causal_attention(q, k, v, *, scale, key_start=None):
    """Plain causal attention through the same kernels (one identity region). Same shapes and returns."""
    _check(q, k, v, key_start)
    inv = q.new_empty((0,), dtype=torch.float32)
    return _call(q, k, v, inv, key_start, None, PLAIN, float(scale))
