"""The prefill prologue kernel (``_prologue._rotate_keys_kernel``) as the Hopper prefill calls it: full-rotary
halves (one cos/sin per pair) equal the general path, and ``TRIM`` makes every Q1 / K1 row that kernel reads
while leaving the others untouched (a superset of the read rows, and a real subset of all rows where a table
allows: DCA's first chunk of queries, the keys past the last far tile).

The rows the Hopper kernel reads are mirrored here from its zone rules (``_prefill_hopper_ws``: programs of 128
query rows, tiles of 128 keys; a program reads Q1 iff it has a far or edge tile, K1 tiles [0, r_hi)).
Run: PYTHONPATH=src pytest tests/kernels/test_prologue_trim.py -v   (CPU: TRITON_INTERPRET=1 from conftest.py)
"""
import pytest
import torch

from _helpers import build, llama_inv_freq
from test_table_attention import DEV

BM = BN = 128


def _zones(spec, p0, m0, n):
    """(f_lo, r_hi) of the Hopper program at rows [m0, m0 + 128) of an n-row prefill whose index 0 sits at p0."""
    n_tiles = -(-min(m0 + BM, n) // BN)
    if spec.rule == 1:  # DCA's chunk rule: the near region's start for the first and last row
        cs, cw = spec.ra, spec.rb
        a, z = p0 + m0, p0 + m0 + BM - 1
        x = (a // cs - int(a - a // cs * cs <= cw)) * cs
        y = (z // cs - int(z - z // cs * cs <= cw)) * cs
        f_lo, r_hi = max(x - p0, 0) // BN, (max(y - p0, 0) + BN - 1) // BN
    else:
        f_lo = max(m0 - spec.lo1 + 1, 0) // BN
        r_hi = max(m0 + BM - spec.lo1 + BN - 1, 0) // BN
    f_lo = min(f_lo, n_tiles)
    return f_lo, min(max(r_hi, f_lo), n_tiles)


def _read_rows(spec, p0, n):
    """(query rows whose Q1 the Hopper kernel reads, key rows whose K1 it reads) as boolean [n] masks."""
    q_used = torch.zeros(n, dtype=torch.bool)
    k_used = torch.zeros(n, dtype=torch.bool)
    for m0 in range(0, n, BM):
        _, r_hi = _zones(spec, p0, m0, n)
        if r_hi > 0:
            q_used[m0:m0 + BM] = True
            k_used[:r_hi * BN] = True
    return q_used, k_used


def _launch(x, spec, pos_map, inv, poff, trim, halves):
    from ropeshift.kernels._prologue import _rotate_keys_kernel

    b, hx, n, d = x.shape
    _, a, c, g, shift = pos_map
    out = torch.full_like(x, float("nan"))
    _rotate_keys_kernel[(-(-n // 64), b * hx)](
        x, out, inv, x, poff, *x.stride(), hx, n, inv.numel(), a, c, g, shift, HEAD_DIM=d, BLOCK=64, HAS_KS=False,
        HAS_POFF=True, HALVES=halves, TRIM=trim, T_RULE=int(spec.rule == 1), T_LO1=int(min(spec.lo1, 1 << 30)),
        T_CS=max(int(spec.ra), 1) if spec.rule == 1 else 1, T_N=-(-n // BM) * BM, T_BLOCK=BM, num_warps=4)
    return out


CASES = [("dca", dict(chunk_size=300, local_window=40), 0), ("dca", dict(chunk_size=300, local_window=40), 170),
         ("dca", dict(chunk_size=160, local_window=0), 33), ("rerope", dict(window=200), 0),
         ("self_extend", dict(group_size=4, window=260), 5)]


@pytest.mark.parametrize("name, params, p0", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_trim_writes_every_row_the_hopper_kernel_reads(name, params, p0):
    from ropeshift.kernels.spec import compile_table

    spec = compile_table(build(name, params).table())
    n, d = 700, 32
    inv = llama_inv_freq(d).to(DEV)
    x = torch.randn(2, 2, n, d, generator=torch.Generator().manual_seed(3)).to(DEV)
    poff = torch.tensor([p0, p0], dtype=torch.int32, device=DEV)
    q_used, k_used = _read_rows(spec, p0, n)
    for trim, used, pos_map in ((1, q_used, spec.q_map), (2, k_used, spec.k_map)):
        full = _launch(x, spec, pos_map, inv, poff, 0, False)
        halves = _launch(x, spec, pos_map, inv, poff, 0, True)
        torch.testing.assert_close(halves, full, rtol=1e-6, atol=1e-6)  # one cos/sin per pair: same rotation
        got = _launch(x, spec, pos_map, inv, poff, trim, True)
        written = ~got[0, 0, :, 0].isnan().cpu()
        assert written[used].all(), f"trim {trim} skipped rows the kernel reads: {(used & ~written).nonzero()[:5]}"
        torch.testing.assert_close(got[:, :, written.to(DEV)], full[:, :, written.to(DEV)], rtol=1e-6, atol=1e-6)
        if name == "dca" and p0 == 0:  # queries of the first chunk, keys of the last: never read, never made
            assert not written.all()
