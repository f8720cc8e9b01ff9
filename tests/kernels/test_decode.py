"""Split-KV decode (lq == 1) vs the fp64 reference, one case per key-map path of ``_decode`` (CPU: 16-key tiles).

On CUDA the cases run twice: with 16-key tiles (every path compiled) and the default config. Key-map paths
(``_decode.key_mode``): 1 one in-tile table (c = 0, or G | BLOCK_N), 2 a table per tile (G < BLOCK_N,
G not dividing it), 3 a group step per tile (G >= BLOCK_N; keys rotated when a != 1), 0 keys as cached. Each runs
with left padding (positions negative below key_start: r0 = p0 mod G of negative p0), several splits, region edges
inside tiles, partial rotary (r2 < d / 2: halves zero-padded plus the non-rotary columns) and d = 16 (halves of 8
columns: no tl.dot). Tolerances as in test_table_attention.py.
"""
import pytest
import torch

from _helpers import build
from test_table_attention import CUDA, HALF, _check

# CPU: the interpreter's 16-key tiles. CUDA: the same 16-key tiles compiled (every path), then the default config
CONFIGS = [(16, 4, 2), None] if CUDA else [None]

CASES = [  # (id, registry name, params, expected key path on 16-key tiles)
    ("self_extend_g4", "self_extend", dict(group_size=4, window=20), 1),
    ("self_extend_g3", "self_extend", dict(group_size=3, window=18), 2),
    ("self_extend_g16", "self_extend", dict(group_size=16, window=32), 3),
    ("self_extend_g40", "self_extend", dict(group_size=40, window=40), 3),
    ("rerope_leaky", "rerope", dict(window=23, leaky=3.0), 1),
    ("dca_g16", "dca", dict(chunk_size=20, local_window=4), 3),
    ("dca_g8", "dca", dict(chunk_size=11, local_window=3), 1),
    ("dca_c37", "dca", dict(chunk_size=37, local_window=11), 3),
    ("dca_c13", "dca", dict(chunk_size=13, local_window=2), 2),
    ("dca_w1", "dca", dict(chunk_size=17, local_window=1), 3),  # rule window 0: only slot 0 sees the previous chunk
    ("lm_infinite", "lm_infinite", dict(n_global=5, n_local=33, distance_limit=33), 1),
    ("string", "string", dict(shift=40, window=6), 0),
]


@pytest.fixture(params=CONFIGS, ids=lambda c: "tiles" + ("16" if c else "_default"))
def config(request, monkeypatch):
    from ropeshift.kernels import _decode

    monkeypatch.setattr(_decode, "DECODE_CONFIG", request.param)
    return _decode._decode_config(CUDA)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_decode_paths(case, config):
    from ropeshift.kernels._decode import key_mode
    from ropeshift.kernels.spec import compile_table

    method = build(case[1], case[2])
    if config[0] == 16:
        assert key_mode(compile_table(method.table()).for_keys(150), 16)[0] == case[3]
    # 4 rows: no padding, padding inside a tile, a whole padded tile, padding past the region edges
    _check(method, 4, 4, 1, 1, 150, 32, torch.float32, key_start=[0, 7, 35, 101])
    _check(method, 2, 8, 2, 1, 131, 32, torch.float32, key_start=[3, 0], rotary_frac=0.5)  # partial rotary
    _check(method, 2, 2, 1, 1, 97, 16, torch.float32, key_start=[0, 5])  # d = 16: halves of 8
    _check(method, 1, 4, 1, 1, 150, 32, HALF, seed=1)


@pytest.mark.parametrize("lk", [40, 41, 47, 48, 63, 64, 80])
def test_decode_dca_query_chunk_edges(lk, config):
    """DCA's one-query region edge F moves with the query's offset in its chunk (m <= w or not)."""
    _check(build("dca", dict(chunk_size=20, local_window=3)), 2, 2, 1, 1, lk, 32, torch.float32, key_start=[0, 2])
