"""One-pass Triton merge of compose Pieces: the fused twin of ``ropeshift.attention.merge.merge_attention``.

For every final row it gathers each piece's (out, lse) through the piece's block/flip row map (see
``compose.Piece``), then, in fp32::

    lse = log sum_k e^lse_k,   out = sum_k out_k e^(lse_k - lse)        (rows with no key: 0, -inf)

i.e. ``merge_attention`` folded over the pieces, reading every partial once and writing out (q's dtype) and
lse once. Pieces are described to the kernel by an int64 table (data pointers, row map, strides), so one
compiled kernel serves any number of pieces K (a constexpr) and any layout the vendor kernels return.
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


def fused_merge(pieces, shape, dtype, block_r=32):
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
                        F=_FIELDS, num_warps=4)
    del keep
    return out, lse
