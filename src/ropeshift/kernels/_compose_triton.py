"""Triton helpers of ``ropeshift.kernels.compose``: the one-pass merge and a one-pass re-rotation.

``fused_merge``: the fused twin of ``ropeshift.attention.merge.merge_attention`` over compose Pieces.

For every final row it gathers each piece's (out, lse) through the piece's block/flip row map (see
``compose.Piece``), then, in fp32::

    lse = log sum_k e^lse_k,   out = sum_k out_k e^(lse_k - lse)        (rows with no key: 0, -inf)

i.e. ``merge_attention`` folded over the pieces, reading every partial once and writing out (q's dtype) and
lse once. Pieces are described to the kernel by an int64 table (data pointers, row map, strides), so one
compiled kernel serves any number of pieces K (a constexpr) and any layout the vendor kernels return.

``fused_rotate``: ``ropeshift.rope.rotate`` with one delta per row, reading x once and writing it once (the
eager version makes ~20 passes over fp32 temporaries); angles, cos and sin come from torch in fp32 exactly as
in ``rotate``, the kernel only applies them.
Importing this module imports triton.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_FIELDS = 14  # out_ptr, lse_ptr, row0, rows, period, valid, blocks, flip, so_B, so_h, so_r, sl_B, sl_h, sl_r


@triton.jit
def _locate(base, rows, bi):
    """(row present?, source batch index, source row) of final rows in one piece."""
    row0 = tl.load(base + 2)
    nrows = tl.load(base + 3)
    period = tl.load(base + 4)
    valid = tl.load(base + 5)
    blocks = tl.load(base + 6)
    flip = tl.load(base + 7)
    t = rows.to(tl.int64) - row0
    inside = (t >= 0) & (t < nrows)
    t = tl.where(inside, t, 0)
    c = t // period
    r = t - c * period
    ok = inside & (r < valid)
    src = tl.where(flip != 0, valid - 1 - r, r)
    return ok, bi * blocks + c, src


@triton.jit
def _merge_kernel(table, out_ptr, lse_ptr, n, H, so_b, so_h, so_r, sl_b, sl_h,
                  K: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
                  F: tl.constexpr):
    pid_r = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hh = (pid_bh % H).to(tl.int64)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < n
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    mx = tl.full([BLOCK_R], float("-inf"), tl.float32)
    for kk in tl.static_range(K):
        base = table + kk * F
        lse_p = tl.load(base + 1).to(tl.pointer_type(tl.float32))
        ok, bsrc, src = _locate(base, rows, bi)
        ok = ok & rmask
        l = tl.load(lse_p + bsrc * tl.load(base + 11) + hh * tl.load(base + 12) + src * tl.load(base + 13),
                    mask=ok, other=float("-inf"))
        mx = tl.maximum(mx, l)
    safe = tl.where(mx == float("-inf"), 0.0, mx)
    s = tl.zeros([BLOCK_R], tl.float32)
    for kk in tl.static_range(K):
        base = table + kk * F
        lse_p = tl.load(base + 1).to(tl.pointer_type(tl.float32))
        ok, bsrc, src = _locate(base, rows, bi)
        ok = ok & rmask
        l = tl.load(lse_p + bsrc * tl.load(base + 11) + hh * tl.load(base + 12) + src * tl.load(base + 13),
                    mask=ok, other=float("-inf"))
        s += tl.where(ok, tl.exp(l - safe), 0.0)
    nonempty = s > 0
    total = tl.where(nonempty, safe + tl.log(tl.where(nonempty, s, 1.0)), float("-inf"))
    acc = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    for kk in tl.static_range(K):
        base = table + kk * F
        out_p = tl.load(base).to(out_ptr.dtype)
        lse_p = tl.load(base + 1).to(tl.pointer_type(tl.float32))
        ok, bsrc, src = _locate(base, rows, bi)
        ok = ok & rmask
        l = tl.load(lse_p + bsrc * tl.load(base + 11) + hh * tl.load(base + 12) + src * tl.load(base + 13),
                    mask=ok, other=float("-inf"))
        w = tl.where(ok & nonempty, tl.exp(l - tl.where(nonempty, total, 0.0)), 0.0)
        row_off = bsrc * tl.load(base + 8) + hh * tl.load(base + 9) + src * tl.load(base + 10)
        o = tl.load(out_p + row_off[:, None] + cols[None, :], mask=ok[:, None] & cmask[None, :], other=0.0)
        acc += o.to(tl.float32) * w[:, None]
    orow = bi * so_b + hh * so_h + rows.to(tl.int64) * so_r
    tl.store(out_ptr + orow[:, None] + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=rmask[:, None] & cmask[None, :])
    tl.store(lse_ptr + bi * sl_b + hh * sl_h + rows, total, mask=rmask)


def fused_merge(pieces, shape, dtype, block_r=64):
    """(out [b, h, n, d] dtype, lse [b, h, n] fp32) of compose Pieces, in one kernel launch."""
    b, h, n, d = shape
    device = pieces[0].out.device
    rows = []
    keep = []  # the tensors whose pointers the table holds
    for p in pieces:
        out = p.out if p.out.stride(-1) == 1 and p.out.dtype == dtype else p.out.to(dtype).contiguous()
        lse = p.lse.float()
        keep += [out, lse]
        rows.append([out.data_ptr(), lse.data_ptr(), p.row0, p.rows, p.period, p.valid, p.blocks, int(p.flip),
                     out.stride(0), out.stride(1), out.stride(2), lse.stride(0), lse.stride(1), lse.stride(2)])
    table = torch.tensor(rows, dtype=torch.int64).to(device, non_blocking=True)
    out = torch.empty(b, h, n, d, dtype=dtype, device=device)
    lse = torch.empty(b, h, n, dtype=torch.float32, device=device)
    grid = (triton.cdiv(n, block_r), b * h)
    _merge_kernel[grid](table, out, lse, n, h, out.stride(0), out.stride(1), out.stride(2), lse.stride(0),
                        lse.stride(1), K=len(pieces), D=d, BLOCK_D=triton.next_power_of_2(d), BLOCK_R=block_r,
                        F=_FIELDS, num_warps=8)
    del keep
    return out, lse


@triton.jit
def _rotate_kernel(x_ptr, cos_ptr, sin_ptr, y_ptr, L, H, sx_b, sx_h, sx_r, sy_b, sy_h, sy_r, s_cs,
                   HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, TAIL: tl.constexpr, BLOCK_TAIL: tl.constexpr,
                   BLOCK_R: tl.constexpr):
    pid_r = tl.program_id(0)
    pid_bh = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hh = (pid_bh % H).to(tl.int64)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < L
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_HALF)
    m = rmask[:, None] & (cols < HALF)[None, :]
    xrow = x_ptr + bi * sx_b + hh * sx_h + rows64[:, None] * sx_r
    yrow = y_ptr + bi * sy_b + hh * sy_h + rows64[:, None] * sy_r
    cs = rows64[:, None] * s_cs + cols[None, :]
    c = tl.load(cos_ptr + cs, mask=m, other=1.0)
    s = tl.load(sin_ptr + cs, mask=m, other=0.0)
    x1 = tl.load(xrow + cols[None, :], mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(xrow + HALF + cols[None, :], mask=m, other=0.0).to(tl.float32)
    dt = y_ptr.dtype.element_ty
    tl.store(yrow + cols[None, :], (x1 * c - x2 * s).to(dt), mask=m)
    tl.store(yrow + HALF + cols[None, :], (x2 * c + x1 * s).to(dt), mask=m)
    if TAIL > 0:
        tcols = tl.arange(0, BLOCK_TAIL)
        tm = rmask[:, None] & (tcols < TAIL)[None, :]
        t = tl.load(xrow + 2 * HALF + tcols[None, :], mask=tm, other=0.0)
        tl.store(yrow + 2 * HALF + tcols[None, :], t, mask=tm)


def fused_rotate(x, delta, inv_freq, block_r=64):
    """``rotate(x, delta, inv_freq)`` for x [b, h, L, d] (last dim contiguous) and delta an int or a per-row
    [L] (or [1, 1, L]) tensor; returns a contiguous tensor like x."""
    b, h, L, d = x.shape
    half = inv_freq.numel()
    if torch.is_tensor(delta):
        delta = delta.reshape(-1)
        if delta.numel() != L:
            raise ValueError(f"fused_rotate: delta must have one value per row ({L}), got {delta.numel()}")
    else:
        delta = torch.tensor([delta], device=x.device)
    angle = delta.to(device=x.device, dtype=torch.float32)[:, None] * inv_freq.to(x.device, torch.float32)
    cos, sin = angle.cos().contiguous(), angle.sin().contiguous()
    s_cs = half if cos.shape[0] == L and L > 1 else 0
    if x.stride(-1) != 1:
        x = x.contiguous()
    y = torch.empty(b, h, L, d, dtype=x.dtype, device=x.device)
    tail = d - 2 * half
    grid = (triton.cdiv(L, block_r), b * h)
    _rotate_kernel[grid](x, cos, sin, y, L, h, x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1),
                         y.stride(2), s_cs, HALF=half, BLOCK_HALF=triton.next_power_of_2(half), TAIL=tail,
                         BLOCK_TAIL=triton.next_power_of_2(max(tail, 1)), BLOCK_R=block_r, num_warps=4)
    return y
