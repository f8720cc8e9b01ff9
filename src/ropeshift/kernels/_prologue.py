"""The prologue kernel: keys (or queries) re-rotated once by a position map into a buffer of their own, for the
prefill kernels (K1 of calls with many queries; Q1 / K1 of the Hopper prefill, only the rows it reads) and the
K1 cache's writes (``key_cache``: a slot range, or one slot per row of a decode step)::

    x [b, hx, n, d] rotated at position p = index + pos_offset[b]   ->   x1 = R((map(p) - p) theta) x
"""

import triton
import triton.language as tl

from ._rotary import _cos_sin, _map_delta, _partner, _rotate, _rotate_halves, _row_offsets


@triton.jit
def _rows_used(offs, poff, TRIM: tl.constexpr, T_RULE: tl.constexpr, T_LO1, T_CS, T_N, T_BLOCK: tl.constexpr):
    """Which rows [BLOCK] of a Hopper prefill's Q1 / K1 that kernel ever reads (``_prefill_hopper_ws``: 128-row
    query programs, 128-key tiles; index = position - poff, poff >= 0):
    TRIM 1 (Q1): rows of a query program with a region-1 tile: its last row past the band start LO1 (rule none),
    or in a later chunk than key 0's (chunk rule, s = T_CS);
    TRIM 2 (K1): keys below the end of the last far or edge tile of any program: tiles below
    cdiv(T_N - LO1, 128) (rule none), below cdiv(last chunk start - poff, 128) (chunk rule); T_N = the query
    rows rounded up to 128."""
    if TRIM == 1:
        last = offs // T_BLOCK * T_BLOCK + T_BLOCK - 1  # the program's last row
        if T_RULE == 1:
            used = (poff + last) // T_CS > poff // T_CS
        else:
            used = last >= T_LO1
    else:
        if T_RULE == 1:
            n1 = (poff + T_N - 1) // T_CS * T_CS - poff
        else:
            n1 = T_N - T_LO1
        used = offs < (n1 + T_BLOCK - 1) // T_BLOCK * T_BLOCK
    return used


@triton.jit(do_not_specialize=["H_KV", "LK", "KC", "KG", "T_LO1", "T_CS", "T_N"])
def _rotate_keys_kernel(
    K, K1, INV, KS, POFF, stride_kb, stride_kh, stride_kn, stride_kd, H_KV, LK, R2, KA, KC, KG, KB,
    HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, HAS_KS: tl.constexpr, HAS_POFF: tl.constexpr,
    SLOTS=None, HAS_SLOTS: tl.constexpr = False, HALVES: tl.constexpr = False,
    TRIM: tl.constexpr = 0, T_RULE: tl.constexpr = 0, T_LO1=0, T_CS=1, T_N=0, T_BLOCK: tl.constexpr = 128,
):
    # K, K1 [b, h_kv, lk, d] (same strides): K1 = K re-rotated by the key map at each key's position
    # HAS_SLOTS: SLOTS [b] int, one key per row (slot SLOTS[b]; grid (1, b * h_kv)): a decode step's K1 write
    # HALVES: full rotary (2 r2 == d): the two halves rotated with one cos/sin per pair (half the trig)
    # TRIM (``_rows_used``): rows the Hopper prefill never reads are neither read nor written here
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    off_b = (pid_bh // H_KV).to(tl.int64)
    off_hk = (pid_bh % H_KV).to(tl.int64)
    ks, poff = _row_offsets(KS, POFF, off_b, HAS_KS, HAS_POFF)
    if HAS_SLOTS:
        lane = tl.arange(0, BLOCK)
        offs = tl.load(SLOTS + off_b).to(tl.int32) + lane
        ok = (lane < 1) & (offs < LK)
    else:
        offs = pid_n * BLOCK + tl.arange(0, BLOCK)
        ok = offs < LK
    if TRIM != 0:
        ok = ok & _rows_used(offs, poff, TRIM, T_RULE, T_LO1, T_CS, T_N, T_BLOCK)
    rows = off_b * stride_kb + off_hk * stride_kh + offs[:, None].to(tl.int64) * stride_kn
    _write_rotated(K, K1, rows, ok, stride_kd, INV, R2, _map_delta(offs + poff, KA, KC, KG, KB)[:, None], HEAD_DIM,
                   HALVES)


@triton.jit
def _write_rotated(K, K1, rows, ok, stride_kd, INV, R2, delta, HEAD_DIM: tl.constexpr, HALVES: tl.constexpr):
    """K1[rows] = K[rows] rotated by ``delta`` [n, 1] fp32 positions: rows [n, 1] int64 element offsets of the rows
    (the same in K and K1), ok [n] the rows to make. HALVES (full rotary, 2 r2 == d): one cos/sin per rotary pair
    over the two halves; else per dim with each dim's rotate_half partner (dims past 2 r2 unchanged). The one K1
    write of the prologue kernel and of the decode kernel's step slot (``_decode``'s WRITE_K1)."""
    if HALVES:
        HALF: tl.constexpr = HEAD_DIM // 2
        offs_h = tl.arange(0, HALF)
        lo = tl.load(K + rows + offs_h[None, :] * stride_kd, mask=ok[:, None], other=0.0)
        hi = tl.load(K + rows + (HALF + offs_h)[None, :] * stride_kd, mask=ok[:, None], other=0.0)
        c, sn = _cos_sin(delta * tl.load(INV + offs_h)[None, :])
        r_lo, r_hi = _rotate_halves(lo.to(tl.float32), hi.to(tl.float32), c, sn)
        tl.store(K1 + rows + offs_h[None, :] * stride_kd, r_lo.to(lo.dtype), mask=ok[:, None])
        tl.store(K1 + rows + (HALF + offs_h)[None, :] * stride_kd, r_hi.to(lo.dtype), mask=ok[:, None])
    else:
        offs_d = tl.arange(0, HEAD_DIM)
        k = tl.load(K + rows + offs_d[None, :] * stride_kd, mask=ok[:, None], other=0.0)
        kp = tl.load(K + rows + _partner(offs_d, R2)[None, :] * stride_kd, mask=ok[:, None], other=0.0)
        tl.store(K1 + rows + offs_d[None, :] * stride_kd, _rotate(k, kp, INV, R2, offs_d, delta), mask=ok[:, None])
