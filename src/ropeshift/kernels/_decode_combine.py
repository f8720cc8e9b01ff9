"""Second launch of the split-KV decode (``_decode``): merge the per-split, per-row partials of each head by LSE.

Shape legend as in ``_decode``: b batch, h query heads, h_kv key/value heads, g = h / h_kv, d head dim,
R = partial rows per split (row g' holds head g''s partial softmax over the split's keys), P = splits.
"""

import triton
import triton.language as tl


@triton.jit
def _decode_combine_kernel(
    Opart, Lpart, Out, Lse,
    stride_ob, stride_oh, stride_od, stride_lb, stride_lh,
    H, G, NUM_SPLITS,
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr,
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
    base = (bhk * NUM_SPLITS + offs_s) * BLOCK_R + g  # [P] partial index of the head's row
    lp = tl.load(Lpart + base, mask=s_ok, other=float("-inf"))
    m = tl.max(lp, 0)
    m_use = tl.where(m == float("-inf"), 0.0, m)
    w = tl.math.exp2(lp - m_use)
    o = tl.load(Opart + base[:, None] * HEAD_DIM + offs_d[None, :], mask=s_ok[:, None], other=0.0)
    num = tl.sum(o * w[:, None], 0)
    den = tl.sum(w, 0)
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
