"""Triton forward kernel for segment-table attention with many queries (prefill, chunked prefill).

One program owns BLOCK_M query rows of one (batch, query head) and walks the visible keys once, with one
online-softmax accumulator, for a two-region table (``spec.py``): region 0 = band [0, HI0) scored from q and k
as cached, region 1 = band [LO1, inf) scored from q1 (q re-rotated per row by the query map, once per program)
and k1 (keys re-rotated by the key map when it is not a constant: per tile in registers, two rotations per tile
for a piecewise-constant map, or once per call by ``_rotate_keys_kernel`` for calls of >= 64 queries). The key
range of the block is cut into zones so that the hot loops carry no per-element selects or masks::

    keys  0 ....................................................... lk-1
          [first tile][ region 1 ][ mixed  ][ region 0 ][ diagonal ]
           key_start    q1 . k1   both+sel    q . k     mask (+sel)

* region 1 only (every row has d >= HI0), mixed (some d in [LO1, HI0): both dots and a select by d, or by
  DCA's chunk rule where the bands overlap), region 0 only (every d < LO1), diagonal (causal mask), first tile
  (left padding, masked against key_start). The Lambda rule (LM-Infinite) masks every zone and skips the key
  tiles no row sees (between the global keys and the local window).

STRING (constant query map, identity key map) is exactly the fast kernel it always was: q1 is q rotated by
one constant, no key is re-rotated. Rotations use cos/sin of (delta * inv_freq) in fp32 (``_rotary``; HF rotate_half
convention over the first 2 * R2 dims, dims beyond untouched).

Shape legend: b batch, h query heads, h_kv key/value heads, g = h / h_kv, lq queries, lk keys, d head dim,
r2 = len(inv_freq) (half the rotary dim).
"""

import triton
import triton.language as tl

from ._prologue import _rotate_keys_kernel
from ._rotary import _map_delta, _partner, _rot_cs, _rotate, _row_offsets

_LOG2E = 1.4426950408889634  # 1 / ln(2): softmax runs in base 2


@triton.jit
def _rotate_steps(x, xp, INV, R2, offs_d, npos, n_first, KC, KG, KB):
    """Keys re-rotated by a piecewise-constant map (a = 1: delta = c floor(n / G) + b, DCA's chunk-local keys)
    over a tile of <= G keys: two rotations per tile (the first key's group and the next), selected per key."""
    g0 = n_first // KG
    cos0, sin0 = _rot_cs(INV, R2, offs_d, (KC * g0).to(tl.float32) + KB)
    cos1, sin1 = _rot_cs(INV, R2, offs_d, (KC * (g0 + 1)).to(tl.float32) + KB)
    nxt = (npos // KG != g0)[:, None]
    cos = tl.where(nxt, cos1, cos0)
    sin = tl.where(nxt, sin1, sin0)
    return (x.to(tl.float32) * cos + xp.to(tl.float32) * sin).to(x.dtype)


@triton.jit
def _accumulate(acc, l_i, m_i, m_new, m_use, s, v, DOT_PREC: tl.constexpr):
    """One online-softmax step: scores s [rows, n] (log2 units) and values v [n, d] folded into (acc, l, m);
    m_use is m_new with -inf replaced by 0 where a row has seen no visible key yet."""
    p = tl.math.exp2(s - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
    return acc, l_i, m_new


@triton.jit
def _chunk_far(qp, kp, S, W):
    """DCA: not (same chunk, or next chunk with m mod s <= w); qp [rows, 1], kp [1, cols]."""
    qc = qp // S
    kc = kp // S
    near = (qc == kc) | ((qc == kc + 1) & (qp - qc * S <= W))
    return ~near


@triton.jit
def _tiles(
    acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
    pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB, qk_scale, start, end, offs_n, offs_d,
    BLOCK_N: tl.constexpr, MODE: tl.constexpr, MASKED: tl.constexpr, DOT_PREC: tl.constexpr,
    RULE: tl.constexpr, KMAP: tl.constexpr,
):
    """Online softmax over key tiles [start, end). MODE 0 region 0 (q.k), 1 region 1 (q1.k1), 2 both + select."""
    for n0 in range(start, end, BLOCK_N):
        n0 = tl.multiple_of(n0, BLOCK_N)
        offs = n0 + offs_n
        k_ptrs = K_BASE + offs[:, None].to(tl.int64) * stride_kn + offs_d[None, :] * stride_kd
        v_ptrs = V_BASE + offs[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            in_k = offs < LK
            k = tl.load(k_ptrs, mask=in_k[:, None], other=0.0)
        else:
            k = tl.load(k_ptrs)
        if MODE != 0 and (KMAP == 2 or KMAP == 4):
            kpart = K_BASE + offs[:, None].to(tl.int64) * stride_kn + _partner(offs_d, R2)[None, :] * stride_kd
            if MASKED:
                kp = tl.load(kpart, mask=in_k[:, None], other=0.0)
            else:
                kp = tl.load(kpart)
            if KMAP == 2:
                k1t = tl.trans(_rotate(k, kp, INV, R2, offs_d, _map_delta(offs + poff, KA, KC, KG, KB)[:, None]))
            else:
                k1t = tl.trans(_rotate_steps(k, kp, INV, R2, offs_d, offs + poff, n0 + poff, KC, KG, KB))
        if MODE != 0 and KMAP == 3:  # keys re-rotated once per call by the prologue
            k1_ptrs = K1_BASE + offs[:, None].to(tl.int64) * stride_kn + offs_d[None, :] * stride_kd
            if MASKED:
                k1t = tl.trans(tl.load(k1_ptrs, mask=in_k[:, None], other=0.0))
            else:
                k1t = tl.trans(tl.load(k1_ptrs))
        kt = tl.trans(k)
        if MODE == 0 or KMAP == 0:
            k1t = kt
        if MODE == 0:
            s = tl.dot(q, kt, input_precision=DOT_PREC)
        elif MODE == 1:
            s = tl.dot(q1, k1t, input_precision=DOT_PREC)
        else:
            d = pos[:, None] - offs[None, :]
            if RULE == 1:
                r1 = (d >= HI0) | ((d >= LO1) & _chunk_far(pos[:, None] + poff, offs[None, :] + poff, RA, RB))
            else:
                r1 = d >= LO1
            s = tl.where(r1, tl.dot(q1, k1t, input_precision=DOT_PREC), tl.dot(q, kt, input_precision=DOT_PREC))
        s = s * qk_scale
        if MASKED or RULE == 2:
            vis = (offs[None, :] <= pos[:, None])
            if MASKED:
                vis = vis & (offs[None, :] >= ks) & in_k[None, :]
            if RULE == 2:  # Lambda: local window or global keys
                vis = vis & (((pos[:, None] - offs[None, :]) < RA) | ((offs[None, :] + poff) < RB))
            s = tl.where(vis, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # fully masked row: keep exp2 finite
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = m_new
        if MASKED:
            v = tl.load(v_ptrs, mask=in_k[:, None], other=0.0)
        else:
            v = tl.load(v_ptrs)
        acc, l_i, m_i = _accumulate(acc, l_i, m_i, m_new, m_use, s, v, DOT_PREC)
    return acc, l_i, m_i


@triton.jit
def _zone(
    acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
    pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB, qk_scale, start, end, gend, lstart,
    offs_n, offs_d,
    BLOCK_N: tl.constexpr, MODE: tl.constexpr, MASKED: tl.constexpr, DOT_PREC: tl.constexpr,
    RULE: tl.constexpr, KMAP: tl.constexpr,
):
    """_tiles over [start, end); with the Lambda rule, over its visible part [start, gend) + [lstart, end)."""
    if RULE == 2:
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                               stride_vd,
                               pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB, qk_scale,
                               start, tl.minimum(end, gend), offs_n, offs_d,
                               BLOCK_N, MODE, MASKED, DOT_PREC, RULE, KMAP)
        start = tl.maximum(start, tl.maximum(gend, lstart))
    acc, l_i, m_i = _tiles(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                           pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB, qk_scale,
                           start, end, offs_n, offs_d,
                           BLOCK_N, MODE, MASKED, DOT_PREC, RULE, KMAP)
    return acc, l_i, m_i


# table scalars and lengths vary per call: one binary per table *kind* (constexprs), not per value
# (lse strides follow lq: unspecialised so a 4097-query test and a 32k benchmark share binaries)
_NO_SPEC = ["H", "G", "LQ", "LK", "LO1", "HI0", "RA", "RB", "QC", "QG", "KC", "KG", "stride_lb", "stride_lh"]


@triton.jit(do_not_specialize=_NO_SPEC)
def _table_prefill_kernel(
    Q, K, V, K1, INV, KS, POFF, Out, Lse,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_lb, stride_lh, stride_lm,
    H, G, LQ, LK, R2, qk_scale,
    LO1, HI0, RA, RB, QA, QC, QG, QB, KA, KC, KG, KB,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_R1: tl.constexpr, RULE: tl.constexpr, QMAP: tl.constexpr, KMAP: tl.constexpr,
    HAS_KS: tl.constexpr, HAS_POFF: tl.constexpr, DOT_PREC: tl.constexpr, PHASE_ORDER: tl.constexpr,
):
    # Q   [b, h, lq, d]     any strides          Out [b, h, lq, d]  q.dtype
    # K,V [b, h_kv, lk, d]  any strides          Lse [b, h, lq]     fp32, natural log of the scaled logits
    # K1  like K: keys re-rotated by the key map (``_rotate_keys_kernel``; read only with KMAP 3)
    # KMAP: 0 identity, 2 per key in registers, 3 from K1, 4 piecewise constant (a = 1, tiles of <= G keys)
    # INV [r2] fp32 inverse frequencies (read only for re-rotations)
    # KS  [b] int: left-padding count (first valid key index) of each row (read only with HAS_KS)
    # POFF [b] int: position of key index 0 (default -key_start); positions feed the maps and rules only
    # Query i sits at key index pos_i = lk - lq + i (bottom-right alignment); key j visible iff ks <= j <= pos_i.
    num_m = tl.num_programs(0)
    pid_m = num_m - 1 - tl.program_id(0)  # heaviest (last) query blocks first: better tail balance
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H).to(tl.int64)  # int64: batch/head offsets overflow int32 at 128k+
    off_h = pid_bh % H
    off_hk = (off_h // G).to(tl.int64)
    off_h = off_h.to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < LQ
    q_rows = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None].to(tl.int64) * stride_qm
    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
    K_BASE = K + off_b * stride_kb + off_hk * stride_kh
    V_BASE = V + off_b * stride_vb + off_hk * stride_vh
    K1_BASE = K1 + off_b * stride_kb + off_hk * stride_kh  # K1 shares K's strides (read only with KMAP 3)

    pos = offs_m + (LK - LQ)
    p_min = pid_m * BLOCK_M + (LK - LQ)
    p_max = tl.minimum(p_min + BLOCK_M - 1, LK - 1)
    ks, poff = _row_offsets(KS, POFF, off_b, HAS_KS, HAS_POFF)
    if HAS_KS:
        t0 = (ks // BLOCK_N) * BLOCK_N
        lo = t0 + BLOCK_N
    else:
        t0 = 0
        lo = 0
    if HAS_R1 and QMAP != 0:
        qp = tl.load(q_rows + _partner(offs_d, R2)[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
        if QMAP == 1:
            q1 = _rotate(q, qp, INV, R2, offs_d, QB)
        else:
            q1 = _rotate(q, qp, INV, R2, offs_d, _map_delta(pos + poff, QA, QC, QG, QB)[:, None])
    else:
        q1 = q
    end = p_max + 1
    # zone boundaries (tile starts, multiples of BLOCK_N): r1 [lo, a), mixed [a, b), r0 [b, c), diagonal [c, end)
    x = p_min + 1
    c = tl.maximum(lo, tl.where(x > 0, x // BLOCK_N * BLOCK_N, 0))
    if HAS_R1:
        xf = p_min - HI0 + 1
        xn = p_max - LO1 + 1
        a = tl.minimum(tl.maximum(lo, tl.where(xf > 0, xf // BLOCK_N * BLOCK_N, 0)), c)
        b = tl.minimum(tl.maximum(a, tl.where(xn > 0, (xn + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)), c)
    else:
        a = lo
        b = lo
    if HAS_R1 and RULE == 1:
        # DCA: widen the single-region zones by chunk indices (stride RA, window RB). Row m's keys are far below
        # position (qc - [m mod s <= w]) s, qc = m // s, a bound that never decreases with m: the block's first
        # row gives the keys far for every row, its last row those near for every row (also when the block
        # spans chunks; the Hopper kernel's ``_chunk_zones`` has the same bounds).
        pm_lo = p_min + poff
        pm_hi = p_max + poff
        qlo = pm_lo // RA
        qhi = pm_hi // RA
        far_end = (qlo - (pm_lo - qlo * RA <= RB).to(tl.int32)) * RA - poff
        near_start = (qhi - (pm_hi - qhi * RA <= RB).to(tl.int32)) * RA - poff
        a2 = tl.minimum(tl.maximum(lo, tl.where(far_end > 0, far_end // BLOCK_N * BLOCK_N, 0)), c)
        b2 = tl.where(near_start > 0, (near_start + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)
        ok = pm_lo >= 0  # pad rows (negative positions) keep the band zones
        a = tl.where(ok, tl.maximum(a, a2), a)
        b = tl.minimum(tl.maximum(tl.where(ok, tl.minimum(b, b2), b), a), c)
    if RULE == 2:  # key tiles before gend hold global keys; from lstart on some row is within n_local
        gk = RB - poff
        gend = tl.where(gk > 0, (gk + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)
        xl = p_min - RA + 1
        lstart = tl.where(xl > 0, xl // BLOCK_N * BLOCK_N, 0)
    else:
        gend = 0
        lstart = 0

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    MIX: tl.constexpr = 2 if HAS_R1 else 0
    if PHASE_ORDER == 0:  # first tile, r1, mixed, r0, diagonal: q and q1 live throughout
        if HAS_KS:
            acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, t0, tl.minimum(lo, end), gend, lstart, offs_n, offs_d,
                                  BLOCK_N, MIX, True, DOT_PREC, RULE, KMAP)
        if HAS_R1:
            acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, lo, a, gend, lstart, offs_n, offs_d,
                                  BLOCK_N, 1, False, DOT_PREC, RULE, KMAP)
            acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, a, b, gend, lstart, offs_n, offs_d,
                                  BLOCK_N, 2, False, DOT_PREC, RULE, KMAP)
        acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                              stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                              qk_scale, b, c, gend, lstart, offs_n, offs_d,
                              BLOCK_N, 0, False, DOT_PREC, RULE, KMAP)
        acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                              stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                              qk_scale, c, end, gend, lstart, offs_n, offs_d,
                              BLOCK_N, MIX, True, DOT_PREC, RULE, KMAP)
    else:  # r1 (q1 only), mixed, diagonal, first tile, r0 (q only): one Q tile live in the long loops
        if HAS_R1:
            acc, l_i, m_i = _zone(acc, l_i, m_i, q1, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, lo, a, gend, lstart, offs_n, offs_d,
                                  BLOCK_N, 1, False, DOT_PREC, RULE, KMAP)
            # re-read q (L2 hit) rather than keep it live through the r1 loop; .cg keeps the two loads distinct
            q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0, cache_modifier=".cg")
            acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, a, b, gend, lstart, offs_n, offs_d,
                                  BLOCK_N, 2, False, DOT_PREC, RULE, KMAP)
        acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                              stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                              qk_scale, c, end, gend, lstart, offs_n, offs_d,
                              BLOCK_N, MIX, True, DOT_PREC, RULE, KMAP)
        if HAS_KS:
            acc, l_i, m_i = _zone(acc, l_i, m_i, q, q1, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                                  stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                                  qk_scale, t0, tl.minimum(lo, end), gend, lstart, offs_n, offs_d,
                                  BLOCK_N, MIX, True, DOT_PREC, RULE, KMAP)
        acc, l_i, m_i = _zone(acc, l_i, m_i, q, q, K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn,
                              stride_vd, pos, ks, poff, LK, LO1, HI0, RA, RB, INV, R2, KA, KC, KG, KB,
                              qk_scale, b, c, gend, lstart, offs_n, offs_d,
                              BLOCK_N, 0, False, DOT_PREC, RULE, KMAP)

    # rows with no visible key (pad queries): out 0, lse -inf, never NaN
    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    # lse = ln(sum 2^(s - m)) + m ln 2 (0.693... = ln 2: the softmax ran in base 2)
    lse = tl.where(has, m_i * 0.6931471805599453 + tl.log(tl.where(has, l_i, 1.0)), float("-inf"))
    o_ptrs = (Out + off_b * stride_ob + off_h * stride_oh + offs_m[:, None].to(tl.int64) * stride_om
              + offs_d[None, :] * stride_od)
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    tl.store(Lse + off_b * stride_lb + off_h * stride_lh + offs_m.to(tl.int64) * stride_lm, lse, mask=row_ok)


def _prefill_config(head_dim, dtype, on_gpu):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages, phase order). Overridable through `PREFILL_CONFIG` (sweeps)."""
    if PREFILL_CONFIG is not None:
        return PREFILL_CONFIG
    if not on_gpu:
        return 16, 16, 4, 1, PHASE_ORDER_DEFAULT  # interpreter: tiny tiles exercise every zone on small shapes
    if str(dtype) == "torch.float32":
        return 64, 32, 4, 2, 1
    if head_dim in PREFILL_BY_DIM:
        return PREFILL_BY_DIM[head_dim]
    return (64, 64, 4, 3, 1) if head_dim <= 64 else (128, 64, 8, 3, 1)


PREFILL_CONFIG = None
PHASE_ORDER_DEFAULT = 1
# calls with at least this many queries re-rotate their keys once (a prologue into a K-sized buffer) instead of
# per tile in registers: O(lk d) extra work against O(lq lk d) attention (CPU/interpreter: 32, so tests hit both)
PROLOGUE_MIN_Q = {True: 64, False: 32}
# head_dim -> config, from the H100 sweep at N = 32k (benchmarks/RESULTS.md)
PREFILL_BY_DIM = {128: (128, 64, 8, 3, 0), 64: (128, 64, 4, 3, 1)}


def launch_prefill(q, k, v, inv_freq, key_start, pos_offset, out, lse, *, spec, scale):
    """Host launcher: fills `out` [b, h, lq, d] and `lse` [b, h, lq] (preallocated) in place.

    spec: a ``KernelSpec`` (``ropeshift.kernels.spec``) already reduced for this call's key count."""
    b, h, lq, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    block_m, block_n, num_warps, num_stages, order = _prefill_config(d, q.dtype, q.is_cuda)
    grid = (triton.cdiv(lq, block_m), b * h)
    qk, qa, qc, qg, qb = spec.q_map
    kk, ka, kc, kg, kb = spec.k_map
    k1 = k
    if kk == 2 and ka == 1.0 and kc != 0 and kg >= block_n:
        kk = 4  # piecewise-constant key map (DCA): two rotations per tile, no per-key trigonometry
    if spec.has_r1 and kk == 2 and lq >= PROLOGUE_MIN_Q[q.is_cuda]:
        import torch

        if not k.is_contiguous():  # a static cache's written part is a view: one copy, then the prologue
            k = k.contiguous()
        k1 = torch.empty_like(k)  # same (contiguous) strides as k
        blk = 64 if q.is_cuda else 16
        _rotate_keys_kernel[(triton.cdiv(lk, blk), b * h_kv)](
            k, k1, inv_freq, key_start if key_start is not None else k, pos_offset if pos_offset is not None else k,
            *k.stride(), h_kv, lk, inv_freq.numel(), ka, kc, kg, kb,
            HEAD_DIM=d, BLOCK=blk, HAS_KS=key_start is not None,
            HAS_POFF=pos_offset is not None, HALVES=2 * inv_freq.numel() == d, num_warps=4)
        kk = 3
    _table_prefill_kernel[grid](
        q, k, v, k1, inv_freq, key_start if key_start is not None else q, pos_offset if pos_offset is not None else q,
        out, lse,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *lse.stride(),
        h, h // h_kv, lq, lk, inv_freq.numel(), scale * _LOG2E,
        spec.lo1, spec.hi0, spec.ra, spec.rb, qa, qc, qg, qb, ka, kc, kg, kb,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n,
        HAS_R1=spec.has_r1, RULE=spec.rule, QMAP=qk if spec.has_r1 else 0, KMAP=kk if spec.has_r1 else 0,
        HAS_KS=key_start is not None, HAS_POFF=pos_offset is not None, PHASE_ORDER=order,
        DOT_PREC="ieee" if str(q.dtype) == "torch.float32" else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    return out, lse
