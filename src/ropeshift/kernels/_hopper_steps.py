"""Per-tile steps of the Hopper prefill's consumer warpgroups (``_prefill_hopper_ws``): the tile order, the online
softmax, the causal and region-1 masks, and the one-tile steps its loops are built from. Shapes: one warpgroup's
64 query rows, key tiles of BN keys; S, S1 [64, BN] fp32 scores; acc [64, d] fp32; P [64, BN] in the MMA's
operand layout; stages of the two-slot K / V ring indexed by the step i (i % 2), tiles by t = ``_tile_at(i)``::

    step     overlapped (far / near tiles)           edge tile (both dots, synchronous)
    i        S_i = q(1) K_t^T  async                  S_i, S1_i = q K_t^T, q1 K1_t^T
             P_{i-1} V_{i-1}  async, overlaps softmax  select per pair by the table's rule
"""
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, warpgroup_mma, warpgroup_mma_wait

from .spec import RULE_CHUNK

RULE_CHUNK_C = gl.constexpr(RULE_CHUNK)


@gluon.jit
def _tile_at(i, f_lo, n_e, EF: gl.constexpr):
    """The key tile of the i-th step: i itself, or with EF (edge first) the n_e edge tiles [f_lo, f_lo + n_e)
    first, then the far tiles [0, f_lo), then the near ones (online softmax does not depend on the order)::

        steps  0 .. n_e-1          n_e .. n_e+f_lo-1     n_e+f_lo ..
        tiles  f_lo .. f_lo+n_e-1  0 .. f_lo-1           f_lo+n_e ..     (EF)
    """
    if EF:
        edge = (i < n_e).to(gl.int32)
        far = ((i >= n_e) & (i - n_e < f_lo)).to(gl.int32)
        t = edge * (f_lo + i) + far * (i - n_e) + (1 - edge - far) * i
    else:
        t = i
    return t


@gluon.jit
def _softmax(s, m_i, l_i, qk_scale):
    """Online softmax over raw scores s [64, BN] (qk_scale = scale * log2 e folded into one FMA): running max
    and sum (log2 units), P, the rescale factor."""
    m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
    p = gl.exp2(s * qk_scale - m_new[:, None])
    alpha = gl.exp2(m_i - m_new)
    return m_new, l_i * alpha + gl.sum(p, 1), p, alpha


@gluon.jit
def _causal(s, t, rows, cols0, mw, BN: gl.constexpr):
    if t * BN + BN - 1 > mw:  # the diagonal tile
        cols = t * BN + cols0
        s = gl.where(cols[None, :] <= rows[:, None], s, -float("inf"))
    return s


@gluon.jit
def _in_r1(rows, cols, p0, LO1, CS, CW, RULE: gl.constexpr):
    """[64, BN] True where a pair is in region 1: d >= LO1 (band tables), or DCA's far rule on absolute positions
    (not the same chunk of CS positions, and not the next chunk with the query within CW of its chunk start).
    The chunk rule as a key threshold per row: a key is far exactly when its chunk is below qc - 1, or below qc
    when the query's slot is > CW, i.e. when its index is below lim = (qc - [slot <= CW]) CS - p0 (positions
    >= 0; keys after the query, which the causal mask drops, count as near). Two divisions per row and one compare
    per pair: an edge tile is 844 SASS instructions per warpgroup at D = 128 (a division per key: 1576)."""
    if RULE == RULE_CHUNK_C:
        qp = p0 + rows
        qc = qp // CS
        lim = (qc - (qp - qc * CS <= CW).to(gl.int32)) * CS - p0
        return cols[None, :] < lim[:, None]
    return (rows[:, None] - cols[None, :]) >= LO1


@gluon.jit
def _s1(q1h, kt, k1_s, k1_ready, k1_free, e, zero, HAS_K1: gl.constexpr):
    """Region-1 scores of an edge tile, synchronously: q1 . k1 with k1 from the k1 slot (its e-th fill) when keys
    are re-rotated, else q1 . k (kt, the tile's K)."""
    if HAS_K1:
        mbarrier.wait(k1_ready, e & 1)
        s1 = warpgroup_mma(q1h, k1_s.permute((1, 0)), zero, use_acc=False)
        mbarrier.arrive(k1_free, count=1)
    else:
        s1 = warpgroup_mma(q1h, kt, zero, use_acc=False)
    return s1


@gluon.jit
def _first(qh, q1h, k_s, k1_s, k_ready, k1_ready, k_free, k1_free, rows, cols0, mw, LO1, p0, CS, CW, n_far, n_r1,
           RULE: gl.constexpr, HAS_K1: gl.constexpr, EF: gl.constexpr, s_layout: gl.constexpr, BN: gl.constexpr):
    """Raw scores of the first step's key tile (tile 0, or with EF the first edge tile), synchronously (no MMA
    in flight), for whichever zone it is in."""
    mbarrier.wait(k_ready.index(0), 0)
    kt = k_s.index(0).permute((1, 0))
    zero = gl.zeros([64, BN], gl.float32, s_layout)
    t0 = _tile_at(0, n_far, n_r1 - n_far, EF)
    if t0 < n_far:
        s = warpgroup_mma(q1h, kt, zero, use_acc=False)
    else:
        s = warpgroup_mma(qh, kt, zero, use_acc=False)
        if t0 < n_r1:
            s1 = _s1(q1h, kt, k1_s, k1_ready, k1_free, 0, zero, HAS_K1)
            s = gl.where(_in_r1(rows, t0 * BN + cols0, p0, LO1, CS, CW, RULE), s1, s)
    mbarrier.arrive(k_free.index(0), count=1)
    return _causal(s, t0, rows, cols0, mw, BN)


@gluon.jit
def _overlapped_step(s_tok, o_tok, acc, p, m_i, l_i, k_done, v_done, v_s, t, rows, cols0, mw, qk_scale,
                     p_layout: gl.constexpr, BN: gl.constexpr):
    """A tile scored by one dot: wait for S_t (P_j V_j still running), release K_t, causal mask on the diagonal
    tile, softmax; then wait for P_j V_j and release V_j. Returns acc, m_i, l_i, P_t, alpha."""
    s = warpgroup_mma_wait(1, deps=(s_tok, ))
    mbarrier.arrive(k_done, count=1)
    s = _causal(s, t, rows, cols0, mw, BN)
    m_i, l_i, pf, alpha = _softmax(s, m_i, l_i, qk_scale)
    pn = gl.convert_layout(pf.to(v_s.dtype), p_layout)
    acc, p = warpgroup_mma_wait(0, deps=(o_tok, p))
    mbarrier.arrive(v_done, count=1)
    return acc, m_i, l_i, pn, alpha


@gluon.jit
def _run(j_lo, j_hi, acc, m_i, l_i, p, q_s, HALF: gl.constexpr, k_s, k1_s, v_s, k_ready, k1_ready, v_ready, k_free,
         k1_free, v_free, rows, cols0, mw, qk_scale, LO1, p0, CS, CW, n_far, n_r1, RULE: gl.constexpr,
         HAS_R1: gl.constexpr, HAS_Q1: gl.constexpr, HAS_K1: gl.constexpr, EF: gl.constexpr, MODE: gl.constexpr,
         s_layout: gl.constexpr, o_layout: gl.constexpr, BN: gl.constexpr):
    """Steps i = j + 1 for j in [j_lo, j_hi), tile t = _tile_at(i), ring stage i % 2: S of step i is issued
    before P_j V_j and its softmax overlaps that MMA. With region 1 (HAS_R1), tile t scores q1 (q_s.index(1))
    below n_far and selects per pair (both dots, synchronously) below n_r1. MODE 0: any tile (one loop for every
    zone; one loop per zone instead made ptxas byte-swap P at every hand-over and spill, 3-12 % slower at 32k,
    benchmarks/RESULTS.md); 1: edge tiles only; 2: far and near tiles only (EF: edge tiles come first)."""
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    qh = q_s.index(0).slice(HALF * 64, 64)
    q1h = q_s.index(HAS_Q1 * 1).slice(HALF * 64, 64)
    for j in range(j_lo, j_hi):
        i = j + 1
        t = _tile_at(i, n_far, n_r1 - n_far, EF)
        st = i % 2
        mbarrier.wait(k_ready.index(st), (i // 2) & 1)
        kt = k_s.index(st).permute((1, 0))
        zero = gl.zeros([64, BN], gl.float32, s_layout)
        if HAS_Q1:
            qt = q_s.index((t < n_far).to(gl.int32)).slice(HALF * 64, 64)
        else:
            qt = qh
        s_tok = warpgroup_mma(qt, kt, zero, use_acc=False, is_async=True)
        jb = j % 2
        mbarrier.wait(v_ready.index(jb), (j // 2) & 1)
        o_tok = warpgroup_mma(p, v_s.index(jb), acc, is_async=True)
        if HAS_R1 and MODE == 0:
            if (t >= n_far) & (t < n_r1):  # an edge tile
                acc, m_i, l_i, p, alpha = _edge_step(s_tok, o_tok, acc, p, m_i, l_i, q1h, kt, k1_s, k1_ready,
                                                     k1_free, k_free.index(st), v_free.index(jb), v_s, t, n_far,
                                                     zero, rows, cols0, mw, qk_scale, LO1, p0, CS, CW, RULE,
                                                     HAS_K1, p_layout, BN)
            else:
                acc, m_i, l_i, p, alpha = _overlapped_step(s_tok, o_tok, acc, p, m_i, l_i, k_free.index(st),
                                                           v_free.index(jb), v_s, t, rows, cols0, mw, qk_scale,
                                                           p_layout, BN)
        elif HAS_R1 and MODE == 1:
            acc, m_i, l_i, p, alpha = _edge_step(s_tok, o_tok, acc, p, m_i, l_i, q1h, kt, k1_s, k1_ready, k1_free,
                                                 k_free.index(st), v_free.index(jb), v_s, t, n_far, zero, rows,
                                                 cols0, mw, qk_scale, LO1, p0, CS, CW, RULE, HAS_K1, p_layout, BN)
        else:
            acc, m_i, l_i, p, alpha = _overlapped_step(s_tok, o_tok, acc, p, m_i, l_i, k_free.index(st),
                                                       v_free.index(jb), v_s, t, rows, cols0, mw, qk_scale,
                                                       p_layout, BN)
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
    return acc, m_i, l_i, p


@gluon.jit
def _edge_step(s_tok, o_tok, acc, p, m_i, l_i, q1h, kt, k1_s, k1_ready, k1_free, k_done, v_done, v_s, t, n_far, zero,
               rows, cols0, mw, qk_scale, LO1, p0, CS, CW, RULE: gl.constexpr, HAS_K1: gl.constexpr,
               p_layout: gl.constexpr, BN: gl.constexpr):
    """An edge tile: wait for S_t and P_j V_j, then the region-1 dot synchronously (the k1 slot's (t - n_far)-th
    fill), select per pair by the table's rule, causal mask, softmax. Returns acc, m_i, l_i, P_t, alpha."""
    s, acc, p = warpgroup_mma_wait(0, deps=(s_tok, o_tok, p))
    mbarrier.arrive(v_done, count=1)
    s1 = _s1(q1h, kt, k1_s, k1_ready, k1_free, t - n_far, zero, HAS_K1)
    mbarrier.arrive(k_done, count=1)
    s = gl.where(_in_r1(rows, t * BN + cols0, p0, LO1, CS, CW, RULE), s1, s)
    s = _causal(s, t, rows, cols0, mw, BN)
    m_i, l_i, pe, alpha = _softmax(s, m_i, l_i, qk_scale)
    return acc, m_i, l_i, gl.convert_layout(pe.to(v_s.dtype), p_layout), alpha


@gluon.jit
def _pv_now(acc, p, v_s, v_ready, v_free, i):
    """acc + P_i V_i, synchronously (V of step i in stage i % 2), the stage released."""
    mbarrier.wait(v_ready.index(i % 2), (i // 2) & 1)
    acc = warpgroup_mma(p, v_s.index(i % 2), acc)
    mbarrier.arrive(v_free.index(i % 2), count=1)
    return acc


@gluon.jit
def _step_now(acc, m_i, l_i, q_s, HALF: gl.constexpr, HAS_Q1: gl.constexpr, k_s, k_ready, k_free, i, t, n_far, rows,
              cols0, mw, qk_scale, s_layout: gl.constexpr, o_layout: gl.constexpr, BN: gl.constexpr):
    """Step i (tile t, far or near) scored synchronously, as ``_first`` does but with a running softmax: returns
    acc rescaled, m_i, l_i and P_i (its P V is the next step's)."""
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    mbarrier.wait(k_ready.index(i % 2), (i // 2) & 1)
    if HAS_Q1:
        qt = q_s.index((t < n_far).to(gl.int32)).slice(HALF * 64, 64)
    else:
        qt = q_s.index(0).slice(HALF * 64, 64)
    s = warpgroup_mma(qt, k_s.index(i % 2).permute((1, 0)), gl.zeros([64, BN], gl.float32, s_layout),
                      use_acc=False)
    mbarrier.arrive(k_free.index(i % 2), count=1)
    s = _causal(s, t, rows, cols0, mw, BN)
    m_i, l_i, pf, alpha = _softmax(s, m_i, l_i, qk_scale)
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
    return acc, m_i, l_i, gl.convert_layout(pf.to(k_s.dtype), p_layout)
