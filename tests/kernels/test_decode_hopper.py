"""The Hopper (Gluon) decode for re-rotated far keys without K1 (``_decode_hopper``) vs the fp64 reference.

On an sm_90 GPU: every served table (ReRoPE, leaky ReRoPE, Self-Extend with G | 64 or G >= 64, DCA's chunks)
over lengths with the region edge at 64-key tile boundaries +- 1, GQA 1 / 4 / 8 / 16, left padding (negative positions below
key_start), bf16 / fp16, head_dim 64 / 128, each launch checked to have taken this kernel, outputs NaN-poisoned
(``test_table_attention._check``: tolerance 2 x PyTorch's own error in the same dtype). On CPU: the whole sm_90
compile, and the registers / shared memory that let 2 programs share an SM.
"""
import pytest
import torch

from _helpers import build
from test_table_attention import CUDA, _check


def _sm90():
    if not CUDA or torch.cuda.get_device_capability() != (9, 0):
        return False
    try:
        from ropeshift.kernels import _decode_hopper  # noqa: F401
    except ImportError:
        return False
    return True


SERVED = [  # (id, registry name, params): far key maps the kernel serves on 64-key tiles (``_decode.key_mode``)
    ("rerope", "rerope", dict(window=200)),  # KMAP 1: one in-tile table
    ("rerope_leaky", "rerope", dict(window=129, leaky=4.0)),
    ("self_extend_g8", "self_extend", dict(group_size=8, window=128)),
    ("self_extend_g32", "self_extend", dict(group_size=32, window=192)),
    ("self_extend_g4", "self_extend", dict(group_size=4, window=60)),
    ("self_extend_g64", "self_extend", dict(group_size=64, window=192)),  # KMAP 3: group step, keys rotated
    ("dca", "dca", dict(chunk_size=300, local_window=20)),  # KMAP 3 without key rotation, the chunk rule
    ("dca_c128", "dca", dict(chunk_size=128, local_window=5)),  # group steps on tile edges
    ("dca_c130", "dca", dict(chunk_size=130, local_window=1)),
]


@pytest.fixture
def hopper_launches(monkeypatch):
    """Counts the Hopper decode's launches (each checked case must take it)."""
    from ropeshift.kernels import _decode_hopper as hd

    calls = []
    real = hd.launch_hopper_decode

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hd, "launch_hopper_decode", spy)
    return calls


@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU and Triton with Gluon")
@pytest.mark.parametrize("case", SERVED, ids=lambda c: c[0])
@pytest.mark.parametrize("d", [128, 64])
def test_hopper_decode_matches_reference(case, d, hopper_launches):
    from ropeshift.kernels._decode import key_mode
    from ropeshift.kernels.spec import compile_table

    method = build(case[1], case[2])
    assert key_mode(compile_table(method.table()).for_keys(4097), 64)[0] in (1, 3)
    # lengths: one tile, region edge F at tile multiples +- 1 (F = lk - lo1 for bands), several splits, long;
    # DCA: the query's offset in its chunk across the window (F moves by a chunk)
    lo1 = int(compile_table(method.table()).lo1)
    lengths = sorted({97, 1025, 4097, lo1 + 63, lo1 + 64, lo1 + 65, lo1 + 128})
    if case[1] == "dca":
        c = case[2]["chunk_size"]
        lengths = sorted({97, 1025, 4097, 3 * c, 3 * c + 1, 3 * c + case[2]["local_window"] + 1, 4 * c - 1})
    for lk in lengths:
        _check(method, 2, 8, 2, 1, lk, d, torch.bfloat16, key_start=[0, 37])  # GQA 4, left padding
    _check(method, 1, 4, 4, 1, 1025, d, torch.float16)  # no GQA (one column per head)
    _check(method, 2, 16, 2, 1, 2049, d, torch.bfloat16, key_start=[130, 0])  # GQA 8, a padded tile
    _check(method, 1, 16, 1, 1, 700, d, torch.float16, seed=2)  # GQA 16: 32 stacked columns
    # every launch above (the launcher and the op) of a call with far keys (shorter ones decode as plain)
    far = [compile_table(method.table()).for_keys(lk).has_r1 for lk in lengths]
    assert len(hopper_launches) == 2 * (sum(far) + 3)


@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU and Triton with Gluon")
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("case", [c for c in SERVED if c[0] in ("rerope", "rerope_leaky", "self_extend_g8", "dca")],
                         ids=lambda c: c[0])
def test_hopper_decode_long_programs(case, splits, hopper_launches, monkeypatch):
    """Programs that walk many tiles, as at 64k-128k (the grid above gives each program about one tile): the
    K / V ring's wrap, the query angle stepped per tile with its exact cos / sin every RESYNC tiles (65 tiles:
    resyncs at 0, 32, 64), programs starting past key 0; the split count forced to 1 and 3."""
    from ropeshift.kernels import _decode

    monkeypatch.setattr(_decode, "_split_count", lambda *a, **kw: splits)
    method = build(case[1], case[2])
    _check(method, 2, 8, 2, 1, 4097, 128, torch.bfloat16, key_start=[0, 300])
    _check(method, 1, 8, 1, 1, 6001, 64, torch.float16)
    assert len(hopper_launches) == 4


@pytest.mark.skipif(not _sm90(), reason="needs an sm_90 GPU and Triton with Gluon")
def test_hopper_decode_leaves_other_calls(hopper_launches):
    """Lambda, STRING, a table per tile (G not dividing 64), partial rotary, fp32 and a forced Triton route keep
    the Triton kernel."""
    from ropeshift.kernels import _decode

    _check(build("self_extend", dict(group_size=3, window=192)), 1, 8, 2, 1, 1025, 128, torch.bfloat16)
    _check(build("lm_infinite", dict(n_global=4, n_local=200, distance_limit=200)), 1, 8, 2, 1, 1025, 128,
           torch.bfloat16)
    _check(build("string", dict(shift=300, window=20)), 1, 8, 2, 1, 1025, 128, torch.bfloat16)
    rerope = build("rerope", dict(window=200))
    _check(rerope, 1, 8, 2, 1, 1025, 128, torch.bfloat16, rotary_frac=0.5)
    _check(rerope, 1, 8, 2, 1, 1025, 128, torch.float32)
    assert hopper_launches == []
    old, _decode.ROUTE = _decode.ROUTE, "triton"
    try:
        _check(rerope, 1, 8, 2, 1, 1025, 128, torch.bfloat16)
    finally:
        _decode.ROUTE = old
    assert hopper_launches == []


# ---- CPU: the kernel compiles for sm_90, 3 programs per SM ---------------------------------------------


@pytest.mark.skipif(CUDA, reason="compile-only stand-in for machines without a GPU")
def test_hopper_decode_compiles_for_sm90():
    """The whole compile (Gluon -> PTX -> ptxas) at D = 64 / 128 and GQA 4 / 16; registers within MAXNREG and
    shared memory small enough that 2 programs of 4 warps share an SM (the K / V ring of 3 stages at 16 stacked
    columns, 2 at 32). In a subprocess: the compiler must not see TRITON_INTERPRET."""
    from _sm90_compile import compile_in_subprocess

    pytest.importorskip("triton.experimental.gluon")
    results = compile_in_subprocess(["--decode", "rerope:128:4", "self_extend:128:4", "rerope_leaky:64:4",
                                     "rerope:128:16", "dca:128:4", "self_extend_g64:128:4"])
    assert len(results) == 6
    from ropeshift.kernels._occupancy import programs_per_sm

    for r in results:
        assert r["wgmma"], r
        assert r["regs"] <= (r["maxnreg"] or 255), r
        assert programs_per_sm(r["regs"], r["shared"], 4) >= 2, r  # as measured fastest (RESULTS.md)


def test_unserved_reasons():
    """What the Hopper decode serves, on shapes alone (CPU: the routing check, no launch): the served tables at
    bf16 / fp16, D = 64 / 128, contiguous aligned K / V, a dynamic cache; a reason for everything else."""
    pytest.importorskip("triton.experimental.gluon")
    from ropeshift.kernels import _decode_hopper as hd
    from ropeshift.kernels._decode import key_mode
    from ropeshift.kernels.spec import compile_table

    def reason(name, params, *, d=128, dtype=torch.bfloat16, h=8, h_kv=2, lk=4096, rot=1.0, k1=False, key_end=False,
               view=None):
        spec = compile_table(build(name, params).table()).for_keys(lk)
        q = torch.zeros(1, h, 1, d, dtype=dtype)
        k = torch.zeros(1, h_kv, lk, d, dtype=dtype)
        if view == "strided":
            k = torch.zeros(1, h_kv, lk + 8, d, dtype=dtype)[:, :, :lk]
        elif view == "misaligned":
            k = torch.zeros(1 * h_kv * lk * d + 1, dtype=dtype)[1:].view(1, h_kv, lk, d)
        inv = torch.ones(int(d // 2 * rot))
        return hd.unserved_reason(spec, q, k, k, inv, key_mode(spec, hd.BLOCK_N)[0], 2 * inv.numel() != d,
                                  k if k1 else None, torch.ones(1) if key_end else None)

    for name, params in [c[1:] for c in SERVED]:
        assert reason(name, params) is None, name
        assert reason(name, params, d=64, dtype=torch.float16) is None, name
    rerope = ("rerope", dict(window=200))
    assert "bf16/fp16" in reason(*rerope, dtype=torch.float32)
    assert "head_dim" in reason(*rerope, d=32)
    assert "KMAP" in reason(*rerope, rot=0.5)  # partial rotary
    assert "KMAP" in reason("self_extend", dict(group_size=3, window=192))  # a table per tile
    assert "KMAP" in reason("string", dict(shift=300, window=20))  # keys as cached: the Triton kernel's one dot
    assert "Lambda" in reason("lm_infinite", dict(n_global=4, n_local=200, distance_limit=4000))
    assert "static cache" in reason(*rerope, k1=True)
    assert "static cache" in reason(*rerope, key_end=True)
    assert "contiguous" in reason(*rerope, view="strided")
    assert "aligned" in reason(*rerope, view="misaligned")
    assert "16 query heads" in reason(*rerope, h=34, h_kv=1)
