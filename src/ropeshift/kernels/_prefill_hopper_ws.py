"""Hopper-native prefill, warp-specialised (Gluon): a TMA loader warp feeds two consumer warpgroups.

Serves a fresh prefill (Lq == Lk, no padding; q/k/v [b, h, n, d], head_dim 64/128, bf16/fp16) of every
two-region table with rule none (plain, STRING, ReRoPE incl. leaky, Self-Extend) or DCA's chunk rule
(``unserved_reason``); the Lambda rule (LM-Infinite) and every other call take the portable kernel
(``_prefill.py``). Region 0 scores q . k as cached; region 1 scores q1 . k1, both made once per call by the
portable prologue kernel (``_prologue._rotate_keys_kernel``, fp32 angles; only the rows this kernel reads:
``_prologue._rows_used``) into Q- and K-sized buffers that TMA loads like q and k: q1 = q re-rotated per row by
the query map, k1 = k by the key map. A constant query shift (STRING) is folded into the key map instead at
D = 128, q1 . k1 = q . R(-b) k1, so only the 4x smaller K is re-rotated (``FOLD_SHIFT_DIMS``). Making q1 inside
the consumer warpgroups instead (per element or per column) cost 3-20 % more at 32k (benchmarks/RESULTS.md).
Positions are >= 0 (pos_offset >= 0), as the zones (``_chunk_zones``) and the prologue's trim assume.

One program = 128 query rows of one (batch, head); three partitions run at once::

    loader      1 warp, few registers   the step's K_t or K1_t, and V_t, into a 2-stage ring: waits "free",
                                        expects bytes, TMA
    rows 0-63   consumer warpgroup      for each step: S = Q(1) K(1)^T (async wgmma), mask, softmax, O += P V
    rows 64-127 consumer warpgroup      the same on its 64 rows

Per stage two barriers each for K and V: ready (TMA bytes) and free (both consumers arrive). K is released as
soon as S is done, V once P V is, so the loader runs a step ahead. Key tiles, low to high, in the program's
zones (F = f_lo, E = r_hi: by d >= LO1 from the first and last rows, ``_chunk_zones`` for DCA)::

    0 ........ F-1 | F ......... E-1          | E .................. T-1
    far: q1 . k1   | edge: visited twice,     | near: q . k (causal mask on the diagonal tile)
    (all region 1) | q1 . k1 then q . k,      | (all region 0)
                   | each keeping its region  |

Every step is one dot of a tile (``_hopper_steps``: the step order, the masks); no step waits for another
dot, and shared memory holds what plain causal attention's does (plus the Q1 tile where the query map
re-rotates). The edge tiles' second visit costs one more P V per edge tile (1-2 per program). The earlier layout
(both dots of an edge tile in one step, K1_t in a one-stage slot beside the ring) took 1.05-1.10x our causal
kernel's time at 32k (ncu: 45 more SASS instructions per loop iteration, synchronous edge steps).
Returns out [b, h, n, d] and lse [b, h, n] (natural log), like every kernel here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from ._hopper_steps import RULE_CHUNK_C, _first, _run, _softmax, _step_tile
from .spec import MAP_CONSTANT, MAP_IDENTITY, RULE_CHUNK, RULE_NONE

_LOG2E = 1.4426950408889634
BLOCK_M, BLOCK_N = 128, 128  # query rows per program (two warpgroups of 64), key rows per tile
# head dims at which a constant query shift re-rotates K (k1 = R(-b) k) instead of Q, by measurement (32k, H200:
# STRING 1.02x cuDNN folded vs 1.09x at D = 128; 1.06x vs 1.05x at D = 64, benchmarks/RESULTS.md)
FOLD_SHIFT_DIMS = frozenset({128})
# TMA global -> shared copy: ``async_load`` in newer Triton, ``async_copy_global_to_shared`` in 3.6 (the GPU's)
_tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
IN_PLACE_ENV = "ROPESHIFT_HOPPER_IN_PLACE"
# registers per thread: consumer warpgroups / loader warp; maxnreg spreads 64K registers over 3 warpgroups
CONSUMER_REGS, LOADER_REGS, MAXNREG = gl.constexpr(240), gl.constexpr(24), 168


@gluon.jit
def _load_partition(k_desc, k1_desc, v_desc, k_s, v_s, k_ready, v_ready, k_free, v_free, k_row, k_col, v_row, v_col,
                    n_steps, f_lo, r_hi, HAS_K1: gl.constexpr):
    """Streams the i-th step's key tile (K1_t in region-1 steps when keys are re-rotated, else K_t) then V_t into
    stage i % 2 once both consumers freed it (``_hopper_steps._step_tile``: t, region); key t's rows start at
    (k_row + t BN, k_col) of K's / K1's 2-D view, (v_row + t BN, v_col) of V's (``_Rows``)."""
    BN: gl.constexpr = k_desc.block_type.shape[0]
    nbytes: gl.constexpr = k_desc.block_type.nbytes
    n_e = r_hi - f_lo
    for i in range(n_steps):
        t, r1 = _step_tile(i, r_hi, n_e)
        st = i % 2
        ph = (i // 2) & 1
        mbarrier.wait(k_free.index(st), ph ^ 1)  # a fresh barrier counts as "phase 1 complete"
        mbarrier.expect(k_ready.index(st), nbytes)
        if HAS_K1:
            if r1:
                _tma_load(k1_desc, [k_row + t * BN, k_col], k_ready.index(st), k_s.index(st))
            else:
                _tma_load(k_desc, [k_row + t * BN, k_col], k_ready.index(st), k_s.index(st))
        else:
            _tma_load(k_desc, [k_row + t * BN, k_col], k_ready.index(st), k_s.index(st))
        mbarrier.wait(v_free.index(st), ph ^ 1)
        mbarrier.expect(v_ready.index(st), nbytes)
        _tma_load(v_desc, [v_row + t * BN, v_col], v_ready.index(st), v_s.index(st))


@gluon.jit
def _consume(HALF: gl.constexpr, q_s, q_bar, p0, k_s, v_s, k_ready, v_ready, k_free, v_free, O, LSE, bh, q_base,
             q_col, Q_R, m0, N, n_steps, f_lo, r_hi, qk_scale, LO1, CS, CW, RULE: gl.constexpr, HAS_R1: gl.constexpr,
             HAS_Q1: gl.constexpr, HEAD_DIM: gl.constexpr, BN: gl.constexpr):
    """One warpgroup's 64 query rows [m0 + 64 HALF, +64) over the program's steps; stores out (row q_base + m,
    column q_col of out's 2-D view, row stride Q_R: Q's ``_Rows``) and lse. q_s [1 or 2, BM, d]: q, then q1
    (HAS_Q1)."""
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BN, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HEAD_DIM, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    mw = m0 + HALF * 64
    mbarrier.wait(q_bar, 0)
    rows = mw + gl.arange(0, 64, gl.SliceLayout(1, s_layout))
    cols0 = gl.arange(0, BN, gl.SliceLayout(0, s_layout))
    m_i = gl.full([64], -float("inf"), gl.float32, gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([64], gl.float32, gl.SliceLayout(1, s_layout))
    acc = gl.zeros([64, HEAD_DIM], gl.float32, o_layout)

    s = _first(q_s, HALF, k_s, k_ready, k_free, rows, cols0, mw, f_lo, r_hi, LO1, p0, CS, CW, RULE, HAS_R1, HAS_Q1,
               s_layout, BN)
    m_i, l_i, p, alpha = _softmax(s, m_i, l_i, qk_scale, HAS_R1)
    p = gl.convert_layout(p.to(v_s.dtype), p_layout)
    acc, m_i, l_i = _run(n_steps, acc, m_i, l_i, p, q_s, HALF, k_s, v_s, k_ready, v_ready, k_free, v_free, rows,
                         cols0, mw, qk_scale, f_lo, r_hi, LO1, p0, CS, CW, RULE, HAS_R1, HAS_Q1, s_layout, o_layout,
                         BN)

    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
    out = acc / l_o[:, None]
    orow = mw + gl.arange(0, 64, gl.SliceLayout(1, o_layout))
    ocol = gl.arange(0, HEAD_DIM, gl.SliceLayout(0, o_layout))
    optr = O + (q_base + orow)[:, None].to(gl.int64) * Q_R + q_col + ocol[None, :]
    gl.store(optr, out.to(O.dtype.element_ty), mask=(orow < N)[:, None])
    lse = (m_i + gl.log2(l_i)) * 0.6931471805599453
    gl.store(LSE + bh.to(gl.int64) * N + rows, lse, mask=rows < N)


@gluon.jit
def _chunk_zones(p0, m0, BM: gl.constexpr, CS, CW, BN: gl.constexpr):
    """DCA's key-tile zones of query rows [m0, m0 + BM) at positions p0 + index: every pair of a tile below f_lo
    is far for every row, every visible pair of a tile from r_hi on is near (the tiles between: select per pair).
    Row m's keys are far below position (qc - [m mod CS <= CW]) CS, qc = m // CS (``_in_r1``), a bound that never
    decreases with m, so the first row a gives the far tiles and the last row z the near ones (also when the rows
    span chunks, where bounds at chunk starts instead made a whole chunk of tiles "edge")::

        keys  ... chunk qa-1 ... | ... chunk qa ...      rows a (chunk qa) .. z (chunk qz >= qa)
        far: position < (qa - 1) CS, or < qa CS when (a mod CS) > CW
        near: position >= qz CS, or >= (qz - 1) CS when (z mod CS) <= CW
    """
    a = p0 + m0
    z = a + BM - 1
    qa = a // CS
    qz = z // CS
    x = (qa - (a - qa * CS <= CW).to(gl.int32)) * CS
    y = (qz - (z - qz * CS <= CW).to(gl.int32)) * CS
    f_lo = gl.maximum(x - p0, 0) // BN
    r_hi = (gl.maximum(y - p0, 0) + BN - 1) // BN
    return f_lo, r_hi


@gluon.jit
def _hopper_ws_kernel(q_desc, q1_desc, k_desc, k1_desc, v_desc, O, LSE, POFF, H, G, N, Q_RB, Q_RH, Q_CH, Q_R, K_RB,
                      K_RH, K_CH, V_RB, V_RH, V_CH, qk_scale, LO1, CS, CW, RULE: gl.constexpr, HAS_R1: gl.constexpr,
                      HAS_Q1: gl.constexpr, HAS_K1: gl.constexpr, HAS_POFF: gl.constexpr, HEAD_DIM: gl.constexpr,
                      num_warps: gl.constexpr):
    BM: gl.constexpr = q_desc.block_type.shape[0]
    BN: gl.constexpr = k_desc.block_type.shape[0]
    pid_m = gl.num_programs(0) - 1 - gl.program_id(0)  # longest rows first (causal load balance)
    bh = gl.program_id(1)
    b = bh // H
    hq = bh % H
    hk = hq // G
    m0 = pid_m * BM
    q_base = b * Q_RB + hq * Q_RH  # token 0 of this (batch, head) in the 2-D views (``_Rows``): Q, Q1, out
    q_col = hq * Q_CH
    k_row = b * K_RB + hk * K_RH  # K and K1
    k_col = hk * K_CH
    v_row = b * V_RB + hk * V_RH
    v_col = hk * V_CH
    n_tiles = gl.cdiv(gl.minimum(m0 + BM, N), BN)
    if HAS_POFF:
        p0 = gl.load(POFF + b)
    else:
        p0 = 0
    if HAS_R1:  # the program's zones: far for row m0 (and so for every row), region 1 reached by row m0 + BM - 1
        if RULE == RULE_CHUNK_C:
            f_lo, r_hi = _chunk_zones(p0, m0, BM, CS, CW, BN)
        else:
            f_lo = gl.maximum(m0 - LO1 + 1, 0) // BN
            r_hi = gl.maximum(m0 + BM - LO1 + BN - 1, 0) // BN
        f_lo = gl.minimum(f_lo, n_tiles)
        r_hi = gl.minimum(gl.maximum(r_hi, f_lo), n_tiles)
    else:
        f_lo = 0
        r_hi = 0
    n_steps = n_tiles + r_hi - f_lo  # edge tiles twice

    q_s = gl.allocate_shared_memory(q_desc.dtype, [1 + HAS_Q1, BM, HEAD_DIM], q_desc.layout)  # q, then q1
    k_s = gl.allocate_shared_memory(k_desc.dtype, [2, BN, HEAD_DIM], k_desc.layout)
    v_s = gl.allocate_shared_memory(v_desc.dtype, [2, BN, HEAD_DIM], v_desc.layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    k_free = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    v_free = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_bar, count=1)
    for i in gl.static_range(2):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_free.index(i), count=2)  # one arrival per consumer warpgroup
        mbarrier.init(v_free.index(i), count=2)
    fence_async_shared()
    mbarrier.expect(q_bar, (1 + HAS_Q1) * q_desc.block_type.nbytes)
    _tma_load(q_desc, [q_base + m0, q_col], q_bar, q_s.index(0))
    if HAS_Q1:  # q1 from the prologue kernel: one more TMA tile on the same barrier
        _tma_load(q1_desc, [q_base + m0, q_col], q_bar, q_s.index(1))

    gl.warp_specialize([  # (Gluon takes literal argument tuples: the two consumers' differ in HALF alone)
        (_consume, (0, q_s, q_bar, p0, k_s, v_s, k_ready, v_ready, k_free, v_free, O, LSE, bh, q_base, q_col, Q_R, m0,
                    N, n_steps, f_lo, r_hi, qk_scale, LO1, CS, CW, RULE, HAS_R1, HAS_Q1, HEAD_DIM, BN)),
        (_consume, (1, q_s, q_bar, p0, k_s, v_s, k_ready, v_ready, k_free, v_free, O, LSE, bh, q_base, q_col, Q_R, m0,
                    N, n_steps, f_lo, r_hi, qk_scale, LO1, CS, CW, RULE, HAS_R1, HAS_Q1, HEAD_DIM, BN)),
        (_load_partition, (k_desc, k1_desc, v_desc, k_s, v_s, k_ready, v_ready, k_free, v_free, k_row, k_col, v_row,
                           v_col, n_steps, f_lo, r_hi, HAS_K1)),
    ], [4, 1], [CONSUMER_REGS, LOADER_REGS])

    mbarrier.invalidate(q_bar)
    for i in gl.static_range(2):
        mbarrier.invalidate(k_ready.index(i))
        mbarrier.invalidate(v_ready.index(i))
        mbarrier.invalidate(k_free.index(i))
        mbarrier.invalidate(v_free.index(i))


def _gl_dtype(dtype):
    return gl.bfloat16 if str(dtype) == "torch.bfloat16" else gl.float16


def unserved_reason(spec, q, k, key_start, rotary_half: int) -> str | None:
    """Why this kernel does not serve a call (None when it does): a fresh prefill (Lq == Lk, no left padding),
    bf16/fp16, head_dim 64/128, a band table (rule none, region 1 from where region 0 ends) or DCA's chunk table;
    full rotary when region 1 re-rotates. The device (sm_90) is the caller's check (``attention.hopper_reason``)."""
    b, h, lq, d = q.shape
    if str(q.dtype) not in ("torch.bfloat16", "torch.float16"):
        return "needs bf16/fp16"
    if d not in (64, 128):
        return f"head_dim {d} (serves 64, 128)"
    if lq != k.shape[2] or key_start is not None:
        return "serves a fresh prefill only (Lq == Lk, no padding mask)"
    if spec.rule not in (RULE_NONE, RULE_CHUNK):
        return "serves band and chunk tables (not the Lambda rule)"
    if spec.rule == RULE_NONE and spec.has_r1 and spec.lo1 != spec.hi0:
        return "needs adjacent bands"
    if spec.rule == RULE_CHUNK and (not spec.has_r1 or spec.k_map[0] == MAP_IDENTITY):
        return "a chunk table needs its far region with re-rotated keys"
    if spec.has_r1 and 2 * rotary_half != d:
        return "needs full rotary (2 * len(inv_freq) == head_dim) when region 1 re-rotates"
    return None


def _maps(spec, head_dim):
    """(query map or None, key map or None) that the prologue kernel applies to q and k for region 1, with a
    constant query shift b folded into the key map at the head dims of ``FOLD_SHIFT_DIMS`` (q1 . k1 =
    q . R(-b) k1)."""
    if not spec.has_r1:
        return None, None
    q_map = None if spec.q_map[0] == MAP_IDENTITY else spec.q_map
    k_map = None if spec.k_map[0] == MAP_IDENTITY else spec.k_map
    if head_dim in FOLD_SHIFT_DIMS and q_map is not None and q_map[0] == MAP_CONSTANT:
        b = q_map[4]
        kind, a, c, g, kb = k_map if k_map is not None else (MAP_CONSTANT, 1.0, 0, 1, 0.0)
        q_map, k_map = None, (kind, a, c, g, kb - b)
    return q_map, k_map


@dataclass(frozen=True)
class _Rows:
    """How the kernel addresses an operand x [b, hx, n, d] (d contiguous): as a 2-D TMA view [rows, width] with
    row stride ``stride``, token t of (batch bi, head hi) at row bi rb + hi rh + t, columns [hi ch, + d). The two
    dense layouts it takes as they are::

        head-major [b, hx, n, d] (contiguous)       token-major [b, n, hx, d] (transformers' q/k/v, transposed)
        row = (bi hx + hi) n + t, column 0           row = bi n + t, column hi d
          rb = hx n, rh = n, ch = 0, width d           rb = n, rh = 0, ch = d, width hx d

    Rows past n of a tile read the next head's (or batch's) first tokens, rows past the end read zeros: what the
    kernel loads there is only ever masked (keys) or not stored (queries)."""
    rb: int
    rh: int
    ch: int
    stride: int
    rows: int
    width: int

    def view(self, x):  # x's storage as the [rows, width] matrix the descriptors read (the CPU emulation's)
        return x.as_strided((self.rows, self.width), (self.stride, 1))


def _rows(x, token_major=True) -> _Rows | None:
    """x's ``_Rows`` when x [b, hx, n, d] is head-major or (``token_major``) token-major dense (sizes-1 dims'
    strides ignored), else None (the launcher copies it)."""
    b, hx, n, d = x.shape
    sb, sh, sn, sd = x.stride()

    def fits(want_b, want_h, want_n):
        return sd == 1 and (b == 1 or sb == want_b) and (hx == 1 or sh == want_h) and (n == 1 or sn == want_n)

    if fits(hx * n * d, n * d, d):
        return _Rows(hx * n, n, 0, d, b * hx * n, d)
    if token_major and fits(n * hx * d, d, hx * d):
        return _Rows(n, 0, d, hx * d, b * n, hx * d)
    return None


def in_place() -> frozenset:
    """The token-major operands (transformers' q, k, v) read in place (``_Rows``; out follows q), as
    ``ROPESHIFT_HOPPER_IN_PLACE`` names them, read at each call: "qkv" (the default) or "1"; "q": K and V copied to
    head-major; "0": all copied, as before. For side-by-side runs (529 -> 485 ms per 48 x 8k compiled prefill with
    all in place on the H100, benchmarks/RESULTS.md)."""
    value = os.environ.get(IN_PLACE_ENV, "qkv")
    names = frozenset({"1": "qkv", "0": ""}.get(value, value))
    if not names <= set("qkv"):
        raise ValueError(f"{IN_PLACE_ENV}={value!r}: letters of 'qkv', '1' (all) or '0' (none)")
    return names


def empty_out(q):
    """An unfilled out for q [b, h, n, d] here: q's layout where the views take it (``_rows``), else contiguous."""
    return torch.empty_like(q) if _rows(q, "q" in in_place()) is not None else q.new_empty(q.shape)


def _rotated(x, pos_map, inv_freq, pos_offset, out=None, *, spec=None, trim=0):
    """x [b, hx, n, d] (``_rows``: head- or token-major dense) re-rotated by map(p) - p at p = index +
    pos_offset[b], by the portable prologue kernel (``_prologue._rotate_keys_kernel``) into ``out`` (x's shape and
    layout; None: a new buffer like x). ``trim`` 1 (x = q) / 2 (x = k): only the rows this kernel reads as Q1 / K1
    for ``spec`` are made, the others are left as they were (``_prologue._rows_used``: e.g. DCA's first chunk of
    queries, the last chunk of keys); 0: every row."""
    from ._prologue import _rotate_keys_kernel

    b, hx, n, d = x.shape
    _, a, c, g, shift = pos_map
    if out is None:
        out = torch.empty_like(x)
    if (out.shape != x.shape or out.dtype != x.dtype or _rows(x) is None or _rows(out) != _rows(x)):
        raise ValueError("_rotated: out needs x's shape, dtype and layout, head- or token-major dense (the kernel "
                         "uses x's strides for both)")
    chunk = trim != 0 and spec.rule == RULE_CHUNK
    _rotate_keys_kernel[(triton.cdiv(n, 64), b * hx)](
        x, out, inv_freq, x, pos_offset if pos_offset is not None else x, *x.stride(), hx, n, inv_freq.numel(),
        a, c, g, shift, HEAD_DIM=d, BLOCK=64, HAS_KS=False, HAS_POFF=pos_offset is not None,
        HALVES=2 * inv_freq.numel() == d, TRIM=trim, T_RULE=int(chunk),
        T_LO1=int(min(spec.lo1, 1 << 30)) if trim else 0, T_CS=max(int(spec.ra), 1) if chunk else 1,
        T_N=triton.cdiv(n, BLOCK_M) * BLOCK_M,
        T_BLOCK=BLOCK_M if trim == 1 else BLOCK_N, num_warps=4)
    return out


def _operands(q, k, v, inv_freq, out, spec, pos_offset=None):
    """(q, q1, k, k1, v) as the kernel's TMA descriptors read them (``_Rows``): q and q1 in out's layout, k1 in
    k's; ``q1 is q`` / ``k1 is k`` where region 1 scores them as they are (``_maps``). An operand in neither dense
    layout (e.g. a static cache's written part) is copied (q: into out's layout); transformers' token-major q, k,
    v are read in place, and out (``attention._outputs``: q's layout) is token-major then too, so the caller's
    ``out.transpose(1, 2)`` back to [b, n, h, d] is a view.

    One Q-sized operand lives in ``out``: q1 when the query map re-rotates (the prologue writes it there), else
    q's copy when q is not in out's layout (a Q-sized buffer saved: 256 MiB at 32 heads x 128 dims, 32k tokens,
    bf16). Exact because program (m, bh) TMA-loads rows [128 m, +128) of its (batch, head) of Q and Q1 into shared
    memory before either consumer warpgroup starts and reads them from there only; its epilogue stores out rows
    (< n) of exactly that range, which no other program stores (rows past n belong to the next head or batch:
    padding, never used). The kernel must keep that. K1 is a new K-sized buffer."""
    q_map, k_map = _maps(spec, q.shape[-1])
    names = in_place()
    rq = _rows(q, "q" in names)
    same = rq is not None and rq == _rows(out)
    if q_map is not None:
        q = q if same else torch.empty_like(out).copy_(q)
        q1 = _rotated(q, q_map, inv_freq, pos_offset, out=out, spec=spec, trim=1)
    else:
        q = q1 = q if same else out.copy_(q)
    k, v = (t if _rows(t, name in names) is not None else t.contiguous() for t, name in ((k, "k"), (v, "v")))
    k1 = _rotated(k, k_map, inv_freq, pos_offset, spec=spec, trim=2) if k_map is not None else k
    return q, q1, k, k1, v


def _kernel_args(q, q1, k, k1, v, out, lse, pos_offset, spec, scale):
    """(positional, keyword arguments, grid) of the kernel for ``_operands``' operands (also the CPU compile check)."""
    b, h, n, d = q.shape
    rq, rk, rv = _rows(q), _rows(k), _rows(v)
    dt = _gl_dtype(q.dtype)
    lay_q = gl.NVMMASharedLayout.get_default_for([BLOCK_M, d], dt)
    lay_k = gl.NVMMASharedLayout.get_default_for([BLOCK_N, d], dt)

    def desc(x, r, block, lay):
        return TensorDescriptor(x, [r.rows, r.width], [r.stride, 1], [block, d], lay)

    q_desc = desc(q, rq, BLOCK_M, lay_q)
    q1_desc = desc(q1, rq, BLOCK_M, lay_q) if q1 is not q else q_desc
    k_desc = desc(k, rk, BLOCK_N, lay_k)
    k1_desc = desc(k1, rk, BLOCK_N, lay_k) if k1 is not k else k_desc
    v_desc = desc(v, rv, BLOCK_N, lay_k)
    lo1 = int(min(spec.lo1, 1 << 30)) if spec.has_r1 else 1 << 30
    args = (q_desc, q1_desc, k_desc, k1_desc, v_desc, out, lse, pos_offset if pos_offset is not None else lse, h,
            h // k.shape[1], n, rq.rb, rq.rh, rq.ch, rq.stride, rk.rb, rk.rh, rk.ch, rv.rb, rv.rh, rv.ch,
            scale * _LOG2E, lo1, max(int(spec.ra), 1), int(spec.rb))
    kwargs = dict(RULE=int(spec.rule), HAS_R1=bool(spec.has_r1), HAS_Q1=q1 is not q, HAS_K1=k1 is not k,
                  HAS_POFF=pos_offset is not None, HEAD_DIM=d, num_warps=4, maxnreg=MAXNREG)
    return args, kwargs, (triton.cdiv(n, BLOCK_M), b * h)


def launch_hopper_ws_prefill(q, k, v, inv_freq, out, lse, *, spec, scale, pos_offset=None):
    """Fills out [b, h, n, d] (head- or token-major dense, ``_Rows``; preallocated, its old contents are not read)
    and lse [b, h, n] (contiguous); q [b, h, n, d], k/v [b, h_kv, n, d]; pos_offset [b] int32 (the position of
    index 0; None: 0). Callers check ``unserved_reason`` first. Region 1's maps (``_maps``) are applied once per
    call by ``_rotated``, q1 into ``out`` itself (``_operands``)."""
    b, h, n, d = q.shape
    if spec.has_r1 and 2 * inv_freq.numel() != d:
        raise ValueError("the Hopper kernel needs full rotary (2 * len(inv_freq) == head_dim)")
    if tuple(out.shape) != (b, h, n, d) or out.dtype != q.dtype or _rows(out) is None:
        raise ValueError("out must be a [b, h, n, d] tensor of q's dtype, head- or token-major dense")
    ops = _operands(q, k, v, inv_freq, out, spec, pos_offset)
    args, kwargs, grid = _kernel_args(*ops, out, lse, pos_offset, spec, scale)
    _hopper_ws_kernel[grid](*args, **kwargs)
    return out, lse
