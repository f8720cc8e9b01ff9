"""Resident programs per SM and wave-filling split counts (``ropeshift.kernels._occupancy``), with the sm_90
numbers of the decode kernel as compiled by ptxas (registers, shared bytes) on 2026-12-03."""
import pytest

from ropeshift.kernels._occupancy import SmLimits, programs_per_sm, wave_splits


@pytest.mark.parametrize("n_regs, shared, warps, expected", [
    (94, 71680, 4, 3),     # plain decode: shared memory bounds it (3 x 72.7 KiB of 228 KiB), registers allow 5
    (255, 92160, 4, 2),    # re-rotating decode: 256 x 32 x 4 registers per program, 2 fit in 64 Ki
    (231, 75776, 4, 2),    # 232 registers per thread -> 7424 per warp: still 2
    (180, 92160, 8, 1),    # 8 warps x 184 x 32 = 47104 registers: 1 program
    (32, 0, 1, 32),        # tiny programs: the 32-block limit
    (72, 37888, 4, 6),     # 2304 registers per warp -> 7 programs by registers; 6 x 38 KiB by shared memory
])
def test_programs_per_sm(n_regs, shared, warps, expected):
    assert programs_per_sm(n_regs, shared, warps) == expected


def test_programs_per_sm_other_limits():
    small = SmLimits(regs=32768, shared=100 * 1024, threads=1024, blocks=16)
    assert programs_per_sm(64, 1024, 4, small) == 4     # registers: 32768 / (2048 x 4) = 4; threads: 8
    assert programs_per_sm(16, 49 * 1024, 1, small) == 2  # shared: 100 KiB / 50 KiB
    assert programs_per_sm(1000, 10 ** 9, 64) == 1      # never below one


@pytest.mark.parametrize("rows, max_splits, slots, expected", [
    (64, 1024, 264, 4),    # b = 8 x 8 kv heads on 264 slots: 256 programs, one wave (the old rule: 9 -> 3 waves)
    (8, 1024, 264, 33),    # b = 1: 264 programs exactly
    (8, 10, 264, 10),      # short cache: at most one tile per split
    (300, 1024, 264, 1),   # more rows than slots: one program per row
    (0, 5, 264, 5),
])
def test_wave_splits(rows, max_splits, slots, expected):
    s = wave_splits(rows, max_splits, slots)
    assert s == expected
    assert rows * s <= max(slots, rows) or s == 1
