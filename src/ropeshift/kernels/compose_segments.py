"""Bands and chunks for ``ropeshift.kernels.compose``, compiled from a method's segment table.

Every region of the table (``ropeshift.methods.table``) becomes vendor-call regions by its rule alone, so the
method stays the one definition:

    rule "all"         band [lo, hi)
    rule "lambda"      band [lo, min(hi, n_local))  +  band [max(lo, n_local), hi) over keys n < n_global
    rule "chunk_near"  chunk offset 0  +  chunk offset 1 for query slots [0, w]        (the band is implied)
    rule "chunk_far"   chunk offset 1 for query slots (w, s)  +  chunk offsets >= 2     (the band is implied)

The rotations come from the region's own maps (``Region.q_delta`` / ``k_delta``).

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
    if isinstance(seg.q_delta, (int, float)):
        kd = -seg.q_delta if kd is None else kd - seg.q_delta
    elif seg.q_delta is not None:
        qs = _rotate(qs, seg.q_delta(qpos), inv_freq, fused)
    if kd is not None:
        ks = _rotate(ks, kd, inv_freq, fused)
    return qs, ks


def region_specs(region):
    """[("band", lo, hi, key_end) | ("chunk", stride, offset, slots, beyond)] for one table region, or a str
    saying why the region has no vendor-call form."""
    lo, hi = max(region.lo, 0), region.hi
    if region.rule == "all":
        return [("band", lo, hi, None)]
    if region.rule == "lambda":
        loc, g = region.r1, region.r2
        near_hi = loc if hi is None else min(hi, loc)
        specs = [("band", lo, near_hi, None)] if near_hi > lo else []
        far_lo = max(lo, loc)
        if g > 0 and (hi is None or far_lo < hi):
            specs.append(("band", far_lo, hi, g))
        return specs
    s, w = region.r1, region.r2
    if region.rule == "chunk_near":
        if lo > 0 or (hi is not None and hi < s + w + 1):
            return f"region {region.name!r}: a band [{region.lo}, {region.hi}) that cuts its chunk rule"
        return [("chunk", s, 0, None, False)] + ([("chunk", s, 1, (0, w + 1), False)] if w + 1 <= s else
                                                 [("chunk", s, 1, None, False)])
    if lo > min(w + 2, s + 1) or hi is not None:
        return f"region {region.name!r}: a band [{region.lo}, {region.hi}) that cuts its chunk rule"
    return ([("chunk", s, 1, (w + 1, s), False)] if w + 1 < s else []) + [("chunk", s, 2, None, True)]


def table_reason(table) -> str | None:
    """Why some region of ``table`` has no vendor-call form (see ``region_specs``), or None."""
    for region in table.regions:
        specs = region_specs(region)
        if isinstance(specs, str):
            return specs
    return None


def start_position(table, qpos: torch.Tensor) -> int | str:
    """The common first position pos0 at which the rows are composed, or why there is none.

    qpos [b, n]: each row's positions, contiguous (the interface checks that). A table that reads only distances
    is composed at 0 whatever the offsets, with no host sync; one that reads absolute positions costs one sync and
    needs every row to start at the same position, and its key-index rules (chunk, lambda's global keys) need 0.
    """
    if not table.position_dependent:
        return 0
    lo, hi = torch.stack((qpos[:, 0].min(), qpos[:, 0].max())).tolist()
    if lo != hi:
        return "rows starting at different positions"
    if lo != 0 and any(r.rule != "all" for r in table.regions):
        return "chunk and lambda rules need the sequence to start at position 0"
    return int(lo)


def segment_regions(method, q, k, inv_freq, *, pos0=0, fused_rotate=None):
    """Bands / Chunks of a method's segment table, rotated from post-RoPE q / k by each region's own maps.

    Args:
        method: a PositionMethod (its ``table()`` is compiled; see ``region_specs``).
        q: [b, h, n, d], k: [b, h_kv, n, d] post-RoPE at positions pos0 + i.
        fused_rotate: re-rotate with the one-pass Triton kernel (None: on CUDA) instead of ``rope.rotate``.
    Only the rows/keys a band reads are rotated (q rows [lo, n), keys [0, n - lo)). A constant query delta
    is applied to the keys instead (R(a) q . k = q . R(-a) k): K has h / h_kv times fewer heads.
    """
    n = q.shape[2]
    fused = q.is_cuda if fused_rotate is None else fused_rotate
    inv_freq = inv_freq.to(q.device)
    out = []
    for seg in method.table().regions:
        specs = region_specs(seg)
        if isinstance(specs, str):
            raise ValueError(f"compose: {specs} of {method.name!r}")
        rotated = None
        for spec in specs:
            if spec[0] == "chunk":
                if pos0:
                    raise ValueError(f"compose: chunk regions need the sequence to start at position 0, got {pos0}")
                if rotated is None:
                    rotated = _rotated(seg, q, k, 0, n, pos0, inv_freq, fused)
                out.append(Chunk(spec[1], spec[2], *rotated, slots=spec[3], beyond=spec[4]))
                continue
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


def unsupported_reason(method, q, k, *, qpos, kpos, kvalid):
    """Why ``compose_attention`` cannot serve this attention call (None when it can), for any positions.

    The dispatcher's route (``routes.composed``) skips the contiguity check, which the interface has made.

    Needs: a fresh prefill (lq == lk), every row's positions contiguous and equal for queries and keys, all keys
    valid (no padding), head dims the vendor kernels take, and every table region in a vendor-call form. Costs one host sync (the position check), like the tiled path's band fast path.
    """
    lq, lk = q.shape[2], k.shape[2]
    if lq != lk:
        return f"compose serves a fresh prefill only (lq == lk), got lq={lq}, lk={lk}"
    if q.device.type == "cuda" and (q.shape[-1] > 256 or q.shape[-1] % 8):
        return f"head_dim {q.shape[-1]} is not served by the CUDA vendor kernels (a multiple of 8, <= 256)"
    table = method.table()
    reason = table_reason(table)
    if reason is not None:
        return reason
    p0 = qpos[:, :1]
    ar = torch.arange(lq, device=qpos.device)[None, :] + p0
    if not bool(((qpos == ar) & (kpos == ar) & kvalid).all()):
        return "compose needs contiguous positions shared by queries and keys and no padding"
    start = start_position(table, qpos)
    return start if isinstance(start, str) else None


__all__ = ["segment_regions", "start_position", "table_reason", "unsupported_reason", "cost_flops"]
