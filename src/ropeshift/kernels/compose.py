"""Band-structured attention composed from vendor attention kernels, merged by log-sum-exp (issue 9, route b).

Contiguous prefill only: query i and key j are positions p0 + i and p0 + j of the same sequence (lq == lk == n,
no padding). A **band** (lo, hi, q, k) says: query i attends key j with the band's rotated query/key when
lo <= d = i - j < hi (hi None: unbounded), optionally only keys j < key_end. Bands of one call are disjoint and
share v; their union is the method's visible causal area. Every band costs a few vendor calls, each batched
over all its blocks; the partial (out, lse) pieces are merged once per row by log-sum-exp.

Shifting keys by lo turns any band into a band [0, T) (T = hi - lo) of the shifted queries q[lo:] against
k[:n - lo] (m = n - lo rows). Unbounded (or T >= m): one plain causal call. Else the m rows split into blocks
of T rows (C = ceil(m / T) blocks, C' = m // T full ones, a tail of R = m - C' T rows); row r of block c sees
keys [cT + r - T + 1, cT + r]::

    diag   keys cT .. cT + r of block c              causal (top-left)          one call over the C' full
                                                                                  blocks + one for the tail
    prev   keys s > r of block c - 1 (c >= 1)        strictly upper triangular   one call over blocks 1..C'-1

The strictly upper part is made causal exactly: drop query row T - 1 (it sees nothing there) and key s = 0
(no row sees it), leaving rows r in [0, T - 1) and keys t = s - 1 in [0, T - 1) with t >= r; reversing both
(r' = T - 2 - r, t' = T - 2 - t) gives t' <= r', the top-left causal mask of a (T - 1) x (T - 1) block. The
tail's prev part (rows r < R, keys s > r of block C' - 1) is an unmasked R x (T - R) call for the keys
s >= R plus the same strictly upper triangle of size R: no padded rows, no wasted work. So a band is at most
5 vendor calls (1 when T >= m) whatever its length. A band restricted to a small key prefix (LM-Infinite's
global keys) is computed explicitly: it is narrow.

Backends (``backend=``): "cudnn" (``aten._scaled_dot_product_cudnn_attention``), "flash"
(``aten._scaled_dot_product_flash_attention``), "efficient" (fp32 on CUDA), "cpu"
(``aten._scaled_dot_product_flash_attention_for_cpu``), "auto" (cudnn, then flash on CUDA by dtype; cpu on CPU).
Each CUDA backend is probed once per (dtype, head dim, GQA, layout) against an fp32 computation: native GQA
and strided block views are used only where the probe passes, else K/V are repeated or blocks copied.
The merge is ``ropeshift.attention.merge.merge_attention`` on CPU and its fused one-pass Triton twin
(``_compose_triton``) on CUDA.

Shapes: band q [b, h, n or n - lo, d], band k [b, h_kv, n or n - lo, d] (rows [lo, n) / keys [0, n - lo) when
shorter), v [b, h_kv, n, d]. Returns out [b, h, n, d] (q's dtype) and lse [b, h, n] fp32 (rows without a
visible key: out 0, lse -inf).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..attention.merge import merge_attention
from ..rope import rotate

BACKENDS = ("auto", "cudnn", "flash", "efficient", "cpu")
EXPLICIT_KEYS = 1024  # a band restricted to keys j < key_end <= this is computed explicitly


@dataclass(frozen=True)
class Band:
    """Distance band lo <= i - j < hi (hi None: unbounded) attended with the rotated q / k given."""

    lo: int
    hi: int | None
    q: torch.Tensor
    k: torch.Tensor
    key_end: int | None = None


@dataclass(frozen=True)
class Piece:
    """A partial (out, lse) of a vendor call, mapped to final rows.

    Final row i in [row0, row0 + rows): t = i - row0, block c = t // period, r = t % period; the row exists
    iff r < valid and reads out[bi * blocks + c, :, valid - 1 - r if flip else r] (out [b * blocks, h, L, d]).
    """

    out: torch.Tensor
    lse: torch.Tensor
    row0: int
    rows: int
    period: int
    valid: int
    blocks: int = 1
    flip: bool = False


def _check_backend(backend, device):
    if backend not in BACKENDS:
        raise ValueError(f"compose: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"compose: backend 'cpu' needs CPU tensors, got {device}")
    if backend in ("cudnn", "flash", "efficient") and device.type != "cuda":
        raise ValueError(f"compose: backend {backend!r} needs CUDA tensors, got {device}")


def _raw_call(backend, q, k, v, scale, causal=True):
    """One vendor call, causal (top-left) or unmasked: (out [B, h, L, d], lse [B, h, L] fp32)."""
    lq = q.shape[2]
    if lq == 0 or k.shape[2] == 0:  # the CPU kernel divides by zero on empty blocks
        raise ValueError(f"compose: empty vendor call (lq={lq}, lk={k.shape[2]})")
    if backend == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
    elif backend == "cudnn":
        res = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False,
                                                                 scale=scale)
        out, lse = res[0], res[1]
    elif backend == "flash":
        res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
        out, lse = res[0], res[1]
    else:  # efficient
        res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, causal,
                                                                     scale=scale)
        out, lse = res[0], res[1]
    if lse.dim() == 4:
        lse = lse[..., 0]
    return out, lse[..., :lq].float()


def _explicit(q, k, v, scale, mask):
    """fp32 attention with a bool mask [lq, lk] (True = attend), GQA folded: (out, lse [b, h, lq])."""
    b, h, lq, d = q.shape
    h_kv = k.shape[1]
    g = h // h_kv
    s = torch.matmul(q.float().reshape(b, h_kv, g * lq, d), k.float().transpose(-1, -2)) * scale
    s = s.view(b, h_kv, g, lq, -1).masked_fill(~mask, float("-inf")).view(b, h_kv, g * lq, -1)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1)).nan_to_num(0.0)
    out = torch.matmul(p, v.float()).view(b, h, lq, d)
    return out.to(q.dtype), lse.view(b, h, lq)


@functools.cache
def _probe(backend, dtype, d, grouped, strided):
    """True when the backend computes a tiny causal call (GQA if grouped, strided block views if strided) right."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    h, h_kv, n, blocks = 4, (2 if grouped else 4), 96, 3

    def rnd(heads):
        return torch.randn(1, heads, blocks * n, d, device="cuda", dtype=dtype, generator=gen)

    q, k, v = rnd(h), rnd(h_kv), rnd(h_kv)
    if strided:  # the zero-copy block view compose uses for b == 1
        qb, kb, vb = (_blocks(x, 0, blocks, n) for x in (q, k, v))
    else:
        qb, kb, vb = (x[:, :, :n] for x in (q, k, v))
    try:
        out, lse = _raw_call(backend, qb, kb, vb, d**-0.5)
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001 - any failure means "do not use this layout/backend"
        return False
    mask = torch.ones(n, n, dtype=torch.bool, device="cuda").tril()
    ref_o, ref_l = _explicit(qb.contiguous(), kb.contiguous(), vb.contiguous(), d**-0.5, mask)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    return bool((out.float() - ref_o.float()).abs().max() < tol and (lse - ref_l).abs().max() < tol)


def resolve_backend(backend, q):
    """The concrete backend for q's device and dtype ("auto" resolved)."""
    _check_backend(backend, q.device)
    if backend != "auto":
        return backend
    if q.device.type != "cuda":
        return "cpu"
    if q.dtype == torch.float32:
        return "efficient"
    d = q.shape[-1]
    return "cudnn" if _probe("cudnn", q.dtype, d, False, False) else "flash"


def _vendor(backend, q, k, v, scale, strided=False, causal=True):
    if backend != "cpu":
        d, g = q.shape[-1], q.shape[1] // k.shape[1]
        if strided and not _probe(backend, q.dtype, d, g > 1, True):
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        if g > 1 and not _probe(backend, q.dtype, d, True, False):
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    return _raw_call(backend, q, k, v, scale, causal)


def _blocks(x, start, count, size):
    """[b, h, ..., d] rows [start, start + count * size) as [b * count, h, size, d]; a view when b == 1."""
    b, h, _, d = x.shape
    x = x[:, :, start : start + count * size]
    return x.unflatten(2, (count, size)).transpose(1, 2).reshape(b * count, h, size, d)


def _rows(x, length, lo):
    """A band tensor's rows covering [lo, lo + length): full-length tensors are sliced, short ones kept."""
    if x.shape[2] == length:
        return x
    if x.shape[2] < lo + length:
        raise ValueError(f"compose: band tensor has {x.shape[2]} rows, need {length} (or the full length)")
    return x[:, :, lo : lo + length]


def band_pieces(band: Band, v, scale, backend):
    """The vendor calls of one band, as Pieces (see the module docstring for the block decomposition)."""
    n = v.shape[2]
    lo, hi = band.lo, band.hi
    if lo < 0 or (hi is not None and hi <= lo):
        raise ValueError(f"compose: a band needs 0 <= lo < hi, got lo={lo}, hi={hi}")
    m = n - lo
    if m <= 0:
        return []
    q = _rows(band.q, m, lo)
    if band.key_end is not None:
        return [_narrow_piece(band, q, band.k, v, scale)]
    k = band.k if band.k.shape[2] == m else band.k[:, :, :m]
    vs = v[:, :, :m]
    t = hi - lo if hi is not None else None
    if t is None or t >= m:
        out, lse = _vendor(backend, q, k, vs, scale)
        return [Piece(out, lse, lo, m, m, m)]
    full, tail = divmod(m, t)
    strided = q.shape[0] == 1
    pieces = []
    out, lse = _vendor(backend, _blocks(q, 0, full, t), _blocks(k, 0, full, t), _blocks(vs, 0, full, t), scale,
                       strided=strided)
    pieces.append(Piece(out, lse, lo, full * t, t, t, blocks=full))
    if full > 1 and t > 1:  # prev of full blocks 1..C'-1: keys 1..T-1 of blocks 0..C'-2
        pieces.append(_upper(backend, q, k, vs, scale, [c * t for c in range(1, full)], t, lo + t))
    if tail:
        r0, kp0 = full * t, (full - 1) * t
        out, lse = _vendor(backend, q[:, :, r0:], k[:, :, r0:], vs[:, :, r0:], scale)
        pieces.append(Piece(out, lse, lo + r0, tail, tail, tail))
        # tail rows r < R vs the previous block's keys s > r: keys s >= R are seen by every tail row (one
        # unmasked call on views), keys 1 <= s < R form the same strictly upper triangle, of size R
        out, lse = _vendor(backend, q[:, :, r0:], k[:, :, kp0 + tail : r0], vs[:, :, kp0 + tail : r0], scale,
                           causal=False)
        pieces.append(Piece(out, lse, lo + r0, tail, tail, tail))
        if tail > 1:
            pieces.append(_upper(backend, q, k, vs, scale, [r0], tail, lo + r0, key_starts=[kp0]))
    return pieces


def _upper(backend, q, k, vs, scale, starts, size, row0, key_starts=None):
    """Strictly upper triangles: rows s0 + r (r < size) vs keys k0 + s, r < s < size, for every s0 in starts
    and k0 in key_starts (default: s0 - size, the previous block).

    Rows r < size - 1 and keys t = s - 1 < size - 1 with t >= r, both reversed, are one causal call over
    len(starts) blocks of size - 1 (index_select gathers them in reversed order: one copy of those rows)."""
    dev = q.device
    j = torch.arange(size - 1, device=dev)
    s0 = torch.tensor(starts, device=dev)[:, None]
    k0 = s0 - size if key_starts is None else torch.tensor(key_starts, device=dev)[:, None]
    q_idx = (s0 + (size - 2 - j)).flatten()
    k_idx = (k0 + (size - 1 - j)).flatten()
    nb = len(starts)
    qp = _blocks(q.index_select(2, q_idx), 0, nb, size - 1)
    kp, vp = (_blocks(x.index_select(2, k_idx), 0, nb, size - 1) for x in (k, vs))
    out, lse = _vendor(backend, qp, kp, vp, scale)
    return Piece(out, lse, row0, nb * size, size, size - 1, blocks=nb, flip=True)


def _narrow_piece(band, q, k, v, scale):
    """Band restricted to keys j < key_end (small): explicit fp32 logits over those keys."""
    lo, hi, end = band.lo, band.hi, band.key_end
    if end > EXPLICIT_KEYS:
        raise NotImplementedError(f"compose: key_end must be <= {EXPLICIT_KEYS} (a narrow key prefix), got {end}")
    m = q.shape[2]
    end = min(end, m, k.shape[2])
    j = torch.arange(end, device=q.device)[None, :]
    chunk = max(1, 2**26 // max(1, q.shape[0] * q.shape[1] * end))  # rows per explicit call: <= 256 MiB logits
    outs, lses = [], []
    for r0 in range(0, m, chunk):
        i = torch.arange(r0, min(m, r0 + chunk), device=q.device)[:, None]  # row lo + i, key j: d = lo + i - j
        mask = (i >= j) if hi is None else (i >= j) & (i - j < hi - lo)
        o, l = _explicit(q[:, :, r0 : r0 + chunk], k[:, :, :end], v[:, :, :end], scale, mask)
        outs.append(o)
        lses.append(l)
    out, lse = (outs[0], lses[0]) if len(outs) == 1 else (torch.cat(outs, 2), torch.cat(lses, 2))
    return Piece(out, lse, lo, m, m, m)


def piece_rows(p: Piece, b):
    """(out [b, h, rows, d], lse [b, h, rows]) of a piece in final row order (missing rows: 0 / -inf)."""
    out, lse = p.out, p.lse
    h, d = out.shape[1], out.shape[3]
    out = out.view(b, p.blocks, h, out.shape[2], d)[:, :, :, : p.valid]
    lse = lse.reshape(b, p.blocks, h, lse.shape[2])[..., : p.valid]
    if p.flip:
        out, lse = out.flip(-2), lse.flip(-1)
    pad = p.period - p.valid
    out = torch.nn.functional.pad(out, (0, 0, 0, pad))
    lse = torch.nn.functional.pad(lse, (0, pad), value=float("-inf"))
    out = out.transpose(1, 2).reshape(b, h, p.blocks * p.period, d)[:, :, : p.rows]
    lse = lse.transpose(1, 2).reshape(b, h, p.blocks * p.period)[:, :, : p.rows]
    return out, lse


def merge_pieces(pieces, shape, dtype, *, fused=None):
    """Merge Pieces into (out [b, h, n, d] dtype, lse [b, h, n] fp32); fused (Triton) by default on CUDA."""
    b, h, n, d = shape
    device = pieces[0].out.device if pieces else torch.device("cpu")
    if fused is None:
        fused = device.type == "cuda"
    if fused and pieces:
        from ._compose_triton import fused_merge

        return fused_merge(pieces, shape, dtype)
    out = torch.zeros(b, h, n, d, dtype=torch.float32, device=device)
    lse = torch.full((b, h, n), float("-inf"), dtype=torch.float32, device=device)
    for p in pieces:
        po, pl = piece_rows(p, b)
        rs = slice(p.row0, p.row0 + p.rows)
        out[:, :, rs], lse[:, :, rs] = merge_attention(out[:, :, rs], lse[:, :, rs], po, pl)
    return out.to(dtype), lse


def compose_attention(bands, v, *, scale, backend="auto", fused_merge=None):
    """Band-structured attention of contiguous positions. Returns (out [b, h, n, d], lse [b, h, n] fp32).

    Args:
        bands: disjoint ``Band``s covering the visible causal area (see the module docstring).
        v: [b, h_kv, n, d] values, shared by all bands.
        scale: the softmax scale (the method's logit_scale folded in).
        backend: one of ``BACKENDS``.
        fused_merge: force the Triton merge (True) or ``merge_attention`` (False); None: Triton on CUDA.
    """
    if not bands:
        raise ValueError("compose: need at least one band")
    b, h_kv, n, d = v.shape
    h = bands[0].q.shape[1]
    if h % h_kv:
        raise ValueError(f"compose: query heads {h} not a multiple of key/value heads {h_kv}")
    backend = resolve_backend(backend, bands[0].q)
    pieces = [p for band in bands for p in band_pieces(band, v, scale, backend)]
    return merge_pieces(pieces, (b, h, n, d), bands[0].q.dtype, fused=fused_merge)


def _rotate(x, delta, inv_freq, fused):
    if isinstance(delta, int) and delta == 0:
        return x
    if fused:
        from ._compose_triton import fused_rotate

        return fused_rotate(x, delta, inv_freq)
    return rotate(x, delta, inv_freq)


def segment_bands(method, q, k, inv_freq, *, pos0=0, narrow=None, fused_rotate=None):
    """Bands of a method's segments, rotated from post-RoPE q / k by each segment's own deltas.

    Args:
        method: a PositionMethod; every segment must be a d-band (``Segment.d_range``) or named in ``narrow``.
        q: [b, h, n, d], k: [b, h_kv, n, d] post-RoPE at positions pos0 + i.
        narrow: {segment name: (lo, hi, key_end)} for region-only segments that are a band restricted to keys
            j < key_end (LM-Infinite's global keys), until the segment table describes them.
        fused_rotate: re-rotate with the one-pass Triton kernel (None: on CUDA) instead of ``rope.rotate``.
    Only the rows/keys a band reads are rotated (q rows [lo, n), keys [0, n - lo)). A constant query delta
    is applied to the keys instead (R(a) q . k = q . R(-a) k): K has h / h_kv times fewer heads.
    """
    n = q.shape[2]
    narrow = narrow or {}
    fused = q.is_cuda if fused_rotate is None else fused_rotate
    inv_freq = inv_freq.to(q.device)
    bands = []
    for seg in method.segments():
        key_end = None
        if seg.d_range is not None:
            lo, hi = seg.d_range
        elif seg.name in narrow:
            lo, hi, key_end = narrow[seg.name]
        else:
            raise ValueError(f"compose: segment {seg.name!r} of {method.name!r} is not a distance band "
                             "(pass it in narrow= as (lo, hi, key_end))")
        if lo >= n or (hi is not None and hi <= lo) or key_end == 0:
            continue
        m = n - lo if key_end is None else min(n - lo, key_end)
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
        bands.append(Band(lo, hi, qs, ks, key_end))
    return bands


def cost_flops(n, h, d, bands_lohi):
    """Useful attention FLOPs of bands [(lo, hi)] over n rows (4 * pairs * d * h), for benchmarks."""
    pairs = 0
    for lo, hi in bands_lohi:
        m = max(n - lo, 0)
        t = m if hi is None else min(hi - lo, m)
        pairs += t * (t + 1) // 2 + (m - t) * t
    return 4 * pairs * d * h if pairs else 0.0


__all__ = ["Band", "Piece", "compose_attention", "segment_bands", "band_pieces", "merge_pieces", "piece_rows",
           "resolve_backend", "BACKENDS", "cost_flops"]
