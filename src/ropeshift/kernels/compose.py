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

A **chunk** region (stride s, offset o, q, k) is the same for chunk indices: query i attends key j when
i // s - j // s == o (``beyond``: >= o), optionally only query slots a <= i mod s < b (DCA's rules). Within a
chunk (o = 0) is the diag above with T = s; the previous chunk (o = 1) by slots is one unmasked call over all
blocks; ``beyond`` is the band d >= o s plus strictly upper triangles of (chunk c, chunk c - o) rows/keys.
Chunks assume the sequence starts at a chunk boundary (positions 0..n-1).

Backends: see ``_compose_vendor`` ("auto": cuDNN, else flash, on CUDA; the fused CPU flash kernel on CPU).
The merge is ``ropeshift.attention.merge.merge_attention`` on CPU and its fused one-pass Triton twin
(``_compose_triton``) on CUDA.

Shapes: band q [b, h, n or n - lo, d], band k [b, h_kv, n or n - lo, d] (rows [lo, n) / keys [0, n - lo) when
shorter); chunk q [b, h, n, d], k [b, h_kv, n, d]; v [b, h_kv, n, d]. Returns out [b, h, n, d] (q's dtype)
and lse [b, h, n] fp32 (rows without a visible key: out 0, lse -inf).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..attention.merge import merge_attention
from ._compose_vendor import BACKENDS, blocks, explicit, native_gqa, resolve_backend, vendor

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
class Chunk:
    """Chunk region: i // stride - j // stride == offset (>= offset if beyond), query slots [slots) if given."""

    stride: int
    offset: int
    q: torch.Tensor
    k: torch.Tensor
    slots: tuple[int, int] | None = None
    beyond: bool = False


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


def _rows(x, length, lo):
    """A band tensor's rows covering [lo, lo + length): full-length tensors are sliced, short ones kept."""
    if x.shape[2] == length:
        return x
    if x.shape[2] < lo + length:
        raise ValueError(f"compose: band tensor has {x.shape[2]} rows, need {length} (or the full length)")
    return x[:, :, lo : lo + length]


def _call(backend, scale, q, k, v, row0, rows=None, period=None, valid=None, nb=1, flip=False, **kw):
    out, lse = vendor(backend, q, k, v, scale, **kw)
    rows = q.shape[2] if rows is None else rows
    period = rows if period is None else period
    return Piece(out, lse, row0, rows, period, period if valid is None else valid, nb, flip)


def _diag(backend, scale, q, k, v, t, row0):
    """Causal attention within blocks of t rows (the last one may be short): at most 2 calls."""
    m = q.shape[2]
    full, tail = divmod(m, t)
    pieces = []
    if full:
        pieces.append(_call(backend, scale, blocks(q, 0, full, t), blocks(k, 0, full, t), blocks(v, 0, full, t),
                            row0, full * t, t, nb=full, strided=q.shape[0] == 1))
    if tail:
        r0 = full * t
        pieces.append(_call(backend, scale, q[:, :, r0:], k[:, :, r0:], v[:, :, r0:], row0 + r0))
    return pieces


def _stair(backend, scale, q, k, v, t, o, row0):
    """Rows r of block c (blocks of t rows) vs keys s > r of block c - o, for every block c >= o: at most 3
    calls (full blocks; the tail as an unmasked rectangle s >= R plus a triangle of size R)."""
    m = q.shape[2]
    full, tail = divmod(m, t)
    pieces = []
    if full > o and t > 1:
        starts = [c * t for c in range(o, full)]
        pieces.append(_upper(backend, scale, q, k, v, starts, [s0 - o * t for s0 in starts], t, row0 + o * t))
    if tail and full >= o:
        r0, kp0 = full * t, (full - o) * t
        # tail rows r < R: keys s >= R of block c - o are seen by every tail row; 1 <= s < R is a triangle
        pieces.append(_call(backend, scale, q[:, :, r0:], k[:, :, kp0 + tail : kp0 + t],
                            v[:, :, kp0 + tail : kp0 + t], row0 + r0, causal=False))
        if tail > 1:
            pieces.append(_upper(backend, scale, q, k, v, [r0], [kp0], tail, row0 + r0))
    return pieces


def _upper(backend, scale, q, k, v, starts, key_starts, size, row0):
    """Strictly upper triangles: rows s0 + r (r < size) vs keys k0 + s, r < s < size, per (s0, k0).

    Rows r < size - 1 and keys t = s - 1 < size - 1 with t >= r, both reversed, are one causal call over
    len(starts) blocks of size - 1 (index_select gathers them in reversed order: one copy of those rows)."""
    dev = q.device
    j = torch.arange(size - 1, device=dev)
    s0 = torch.tensor(starts, device=dev)[:, None]
    k0 = torch.tensor(key_starts, device=dev)[:, None]
    nb = len(starts)
    qp = blocks(q.index_select(2, (s0 + (size - 2 - j)).flatten()), 0, nb, size - 1)
    kp, vp = (blocks(x.index_select(2, (k0 + (size - 1 - j)).flatten()), 0, nb, size - 1) for x in (k, v))
    return _call(backend, scale, qp, kp, vp, row0, nb * size, size, size - 1, nb=nb, flip=True)


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
        return [_call(backend, scale, q, k, vs, lo)]
    return _diag(backend, scale, q, k, vs, t, lo) + _stair(backend, scale, q, k, vs, t, 1, lo)


def chunk_pieces(chunk: Chunk, v, scale, backend):
    """The vendor calls of one chunk region, as Pieces."""
    s, o, q, k = chunk.stride, chunk.offset, chunk.q, chunk.k
    n = v.shape[2]
    if s < 1 or o < 0:
        raise ValueError(f"compose: a chunk needs stride >= 1 and offset >= 0, got {s}, {o}")
    a, b = (0, s) if chunk.slots is None else (max(0, chunk.slots[0]), min(s, chunk.slots[1]))
    if a >= b:
        return []
    if chunk.beyond or o == 0:
        if (a, b) != (0, s):
            raise NotImplementedError("compose: query slots are supported for a single chunk offset >= 1 only")
        if o == 0:
            return band_pieces(Band(0, None, q, k), v, scale, backend) if chunk.beyond else \
                _diag(backend, scale, q, k, v, s, 0)
        return band_pieces(Band(o * s, None, q, k), v, scale, backend) + _stair(backend, scale, q, k, v, s, o, 0)
    full, tail = divmod(n, s)
    pieces = []
    if full > o:  # rows of slots [a, b) in blocks o..full-1 vs every key of block c - o: unmasked
        rows = q[:, :, o * s : full * s].unflatten(2, (full - o, s))[:, :, :, a:b]
        rows = rows.transpose(1, 2).reshape(q.shape[0] * (full - o), q.shape[1], b - a, q.shape[3])
        pieces.append(_call(backend, scale, rows, blocks(k, 0, full - o, s), blocks(v, 0, full - o, s),
                            o * s + a, (full - o - 1) * s + b - a, s, b - a, nb=full - o, causal=False,
                            strided=q.shape[0] == 1))
    if tail > a and full >= o:
        r0, kp0 = full * s, (full - o) * s
        pieces.append(_call(backend, scale, q[:, :, r0 + a : r0 + min(b, tail)], k[:, :, kp0 : kp0 + s],
                            v[:, :, kp0 : kp0 + s], r0 + a, causal=False))
    return pieces


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
        o, l = explicit(q[:, :, r0 : r0 + chunk], k[:, :, :end], v[:, :, :end], scale, mask)
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


def compose_attention(regions, v, *, scale, backend="auto", fused_merge=None):
    """Band/chunk-structured attention of contiguous positions: (out [b, h, n, d], lse [b, h, n] fp32).

    Args:
        regions: disjoint ``Band``s / ``Chunk``s covering the visible causal area (see the module docstring).
        v: [b, h_kv, n, d] values, shared by all regions.
        scale: the softmax scale (the method's logit_scale folded in).
        backend: one of ``BACKENDS``.
        fused_merge: force the Triton merge (True) or ``merge_attention`` (False); None: Triton on CUDA.
    """
    if not regions:
        raise ValueError("compose: need at least one band or chunk region")
    b, h_kv, n, d = v.shape
    h = regions[0].q.shape[1]
    if h % h_kv:
        raise ValueError(f"compose: query heads {h} not a multiple of key/value heads {h_kv}")
    backend = resolve_backend(backend, regions[0].q)
    if h != h_kv and not native_gqa(backend, regions[0].q):  # repeat each distinct K / V once, not per call
        expanded = {}

        def rep(x):
            if id(x) not in expanded:
                expanded[id(x)] = x.repeat_interleave(h // h_kv, 1)
            return expanded[id(x)]

        v = rep(v)
        regions = [replace(r, k=rep(r.k)) for r in regions]
    pieces = []
    for region in regions:
        fn = chunk_pieces if isinstance(region, Chunk) else band_pieces
        pieces += fn(region, v, scale, backend)
    return merge_pieces(pieces, (b, h, n, d), regions[0].q.dtype, fused=fused_merge)


__all__ = ["Band", "Chunk", "Piece", "compose_attention", "band_pieces", "chunk_pieces", "merge_pieces",
           "piece_rows", "resolve_backend", "BACKENDS"]
