"""Shared helpers for the kernel tests and benchmarks: positions, an fp64 brute-force STRING reference that
scales to long sequences, and PyTorch's own same-dtype attention (the calibration for tolerances).

The long-sequence reference computes q.k and q_shift.k with two matmuls and selects per pair; it is checked
against the project oracle `ropeshift.attention.reference.reference_attention` in test_string_attention.py.
"""
import torch

from ropeshift.rope import rotate


def positions(b, lq, lk, key_start, device):
    """qpos [b, lq], kpos [b, lk], kvalid [b, lk] for bottom-right alignment with left padding key_start [b]."""
    ks = torch.zeros(b, dtype=torch.int64, device=device) if key_start is None else key_start.to(device).long()
    j = torch.arange(lk, device=device)
    qpos = (lk - lq + torch.arange(lq, device=device))[None, :] - ks[:, None]
    kpos = j[None, :] - ks[:, None]
    return qpos, kpos, j[None, :] >= ks[:, None]


def explicit_attention(q, k, v, *, shift, window, inv_freq, scale, key_start=None, dtype=torch.float64,
                       head_chunk=4):
    """STRING attention with explicit logits, computed in `dtype` (fp64: reference; q.dtype: PyTorch's own error).

    Returns out [b, h, lq, d] and lse [b, h, lq] in `dtype` (rows without visible keys: 0 and -inf).
    """
    b, h, lq, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    qpos, kpos, kvalid = positions(b, lq, lk, key_start, q.device)
    dist = qpos[:, :, None] - kpos[:, None, :]  # [b, lq, lk]
    vis = ((dist >= 0) & kvalid[:, None, :])[:, None]
    far = (dist >= shift)[:, None]
    k_rep, v_rep = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)  # [b, h, lk, d]
    outs, lses = [], []
    for h0 in range(0, h, head_chunk):
        hs = slice(h0, min(h, h0 + head_chunk))
        qc, kc, vc = q[:, hs].to(dtype), k_rep[:, hs].to(dtype), v_rep[:, hs].to(dtype)
        s = qc @ kc.transpose(-1, -2)
        if shift < lk and shift != window:
            qr = rotate(qc, window - shift, inv_freq)
            s = torch.where(far, qr @ kc.transpose(-1, -2), s)
        s = (s * scale).masked_fill(~vis, float("-inf"))
        lse = torch.logsumexp(s, dim=-1)
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        outs.append(p @ vc)
        lses.append(lse)
    return torch.cat(outs, 1), torch.cat(lses, 1)


def rel_err(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def lse_err(x, ref):
    """max |x - ref| over rows with visible keys; inf if the no-key rows (ref -inf) differ."""
    ref = ref.double()
    x = x.double()
    fin = torch.isfinite(ref)
    if not torch.equal(torch.isneginf(x), ~fin):
        return float("inf")
    return (x[fin] - ref[fin]).abs().max().item() if fin.any() else 0.0


def llama_inv_freq(d, base=500000.0, rotary_frac=1.0):
    r = int(d * rotary_frac) // 2 * 2
    return 1.0 / (base ** (torch.arange(0, r, 2, dtype=torch.float32) / r))
