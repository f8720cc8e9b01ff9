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
    assert wave_splits(rows, max_splits, slots) == expected


class _CudaLike:
    """A stand-in q for the split rule: on "CUDA" (no tensor is made)."""
    is_cuda = True
    device = None


@pytest.mark.parametrize("rule, name, expected", [
    ("wave", "rerope", 4),     # 264 slots (2 programs x 132 SMs) over b * h_kv = 64 rows: one wave
    ("sms4", "rerope", 9),     # the old rule: ceil(4 x 132 / 64)
    ("wave", "lm_infinite", 9),  # Lambda tables keep the old rule (measured faster: idle programs end at once)
])
def test_split_count_rules(monkeypatch, rule, name, expected):
    from _helpers import build
    from ropeshift.kernels import _decode
    from ropeshift.kernels.spec import compile_table

    params = {"rerope": dict(window=100), "lm_infinite": dict(n_global=4, n_local=100, distance_limit=100)}[name]
    spec = compile_table(build(name, params).table())
    compiled = []
    monkeypatch.setattr(_decode, "SPLIT_RULE", rule)
    monkeypatch.setattr(_decode, "_num_sms", lambda device: 132)
    monkeypatch.setattr(_decode, "_SLOTS", {})
    monkeypatch.setattr("ropeshift.kernels._occupancy.compiled_resources",
                        lambda kernel: compiled.append(kernel) or (255, 92160))
    monkeypatch.setattr("ropeshift.kernels._occupancy.device_limits", lambda idx: __import__(
        "ropeshift.kernels._occupancy", fromlist=["SmLimits"]).SmLimits())

    class Dev:
        index = 0
    q = _CudaLike()
    q.device = Dev()
    key = (4, "bf16")
    for _ in range(2):  # the compiled variant is asked for once per key and device
        got = _decode._split_count(q, spec, 8, 8, 65536, 64, key, lambda: "kernel")
        assert got == expected
    assert compiled == (["kernel"] if rule == "wave" and name != "lm_infinite" else [])
