"""Rotary helpers every Triton kernel here shares: cos/sin of fp32 angles, HF rotate_half rotations by a
position delta, the delta of a position map, and a batch row's (key_start, pos_offset).

Rotations follow HF rotate_half over the first 2 r2 dims (r2 = len(inv_freq); dims beyond untouched)::

    x = [x_lo | x_hi | rest]   ->   [x_lo cos - x_hi sin | x_hi cos + x_lo sin | rest]   (angle = delta * inv_freq)
"""

import os

import triton
import triton.language as tl

# accurate (range-reduced) cos/sin on the GPU: angles reach 1e5 rad at 128k; the interpreter has no libdevice
# GPU: MUFU cos/sin approximations after an exact-to-rounding Cody-Waite reduction to [-pi, pi] (angles reach
# 1e5 rad at 128k; cos.approx alone is wrong there, libdevice's accurate path costs ~40 instructions). The
# interpreter has no inline asm: it runs tl.cos/tl.sin on the same reduced angle.
_ASM = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def _partner(offs_d, R2):
    """Column of each dim's rotate_half partner (itself beyond the rotary dims)."""
    return tl.where(offs_d < R2, offs_d + R2, tl.where(offs_d < 2 * R2, offs_d - R2, offs_d))


@triton.jit
def _cos_sin(ang):
    """cos, sin of fp32 angles: r = ang - 2 pi round(ang / 2 pi) with a two-part 2 pi, then approximations
    (abs error ~1e-6 on [-pi, pi])."""
    k = tl.floor(ang * 0.15915494309189535 + 0.5)
    r = tl.fma(k, -6.2831854820251465, ang)
    r = tl.fma(k, 1.7484555314695172e-07, r)
    if _ASM:
        c = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=f,f", [r], dtype=tl.float32, is_pure=True, pack=1)
        s = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=f,f", [r], dtype=tl.float32, is_pure=True, pack=1)
    else:
        c = tl.cos(r)
        s = tl.sin(r)
    return c, s


@triton.jit
def _rot_cs(INV, R2, offs_d, delta):
    """cos and signed sin [.., d] of a rotation by delta ([rows, 1] or scalar, fp32) positions (rotate_half)."""
    rot = offs_d < 2 * R2
    fi = tl.where(offs_d < R2, offs_d, offs_d - R2)
    inv = tl.load(INV + fi, mask=rot, other=0.0)
    cos, sin = _cos_sin(delta * inv[None, :])
    cos = tl.where(rot[None, :], cos, 1.0)
    sin = tl.where((offs_d < R2)[None, :], -sin, tl.where(rot[None, :], sin, 0.0))
    return cos, sin


@triton.jit
def _rotate(x, xp, INV, R2, offs_d, delta):
    """x [rows, d] rotated by delta ([rows, 1] or scalar, fp32) positions; xp = x's partner columns."""
    cos, sin = _rot_cs(INV, R2, offs_d, delta)
    return (x.to(tl.float32) * cos + xp.to(tl.float32) * sin).to(x.dtype)


@triton.jit
def _map_delta(pos, A, C, GR, B):
    """map(pos) - pos = (a - 1) pos + c floor(pos / G) + b, in fp32 (pos >= 0 where it matters)."""
    return (A - 1.0) * pos.to(tl.float32) + (C * (pos // GR)).to(tl.float32) + B


@triton.jit
def _row_offsets(KS, POFF, off_b, HAS_KS: tl.constexpr, HAS_POFF: tl.constexpr):
    """(first valid key index ks, position of key index 0 poff) of batch row off_b, int32: KS[b] / 0 and
    POFF[b] / -ks, as every kernel here takes them."""
    if HAS_KS:
        ks = tl.load(KS + off_b).to(tl.int32)
    else:
        ks = 0
    if HAS_POFF:
        poff = tl.load(POFF + off_b).to(tl.int32)
    else:
        poff = -ks
    return ks, poff


@triton.jit
def _rotate_halves(lo, hi, c, s):
    """The two rotary halves (lo, hi) of rows rotated by angles of cos c and sin s (rotate_half, in their own
    precision): lo c - hi s, hi c + lo s."""
    return lo * c - hi * s, hi * c + lo * s
