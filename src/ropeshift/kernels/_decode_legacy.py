"""The previous split-KV decode kernel (per-key re-rotation with a partner-column load and per-element cos/sin,
two dots on every tile), kept for side-by-side benchmarks: ``ROPESHIFT_DECODE_LEGACY=1`` or
``_decode.LEGACY = True`` routes ``launch_decode`` here. Same contract and shapes as ``_decode``.
"""

import triton
import triton.language as tl

from ._decode_combine import _decode_combine_kernel, _num_sms
from ._prefill import _LOG2E, _chunk_far, _map_delta, _partner, _rotate, _rotate_steps


# the cache grows every step, table scalars vary per call: one binary per table kind for all lengths
@triton.jit(do_not_specialize=["H_KV", "G", "LK", "LO1", "HI0", "RA", "RB", "QC", "QG", "KC", "KG"])
def _legacy_decode_split_kernel(
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


def launch_decode_legacy(q, k, v, inv_freq, key_start, pos_offset, out, lse, *, spec, scale):
    """The previous host launcher for lq == 1 (same contract as ``_decode.launch_decode``)."""
    import torch

    b, h, _, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    block_n, num_warps, num_stages = (64, 4, 3) if q.is_cuda else (16, 4, 1)
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
    _legacy_decode_split_kernel[(splits, b * h_kv)](
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
