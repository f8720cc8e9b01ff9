"""Triton split-KV decode ("flash-decoding") for segment-table attention with one query per row.

Two launches, no host syncs, CUDA-graph capturable:

1. `_table_decode_split_kernel`, grid (splits, b * h_kv): one program reads one chunk of one KV head once and
   scores it against the g query heads of that KV head, stacked as the rows of one MMA operand (2g rows with a
   region 1, padded to >= 16, which the MMA needs anyway: q at rows [0, g), q1 at [R/2, R/2 + g)). Every row
   holds a partial softmax over a disjoint set of keys; before its store the program merges row R/2 + g' into
   row g' (``_merge_halves``), so every method writes one partial per head and split, as plain decode does (the
   combine merging 2g rows instead cost 2-3 % at B = 1, benchmarks/RESULTS.md). With one query, region 1 is the
   key prefix [0, F) (F from the bands, and for DCA's chunk rule from the query's chunk), so the chunk is cut
   into zones::

       keys  [ far: region 1 only ][ edge tile ][ near: region 0 only ]     (Lambda: invisible tiles skipped)
               one dot, keys re-     both        one dot of q and k as cached (rows [0, g))
               rotated in registers

   Far keys use the key map's in-tile decomposition map(n0 + j) - (n0 + j) = delta_t + D_j: R(delta_t) moves to
   the query rows (one [d/2] cos/sin per tile), R(D_j) is applied to the keys' rotary halves, loaded as two
   [BLOCK_N, d/2] tiles (no partner gather). KMAP 1: D_j = (a - 1) j + c floor((r0 + j) / G) is the same for every
   tile (c = 0, or G | BLOCK_N): a cos/sin table [BLOCK_N, d/2] built once per program. KMAP 2 (other G <
   BLOCK_N): the table per tile, of small angles. KMAP 3 (c != 0, G >= BLOCK_N, e.g. DCA): at most one group
   step per tile; D_j = (a - 1) j (no key rotation at all when a = 1) and the keys past the step are scored by
   rows [0, g) with the query rotated by one more c. KMAP 0 (identity key map, STRING, plain): one dot of the
   stacked rows [q; q1] with the keys as cached on every tile.

   With a K1 cache (HAS_K1: ``key_cache``, static decode of the re-rotating methods), every key's far image
   R(kmap(p) - p) k is already in memory, so the far logit is <q1, K1[n]> with the same q1 = R(dq) q as KMAP 0
   and the kernel takes the KMAP 0 path: one loop, one dot of [q; q1] per tile, each key read once from the
   buffer its region scores (no trig per tile, no key rotation, no group step, no second pipelined load)::

       keys  [ far: region 1 only ][ edge tile ][ near: region 0 only ]
               K1 rows               K1 | K       K rows               (q1's rows see far keys only,
               by key: n < F ? K1 : K                                   q's rows near ones only)

2. `_decode_combine_kernel`, grid (b * h,): merges the splits partials of a head by LSE.

On sm_90, a call without K1 whose far keys are re-rotated (KMAP 1 / 3, full rotary, 16-bit) takes the Hopper
decode (``_decode_hopper``) for step 1 instead: the same partials, 0.99-1.022x our plain decode where this
kernel read 1.02-1.27x (``ROUTE``; benchmarks/RESULTS.md).

Rotations: HF rotate_half over the first 2 r2 dims (dims beyond untouched), angles in fp32, cos/sin by
``_rotary._cos_sin``. The zone loop (``_dtiles``, ``_dzone``) lives in ``_decode_zones``. Shape legend: b batch,
h query heads, h_kv key/value heads, g = h / h_kv, lk keys, d head dim, r2 = len(inv_freq), R = padded stacked
rows, P = splits.
"""

import functools
import os

import triton
import triton.language as tl

from ._decode_combine import _decode_combine_kernel, _num_sms
from ._decode_zones import _dzone, _halves, _key_table, _rest
from ._prefill import _LOG2E
from ._prologue import _write_rotated
from ._rotary import _map_delta, _partner, _rotate, _row_offsets
from .key_cache import kernel_writes_slot
from .spec import RULE_LAMBDA


# the cache grows every step, table scalars vary per call: one binary per table kind for all lengths
@triton.jit(do_not_specialize=["H_KV", "G", "LK", "LO1", "HI0", "RA", "RB", "QC", "QG", "KC", "KG"])
def _table_decode_split_kernel(
    Q, K, V, K1, INV, KS, POFF, KE, Opart, Lpart,
    stride_qb, stride_qh, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    H_KV, G, LK, R2, qk_scale, CHUNK,
    LO1, HI0, RA, RB, QA, QC, QG, QB, KA, KC, KG, KB,
    HEAD_DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_R1: tl.constexpr, RULE: tl.constexpr, QMAP: tl.constexpr, KMAP: tl.constexpr, KROT: tl.constexpr,
    PARTIAL: tl.constexpr, HAS_KS: tl.constexpr, HAS_POFF: tl.constexpr, HAS_KE: tl.constexpr,
    HAS_K1: tl.constexpr, DOT_PREC: tl.constexpr, WRITE_K1: tl.constexpr,
):
    # Q     [b, h, 1, d]          (row stride unused)     INV [r2] fp32 inverse frequencies
    # K, V  [b, h_kv, lk, d]                              KS [b] first valid key index; POFF [b] position of key 0
    # K1    [b, h_kv, lk, d], K's strides (HAS_K1): every key re-rotated to the far key map (``key_cache``)
    # KE    [b] keys written (HAS_KE: a static cache): the query sits at key index KE - 1, keys >= KE unread
    # Opart [b, h_kv, P, R', d] fp32, contiguous: normalised partial outputs (R' = R / 2 with HAS_R1, else R;
    #                                            rows past the g heads' are never written)
    # Lpart [b, h_kv, P, R']    fp32, contiguous: partial LSE in log2 units of the scaled logits (-inf: empty)
    # HAS_R1: q1's rows sit at [R / 2, R / 2 + g) and each is merged into its q row before the store
    # WRITE_K1 (with HAS_K1, HAS_KE): the first split of each (row, kv head) writes K1 at the query's own slot
    # KMAP (module docstring): 0 keys as cached, 1 invariant in-tile table, 2 per-tile table, 3 group step
    # (KROT: keys rotated by (a - 1) j); PARTIAL: r2 < d / 2
    HALF: tl.constexpr = HEAD_DIM // 2
    pid_s = tl.program_id(0)
    pid_bh = tl.program_id(1)
    num_s = tl.num_programs(0)
    off_b = (pid_bh // H_KV).to(tl.int64)
    off_hk = (pid_bh % H_KV).to(tl.int64)

    rows = tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_h = tl.arange(0, HALF)
    offs_n = tl.arange(0, BLOCK_N)
    HALF_R: tl.constexpr = BLOCK_R // 2
    if HAS_R1:  # rows [0, g) q, [R / 2, R / 2 + g) q1
        is_r1 = rows >= HALF_R
        row_g = rows - is_r1.to(tl.int32) * HALF_R
        row_ok = row_g < G
    else:  # rows [0, g) q
        is_r1 = rows >= G
        row_g = rows % G
        row_ok = rows < G
    head = off_hk * G + row_g
    q_rows = Q + off_b * stride_qb + head[:, None].to(tl.int64) * stride_qh
    q = tl.load(q_rows + offs_d[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)

    ks, poff = _row_offsets(KS, POFF, off_b, HAS_KS, HAS_POFF)
    if HAS_KE:
        lim = tl.minimum(tl.load(KE + off_b).to(tl.int32), LK)
    else:
        lim = LK
    pos = lim - 1
    qpos = pos + poff
    if QMAP == 2:
        dq = _map_delta(qpos, QA, QC, QG, QB)
    elif QMAP == 1:
        dq = QB
    else:
        dq = 0.0
    # region 1 = keys [0, F) of this one query
    if HAS_R1:
        F = pos - LO1 + 1
        if RULE == 1:  # DCA: near iff the key's chunk is the query's, or the previous one with m mod s <= w
            qch = qpos // RA
            near0 = (qch - ((qpos - qch * RA) <= RB).to(tl.int32)) * RA - poff
            F = tl.maximum(pos - HI0 + 1, tl.minimum(F, near0))
    else:
        F = 0
    if WRITE_K1:  # the step's new key into K1: near to its own query (F <= pos), so no program reads it now
        if pid_s == 0:
            one = tl.zeros([1, 1], dtype=tl.int64)
            row = one + (off_b * stride_kb + off_hk * stride_kh + pos.to(tl.int64) * stride_kn)
            delta = one.to(tl.float32) + _map_delta(qpos, KA, KC, KG, KB)
            _write_rotated(K, K1, row, tl.arange(0, 1) < 1, stride_kd, INV, R2, delta, HEAD_DIM, False)
    start = pid_s * CHUNK
    stop = tl.minimum(start + CHUNK, lim)
    lo = start
    if HAS_KS:  # tiles wholly in the left padding are skipped
        lo = tl.maximum(lo, ks // BLOCK_N * BLOCK_N)
    if RULE == 2:  # Lambda: tiles before gend hold global keys; from lstart on, keys are within n_local
        gk = RB - poff
        gend = tl.where(gk > 0, (gk + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)
        xl = pos - RA + 1
        lstart = tl.where(xl > 0, xl // BLOCK_N * BLOCK_N, 0)
    else:
        gend = 0
        lstart = 0
    K_BASE = K + off_b * stride_kb + off_hk * stride_kh
    K1_BASE = K1 + off_b * stride_kb + off_hk * stride_kh
    V_BASE = V + off_b * stride_vb + off_hk * stride_vh

    acc = tl.zeros([BLOCK_R, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    m_i = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
    if KMAP == 0:  # rows [q; q1] (q1: q rotated once by the query map), keys as cached, one dot per tile
        if HAS_R1 and QMAP != 0:
            qp = tl.load(q_rows + _partner(offs_d, R2)[None, :] * stride_qd, mask=row_ok[:, None], other=0.0)
            q = tl.where(is_r1[:, None], _rotate(q, qp, INV, R2, offs_d, dq), q)
        # with a K1 cache (the re-rotating methods' far keys pre-rotated): each key read once, from K1 if far
        acc, l_i, m_i = _dzone(acc, l_i, m_i, lo, stop, gend, lstart, q, q, q, q, q, q, q, K_BASE, V_BASE, K1_BASE,
                               stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos, poff, F, RA, RB, R2, dq,
                               KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d, offs_h,
                               BLOCK_N, HALF, 3 if HAS_K1 else 0, KMAP, KROT, PARTIAL, RULE, DOT_PREC)
    else:
        q_lo, q_hi = _halves(q_rows, offs_h, R2, row_ok, stride_qd, HALF, PARTIAL)
        q_lo = q_lo.to(tl.float32)
        q_hi = q_hi.to(tl.float32)
        if PARTIAL:
            q_rest = _rest(q_rows, offs_d, R2, row_ok, stride_qd)
        else:
            q_rest = q
        if PARTIAL:
            inv_h = tl.load(INV + offs_h, mask=offs_h < R2, other=0.0)
        else:
            inv_h = tl.load(INV + offs_h)
        if KMAP == 1:  # r0 = p0 mod G is the same for every tile (G | BLOCK_N, or c = 0)
            r0 = poff % KG
            tc, ts = _key_table(inv_h, offs_n, tl.where(r0 < 0, r0 + KG, r0), KA, KC, KG)
        elif KMAP == 3 and KROT:
            tc, ts = _key_table(inv_h, offs_n, 0, KA, 0, 1)
        else:
            tc = inv_h
            ts = inv_h
        f_end = tl.where(F > 0, F // BLOCK_N * BLOCK_N, 0)  # tiles below: region 1 only
        n_beg = tl.where(F > 0, (F + BLOCK_N - 1) // BLOCK_N * BLOCK_N, 0)  # tiles from here: region 0 only
        for_zone = tl.minimum(stop, f_end)
        acc, l_i, m_i = _dzone(acc, l_i, m_i, lo, for_zone, gend, lstart, q, q_lo, q_hi, q_rest, inv_h, tc, ts,
                               K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos,
                               poff, F, RA, RB, R2, dq, KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d,
                               offs_h, BLOCK_N, HALF, 1, KMAP, KROT, PARTIAL, RULE, DOT_PREC)
        acc, l_i, m_i = _dzone(acc, l_i, m_i, tl.maximum(lo, f_end), tl.minimum(stop, n_beg), gend, lstart, q, q_lo,
                               q_hi, q_rest, inv_h, tc, ts,
                               K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos,
                               poff, F, RA, RB, R2, dq, KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d,
                               offs_h, BLOCK_N, HALF, 2, KMAP, KROT, PARTIAL, RULE, DOT_PREC)
        acc, l_i, m_i = _dzone(acc, l_i, m_i, tl.maximum(lo, n_beg), stop, gend, lstart, q, q_lo, q_hi, q_rest,
                               inv_h, tc, ts,
                               K_BASE, V_BASE, K1_BASE, stride_kn, stride_kd, stride_vn, stride_vd, stop, ks, pos,
                               poff, F, RA, RB, R2, dq, KA, KC, KG, KB, qk_scale, is_r1, row_ok, offs_n, offs_d,
                               offs_h, BLOCK_N, HALF, 0, KMAP, KROT, PARTIAL, RULE, DOT_PREC)

    if HAS_R1:
        acc, l_i, m_i = _merge_halves(acc, l_i, m_i, HALF_R, HEAD_DIM)
        out_rows = tl.arange(0, HALF_R)
        OUT_R: tl.constexpr = HALF_R
        store_ok = out_rows < G
    else:
        out_rows = rows
        OUT_R: tl.constexpr = BLOCK_R
        store_ok = row_ok
    has = l_i > 0.0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    part = (pid_bh * num_s + pid_s).to(tl.int64) * OUT_R
    tl.store(Opart + (part + out_rows[:, None]) * HEAD_DIM + offs_d[None, :], out, mask=store_ok[:, None])
    tl.store(Lpart + part + out_rows, lse, mask=store_ok)


@triton.jit
def _merge_halves(acc, l_i, m_i, HALF_R: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Merge row r + R/2 into row r (two partial softmaxes of one head over disjoint keys, log2 units):
    acc [R, d], l_i, m_i [R] -> [R/2, d], [R/2], [R/2]."""
    a0, a1 = tl.split(tl.permute(tl.reshape(acc, (2, HALF_R, HEAD_DIM)), (1, 2, 0)))
    l0, l1 = tl.split(tl.permute(tl.reshape(l_i, (2, HALF_R)), (1, 0)))
    m0, m1 = tl.split(tl.permute(tl.reshape(m_i, (2, HALF_R)), (1, 0)))
    m = tl.maximum(m0, m1)
    m_use = tl.where(m == float("-inf"), 0.0, m)
    w0 = tl.math.exp2(m0 - m_use)
    w1 = tl.math.exp2(m1 - m_use)
    return a0 * w0[:, None] + a1 * w1[:, None], l0 * w0 + l1 * w1, m


# (BLOCK_N, num_warps, num_stages) on a GPU, for every key path: (32,4,3), (32,4,4), (64,4,4) and (64,8,3) were
# slower for the re-rotating paths on the H200 (benchmarks/RESULTS.md, 2026-12-03); ROPESHIFT_DECODE_CONFIG overrides
GPU_CONFIG = (64, 4, 3)
DECODE_CONFIG = tuple(int(x) for x in os.environ["ROPESHIFT_DECODE_CONFIG"].split(",")) \
    if os.environ.get("ROPESHIFT_DECODE_CONFIG") else None
# split rule: "wave" (programs fill one wave of the device, ``_occupancy``) or "sms4" (~4 programs per SM, the
# rule before 2026-12-03; kept for side-by-side benchmarks)
SPLIT_RULE = os.environ.get("ROPESHIFT_DECODE_SPLIT", "wave")
# "auto": the Hopper (Gluon) decode serves the calls it can (``_decode_hopper``: re-rotated far keys without K1,
# on sm_90); "triton": this module's kernel for every call (side-by-side benchmarks)
ROUTE = os.environ.get("ROPESHIFT_DECODE_ROUTE", "auto")


def _hopper_serves(q, k, v, inv_freq, spec, k1, key_end):
    """True when the Hopper decode kernel takes this call: ``ROUTE`` "auto", no tile config forced for this
    module's kernel (``DECODE_CONFIG``), an sm_90 device with Gluon, and ``_decode_hopper.unserved_reason``."""
    if ROUTE != "auto" or DECODE_CONFIG is not None or not q.is_cuda or not spec.has_r1:
        return False
    from .attention import _hopper_device

    if not _hopper_device(q.device):
        return False
    from . import _decode_hopper as hd

    kmap = key_mode(spec, hd.BLOCK_N)[0]
    return hd.unserved_reason(spec, q, k, v, inv_freq, kmap, 2 * inv_freq.numel() != q.shape[-1], k1,
                              key_end) is None


def _decode_config(on_gpu):
    if DECODE_CONFIG is not None:
        return DECODE_CONFIG
    return GPU_CONFIG if on_gpu else (16, 4, 1)


def key_mode(spec, block_n):
    """(KMAP, KROT) of a spec's key map for tiles of block_n keys (see the module docstring)."""
    kk, ka, kc, kg, _ = spec.k_map
    if not spec.has_r1 or kk == 0:
        return 0, False
    if kc != 0 and kg >= block_n:
        return 3, ka != 1.0  # at most one group step per tile
    if kc == 0 or block_n % kg == 0:
        return 1, True  # in-tile rotation the same for every tile
    return 2, True


_SLOTS = {}  # (device index, constexpr key) -> programs per wave


def _wave_slots(device, key, warm):
    """Programs the device holds at once for one compiled variant: ``key`` (num_warps first) names it, ``warm()``
    compiles it without launching (once per key and device)."""
    from . import _occupancy as occ

    idx = device.index if device.index is not None else 0
    if (idx, key) not in _SLOTS:
        n_regs, shared = occ.compiled_resources(warm())
        per_sm = occ.programs_per_sm(n_regs, shared, key[0], occ.device_limits(idx))
        _SLOTS[idx, key] = per_sm * _num_sms(device)
    return _SLOTS[idx, key]


def _split_count(q, spec, b, h_kv, lk, block_n, key, warm):
    """Splits per (row, kv head), from shapes and the compiled kernel only (no host sync): "wave" fills one wave
    of resident programs; "sms4" (and CPU, and Lambda tables) aims at ~4 programs per SM. Lambda tables see
    only n_global + n_local keys, so the programs over the invisible middle end at once and one wave leaves
    SMs idle: on the H200 (64k, B = 8) LM-Infinite took 361.6 us with "sms4" and 410.7 with "wave"."""
    max_splits = triton.cdiv(lk, block_n)
    if SPLIT_RULE == "wave" and q.is_cuda and spec.rule != RULE_LAMBDA:
        from ._occupancy import wave_splits

        return wave_splits(b * h_kv, max_splits, _wave_slots(q.device, key, warm))
    want = max(1, triton.cdiv(4 * _num_sms(q.device), b * h_kv))
    return max(1, min(want, max_splits))


def launch_decode(q, k, v, inv_freq, key_start, pos_offset, out, lse, *, spec, scale, key_end=None, k1=None,
                  write_k1=False):
    """Host launcher for lq == 1: fills `out` [b, h, 1, d] and `lse` [b, h, 1] in place (2 launches).

    q [b, h, 1, d]; k, v [b, h_kv, lk, d]; inv_freq [r2] fp32; key_start, pos_offset [b] int or None;
    spec: a ``KernelSpec`` reduced for lk. key_end [b] int32/int64 or None: keys written per row (a static
    cache's full buffer as k/v, CUDA-graph decode): the query sits at key index key_end - 1 and keys >= key_end
    are never read; None: key_end = lk (bottom-right alignment). The split count stays a function of lk.
    k1 [b, h_kv, lk, d] or None: the K1 cache (``key_cache.far_keys``: every key re-rotated to the far region's
    key map, k's dtype and strides); given for a spec whose far key map is not the identity, the far keys are
    read from it (one dot per tile, no re-rotation); ignored for other specs. write_k1 (with k1 and key_end): the
    kernel also writes K1's slot key_end - 1 (the step's new key, which this step reads from k), so the caller
    writes only the slots below it (``key_cache.kernel_writes_slot`` says when a spec allows it)."""
    import torch

    b, h, _, d = q.shape
    h_kv, lk = k.shape[1], k.shape[2]
    g = h // h_kv
    block_n, num_warps, num_stages = _decode_config(q.is_cuda)
    n_rows = 2 * g if spec.has_r1 else g
    block_r = max(16, triton.next_power_of_2(n_rows))
    qk, qa, qc, qg, qb = spec.q_map
    _, ka, kc, kg, kb = spec.k_map
    kmap, krot = key_mode(spec, block_n)
    if k1 is not None and kmap == 0:
        k1 = None  # keys as cached already: nothing to read from K1
    if k1 is not None:
        if k1.shape != k.shape or k1.stride() != k.stride() or k1.dtype != k.dtype or k1.device != k.device:
            raise ValueError(f"k1 must match k's shape, strides, dtype and device; got {tuple(k1.shape)} "
                             f"{k1.stride()} {k1.dtype} for k {tuple(k.shape)} {k.stride()} {k.dtype}")
        kmap, krot = 0, False  # the far keys read as cached, from K1
    write_k1 = bool(write_k1 and k1 is not None)
    if write_k1 and (key_end is None or not kernel_writes_slot(spec, k.dtype)):
        raise ValueError("write_k1 needs key_end and a spec whose query never reads its own key as far "
                         "(key_cache.kernel_writes_slot)")
    meta = dict(HEAD_DIM=d, BLOCK_R=block_r, BLOCK_N=block_n,
                HAS_R1=spec.has_r1, RULE=spec.rule, QMAP=qk if spec.has_r1 else 0, KMAP=kmap, KROT=krot,
                PARTIAL=kmap != 0 and 2 * inv_freq.numel() != d,
                HAS_KS=key_start is not None, HAS_POFF=pos_offset is not None, HAS_KE=key_end is not None,
                HAS_K1=k1 is not None, WRITE_K1=write_k1,
                DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32",
                num_warps=num_warps, num_stages=num_stages)

    def args(opart, lpart, chunk):
        return (q, k, v, k1 if k1 is not None else k, inv_freq, key_start if key_start is not None else q,
                pos_offset if pos_offset is not None else q, key_end if key_end is not None else q, opart, lpart,
                q.stride(0), q.stride(1), q.stride(3), *k.stride(), *v.stride(),
                h_kv, g, lk, inv_freq.numel(), scale * _LOG2E, chunk,
                spec.lo1, spec.hi0, spec.ra, spec.rb, qa, qc, qg, qb, ka, kc, kg, kb)

    hopper = _hopper_serves(q, k, v, inv_freq, spec, k1, key_end)
    if hopper:  # the Hopper decode: its own tiles and compiled variant
        from . import _decode_hopper as hd

        tile = hd.BLOCK_N
        key = (4, "hopper", q.dtype, d, block_r, hd.MAXNREG, hd.STAGES, hd.EARLY, key_start is not None,
               pos_offset is not None)
        warm = functools.partial(hd.warm, q, k, v, inv_freq, key_start, pos_offset, spec, block_r)
    else:
        tile = block_n
        # the compiled variant: constexprs and every pointer's dtype (Triton specializes on them); approximate in
        # leaving out stride alignment, which may cost a few registers either way
        key = (num_warps, q.dtype, k.dtype,
               *(None if t is None else t.dtype for t in (key_start, pos_offset, key_end)), *meta.values())

        def warm():
            """Compile the launch's kernel without running it: fp32 partials as the launch passes them."""
            part = torch.empty(1, device=q.device, dtype=torch.float32)
            return _table_decode_split_kernel.warmup(*args(part, part, block_n), grid=(1, 1), **meta)
    splits = _split_count(q, spec, b, h_kv, lk, tile, key, warm)
    chunk = triton.cdiv(triton.cdiv(lk, splits), tile) * tile
    splits = triton.cdiv(lk, chunk)
    if hopper:
        opart, lpart = hd.launch_hopper_decode(q, k, v, inv_freq, key_start, pos_offset, spec, scale, splits,
                                               chunk, block_r)
    else:
        part_r = block_r // 2 if spec.has_r1 else block_r  # partial rows per (row, kv head, split): q1's merged
        opart = torch.empty((b, h_kv, splits, part_r, d), device=q.device, dtype=torch.float32)
        lpart = torch.empty((b, h_kv, splits, part_r), device=q.device, dtype=torch.float32)
        _table_decode_split_kernel[(splits, b * h_kv)](*args(opart, lpart, chunk), **meta)
    part_r = opart.shape[3]
    _decode_combine_kernel[(b * h,)](
        opart, lpart, out, lse,
        out.stride(0), out.stride(1), out.stride(3), lse.stride(0), lse.stride(1),
        h, g, splits,
        HEAD_DIM=d, BLOCK_R=part_r, BLOCK_S=max(2, triton.next_power_of_2(splits)), num_warps=4,
    )
    return out, lse
