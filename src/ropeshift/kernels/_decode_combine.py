"""Second launch of the split-KV decode (``_decode``): merge the per-split, per-row partials of each head by LSE.

Shape legend as in ``_decode``: b batch, h query heads, h_kv key/value heads, g = h / h_kv, d head dim,
R = partial rows per split (one per head, or, with the split kernel's MERGE off, rows g' and g + g' holding
disjoint parts of head g''s softmax: HAS_R1), P = splits.
"""

import triton
import triton.language as tl


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
