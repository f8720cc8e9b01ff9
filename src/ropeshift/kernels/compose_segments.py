"""Regions for ``ropeshift.kernels.compose`` from a method's segments (until the segment table lands).

A segment with ``d_range`` becomes a Band; a region-only segment is described by the caller in ``regions``
({segment name: [("band", lo, hi, key_end) | ("chunk", stride, offset, slots, beyond), ...]}): LM-Infinite's
global keys are a band restricted to a key prefix, DCA's regions are chunk offsets with query slots. The
rotations always come from the segment itself (q_delta / k_delta), so the method stays the one definition.

Shapes: q [b, h, n, d], k [b, h_kv, n, d] post-RoPE at positions pos0 .. pos0 + n - 1.
"""
from __future__ import annotations

import torch

from ..rope import rotate
from .compose import Band, Chunk


def _rotate(x, delta, inv_freq, fused):
    if isinstance(delta, int) and delta == 0:
        return x
    if fused:
        from ._compose_triton import fused_rotate

        return fused_rotate(x, delta, inv_freq)
    return rotate(x, delta, inv_freq)


def _rotated(seg, q, k, lo, m, pos0, inv_freq, fused):
    """(q rows [lo, n), keys [0, m)) rotated by the segment's deltas; a constant q delta goes to the keys."""
    n = q.shape[2]
    qpos = torch.arange(pos0 + lo, pos0 + n, device=q.device)[None, None, :]
    kpos = torch.arange(pos0, pos0 + m, device=k.device)[None, None, :]
    qs, ks = q[:, :, lo:], k[:, :, :m]
    kd = seg.k_delta(kpos) if seg.k_delta is not None else None
    if isinstance(seg.q_delta, int):
        kd = -seg.q_delta if kd is None else kd - seg.q_delta
    elif seg.q_delta is not None:
        qs = _rotate(qs, seg.q_delta(qpos), inv_freq, fused)
    if kd is not None:
        ks = _rotate(ks, kd, inv_freq, fused)
    return qs, ks


def segment_regions(method, q, k, inv_freq, *, pos0=0, regions=None, fused_rotate=None):
    """Bands / Chunks of a method's segments, rotated from post-RoPE q / k by each segment's own deltas.

    Args:
        method: a PositionMethod; every segment must be a d-band (``Segment.d_range``) or named in ``regions``.
        q: [b, h, n, d], k: [b, h_kv, n, d] post-RoPE at positions pos0 + i.
        regions: {segment name: [("band", lo, hi, key_end) | ("chunk", stride, offset, slots, beyond)]} for
            region-only segments (see the module docstring).
        fused_rotate: re-rotate with the one-pass Triton kernel (None: on CUDA) instead of ``rope.rotate``.
    Only the rows/keys a band reads are rotated (q rows [lo, n), keys [0, n - lo)). A constant query delta
    is applied to the keys instead (R(a) q . k = q . R(-a) k): K has h / h_kv times fewer heads.
    """
    n = q.shape[2]
    regions = regions or {}
    fused = q.is_cuda if fused_rotate is None else fused_rotate
    inv_freq = inv_freq.to(q.device)
    out = []
    for seg in method.segments():
        if seg.d_range is not None:
            specs = [("band", *seg.d_range, None)]
        elif seg.name in regions:
            specs = regions[seg.name]
        else:
            raise ValueError(f"compose: segment {seg.name!r} of {method.name!r} is not a distance band "
                             "(describe it in regions=)")
        rotated = None
        for spec in specs:
            if spec[0] == "chunk":
                if pos0:
                    raise ValueError(f"compose: chunk regions need the sequence to start at position 0, got {pos0}")
                if rotated is None:
                    rotated = _rotated(seg, q, k, 0, n, pos0, inv_freq, fused)
                out.append(Chunk(spec[1], spec[2], *rotated, slots=spec[3], beyond=spec[4]))
                continue
            if spec[0] != "band":
                raise ValueError(f"compose: a region spec is ('band', ...) or ('chunk', ...), got {spec[0]!r}")
            _, lo, hi, key_end = spec
            if lo >= n or (hi is not None and hi <= lo) or key_end == 0:
                continue
            m = n - lo if key_end is None else min(n - lo, key_end)
            out.append(Band(lo, hi, *_rotated(seg, q, k, lo, m, pos0, inv_freq, fused), key_end))
    return out


def cost_flops(n, h, d, bands_lohi):
    """Useful attention FLOPs of bands [(lo, hi)] over n rows (4 * pairs * d * h), for benchmarks."""
    pairs = 0
    for lo, hi in bands_lohi:
        m = max(n - lo, 0)
        t = m if hi is None else min(hi - lo, m)
        pairs += t * (t + 1) // 2 + (m - t) * t
    return 4 * pairs * d * h if pairs else 0.0


def unsupported_reason(method, q, k, *, qpos, kpos, kvalid, regions=None):
    """Why ``compose_attention`` cannot serve this attention call (None when it can), for the dispatcher.

    Needs: a fresh prefill (lq == lk), every row's positions contiguous and equal for queries and keys, all keys
    valid (no padding), head dims the vendor kernels take, and every segment a d-band or described in
    ``regions``. Costs one host sync (the position check), like the tiled path's band fast path.
    """
    lq, lk = q.shape[2], k.shape[2]
    if lq != lk:
        return f"compose serves a fresh prefill only (lq == lk), got lq={lq}, lk={lk}"
    if q.device.type == "cuda" and (q.shape[-1] > 256 or q.shape[-1] % 8):
        return f"head_dim {q.shape[-1]} is not served by the CUDA vendor kernels (a multiple of 8, <= 256)"
    names = [seg.name for seg in method.segments() if seg.d_range is None and seg.name not in (regions or {})]
    if names:
        return f"segments {names} of {method.name!r} are not distance bands and have no region description"
    p0 = qpos[:, :1]
    ar = torch.arange(lq, device=qpos.device)[None, :] + p0
    if not bool(((qpos == ar) & (kpos == ar) & kvalid).all()):
        return "compose needs contiguous positions shared by queries and keys and no padding"
    if any(spec[0] == "chunk" for specs in (regions or {}).values() for spec in specs) and bool((p0 != 0).any()):
        return "chunk regions need the sequence to start at position 0"
    return None


__all__ = ["segment_regions", "unsupported_reason", "cost_flops"]
