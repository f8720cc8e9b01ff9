"""Shared helpers for the kernel tests and benchmarks: positions, an fp64 region-wise reference that scales to
long sequences, method settings with region edges at tile boundaries, and error measures.

The long-sequence reference scores each region of a method's segment table with one matmul of the re-rotated
queries and keys and selects per pair (visibility from the method's own ``visible``); tests/methods/test_table.py
proves the table equals rel(m, n), and test_table_attention.py checks this reference against the project oracle
`ropeshift.attention.reference.reference_attention` on small inputs.
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


def _rotated(x, delta, pos, inv_freq):
    """x [b, hc, l, d] re-rotated by a region's delta (None, a constant, or a callable of positions [b, l])."""
    if delta is None:
        return x
    if callable(delta):
        return rotate(x, delta(pos)[:, None, :], inv_freq)
    return rotate(x, delta, inv_freq)


def table_reference(q, k, v, method, *, inv_freq, scale, key_start=None, dtype=torch.float64, head_chunk=4):
    """Attention with explicit logits per region, computed in `dtype` (fp64: reference; q.dtype: PyTorch's own
    error). Returns out [b, h, lq, d] and lse [b, h, lq] in `dtype` (rows without visible keys: 0 and -inf)."""
    b, h, lq, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    qpos, kpos, kvalid = positions(b, lq, lk, key_start, q.device)
    dist = qpos[:, :, None] - kpos[:, None, :]  # [b, lq, lk]
    qp3, kp3 = qpos[:, :, None], kpos[:, None, :]
    vis = (dist >= 0) & kvalid[:, None, :]
    extra = method.visible(dist, qp3, kp3)
    if extra is not None:
        vis = vis & extra
    regions = method.table().regions
    insides = [(r.contains(dist, qp3, kp3) & vis)[:, None] for r in regions]
    k_rep, v_rep = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)  # [b, h, lk, d]
    inv = inv_freq.to(q.device)
    scale = scale * method.logit_scale
    outs, lses = [], []
    for h0 in range(0, h, head_chunk):
        hs = slice(h0, min(h, h0 + head_chunk))
        qc, kc, vc = q[:, hs].to(dtype), k_rep[:, hs].to(dtype), v_rep[:, hs].to(dtype)
        s = torch.full((b, qc.shape[1], lq, lk), float("-inf"), dtype=dtype, device=q.device)
        for r, inside in zip(regions, insides):
            if not bool(inside.any()):
                continue
            qr, kr = _rotated(qc, r.q_delta, qpos, inv), _rotated(kc, r.k_delta, kpos, inv)
            s = torch.where(inside, (qr @ kr.transpose(-1, -2)) * scale, s)
        lse = torch.logsumexp(s, dim=-1)
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        outs.append(p @ vc)
        lses.append(lse)
    return torch.cat(outs, 1), torch.cat(lses, 1)


def method_cases(lk, tile):
    """(id, registry name, params): every attention-level method with region edges at tile multiples +- 1."""
    t = tile
    return [
        ("string", "string", dict(shift=t, window=4)),
        ("string_p1", "string", dict(shift=t + 1, window=t // 2)),
        ("rerope", "rerope", dict(window=t - 1)),
        ("rerope_leaky", "rerope", dict(window=t + 1, leaky=4.0)),
        ("self_extend", "self_extend", dict(group_size=3, window=3 * (t // 3) - 3 if t > 8 else 3)),
        ("dca", "dca", dict(chunk_size=t + 5, local_window=5)),
        ("lm_infinite", "lm_infinite", dict(n_global=3, n_local=t + 1, distance_limit=t)),
        ("lm_infinite_cap", "lm_infinite", dict(n_global=2, n_local=t - 1, distance_limit=2 * t - 1)),
        ("plain", "plain", {}),
    ]


def build(name, params):
    from ropeshift.methods.registry import METHODS

    return METHODS[name](**params)


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


def calibrated_tol(q, k, v, method, kw: dict, dtype, ref_out, ref_lse) -> tuple[float, float]:
    """(out, lse) tolerances against the fp64 reference (ref_out, ref_lse): 1e-4 in fp32, else twice PyTorch's
    own error of the same maths in ``dtype`` (``table_reference(..., dtype=dtype)``) plus 1e-6."""
    if dtype == torch.float32:
        return 1e-4, 1e-4
    t_out, t_lse = table_reference(q, k, v, method, **kw, dtype=dtype)
    return 2 * rel_err(t_out, ref_out) + 1e-6, 2 * lse_err(t_lse, ref_lse) + 1e-6


def llama_inv_freq(d, base=500000.0, rotary_frac=1.0):
    r = int(d * rotary_frac) // 2 * 2
    return 1.0 / (base ** (torch.arange(0, r, 2, dtype=torch.float32) / r))
