"""The ``torch`` implementation: tiled attention over a method's segment table, merged by log-sum-exp.

Shapes: q [b, h, lq, d], k/v [b, h_kv, lk, d] (GQA folded, never repeated), qpos [b, lq], kpos/kvalid [b, lk].

The table (``method.table()``, ``ropeshift.methods.table``) lists regions ("segments" below) with their query and
key re-rotations. For each query tile and key tile, every region is classified from the tile's position bounds
(``Region.classify``):
  * empty   -- no (m, n) pair of the tile lies in the segment: skipped;
  * full    -- every pair does and all keys are valid: no mask;
  * partial -- an explicit [b, tq, tk] mask is built for this tile only, except for the causal diagonal
               (query and key tile at the same positions, segment covering d = 0..tile): fused ``causal=True``.
Consecutive full key tiles of one segment are fused into a single block call. For STRING a query tile sees
one far run (query rotated by -(S - W)), at most two mixed tiles (both rotations, complementary masks),
one near run and the causal diagonal::

    keys ->   0 ............................................ m
    query m:  [ far run, q_shift ][mixed][ near run, q ][diag]

Band fast path: when every row has contiguous positions and all keys are valid (the usual prefill), a segment
lo <= d < hi restricted to a query tile of T rows m0..m0+T-1 is exactly, in key positions::

    [m0-hi+1, m0-hi+1+T)  lower strip: row i sees strip key j >= i  -> causal after flipping rows and keys
    [m0-hi+1+T, m0-lo)    full run: no mask
    [m0-lo, m0-lo+T)      upper strip: row i sees strip key j <= i  -> causal (top-left)

so no mask is ever materialised; strips clipped by the first key fall back to an explicit mask.

Few queries (decode, lq <= SMALL_Q): every segment's logits are computed against all keys with its own
rotations, selected per element by the segment regions, and one softmax is taken (``stacked_attention``):
one pass over K/V per segment instead of a handful of tiny block calls per layer.

Each block call is the fused ``block_attention`` returning (out, lse); the partial results of a query tile
merge once by log-sum-exp. Memory: O((lq + lk) * d) plus one tile's mask.
"""
from __future__ import annotations

import math

import torch

from ..rope import rotate
from .block import block_attention

_BIG = 2**62


def _tile_bounds(pos, valid, tile):
    """Per-tile (min, max) of valid positions over the batch, as python lists; empty tiles give (BIG, -BIG)."""
    b, n = pos.shape
    nt = math.ceil(n / tile)
    padn = nt * tile - n
    lo = torch.where(valid, pos, torch.full_like(pos, _BIG))
    hi = torch.where(valid, pos, torch.full_like(pos, -_BIG))
    if padn:
        lo = torch.nn.functional.pad(lo, (0, padn), value=_BIG)
        hi = torch.nn.functional.pad(hi, (0, padn), value=-_BIG)
        valid = torch.nn.functional.pad(valid, (0, padn), value=False)
    mins = lo.view(b, nt, tile).amin(dim=(0, 2))
    maxs = hi.view(b, nt, tile).amax(dim=(0, 2))
    full = valid.view(b, nt, tile).all(dim=2).all(dim=0)
    if padn:  # the last tile is "full" if all its real keys are valid
        last = valid[:, (nt - 1) * tile : n].all()
        full[-1] = last
    return mins.tolist(), maxs.tolist(), full.tolist()


def _classify(seg, qmin, qmax, kmin, kmax, keys_all_valid):
    kind = seg.classify(qmin, qmax, kmin, kmax)
    return "partial" if kind == "full" and not keys_all_valid else kind


def _merge_all(parts):
    """Merge a list of (out [b, h, l, d], lse [b, h, l]) over disjoint keys, once, in fp32."""
    if len(parts) == 1:
        return parts[0][0].float(), parts[0][1]
    lse = torch.stack([p[1] for p in parts])  # [n, b, h, l]
    total = torch.logsumexp(lse, dim=0)
    safe = torch.where(torch.isneginf(total), torch.zeros_like(total), total)
    out = None
    for o, l in parts:
        w = torch.exp(l - safe).unsqueeze(-1)
        out = o.float() * w if out is None else out + o.float() * w
    return out, total


class _Tile:
    """One query tile: runs pieces (key range + how to mask) of segments and collects their (out, lse)."""

    def __init__(self, q, k, v, segments, inv_freq, scale, qpos, kpos, kvalid, q0, q1):
        self.k, self.v, self.segments, self.inv, self.scale = k, v, segments, inv_freq, scale
        self.kpos, self.kvalid = kpos, kvalid
        self.q_t, self.qpos_t = q[:, :, q0:q1], qpos[:, q0:q1]
        self.b, self.h, self.tq, self.dim = self.q_t.shape
        self.g = self.h // k.shape[1]
        self.q_rot: dict[int, torch.Tensor] = {}
        self.parts: list = []

    def _q(self, si):
        if si not in self.q_rot:
            delta = self.segments[si].q_delta
            if callable(delta):
                delta = delta(self.qpos_t)[:, None, :]
            self.q_rot[si] = self.q_t if delta is None else rotate(self.q_t, delta, self.inv)
        return self.q_rot[si]

    def piece(self, si, k0, k1, kind):
        """kind: "full" (no mask), "causal" (row i sees key j <= i), "anticausal" (j >= i), "mask"."""
        if k1 <= k0:
            return
        b, h, tq, dim, g = self.b, self.h, self.tq, self.dim, self.g
        seg = self.segments[si]
        mask = None
        if kind == "mask":
            kp = self.kpos[:, None, k0:k1]
            d = self.qpos_t[:, :, None] - kp
            mask = seg.region(d, self.qpos_t[:, :, None], kp) & (d >= 0) & self.kvalid[:, None, k0:k1]
            if not bool(mask.any()):
                return
            if bool(mask.all()):
                mask, kind = None, "full"
        ks, vs = self.k[:, :, k0:k1], self.v[:, :, k0:k1]
        if seg.k_delta is not None:
            ks = rotate(ks, seg.k_delta(self.kpos[:, k0:k1])[:, None, :], self.inv)
        qs = self._q(si)
        if kind in ("causal", "anticausal"):  # keep query row order: expand this strip's K/V over the group
            ks, vs = ks.repeat_interleave(g, dim=1), vs.repeat_interleave(g, dim=1)
            if kind == "anticausal":
                qs, ks, vs = qs.flip(-2), ks.flip(-2), vs.flip(-2)
            o, l = block_attention(qs, ks, vs, None, self.scale, causal=True)
            if kind == "anticausal":
                o, l = o.flip(-2), l.flip(-1)
        else:  # fold the g query heads of each KV head into rows: [b, h_kv, g * tq, d]
            qs = qs.reshape(b, h // g, g * tq, dim)
            if mask is not None:
                mask = mask.unsqueeze(1).expand(b, g, tq, k1 - k0).reshape(b, 1, g * tq, k1 - k0)
            o, l = block_attention(qs, ks, vs, mask, self.scale)
            o, l = o.reshape(b, h, tq, dim), l.reshape(b, h, tq)
        self.parts.append((o, l))

    def band(self, qbase, kbase, lk) -> bool:
        """Contiguous positions: emit each segment as strips + run; False if a segment is not a wide band."""
        m0 = qbase
        tq = self.tq
        plan = []
        for si, seg in enumerate(self.segments):
            lo, hi = seg.d_range
            if hi is not None and hi - lo < tq + 1:
                return False
            pieces = [(m0 - lo, m0 - lo + tq, "causal")]
            if hi is None:
                pieces.append((kbase, m0 - lo, "full"))
            else:
                pieces += [(m0 - hi + 1, m0 - hi + 1 + tq, "anticausal"), (m0 - hi + 1 + tq, m0 - lo, "full")]
            for p0, p1, kind in pieces:
                c0, c1 = max(p0, kbase), min(p1, kbase + lk)
                if c1 <= c0:
                    continue
                if kind != "full" and (c0, c1) != (p0, p1):
                    kind = "mask"  # strip clipped by the first or last key
                plan.append((si, c0 - kbase, c1 - kbase, kind))
        for args in plan:
            self.piece(*args)
        return True

    def result(self):
        if not self.parts:
            return None
        return _merge_all(self.parts)


def _contiguous_bases(qpos, kpos, kvalid):
    """(qbase, kbase) when every row has positions qbase+i / kbase+j and all keys are valid, else None."""
    b, lq = qpos.shape
    lk = kpos.shape[1]
    if not bool(kvalid.all()):
        return None
    qb, kb = int(qpos[0, 0]), int(kpos[0, 0])
    ar_q = torch.arange(lq, device=qpos.device) + qb
    ar_k = torch.arange(lk, device=kpos.device) + kb
    if not (bool((qpos == ar_q).all()) and bool((kpos == ar_k).all())):
        return None
    return qb, kb


SMALL_Q = 16


def stacked_attention(q, k, v, method, inv_freq, *, scale, qpos, kpos, kvalid):
    """Few-query path: per-segment logits over all keys, selected by region, one fp32 softmax."""
    b, h, lq, dim = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    d = qpos[:, :, None] - kpos[:, None, :]  # [b, lq, lk]
    causal = (d >= 0) & kvalid[:, None, :]
    logits = torch.full((b, h, lq, lk), float("-inf"), dtype=torch.float32, device=q.device)
    for seg in method.table().regions:
        region = seg.region(d, qpos[:, :, None], kpos[:, None, :]) & causal
        if not bool(region.any()):
            continue
        delta = seg.q_delta(qpos)[:, None, :] if callable(seg.q_delta) else seg.q_delta
        qs = q if delta is None else rotate(q, delta, inv_freq)
        ks = k if seg.k_delta is None else rotate(k, seg.k_delta(kpos)[:, None, :], inv_freq)
        s = torch.matmul(qs.float().reshape(b, h_kv, g * lq, dim), ks.float().transpose(-1, -2))
        logits = torch.where(region[:, None], s.view(b, h, lq, lk) * scale, logits)
    lse = torch.logsumexp(logits, dim=-1)
    p = torch.nan_to_num(torch.exp(logits - lse.unsqueeze(-1)), nan=0.0)
    out = torch.matmul(p.view(b, h_kv, g * lq, lk), v.float()).view(b, h, lq, dim)
    return out.to(q.dtype), lse


def tiled_attention(q, k, v, method, inv_freq, *, scale, qpos, kpos, kvalid, q_tile=1024, k_tile=1024):
    """Returns out [b, h, lq, d] (q's dtype) and lse [b, h, lq] fp32."""
    b, h, lq, dim = q.shape
    lk = k.shape[2]
    scale = scale * method.logit_scale
    if lq <= SMALL_Q:
        return stacked_attention(q, k, v, method, inv_freq, scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid)
    segments = method.table().regions
    bases = _contiguous_bases(qpos, kpos, kvalid) if all(s.d_range for s in segments) else None
    qvalid = torch.ones_like(qpos, dtype=torch.bool)
    qmins, qmaxs, _ = _tile_bounds(qpos, qvalid, q_tile)
    kmins, kmaxs, kfull = _tile_bounds(kpos, kvalid, k_tile)
    out = torch.empty_like(q)
    lse_out = torch.empty(b, h, lq, dtype=torch.float32, device=q.device)

    for qi, q0 in enumerate(range(0, lq, q_tile)):
        q1 = min(q0 + q_tile, lq)
        tile = _Tile(q, k, v, segments, inv_freq, scale, qpos, kpos, kvalid, q0, q1)
        if bases is None or not tile.band(bases[0] + q0, bases[1], lk):
            for si, k0, k1, kind in _plan_generic(segments, qmins[qi], qmaxs[qi], kmins, kmaxs, kfull, lk, k_tile):
                tile.piece(si, k0, k1, kind)
        res = tile.result()
        if res is None:
            out[:, :, q0:q1] = 0
            lse_out[:, :, q0:q1] = float("-inf")
        else:
            out[:, :, q0:q1] = res[0].to(q.dtype)
            lse_out[:, :, q0:q1] = res[1]
    return out, lse_out


def _plan_generic(segments, qmin, qmax, kmins, kmaxs, kfull, lk, k_tile):
    """Runs (segment index, k0, k1, kind) for one query tile from per-key-tile position bounds."""
    runs: list[list] = []
    for kj, k0 in enumerate(range(0, lk, k_tile)):
        if kmins[kj] == _BIG:
            continue
        k1 = min(k0 + k_tile, lk)
        for si, seg in enumerate(segments):
            kind = _classify(seg, qmin, qmax, kmins[kj], kmaxs[kj], kfull[kj])
            if kind == "empty":
                continue
            last = runs[-1] if runs else None
            if kind == "full" and last is not None and last[0] == si and last[3] == "full" and last[2] == k0:
                last[2] = k1
            else:
                runs.append([si, k0, k1, "full" if kind == "full" else "mask"])
    return [tuple(r) for r in runs]
