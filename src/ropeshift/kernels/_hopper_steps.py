"""Per-step code of the Hopper prefill's consumer warpgroups (``_prefill_hopper_ws``): the step order, the online
softmax, the masks, the first step and the overlapped loop. Shapes: one warpgroup's 64 query rows, key tiles of BN
keys; S [64, BN] fp32 scores; acc [64, d] fp32; P [64, BN] in the MMA's operand layout; stages of the two-slot
K / V ring indexed by the step i (i % 2).

A program's steps walk its key tiles low to high and take each edge tile twice, once per region (``_step_tile``;
F = f_lo, E = r_hi, T = n_tiles)::

    step i   0 .. F-1   | F .. E-1             | E .. 2E-F-1          | 2E-F .. T+E-F-1
    tile t   0 .. F-1   | F .. E-1             | F .. E-1             | E .. T-1
    scores   q1 . k1    | q1 . k1, region 1's  | q . k, region 0's    | q . k, causal mask
             (far)      | pairs kept (edge)    | pairs kept (edge)    | on the diagonal (near)

Every step is one dot: S_i = q(1) K(1)_t^T is issued before P_{i-1} V_{i-1} and its softmax overlaps that MMA.
Online softmax does not depend on how the pairs are grouped into steps, so an edge tile's two visits with
complementary masks score each pair once, by its region. A row may have no pair in a step (an edge tile's
region-1 visit of rows still below the band): its running max stays -inf, and ``_softmax`` (EMPTY) subtracts 0
instead, so its weights and rescale factor are exp2(-inf) = 0; every row reaches a real score (its own key,
region 0). (A finite masked score instead, -1e30, gave NaN: s * qk_scale - m is one FMA, exact, against m
rounded, so the "equal" terms differ by up to ~1e22 and exp2 of that is inf; 1025 rows at D = 64 on the H200.)
"""
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, warpgroup_mma, warpgroup_mma_wait

from .spec import RULE_CHUNK

RULE_CHUNK_C = gl.constexpr(RULE_CHUNK)


@gluon.jit
def _step_tile(i, r_hi, n_e):
    """(t, r1) of step i: tile t = i, scored as region 1, below r_hi; tile i - n_e as region 0 from there."""
    r1 = i < r_hi
    return i - n_e * (1 - r1.to(gl.int32)), r1


@gluon.jit
def _q_of(q_s, HALF: gl.constexpr, r1, HAS_Q1: gl.constexpr):
    """This warpgroup's 64 rows of q, or of q1 (q_s.index(1)) in a region-1 step when the query map re-rotates."""
    if HAS_Q1:
        qt = q_s.index(r1.to(gl.int32)).slice(HALF * 64, 64)
    else:
        qt = q_s.index(0).slice(HALF * 64, 64)
    return qt


@gluon.jit
def _softmax(s, m_i, l_i, qk_scale, EMPTY: gl.constexpr = False):
    """Online softmax over raw scores s [64, BN] (qk_scale = scale * log2 e folded into one FMA; masked pairs
    -inf): running max and sum (log2 units), P, the rescale factor. EMPTY: a row may have seen no pair yet (max
    -inf), for which 0 is subtracted instead of the max (-inf - -inf would be NaN)."""
    m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
    if EMPTY:
        m_sub = gl.where(m_new == -float("inf"), 0.0, m_new)
    else:
        m_sub = m_new
    p = gl.exp2(s * qk_scale - m_sub[:, None])
    alpha = gl.exp2(m_i - m_sub)
    return m_new, l_i * alpha + gl.sum(p, 1), p, alpha


@gluon.jit
def _in_r1(rows, cols, p0, LO1, CS, CW, RULE: gl.constexpr):
    """[64, BN] True where a pair is in region 1: d >= LO1 (band tables), or DCA's far rule on absolute positions
    (not the same chunk of CS positions, and not the next chunk with the query within CW of its chunk start).
    The chunk rule as a key threshold per row: a key is far exactly when its chunk is below qc - 1, or below qc
    when the query's slot is > CW, i.e. when its index is below lim = (qc - [slot <= CW]) CS - p0 (positions
    >= 0; lim <= the row's own index, so region 1 is causal, as d >= LO1 >= 1 is). Two divisions per row and one
    compare per pair."""
    if RULE == RULE_CHUNK_C:
        qp = p0 + rows
        qc = qp // CS
        lim = (qc - (qp - qc * CS <= CW).to(gl.int32)) * CS - p0
        return cols[None, :] < lim[:, None]
    return (rows[:, None] - cols[None, :]) >= LO1


@gluon.jit
def _masked(s, t, r1, f_lo, r_hi, rows, cols0, mw, LO1, p0, CS, CW, RULE: gl.constexpr, HAS_R1: gl.constexpr,
            BN: gl.constexpr):
    """S of step (t, r1) with the pairs it does not score masked: on an edge tile (f_lo <= t < r_hi) the other
    region's, on the diagonal tile (a column past this warpgroup's first row mw) the causal ones. Far and near
    tiles off the diagonal pass as they are. Without region 1: the causal mask alone. Masked pairs score -inf."""
    if HAS_R1:
        if ((t >= f_lo) & (t < r_hi)) | (t * BN + BN - 1 > mw):
            cols = t * BN + cols0
            keep = (_in_r1(rows, cols, p0, LO1, CS, CW, RULE) == r1) & (cols[None, :] <= rows[:, None])
            s = gl.where(keep, s, -float("inf"))
    elif t * BN + BN - 1 > mw:
        cols = t * BN + cols0
        s = gl.where(cols[None, :] <= rows[:, None], s, -float("inf"))
    return s


@gluon.jit
def _first(q_s, HALF: gl.constexpr, k_s, k_ready, k_free, rows, cols0, mw, f_lo, r_hi, LO1, p0, CS, CW,
           RULE: gl.constexpr, HAS_R1: gl.constexpr, HAS_Q1: gl.constexpr, s_layout: gl.constexpr,
           BN: gl.constexpr):
    """Masked raw scores of step 0 (tile 0, region 1 when r_hi > 0), synchronously (no MMA in flight)."""
    r1 = 0 < r_hi
    mbarrier.wait(k_ready.index(0), 0)
    s = warpgroup_mma(_q_of(q_s, HALF, r1, HAS_Q1), k_s.index(0).permute((1, 0)),
                      gl.zeros([64, BN], gl.float32, s_layout), use_acc=False)
    mbarrier.arrive(k_free.index(0), count=1)
    return _masked(s, 0, r1, f_lo, r_hi, rows, cols0, mw, LO1, p0, CS, CW, RULE, HAS_R1, BN)


@gluon.jit
def _run(n_steps, acc, m_i, l_i, p, q_s, HALF: gl.constexpr, k_s, v_s, k_ready, v_ready, k_free, v_free, rows,
         cols0, mw, qk_scale, f_lo, r_hi, LO1, p0, CS, CW, RULE: gl.constexpr, HAS_R1: gl.constexpr,
         HAS_Q1: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr, BN: gl.constexpr):
    """Steps i = 1 .. n_steps - 1 (step 0's P given as p), then P V of the last: S_i is issued before P_{i-1}
    V_{i-1} and its softmax overlaps that MMA; K_t is released once S_i is done, V once P V is. Returns acc
    (unnormalised), m_i, l_i."""
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    n_e = r_hi - f_lo
    for j in range(0, n_steps - 1):
        i = j + 1
        t, r1 = _step_tile(i, r_hi, n_e)
        st = i % 2
        mbarrier.wait(k_ready.index(st), (i // 2) & 1)
        s_tok = warpgroup_mma(_q_of(q_s, HALF, r1, HAS_Q1), k_s.index(st).permute((1, 0)),
                              gl.zeros([64, BN], gl.float32, s_layout), use_acc=False, is_async=True)
        jb = j % 2
        mbarrier.wait(v_ready.index(jb), (j // 2) & 1)
        o_tok = warpgroup_mma(p, v_s.index(jb), acc, is_async=True)
        s = warpgroup_mma_wait(1, deps=(s_tok, ))
        mbarrier.arrive(k_free.index(st), count=1)
        s = _masked(s, t, r1, f_lo, r_hi, rows, cols0, mw, LO1, p0, CS, CW, RULE, HAS_R1, BN)
        m_i, l_i, pf, alpha = _softmax(s, m_i, l_i, qk_scale, HAS_R1)
        pn = gl.convert_layout(pf.to(v_s.dtype), p_layout)
        acc, p = warpgroup_mma_wait(0, deps=(o_tok, p))
        mbarrier.arrive(v_free.index(jb), count=1)
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
        p = pn
    last = n_steps - 1
    mbarrier.wait(v_ready.index(last % 2), (last // 2) & 1)
    acc = warpgroup_mma(p, v_s.index(last % 2), acc)
    mbarrier.arrive(v_free.index(last % 2), count=1)
    return acc, m_i, l_i
