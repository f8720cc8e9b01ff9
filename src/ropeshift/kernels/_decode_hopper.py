"""Hopper (Gluon) split-KV decode for the tables whose far keys the Triton kernel re-rotates per key (ReRoPE incl.
leaky, Self-Extend, DCA), for a cache without K1 (``model.generate`` with its dynamic cache).

The Triton split kernel (``_decode``) re-rotates far keys in a blocked layout, so each rotated tile goes back
through shared memory to reach the MMA, at 228-255 registers and 90 KiB (1.02-1.27x our plain decode, H200).
Here the keys are the MMA's M side: a key half-tile is loaded from shared memory straight into the wgmma
A-operand layout, rotated there by the in-tile table (made once per program, kept as fp16 pairs) and fed to the
MMA; keys used as cached feed it from shared memory. Scores are computed transposed, so the softmax runs over
axis 0 (0.99-1.022x our plain decode at 64k-128k, B = 1 / 8, benchmarks/RESULTS.md)::

    one tile (BN = 64 keys), R stacked query columns (q at [0, g), q1 at [R/2, R/2 + g)):
        S^T [BN, R]  = K1_lo [BN, d/2] . F_lo^T + K1_hi . F_hi^T     far keys (F = q1 rotated by the tile delta)
                     = K_lo . Q_lo^T + K_hi . Q_hi^T                  near keys (q as cached)
        O^T [d, R]  += V^T [d, BN] . P^T [BN, R]                      (A = V's tile in shared memory, permuted)

    keys  [ far: K1 . F^T ][ edge tile: both, per key ][ near: K . Q^T ]

Serves (``unserved_reason``): sm_90, bf16/fp16, head_dim 64/128, full rotary, band or chunk tables whose far key
map has one in-tile rotation for every tile or at most one group step per tile (``_decode.key_mode`` KMAP 1 /
3), no K1 buffer, no key_end (every key written: TMA reads whole tiles), contiguous K / V. Writes the Triton
split kernel's partials (q1's column merged into q's), so ``_decode_combine`` finishes. Keys a row does not see
(left padding, past the end of a tile) are masked out of the scores, and their values enter P V with weight 0:
they must be finite, as every cache written by these kernels is (a query with no visible key writes 0).
Shape legend: b batch, h_kv key/value heads, g = h / h_kv, lk keys, d head dim, R stacked columns, P splits.
"""
from __future__ import annotations

import os

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, warpgroup_mma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from ._prefill_hopper_ws import _gl_dtype, _tma_load
from ._rotary import _row_offsets
from .spec import RULE_CHUNK, RULE_NONE

# a CTA-wide barrier: ``thread_barrier`` in Triton 3.6 (the GPU's), ``barrier`` in newer Triton
_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
BLOCK_N = 64  # keys per tile: one warpgroup's wgmma M
# Measured side by side (64k-128k, B = 1 / 8, H200, benchmarks/RESULTS.md, eighth session), x our plain decode:
# no register cap (255 at D = 128: 2 programs per SM), a 2-stage K / V ring and a synchronous P V: 1.00-1.04;
# a 168-register cap (3 programs per SM, 20 bytes spilled) 1.05-1.07; a 3-stage ring 1.04-1.08; P V asynchronous
# under the next tile's rotation 1.02-1.11 (removed). The environment variables below set them for benchmarks.
MAXNREG = int(os.environ.get("ROPESHIFT_DECODE_MAXNREG", "0"))  # 0: ptxas's choice
STAGES = int(os.environ.get("ROPESHIFT_DECODE_STAGES", "2"))  # the K / V ring: STAGES - 1 tiles in flight
RESYNC = int(os.environ.get("ROPESHIFT_DECODE_RESYNC", "32"))  # far tiles per exact cos / sin of q's angle
EARLY = int(os.environ.get("ROPESHIFT_DECODE_EARLY", "1"))  # 1: the ring's first TMA loads before the set-up


@gluon.jit
def _gl_cos_sin(ang):
    """cos, sin of fp32 angles (any layout): the reduction of ``_rotary._cos_sin``, then MUFU approximations."""
    k = gl.floor(ang * 0.15915494309189535 + 0.5)
    r = gl.fma(k, -6.2831854820251465, ang)
    r = gl.fma(k, 1.7484555314695172e-07, r)
    c = gl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=f,f", [r], dtype=gl.float32, is_pure=True, pack=1)
    s = gl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=f,f", [r], dtype=gl.float32, is_pure=True, pack=1)
    return c, s


@gluon.jit
def _widen(x):
    """fp16 -> fp32 as an impure asm op, so the compiler keeps the loop-invariant fp16 table packed in registers
    rather than hoisting the widening out of the loop."""
    return gl.inline_asm_elementwise("cvt.f32.f16 $0, $1;", "=f,h", [x], dtype=gl.float32, is_pure=False, pack=1)


@gluon.jit
def _load_tile(klo_desc, khi_desc, v_desc, klo_s, khi_s, v_s, ready, kv_row, t, STAGES: gl.constexpr):
    """TMA of key tile t (both rotary halves) and its values into stage t % STAGES, on that stage's barrier."""
    BN: gl.constexpr = klo_desc.block_type.shape[0]
    st = t % STAGES
    mbarrier.expect(ready.index(st), 2 * klo_desc.block_type.nbytes + v_desc.block_type.nbytes)
    _tma_load(klo_desc, [kv_row + t * BN, 0], ready.index(st), klo_s.index(st))
    _tma_load(khi_desc, [kv_row + t * BN, 0], ready.index(st), khi_s.index(st))
    _tma_load(v_desc, [kv_row + t * BN, 0], ready.index(st), v_s.index(st))


@gluon.jit
def _hopper_decode_kernel(
    klo_desc, khi_desc, v_desc, Q, INV, KS, POFF, Opart, Lpart,
    stride_qb, stride_qh, stride_qd,
    H_KV, G, LK, qk_scale, CHUNK, LO1, HI0, RA, RB, QA, QC, QG, QB, KA, KC, KG, KB,
    HEAD_DIM: gl.constexpr, BLOCK_R: gl.constexpr, QMAP: gl.constexpr, KMAP: gl.constexpr, KROT: gl.constexpr,
    RULE: gl.constexpr, STAGES: gl.constexpr, RESYNC: gl.constexpr, EARLY: gl.constexpr,
    HAS_KS: gl.constexpr, HAS_POFF: gl.constexpr, num_warps: gl.constexpr,
):
    # klo/khi_desc: TMA over K viewed [b h_kv lk, d], columns [0, d/2) / [d/2, d), boxes [BN, d/2]; v_desc: V, [BN, d]
    # Q [b, h, 1, d]; INV [d/2] fp32; KS / POFF [b] (HAS_*); Opart [b, h_kv, P, R/2, d], Lpart [b, h_kv, P, R/2]
    # KMAP (``_decode.key_mode``): 1 one in-tile table for every tile; 3 at most one group step per tile (columns
    # [0, g) score the far keys past it, q rotated by one more c), keys rotated by (a - 1) j when KROT
    # RULE: band (0), or DCA's chunk rule (1: chunk RA, window RB)
    HALF: gl.constexpr = HEAD_DIM // 2
    BN: gl.constexpr = klo_desc.block_type.shape[0]
    HR: gl.constexpr = BLOCK_R // 2
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_R, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2)
    q_layout: gl.constexpr = gl.BlockedLayout([1, 4], [4, 8], [4, 1], [1, 0])
    dtype: gl.constexpr = klo_desc.dtype

    pid_s = gl.program_id(0)
    pid_bh = gl.program_id(1)
    num_s = gl.num_programs(0)
    off_b = pid_bh // H_KV
    off_hk = pid_bh % H_KV
    ks, poff = _row_offsets(KS, POFF, off_b, HAS_KS, HAS_POFF)
    start = pid_s * CHUNK
    stop = gl.minimum(start + CHUNK, LK)
    lo = start
    if HAS_KS:  # tiles wholly in the left padding are skipped
        lo = gl.maximum(lo, ks // BN * BN)
    n_t = gl.where(stop > lo, (stop - lo + BN - 1) // BN, 0)
    kv_row = (off_b * H_KV + off_hk) * LK + lo
    # the ring's first tiles go out first: their HBM latency overlaps the query loads and the table set-up below
    # (a B = 1 program walks ~32 tiles, so one latency up front is a few % of it)
    klo_s = gl.allocate_shared_memory(dtype, [STAGES, BN, HALF], klo_desc.layout)
    khi_s = gl.allocate_shared_memory(dtype, [STAGES, BN, HALF], khi_desc.layout)
    v_s = gl.allocate_shared_memory(dtype, [STAGES, BN, HEAD_DIM], v_desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
    if EARLY:
        fence_async_shared()  # the barriers' init before the TMA engine sees them
        for j in gl.static_range(STAGES - 1):
            if j < n_t:
                _load_tile(klo_desc, khi_desc, v_desc, klo_s, khi_s, v_s, ready, kv_row, j, STAGES)
    pos = LK - 1
    qpos = pos + poff
    if QMAP == 2:
        dq = (QA - 1.0) * qpos.to(gl.float32) + (QC * (qpos // QG)).to(gl.float32) + QB
    elif QMAP == 1:
        dq = QB
    else:
        dq = 0.0
    F = pos - LO1 + 1  # keys [0, F) are far (region 1) for the one query
    if RULE == 1:  # DCA: near iff the key's chunk is the query's, or the previous one with m mod s <= w
        qch = qpos // RA
        near0 = (qch - ((qpos - qch * RA) <= RB).to(gl.int32)) * RA - poff
        F = gl.maximum(pos - HI0 + 1, gl.minimum(F, near0))

    # query columns: [0, g) q, [R/2, R/2 + g) q1 (the far rows); halves [R, d/2] fp32
    cols_q = gl.arange(0, BLOCK_R, gl.SliceLayout(1, q_layout))
    is_r1_q = cols_q >= HR
    col_g = cols_q - is_r1_q.to(gl.int32) * HR
    head = off_hk * G + col_g
    offs_hq = gl.arange(0, HALF, gl.SliceLayout(0, q_layout))
    q_ptr = Q + off_b.to(gl.int64) * stride_qb + head[:, None].to(gl.int64) * stride_qh
    q_ok = (col_g < G)[:, None]
    q_lo = gl.load(q_ptr + offs_hq[None, :] * stride_qd, mask=q_ok, other=0.0)  # q's dtype: widened per tile
    q_hi = gl.load(q_ptr + (HALF + offs_hq)[None, :] * stride_qd, mask=q_ok, other=0.0)
    inv_q = gl.load(INV + offs_hq)
    r1_f = is_r1_q[:, None]

    # the in-tile key rotation D_j = (a - 1) j + c floor((r0 + j) / G), j < BN (the same for every tile; KMAP 3:
    # (a - 1) j, the group step moves to the query)
    offs_j = gl.arange(0, BN, gl.SliceLayout(1, a_layout))
    offs_ha = gl.arange(0, HALF, gl.SliceLayout(0, a_layout))
    if KMAP == 1:
        r0 = poff % KG
        r0 = gl.where(r0 < 0, r0 + KG, r0)
        dj = (KA - 1.0) * offs_j.to(gl.float32) + (KC * ((r0 + offs_j) // KG)).to(gl.float32)
    else:
        dj = (KA - 1.0) * offs_j.to(gl.float32)
    tc, ts = _gl_cos_sin(dj[:, None] * gl.load(INV + offs_ha)[None, :])
    tc = tc.to(gl.float16)  # two per register; widened per tile (opaque to LICM, so they stay packed)
    ts = ts.to(gl.float16)

    q_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_R, HALF], dtype)
    qn_lo_s = gl.allocate_shared_memory(dtype, [BLOCK_R, HALF], q_sl)
    qn_hi_s = gl.allocate_shared_memory(dtype, [BLOCK_R, HALF], q_sl)
    qf_lo_s = gl.allocate_shared_memory(dtype, [BLOCK_R, HALF], q_sl)
    qf_hi_s = gl.allocate_shared_memory(dtype, [BLOCK_R, HALF], q_sl)
    p_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_R, BN], dtype)
    p_s = gl.allocate_shared_memory(dtype, [BLOCK_R, BN], p_sl)
    qn_lo_s.store(gl.where(r1_f, 0.0, q_lo).to(dtype))
    qn_hi_s.store(gl.where(r1_f, 0.0, q_hi).to(dtype))
    fence_async_shared()

    cols_s = gl.arange(0, BLOCK_R, gl.SliceLayout(0, s_layout))
    is_r1 = cols_s >= HR
    col_ok = (cols_s - is_r1.to(gl.int32) * HR) < G
    rows_s = gl.arange(0, BN, gl.SliceLayout(1, s_layout))
    m_i = gl.full([BLOCK_R], -float("inf"), gl.float32, gl.SliceLayout(0, s_layout))
    l_i = gl.zeros([BLOCK_R], gl.float32, gl.SliceLayout(0, s_layout))
    acc = gl.zeros([HEAD_DIM, BLOCK_R], gl.float32, s_layout)  # O^T

    if not EARLY:  # the ring's first tiles after the set-up (the eighth session's order; benchmarks only)
        for j in gl.static_range(STAGES - 1):
            if j < n_t:
                _load_tile(klo_desc, khi_desc, v_desc, klo_s, khi_s, v_s, ready, kv_row, j, STAGES)
    # KMAP 1: delta_t grows by (a - 1) BN + c BN / G per tile, so the query's far angle steps by a fixed angle;
    # cos / sin of it follow by the angle-difference rule, exact trig every RESYNC tiles (drift < 1e-5)
    if KMAP == 1:
        step = ((KA - 1.0) * BN + (KC * (BN // KG)).to(gl.float32)) * inv_q
        c_step, s_step = _gl_cos_sin(step)
    else:
        c_step = gl.zeros_like(inv_q)
        s_step = gl.zeros_like(inv_q)
    if KMAP == 3:  # the group step's extra c as a fixed rotation of the tile's angle
        c_kc, s_kc = _gl_cos_sin(KC * inv_q)
    else:
        c_kc = gl.zeros_like(inv_q)
        s_kc = gl.zeros_like(inv_q)
    c = gl.zeros_like(inv_q)
    sn = gl.zeros_like(inv_q)
    for i in range(n_t):
        st = i % STAGES
        n0 = lo + i * BN
        _barrier()  # every warp is done with the previous tile: its stage takes tile i + STAGES - 1 now
        if i + STAGES - 1 < n_t:
            _load_tile(klo_desc, khi_desc, v_desc, klo_s, khi_s, v_s, ready, kv_row, i + STAGES - 1, STAGES)
        mbarrier.wait(ready.index(st), (i // STAGES) & 1)
        s = gl.zeros([BN, BLOCK_R], gl.float32, s_layout)
        p0 = n0 + poff  # the tile's first key position, its offset in its group of G
        rt = p0 % KG
        rt = gl.where(rt < 0, rt + KG, rt)
        if n0 < F:  # some far keys: F^T = q1 rotated by dq - delta_t, keys by the in-tile table
            dt = (KA - 1.0) * p0.to(gl.float32) + (KC * ((p0 - rt) // KG)).to(gl.float32) + KB
            if KMAP == 1 and (i % RESYNC) != 0:  # angle - step_q: the tile delta grows by a fixed step
                c, sn = c * c_step + sn * s_step, sn * c_step - c * s_step
            else:
                c, sn = _gl_cos_sin((dq - dt) * inv_q)
            qf_lo = q_lo.to(gl.float32)
            qf_hi = q_hi.to(gl.float32)
            f_lo = qf_lo * c[None, :] - qf_hi * sn[None, :]
            f_hi = qf_hi * c[None, :] + qf_lo * sn[None, :]
            if KMAP == 3:  # columns [0, g): the far keys past the tile's group step, one more c
                c1 = c * c_kc + sn * s_kc
                s1 = sn * c_kc - c * s_kc
                g_lo = qf_lo * c1[None, :] - qf_hi * s1[None, :]
                g_hi = qf_hi * c1[None, :] + qf_lo * s1[None, :]
            else:
                g_lo = gl.zeros_like(f_lo)
                g_hi = gl.zeros_like(f_hi)
            if KMAP == 1 or KROT:  # keys re-rotated in the MMA's A-operand layout, straight from shared memory
                kf_lo = klo_s.index(st).load(a_layout).to(gl.float32)
                kf_hi = khi_s.index(st).load(a_layout).to(gl.float32)
                tcf = _widen(tc)
                tsf = _widen(ts)
                k1_lo = (kf_lo * tcf - kf_hi * tsf).to(dtype)
                k1_hi = (kf_hi * tcf + kf_lo * tsf).to(dtype)
                qf_lo_s.store(gl.where(r1_f, f_lo, g_lo).to(dtype))
                qf_hi_s.store(gl.where(r1_f, f_hi, g_hi).to(dtype))
                fence_async_shared()
                _barrier()
                s = warpgroup_mma(k1_lo, qf_lo_s.permute((1, 0)), s, use_acc=False)
                s = warpgroup_mma(k1_hi, qf_hi_s.permute((1, 0)), s)
            else:  # keys as cached: the A operand read by the MMA from shared memory
                qf_lo_s.store(gl.where(r1_f, f_lo, g_lo).to(dtype))
                qf_hi_s.store(gl.where(r1_f, f_hi, g_hi).to(dtype))
                fence_async_shared()
                _barrier()
                s = warpgroup_mma(klo_s.index(st), qf_lo_s.permute((1, 0)), s, use_acc=False)
                s = warpgroup_mma(khi_s.index(st), qf_hi_s.permute((1, 0)), s)
        if n0 + BN > F:  # some near keys: q as cached, the keys' A operand from shared memory
            sn0 = warpgroup_mma(klo_s.index(st), qn_lo_s.permute((1, 0)),
                                gl.zeros([BN, BLOCK_R], gl.float32, s_layout), use_acc=False)
            sn0 = warpgroup_mma(khi_s.index(st), qn_hi_s.permute((1, 0)), sn0)
            s = gl.where(((n0 + rows_s) < F)[:, None], s, sn0)
        keys = n0 + rows_s
        far = keys < F
        if KMAP == 3:  # far keys past the group step are scored by columns [0, g)
            key_r1 = far & (rows_s < KG - rt)
        else:
            key_r1 = far
        vis = ((keys < stop) & (keys >= ks))[:, None] & col_ok[None, :] & (key_r1[:, None] == is_r1[None, :])
        s = gl.where(vis, s, -float("inf"))
        m_new = gl.maximum(m_i, gl.max(s, 0) * qk_scale)
        m_sub = gl.where(m_new == -float("inf"), 0.0, m_new)
        p = gl.exp2(s * qk_scale - m_sub[None, :])
        alpha = gl.exp2(m_i - m_sub)
        l_i = l_i * alpha + gl.sum(p, 0)
        m_i = m_new
        p_s.store(gl.permute(p.to(dtype), (1, 0)))
        fence_async_shared()
        _barrier()
        acc = warpgroup_mma(v_s.index(st).permute((1, 0)), p_s.permute((1, 0)), acc * alpha[None, :])
    for i in gl.static_range(STAGES):
        mbarrier.invalidate(ready.index(i))

    # normalise, then merge column R/2 + g' into g' (two partial softmaxes of one head over disjoint keys)
    has = l_i > 0.0
    out = acc / gl.where(has, l_i, 1.0)[None, :]
    lse = gl.where(has, m_i + gl.log2(gl.where(has, l_i, 1.0)), -float("inf"))
    flat: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
    o_scr = gl.allocate_shared_memory(gl.float32, [HEAD_DIM, BLOCK_R], flat)
    l_scr = gl.allocate_shared_memory(gl.float32, [1, BLOCK_R], flat)
    o_scr.store(out)
    l_scr.store(lse[None, :])
    _barrier()
    e_layout: gl.constexpr = gl.BlockedLayout([1, 1], [32, 1], [4, 1], [0, 1])
    o0 = o_scr.slice(0, HR, dim=1).load(e_layout)
    o1 = o_scr.slice(HR, HR, dim=1).load(e_layout)
    l0 = l_scr.slice(0, HR, dim=1).load(e_layout)
    l1 = l_scr.slice(HR, HR, dim=1).load(e_layout)
    m = gl.maximum(l0, l1)
    m_use = gl.where(m == -float("inf"), 0.0, m)
    w0 = gl.exp2(l0 - m_use)
    w1 = gl.exp2(l1 - m_use)
    w = w0 + w1
    ok = w > 0.0
    w_use = gl.where(ok, w, 1.0)
    o = (o0 * w0 + o1 * w1) / w_use
    lm = gl.where(ok, m_use + gl.log2(w_use), -float("inf"))
    offs_d = gl.arange(0, HEAD_DIM, gl.SliceLayout(1, e_layout))
    offs_c = gl.arange(0, HR, gl.SliceLayout(0, e_layout))
    part = (pid_bh * num_s + pid_s).to(gl.int64) * HR
    c_ok = offs_c < G
    gl.store(Opart + (part + offs_c[None, :]) * HEAD_DIM + offs_d[:, None], o, mask=c_ok[None, :])
    zero_d = gl.arange(0, 1, gl.SliceLayout(1, e_layout))
    gl.store(Lpart + part + offs_c[None, :] + zero_d[:, None], lm, mask=c_ok[None, :])


def unserved_reason(spec, q, k, v, inv_freq, kmap, partial, k1, key_end) -> str | None:
    """Why this kernel does not serve a decode call (None when it does); the device (sm_90 with Gluon) is the
    caller's check. ``kmap`` / ``partial``: the Triton kernel's key mode and partial-rotary flag for the call."""
    d = q.shape[-1]
    if str(q.dtype) not in ("torch.bfloat16", "torch.float16"):
        return "needs bf16/fp16"
    if d not in (64, 128):
        return f"head_dim {d} (serves 64, 128)"
    if kmap not in (1, 3) or partial:
        return "serves full-rotary far keys with one in-tile table or one group step per tile (KMAP 1, 3)"
    if spec.rule not in (RULE_NONE, RULE_CHUNK):
        return "serves band and chunk tables (not the Lambda rule)"
    if k1 is not None or key_end is not None:
        return "a static cache (key_end, K1) takes the Triton kernel"
    h_kv, lk = k.shape[1], k.shape[2]
    for t in (k, v):
        if t.stride(3) != 1 or t.stride(2) != d or t.stride(1) != lk * d or t.stride(0) != h_kv * lk * d:
            return "needs contiguous K / V (TMA rows of d)"
        if t.data_ptr() % 16:
            return "needs K / V at 16-byte aligned addresses (TMA)"
    if q.shape[1] // h_kv > 16:
        return "more than 16 query heads per KV head"
    return None


def _launch_args(q, k, v, inv_freq, key_start, pos_offset, spec, scale, opart, lpart, chunk, block_r):
    """(positional args, constexpr / launch options) of one launch; q [b, h, 1, d], k / v contiguous."""
    from ._decode import key_mode
    from ._prefill import _LOG2E

    b, h, _, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    half = d // 2
    dt = _gl_dtype(q.dtype)
    k2 = k.view(b * h_kv * lk, d)
    lay_h = gl.NVMMASharedLayout.get_default_for([BLOCK_N, half], dt)
    lay_v = gl.NVMMASharedLayout.get_default_for([BLOCK_N, d], dt)
    klo_desc = TensorDescriptor.from_tensor(k2[:, :half], [BLOCK_N, half], lay_h)
    khi_desc = TensorDescriptor.from_tensor(k2[:, half:], [BLOCK_N, half], lay_h)
    v_desc = TensorDescriptor.from_tensor(v.view(b * h_kv * lk, d), [BLOCK_N, d], lay_v)
    qk, qa, qc, qg, qb = spec.q_map
    _, ka, kc, kg, kb = spec.k_map
    args = (klo_desc, khi_desc, v_desc, q, inv_freq, key_start if key_start is not None else lpart,
            pos_offset if pos_offset is not None else lpart, opart, lpart, q.stride(0), q.stride(1), q.stride(3),
            h_kv, h // h_kv, lk, scale * _LOG2E, chunk, spec.lo1, spec.hi0, spec.ra, spec.rb, qa, qc, qg, qb, ka,
            kc, kg, kb)
    # a 3-stage ring fits 2 programs per SM with 16 stacked columns at D = 128 (109 KB), with 32 only 2 stages do
    kmap, krot = key_mode(spec, BLOCK_N)
    meta = dict(HEAD_DIM=d, BLOCK_R=block_r, QMAP=qk, KMAP=kmap, KROT=krot, RULE=spec.rule,
                STAGES=STAGES if block_r <= 16 else min(STAGES, 2),
                RESYNC=RESYNC, EARLY=bool(EARLY), HAS_KS=key_start is not None,
                HAS_POFF=pos_offset is not None, num_warps=4)
    if MAXNREG:
        meta["maxnreg"] = MAXNREG
    return args, meta


def launch_hopper_decode(q, k, v, inv_freq, key_start, pos_offset, spec, scale, splits, chunk, block_r):
    """Fills and returns (opart [b, h_kv, P, R/2, d], lpart [b, h_kv, P, R/2]) fp32 for ``_decode_combine``; q
    [b, h, 1, d], k / v [b, h_kv, lk, d] contiguous; callers check ``unserved_reason`` first."""
    import torch

    b, _, _, d = q.shape
    h_kv = k.shape[1]
    opart = torch.empty((b, h_kv, splits, block_r // 2, d), device=q.device, dtype=torch.float32)
    lpart = torch.empty((b, h_kv, splits, block_r // 2), device=q.device, dtype=torch.float32)
    args, meta = _launch_args(q, k, v, inv_freq, key_start, pos_offset, spec, scale, opart, lpart, chunk, block_r)
    _hopper_decode_kernel[(splits, b * h_kv)](*args, **meta)
    return opart, lpart


def warm(q, k, v, inv_freq, key_start, pos_offset, spec, block_r):
    """Compile the launch's kernel without running it (the split rule reads its registers and shared memory)."""
    import torch

    part = torch.empty(1, device=q.device, dtype=torch.float32)
    args, meta = _launch_args(q, k, v, inv_freq, key_start, pos_offset, spec, 1.0, part, part, BLOCK_N, block_r)
    return _hopper_decode_kernel.warmup(*args, grid=(1, 1), **meta)
