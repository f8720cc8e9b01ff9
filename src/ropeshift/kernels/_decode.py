"""Triton split-KV decode ("flash-decoding") for causal / STRING attention with one query per row.

Two launches, no host syncs, CUDA-graph capturable:

1. `_string_decode_split_kernel`, grid (splits, b * h_kv): one program reads one chunk of one KV head once
   and scores it against all g query heads of that KV head *and* their shifted copies, stacked as the rows
   of one MMA operand (rows [0, g): q, rows [g, 2g): q rotated by delta = -(S - W); padded to >= 16 rows,
   which the MMA needs anyway). Normal rows see keys with d < S, shifted rows keys with d >= S, so the two
   rows of a head hold disjoint parts of the same softmax. Writes per-row partial (out, lse).
2. `_decode_combine_kernel`, grid (b * h,): merges the 2 * splits partials of a head by LSE.

Shape legend: b batch, h query heads, h_kv key/value heads, g = h / h_kv, lk keys, d head dim,
r2 = len(inv_freq), R = padded stacked rows, P = splits.
"""

import triton
import triton.language as tl

from ._prefill import _LOG2E, _rotate_tile


@triton.jit(do_not_specialize=["LK"])  # the cache grows every step: one binary for all lengths
def _string_decode_split_kernel(
    Q, K, V, CS, KS, Opart, Lpart,
    stride_qb, stride_qh, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    H_KV, G, LK, SHIFT, R2, qk_scale, CHUNK,
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_STRING: tl.constexpr, HAS_KS: tl.constexpr, DOT_PREC: tl.constexpr,
):
    # Q     [b, h, 1, d]          (row stride unused)     CS [2, r2] fp32 cos, sin of delta * inv_freq
    # K, V  [b, h_kv, lk, d]                              KS [b] first valid key index of each row
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
    n_rows = 2 * G if IS_STRING else G
    row_ok = rows < n_rows
    is_far = rows >= G
    head = off_hk * G + (rows % G)
    q_rows = Q + off_b * stride_qb + head[:, None].to(tl.int64) * stride_qh
    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
    if IS_STRING:
        qr = _rotate_tile(q, q_rows, stride_qd, row_ok, CS, R2, offs_d)
        q = tl.where(is_far[:, None], qr, q)

    if HAS_KS:
        ks = tl.load(KS + off_b).to(tl.int32)
    else:
        ks = 0
    pos = LK - 1
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
        k = tl.load(K_BASE + offs[:, None].to(tl.int64) * stride_kn + offs_d[None, :] * stride_kd,
                    mask=in_k[:, None], other=0.0)
        v = tl.load(V_BASE + offs[:, None].to(tl.int64) * stride_vn + offs_d[None, :] * stride_vd,
                    mask=in_k[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        vis = in_k[None, :] & row_ok[:, None]
        if IS_STRING:
            far = (pos - offs[None, :]) >= SHIFT
            vis = vis & (far == is_far[:, None])
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
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, IS_STRING: tl.constexpr,
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
    if IS_STRING:
        l_far = tl.load(Lpart + base + G, mask=s_ok, other=float("-inf"))
        m = tl.maximum(m, tl.max(l_far, 0))
    m_use = tl.where(m == float("-inf"), 0.0, m)
    w_near = tl.math.exp2(l_near - m_use)
    o = tl.load(Opart + base[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    num = tl.sum(o * w_near[:, None], 0)
    den = tl.sum(w_near, 0)
    if IS_STRING:
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


def launch_decode(q, k, v, cos_sin, key_start, out, lse, *, shift, scale, is_string):
    """Host launcher for lq == 1: fills `out` [b, h, 1, d] and `lse` [b, h, 1] in place (2 launches)."""
    import torch

    b, h, _, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    block_n, num_warps, num_stages = _decode_config(q.is_cuda)
    n_rows = 2 * g if is_string else g
    block_r = max(16, triton.next_power_of_2(n_rows))
    # split count from shapes only (no host sync): ~4 programs per SM, chunks a multiple of BLOCK_N
    want = max(1, triton.cdiv(4 * _num_sms(q.device), b * h_kv))
    splits = max(1, min(want, triton.cdiv(lk, block_n)))
    chunk = triton.cdiv(triton.cdiv(lk, splits), block_n) * block_n
    splits = triton.cdiv(lk, chunk)
    opart = torch.empty((b, h_kv, splits, block_r, d), device=q.device, dtype=torch.float32)
    lpart = torch.empty((b, h_kv, splits, block_r), device=q.device, dtype=torch.float32)
    r2 = cos_sin.shape[-1] if is_string else 0
    _string_decode_split_kernel[(splits, b * h_kv)](
        q, k, v, cos_sin, key_start if key_start is not None else q, opart, lpart,
        q.stride(0), q.stride(1), q.stride(3), *k.stride(), *v.stride(),
        h_kv, g, lk, shift, r2, scale * _LOG2E, chunk,
        HEAD_DIM=d, BLOCK_R=block_r, BLOCK_N=block_n, IS_STRING=is_string, HAS_KS=key_start is not None,
        DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    _decode_combine_kernel[(b * h,)](
        opart, lpart, out, lse,
        out.stride(0), out.stride(1), out.stride(3), lse.stride(0), lse.stride(1),
        h, g, splits,
        HEAD_DIM=d, BLOCK_R=block_r, BLOCK_S=max(2, triton.next_power_of_2(splits)), IS_STRING=is_string,
        num_warps=4,
    )
    return out, lse
