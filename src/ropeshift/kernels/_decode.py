"""Triton split-KV decode ("flash-decoding") for segment-table attention with one query per row.

Two launches, no host syncs, CUDA-graph capturable:

1. `_table_decode_split_kernel`, grid (splits, b * h_kv): one program reads one chunk of one KV head once
   and scores it against all g query heads of that KV head *and* their region-1 copies, stacked as the rows
   of one MMA operand (rows [0, g): q for region 0, rows [g, 2g): q re-rotated by region 1's query map at the
   query's position; padded to >= 16 rows, which the MMA needs anyway). Region-0 rows see the keys of region 0,
   region-1 rows those of region 1 (keys re-rotated per tile by the key map when it is not a constant: a second
   dot), so the two rows of a head hold disjoint parts of the same softmax. Writes per-row partial (out, lse).
2. `_decode_combine_kernel`, grid (b * h,): merges the 2 * splits partials of a head by LSE.

Shape legend: b batch, h query heads, h_kv key/value heads, g = h / h_kv, lk keys, d head dim,
r2 = len(inv_freq), R = padded stacked rows, P = splits.
"""

import triton
import triton.language as tl

from ._prefill import _LOG2E, _chunk_far, _map_delta, _partner, _rotate, _rotate_steps


# the cache grows every step, table scalars vary per call: one binary per table kind for all lengths
@triton.jit(do_not_specialize=["H_KV", "G", "LK", "LO1", "HI0", "RA", "RB", "QC", "QG", "KC", "KG"])
def _table_decode_split_kernel(
    Q, K, V, INV, KS, POFF, Opart, Lpart,
    stride_qb, stride_qh, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    H_KV, G, LK, R2, qk_scale, CHUNK,
    LO1, HI0, RA, RB, QA, QC, QG, QB, KA, KC, KG, KB,
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_R1: tl.constexpr, RULE: tl.constexpr, QMAP: tl.constexpr, KMAP: tl.constexpr,
    HAS_KS: tl.constexpr, HAS_POFF: tl.constexpr, DOT_PREC: tl.constexpr,
):
    # Q     [b, h, 1, d]          (row stride unused)     INV [r2] fp32 inverse frequencies
    # K, V  [b, h_kv, lk, d]                              KS [b] first valid key index; POFF [b] position of key 0
    # Opart [b, h_kv, P, R, d] fp32, contiguous: normalised partial outputs
    # Lpart [b, h_kv, P, R]    fp32, contiguous: partial LSE in log2 units of the scaled logits (-inf: empty)
    pid_s = tl.program_id(0)
    pid_bh = tl.program_id(1)
    num_s = tl.num_programs(0)
    off_b = (pid_bh // H_KV).to(tl.int64)
    off_hk = (pid_bh % H_KV).to(tl.int64)

    rows = tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    n_rows = 2 * G if HAS_R1 else G
    row_ok = rows < n_rows
    is_r1 = rows >= G
    head = off_hk * G + (rows % G)
    q_rows = Q + off_b * stride_qb + head[:, None].to(tl.int64) * stride_qh
    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)

    if HAS_KS:
        ks = tl.load(KS + off_b).to(tl.int32)
    else:
        ks = 0
    if HAS_POFF:
        poff = tl.load(POFF + off_b).to(tl.int32)
    else:
        poff = -ks
    pos = LK - 1
    if HAS_R1 and QMAP != 0:
        qp = tl.load(q_rows + _partner(offs_d, R2)[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
        if QMAP == 1:
            qr = _rotate(q, qp, INV, R2, offs_d, QB)
        else:
            qr = _rotate(q, qp, INV, R2, offs_d, _map_delta(pos + poff, QA, QC, QG, QB))
        q = tl.where(is_r1[:, None], qr, q)
    start = pid_s * CHUNK
    stop = tl.minimum(start + CHUNK, LK)
    K_BASE = K + off_b * stride_kb + off_hk * stride_kh
    V_BASE = V + off_b * stride_vb + off_hk * stride_vh

    acc = tl.zeros([BLOCK_R, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    m_i = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
    for n0 in range(start, stop, BLOCK_N):
        offs = n0 + offs_n
        in_k = (offs < stop) & (offs >= ks)
        k_ptrs = K_BASE + offs[:, None].to(tl.int64) * stride_kn
        k = tl.load(k_ptrs + offs_d[None, :] * stride_kd, mask=in_k[:, None], other=0.0)
        v = tl.load(V_BASE + offs[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd,
                    mask=in_k[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        if HAS_R1 and (KMAP == 2 or KMAP == 4):
            kp = tl.load(k_ptrs + _partner(offs_d, R2)[None, :] * stride_kd, mask=in_k[:, None], other=0.0)
            if KMAP == 2:
                k1 = _rotate(k, kp, INV, R2, offs_d, _map_delta(offs + poff, KA, KC, KG, KB)[:, None])
            else:  # piecewise constant (DCA): two rotations per tile
                k1 = _rotate_steps(k, kp, INV, R2, offs_d, offs + poff, n0 + poff, KC, KG, KB)
            s = tl.where(is_r1[:, None], tl.dot(q, tl.trans(k1), input_precision=DOT_PREC), s)
        s = s * qk_scale
        vis = in_k[None, :] & row_ok[:, None]
        d = pos - offs
        if RULE == 2:
            vis = vis & ((d < RA) | ((offs + poff) < RB))[None, :]
        if HAS_R1:
            if RULE == 1:
                far = (d >= HI0) | ((d >= LO1) & _chunk_far(pos + poff, offs + poff, RA, RB))
            else:
                far = d >= LO1
            vis = vis & (far[None, :] == is_r1[:, None])
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    part = (pid_bh * num_s + pid_s).to(tl.int64) * BLOCK_R
    tl.store(Opart + (part + rows[:, None]) * HEAD_DIM + offs_d[None, :], out)
    tl.store(Lpart + part + rows, lse)


@triton.jit
def _decode_combine_kernel(
    Opart, Lpart, Out, Lse,
    stride_ob, stride_oh, stride_od, stride_lb, stride_lh,
    H, G, NUM_SPLITS,
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, HAS_R1: tl.constexpr,
):
    # Opart [b, h_kv, P, R, d], Lpart [b, h_kv, P, R] (from the split kernel); Out [b, h, 1, d]; Lse [b, h, 1]
    pid = tl.program_id(0)
    off_b = pid // H
    off_h = pid % H
    g = off_h % G
    bhk = (pid // G).to(tl.int64)  # == off_b * h_kv + off_h // G
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    s_ok = offs_s < NUM_SPLITS
    base = (bhk * NUM_SPLITS + offs_s) * BLOCK_R + g  # [P] partial index of the normal row
    l_near = tl.load(Lpart + base, mask=s_ok, other=float("-inf"))
    m = tl.max(l_near, 0)
    if HAS_R1:
        l_far = tl.load(Lpart + base + G, mask=s_ok, other=float("-inf"))
        m = tl.maximum(m, tl.max(l_far, 0))
    m_use = tl.where(m == float("-inf"), 0.0, m)
    w_near = tl.math.exp2(l_near - m_use)
    o = tl.load(Opart + base[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    num = tl.sum(o * w_near[:, None], 0)
    den = tl.sum(w_near, 0)
    if HAS_R1:
        w_far = tl.math.exp2(l_far - m_use)
        o = tl.load(Opart + (base + G)[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None], other=0.0)
        num += tl.sum(o * w_far[:, None], 0)
        den += tl.sum(w_far, 0)
    has = den > 0.0
    out = num / tl.where(has, den, 1.0)
    lse = tl.where(has, (m_use + tl.log2(tl.where(has, den, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(Out + off_b.to(tl.int64) * stride_ob + off_h * stride_oh + offs_d * stride_od,
             out.to(Out.dtype.element_ty))
    tl.store(Lse + off_b.to(tl.int64) * stride_lb + off_h * stride_lh, lse)


_SM_COUNT = {}


def _num_sms(device):
    if device.type != "cuda":
        return 4
    idx = device.index if device.index is not None else 0
    if idx not in _SM_COUNT:
        import torch

        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


DECODE_CONFIG = None  # (BLOCK_N, num_warps, num_stages) override for tuning sweeps


def _decode_config(on_gpu):
    if DECODE_CONFIG is not None:
        return DECODE_CONFIG
    return (64, 4, 3) if on_gpu else (16, 4, 1)


def launch_decode(q, k, v, inv_freq, key_start, pos_offset, out, lse, *, spec, scale):
    """Host launcher for lq == 1: fills `out` [b, h, 1, d] and `lse` [b, h, 1] in place (2 launches)."""
    import torch

    b, h, _, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    block_n, num_warps, num_stages = _decode_config(q.is_cuda)
    n_rows = 2 * g if spec.has_r1 else g
    block_r = max(16, triton.next_power_of_2(n_rows))
    # split count from shapes only (no host sync): ~4 programs per SM, chunks a multiple of BLOCK_N
    want = max(1, triton.cdiv(4 * _num_sms(q.device), b * h_kv))
    splits = max(1, min(want, triton.cdiv(lk, block_n)))
    chunk = triton.cdiv(triton.cdiv(lk, splits), block_n) * block_n
    splits = triton.cdiv(lk, chunk)
    opart = torch.empty((b, h_kv, splits, block_r, d), device=q.device, dtype=torch.float32)
    lpart = torch.empty((b, h_kv, splits, block_r), device=q.device, dtype=torch.float32)
    qk, qa, qc, qg, qb = spec.q_map
    kk, ka, kc, kg, kb = spec.k_map
    if kk == 2 and ka == 1.0 and kc != 0 and kg >= block_n:
        kk = 4  # piecewise-constant key map (DCA): two rotations per tile, no per-key trigonometry
    _table_decode_split_kernel[(splits, b * h_kv)](
        q, k, v, inv_freq, key_start if key_start is not None else q, pos_offset if pos_offset is not None else q,
        opart, lpart,
        q.stride(0), q.stride(1), q.stride(3), *k.stride(), *v.stride(),
        h_kv, g, lk, inv_freq.numel(), scale * _LOG2E, chunk,
        spec.lo1, spec.hi0, spec.ra, spec.rb, qa, qc, qg, qb, ka, kc, kg, kb,
        HEAD_DIM=d, BLOCK_R=block_r, BLOCK_N=block_n,
        HAS_R1=spec.has_r1, RULE=spec.rule, QMAP=qk if spec.has_r1 else 0, KMAP=kk if spec.has_r1 else 0,
        HAS_KS=key_start is not None, HAS_POFF=pos_offset is not None,
        DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    _decode_combine_kernel[(b * h,)](
        opart, lpart, out, lse,
        out.stride(0), out.stride(1), out.stride(3), lse.stride(0), lse.stride(1),
        h, g, splits,
        HEAD_DIM=d, BLOCK_R=block_r, BLOCK_S=max(2, triton.next_power_of_2(splits)), HAS_R1=spec.has_r1,
        num_warps=4,
    )
    return out, lse
