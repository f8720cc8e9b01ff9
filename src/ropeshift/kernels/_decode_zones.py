"""The zone loop of the split-KV decode kernel (``_decode``): online softmax over one zone of key tiles, each
tile scored one of four ways (``MODE``), and the in-register key re-rotation the far zones of re-rotating
methods use without a K1 cache::

    MODE 0  q [R, d] . k^T            keys as cached (near tiles; every tile of KMAP 0: STRING, plain)
    MODE 1  q1 halves . k1 halves     far tiles: q rotated per tile, keys by the in-tile table (KMAP 1-3)
    MODE 2  MODE 1 and q . k          the edge tile, selected per key by ``far``
    MODE 3  q [R, d] . k^T            with a K1 cache: each key read once, from K1 (pre-rotated to the key map)
                                      where ``far``, else from K; one loop over every tile, as plain's

Every mode leaves q's rows ([0, g)) to the near keys and q1's rows ([R/2, R/2 + g), or [g, 2g) unmerged) to the
far ones (``key_r1 == is_r1``).
Shape legend as ``_decode``: R padded stacked rows, d head dim, HALF = d / 2, BLOCK_N keys per tile.
"""

import triton
import triton.language as tl

from ._prefill import _accumulate
from ._rotary import _cos_sin, _rotate_halves

@triton.jit
def _mm(a, b, DOT_PREC: tl.constexpr, WIDE: tl.constexpr):
    """a [r, w] . b [n, w]^T -> [r, n] fp32 (tl.dot needs w >= 16; narrower halves (d = 16) sum a product)."""
    if WIDE:
        r = tl.dot(a, tl.trans(b), input_precision=DOT_PREC)
    else:
        r = tl.sum(a.to(tl.float32)[:, None, :] * b.to(tl.float32)[None, :, :], 2)
    return r


@triton.jit
def _halves(rows, offs_h, R2, ok, stride_d, HALF: tl.constexpr, PARTIAL: tl.constexpr):
    """Rotary halves [n, HALF] of a row tile (rows: [n, 1] pointers, ok [n]): columns [0, r2) and [r2, 2 r2),
    zero past r2 (PARTIAL: r2 < d / 2; else the two contiguous halves of the row)."""
    if PARTIAL:
        m = ok[:, None] & (offs_h < R2)[None, :]
        lo = tl.load(rows + offs_h[None, :] * stride_d, mask=m, other=0.0)
        hi = tl.load(rows + (R2 + offs_h)[None, :] * stride_d, mask=m, other=0.0)
    else:
        lo = tl.load(rows + offs_h[None, :] * stride_d, mask=ok[:, None], other=0.0)
        hi = tl.load(rows + (HALF + offs_h)[None, :] * stride_d, mask=ok[:, None], other=0.0)
    return lo, hi


@triton.jit
def _rest(rows, offs_d, R2, ok, stride_d):
    """The non-rotary columns [2 r2, d) of a row tile as [n, d], zero elsewhere (partial rotary only)."""
    return tl.load(rows + offs_d[None, :] * stride_d, mask=ok[:, None] & (offs_d >= 2 * R2)[None, :], other=0.0)


@triton.jit
def _key_table(inv_h, offs_n, r0, KA, KC, KG):
    """cos, sin [BLOCK_N, HALF] fp32 of the in-tile key rotation D_j = (a - 1) j + c floor((r0 + j) / G)."""
    dj = (KA - 1.0) * offs_n.to(tl.float32) + (KC * ((r0 + offs_n) // KG)).to(tl.float32)
    return _cos_sin(dj[:, None] * inv_h[None, :])


@triton.jit
def _tile_delta(n0, poff, KA, KC, KG, KB):
    """r0 = p0 mod G (>= 0) and delta_t = map(p0) - p0 (fp32) of a tile's first key position p0 = n0 + poff."""
    p0 = n0 + poff
    r0 = p0 % KG
    r0 = tl.where(r0 < 0, r0 + KG, r0)
    return r0, (KA - 1.0) * p0.to(tl.float32) + (KC * ((p0 - r0) // KG)).to(tl.float32) + KB


@triton.jit
def _q_far(q_lo, q_hi, inv_h, dq, KC, is_r1, STEP: tl.constexpr):
    """Query halves (fp32 [R, HALF]) rotated by dq positions; STEP: rows [0, g) by dq - c instead."""
    c0, s0 = _cos_sin(dq * inv_h)
    c = c0[None, :]
    s = s0[None, :]
    if STEP:
        c1, s1 = _cos_sin((dq - KC) * inv_h)
        c = tl.where(is_r1[:, None], c, c1[None, :])
        s = tl.where(is_r1[:, None], s, s1[None, :])
    return _rotate_halves(q_lo, q_hi, c, s)


@triton.jit
def _dtiles(
    acc, l_i, m_i, lo, hi, q, q_lo, q_hi, q_rest, inv_h, tc, ts, K_BASE, V_BASE, K1_BASE,
    stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos, poff, F, RA, RB, R2, dq, KA, KC, KG, KB,
    qk_scale, is_r1, row_ok, offs_n, offs_d, offs_h,
    BLOCK_N: tl.constexpr, HALF: tl.constexpr, MODE: tl.constexpr, KMAP: tl.constexpr, KROT: tl.constexpr,
    PARTIAL: tl.constexpr, RULE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Online softmax over the key tiles [lo, hi), each scored as ``MODE`` says (module docstring). K1_BASE: the
    K1 cache's rows of this (row, kv head), K's strides (MODE 3 only)."""
    WIDE: tl.constexpr = HALF >= 16
    for n0 in range(lo, hi, BLOCK_N):
        offs = n0 + offs_n
        in_k = (offs < stop) & (offs >= ks)
        k_rows = K_BASE + offs[:, None].to(tl.int64) * stride_kn
        v = tl.load(V_BASE + offs[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd,
                    mask=in_k[:, None], other=0.0)
        far = offs < F
        if MODE == 0 or MODE == 3:  # one dot of the stacked rows with the keys as cached (MODE 3: far ones from K1)
            if MODE == 3:  # each key read once, from K1 if far else from K: rows [g, 2g) only see the far ones
                k_rows = tl.where(far[:, None], K1_BASE, K_BASE) + offs[:, None].to(tl.int64) * stride_kn
            k = tl.load(k_rows + offs_d[None, :] * stride_kd, mask=in_k[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
            key_r1 = far
        else:
            k_lo, k_hi = _halves(k_rows, offs_h, R2, in_k, stride_kd, HALF, PARTIAL)
            r0, dt = _tile_delta(n0, poff, KA, KC, KG, KB)
            f_lo, f_hi = _q_far(q_lo, q_hi, inv_h, dq - dt, KC, is_r1, KMAP == 3)
            if KMAP == 2:
                c_t, s_t = _key_table(inv_h, offs_n, r0, KA, KC, KG)
            else:
                c_t, s_t = tc, ts
            if KMAP != 3 or KROT:
                k1_lo, k1_hi = _rotate_halves(k_lo.to(tl.float32), k_hi.to(tl.float32), c_t, s_t)
                k1_lo = k1_lo.to(k_lo.dtype)
                k1_hi = k1_hi.to(k_lo.dtype)
            else:
                k1_lo = k_lo
                k1_hi = k_hi
            s = _mm(f_lo.to(q.dtype), k1_lo, DOT_PREC, WIDE) + _mm(f_hi.to(q.dtype), k1_hi, DOT_PREC, WIDE)
            if PARTIAL:
                s_rest = tl.dot(q_rest, tl.trans(_rest(k_rows, offs_d, R2, in_k, stride_kd)), input_precision=DOT_PREC)
                s += s_rest
            if KMAP == 3:  # keys past the group step (j >= G - r0) go to rows [0, g)
                key_r1 = far & (offs_n < KG - r0)
            else:
                key_r1 = far
            if MODE == 2:
                s0 = _mm(q_lo.to(q.dtype), k_lo, DOT_PREC, WIDE) + _mm(q_hi.to(q.dtype), k_hi, DOT_PREC, WIDE)
                if PARTIAL:
                    s0 += s_rest
                s = tl.where(far[None, :], s, s0)
        s = s * qk_scale
        vis = in_k[None, :] & row_ok[:, None] & (key_r1[None, :] == is_r1[:, None])
        if RULE == 2:  # Lambda: local window or global keys
            vis = vis & (((pos - offs) < RA) | ((offs + poff) < RB))[None, :]
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        acc, l_i, m_i = _accumulate(acc, l_i, m_i, m_new, m_use, s, v, DOT_PREC)
    return acc, l_i, m_i


@triton.jit
def _dzone(
    acc, l_i, m_i, lo, hi, gend, lstart, q, q_lo, q_hi, q_rest, inv_h, tc, ts, K_BASE, V_BASE, K1_BASE,
    stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos, poff, F, RA, RB, R2, dq, KA, KC, KG, KB,
    qk_scale, is_r1, row_ok, offs_n, offs_d, offs_h,
    BLOCK_N: tl.constexpr, HALF: tl.constexpr, MODE: tl.constexpr, KMAP: tl.constexpr, KROT: tl.constexpr,
    PARTIAL: tl.constexpr, RULE: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """_dtiles over [lo, hi); with the Lambda rule over its visible tiles only: [lo, gend) + [lstart, hi)."""
    if RULE == 2:
        acc, l_i, m_i = _dtiles(acc, l_i, m_i, lo, tl.minimum(hi, gend), q, q_lo, q_hi, q_rest, inv_h, tc, ts,
                                K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos,
                                poff, F, RA, RB, R2, dq, KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d,
                                offs_h,
                                BLOCK_N, HALF, MODE, KMAP, KROT, PARTIAL, RULE, DOT_PREC)
        lo = tl.maximum(lo, tl.maximum(gend, lstart))
    acc, l_i, m_i = _dtiles(acc, l_i, m_i, lo, hi, q, q_lo, q_hi, q_rest, inv_h, tc, ts,
                            K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos,
                            poff, F, RA, RB, R2, dq, KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d, offs_h,
                            BLOCK_N, HALF, MODE, KMAP, KROT, PARTIAL, RULE, DOT_PREC)
    return acc, l_i, m_i
