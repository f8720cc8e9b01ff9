"""Triton forward kernel for causal / STRING attention with many queries (prefill, chunked prefill).

One program owns BLOCK_M query rows of one (batch, query head) and walks the visible keys once, with
one online-softmax accumulator. The key range of the block is cut into phases so that the hot loops carry
no per-element selects or masks::

    keys  0 ....................................................... lk-1
          [first tile][ far-only  ][ mixed ][ near-only ][ diagonal ]
           key_start    q_shift     both+sel     q        mask (+sel)

* far-only  (every row has d >= S): scores from q_shift, the query rotated by delta = -(S - W);
* mixed     (the d = S boundary crosses the tile): both dots, `where(d >= S, q_shift.k, q.k)`;
* near-only (every row has d < S): scores from q;
* diagonal  (causal boundary, bounds): masked, both dots when STRING is on;
* first tile (only with left padding): masked against key_start.

q_shift is rotated in registers from the q tile (HF rotate_half convention, fp32 cos/sin of the constant
delta from the `CS` table); no second Q tensor exists in HBM. With IS_STRING off the far and mixed phases
are empty and the kernel is plain causal attention.

Shape legend: b batch, h query heads, h_kv key/value heads, g = h / h_kv, lq queries, lk keys, d head dim,
r2 = len(inv_freq) (half the rotary dim).
"""

import triton
import triton.language as tl

_LOG2E = 1.4426950408889634  # 1 / ln(2): softmax runs in base 2


@triton.jit
def _rotate_tile(q, Q_ROWS, stride_qd, row_ok, CS, R2, offs_d):
    """q rotated by the constant delta: x1*cos - x2*sin | x2*cos + x1*sin | x (dims >= 2*R2).

    Q_ROWS: pointer block [rows, 1] to the start of each q row; the partner half is re-read (same cache lines).
    """
    rot = offs_d < 2 * R2
    partner = tl.where(offs_d < R2, offs_d + R2, tl.where(rot, offs_d - R2, offs_d))
    qp = tl.load(Q_ROWS + partner[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
    fi = tl.where(offs_d < R2, offs_d, offs_d - R2)
    cos = tl.load(CS + fi, mask=rot, other=1.0)
    sin = tl.load(CS + R2 + fi, mask=rot, other=0.0)
    sin = tl.where(offs_d < R2, -sin, sin)
    qr = q.to(tl.float32) * cos[None, :] + qp.to(tl.float32) * sin[None, :]
    return qr.to(q.dtype)


@triton.jit
def _tiles(
    acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
    pos, ks, LK, SHIFT, qk_scale, start, end, offs_n, offs_d,
    BLOCK_N: tl.constexpr, MODE: tl.constexpr, MASKED: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Online softmax over key tiles [start, end). MODE 0 near (q), 1 far (q_shift), 2 both + select."""
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
        kt = tl.trans(k)
        if MODE == 0:
            s = tl.dot(q, kt, input_precision=DOT_PREC)
        elif MODE == 1:
            s = tl.dot(qr, kt, input_precision=DOT_PREC)
        else:
            far = (pos[:, None] - offs[None, :]) >= SHIFT
            s = tl.where(far, tl.dot(qr, kt, input_precision=DOT_PREC), tl.dot(q, kt, input_precision=DOT_PREC))
        s = s * qk_scale
        if MASKED:
            vis = (offs[None, :] <= pos[:, None]) & (offs[None, :] >= ks) & in_k[None, :]
            s = tl.where(vis, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # fully masked row: keep exp2 finite
            v = tl.load(v_ptrs, mask=in_k[:, None], other=0.0)
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = m_new
            v = tl.load(v_ptrs)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _string_prefill_kernel(
    Q, K, V, CS, KS, Out, Lse,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_lb, stride_lh, stride_lm,
    H, G, LQ, LK, SHIFT, R2, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_STRING: tl.constexpr, HAS_KS: tl.constexpr, DOT_PREC: tl.constexpr, PHASE_ORDER: tl.constexpr,
):
    # Q   [b, h, lq, d]     any strides          Out [b, h, lq, d]  q.dtype
    # K,V [b, h_kv, lk, d]  any strides          Lse [b, h, lq]     fp32, natural log of the scaled logits
    # CS  [2, r2] fp32: cos, sin of delta * inv_freq (read only with IS_STRING)
    # KS  [b] int32/int64: left-padding count (first valid key index) of each row (read only with HAS_KS)
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
    if IS_STRING:
        qr = _rotate_tile(q, q_rows, stride_qd, row_ok, CS, R2, offs_d)
    else:
        qr = q
    K_BASE = K + off_b * stride_kb + off_hk * stride_kh
    V_BASE = V + off_b * stride_vb + off_hk * stride_vh

    pos = offs_m + (LK - LQ)
    p_min = pid_m * BLOCK_M + (LK - LQ)
    p_max = tl.minimum(p_min + BLOCK_M - 1, LK - 1)
    if HAS_KS:
        ks = tl.load(KS + off_b).to(tl.int32)
        t0 = (ks // BLOCK_N) * BLOCK_N
        lo = t0 + BLOCK_N
    else:
        ks = 0
        t0 = 0
        lo = 0
    end = p_max + 1
    # phase boundaries (tile starts, multiples of BLOCK_N): far [lo, a), mixed [a, b), near [b, c), diagonal [c, end)
    x = p_min + 1
    c = tl.maximum(lo, tl.where(x > 0, x // BLOCK_N * BLOCK_N, 0))
    if IS_STRING:
        xf = p_min - SHIFT + 1
        xn = p_max - SHIFT + 1
        a = tl.minimum(tl.maximum(lo, tl.where(xf > 0, xf // BLOCK_N * BLOCK_N, 0)), c)
        b = tl.minimum(tl.maximum(a, tl.where(xn > 0, (xn + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)), c)
    else:
        a = lo
        b = lo

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    MIX: tl.constexpr = 2 if IS_STRING else 0
    if PHASE_ORDER == 0:  # first tile, far, mixed, near, diagonal: q and q_shift live throughout
        if HAS_KS:
            acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, t0, tl.minimum(lo, end), offs_n, offs_d,
                                   BLOCK_N, MIX, True, DOT_PREC)
        if IS_STRING:
            acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, lo, a, offs_n, offs_d,
                                   BLOCK_N, 1, False, DOT_PREC)
            acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, a, b, offs_n, offs_d,
                                   BLOCK_N, 2, False, DOT_PREC)
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, ks, LK, SHIFT, qk_scale, b, c, offs_n, offs_d,
                               BLOCK_N, 0, False, DOT_PREC)
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, ks, LK, SHIFT, qk_scale, c, end, offs_n, offs_d,
                               BLOCK_N, MIX, True, DOT_PREC)
    else:  # far (q_shift only), mixed, diagonal, first tile, near (q only): one Q tile live in the long loops
        if IS_STRING:
            acc, l_i, m_i = _tiles(acc, l_i, m_i, qr, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, lo, a, offs_n, offs_d,
                                   BLOCK_N, 1, False, DOT_PREC)
            # re-read q (L2 hit) rather than keep it live through the far loop; .cg keeps the two loads distinct
            q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0, cache_modifier=".cg")
            acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, a, b, offs_n, offs_d,
                                   BLOCK_N, 2, False, DOT_PREC)
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, ks, LK, SHIFT, qk_scale, c, end, offs_n, offs_d,
                               BLOCK_N, MIX, True, DOT_PREC)
        if HAS_KS:
            acc, l_i, m_i = _tiles(acc, l_i, m_i, q, qr, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                                   pos, ks, LK, SHIFT, qk_scale, t0, tl.minimum(lo, end), offs_n, offs_d,
                                   BLOCK_N, MIX, True, DOT_PREC)
        acc, l_i, m_i = _tiles(acc, l_i, m_i, q, q, K_BASE, V_BASE, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, ks, LK, SHIFT, qk_scale, b, c, offs_n, offs_d,
                               BLOCK_N, 0, False, DOT_PREC)

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
        return 16, 16, 4, 1, PHASE_ORDER_DEFAULT  # interpreter: tiny tiles exercise every phase on small shapes
    if str(dtype) == "torch.float32":
        return 64, 32, 4, 2, 1
    if head_dim in PREFILL_BY_DIM:
        return PREFILL_BY_DIM[head_dim]
    return (64, 64, 4, 3, 1) if head_dim <= 64 else (128, 64, 8, 3, 1)


PREFILL_CONFIG = None
PHASE_ORDER_DEFAULT = 1
# head_dim -> config, from the H100 sweep at N = 32k (benchmarks/RESULTS.md)
PREFILL_BY_DIM = {128: (128, 64, 8, 3, 0), 64: (128, 64, 4, 3, 1)}


def launch_prefill(q, k, v, cos_sin, key_start, out, lse, *, shift, scale, is_string):
    """Host launcher: fills `out` [b, h, lq, d] and `lse` [b, h, lq] (preallocated) in place."""
    b, h, lq, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    block_m, block_n, num_warps, num_stages, order = _prefill_config(d, q.dtype, q.is_cuda)
    grid = (triton.cdiv(lq, block_m), b * h)
    r2 = cos_sin.shape[-1] if is_string else 0
    _string_prefill_kernel[grid](
        q, k, v, cos_sin, key_start if key_start is not None else q, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *lse.stride(),
        h, h // h_kv, lq, lk, shift, r2, scale * _LOG2E,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n,
        IS_STRING=is_string, HAS_KS=key_start is not None, PHASE_ORDER=order,
        DOT_PREC="ieee" if str(q.dtype) == "torch.float32" else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    return out, lse
