"""Each method's rel(m, n) / visible(m, n) against literal matrices and a per-pair python transcription of the
paper's definition (methods.md §3-§6), plus the segment contract: disjoint regions covering exactly the
visible causal area with rel = d + dq(m) - dk(n).

Run: pytest tests/methods/test_matrices.py -v
"""
import pytest
import torch

from ropeshift.methods.base import draw_matrix
from ropeshift.methods.dca import DualChunkMethod
from ropeshift.methods.lm_infinite import LMInfiniteMethod
from ropeshift.methods.rerope import ReRopeMethod
from ropeshift.methods.self_extend import SelfExtendMethod

from .cases import APPLY_CASES, method_of


def _literal(rows: str) -> list[list]:
    """Parse a lower-triangular literal matrix ('.' = masked) into rows of ints/None."""
    return [[None if c == "." else int(c) for c in line.split()] for line in rows.strip().splitlines()]


def _matrix(method, length):
    pos = torch.arange(length)
    d = pos[:, None] - pos[None, :]
    qp, kp = pos[:, None].expand(length, length), pos[None, :].expand(length, length)
    rel = method.rel(d, qp, kp)
    vis = method.visible(d, qp, kp)
    return [[None if (vis is not None and not vis[m, n]) else rel[m, n].item() for n in range(m + 1)]
            for m in range(length)]


# --- literal matrices, worked out by hand from the definitions ------------------------------------------------

REROPE_W3 = """
0
1 0
2 1 0
3 2 1 0
3 3 2 1 0
3 3 3 2 1 0
3 3 3 3 2 1 0
"""

# G = 2, w_n = 4: rel = m//2 - n//2 + 4 - 2 beyond the window
SELF_EXTEND_G2_W4 = """
0
1 0
2 1 0
3 2 1 0
4 3 2 1 0
4 4 3 2 1 0
5 5 4 3 2 1 0
5 5 4 4 3 2 1 0
6 6 5 5 4 3 2 1 0
"""

# C = 5, w = 1, s = 4: keys at n mod 4; queries at m mod 4 (same chunk), min(m mod 4 + 4, 5) (next chunk), 5
DCA_C5_W1 = """
0
1 0
2 1 0
3 2 1 0
4 3 2 1 0
5 4 3 2 1 0
5 4 3 2 2 1 0
5 4 3 2 3 2 1 0
5 4 3 2 4 3 2 1 0
5 4 3 2 5 4 3 2 1 0
"""

# n_global = 2, n_local = 4, distance limit 6
LM_INFINITE_G2_L4_D6 = """
0
1 0
2 1 0
3 2 1 0
4 3 2 1 0
5 4 3 2 1 0
6 5 . 3 2 1 0
6 6 . . 3 2 1 0
6 6 . . . 3 2 1 0
"""


@pytest.mark.parametrize(
    "method, literal",
    [
        (ReRopeMethod(window=3), REROPE_W3),
        (SelfExtendMethod(group_size=2, window=4), SELF_EXTEND_G2_W4),
        (DualChunkMethod(chunk_size=5, local_window=1), DCA_C5_W1),
        (LMInfiniteMethod(n_global=2, n_local=4, distance_limit=6), LM_INFINITE_G2_L4_D6),
    ],
    ids=["rerope", "self_extend", "dca", "lm_infinite"],
)
def test_rel_matches_literal_matrix(method, literal):
    expected = _literal(literal)
    assert _matrix(method, len(expected)) == expected


def test_leaky_rerope_matrix():
    got = _matrix(ReRopeMethod(window=2, leaky=4.0), 7)
    assert got[6] == [3.0, 2.75, 2.5, 2.25, 2, 1, 0]  # w + (d - w) / k beyond w
    assert got[3] == [2.25, 2, 1, 0]


# --- per-pair python transcriptions of the papers -------------------------------------------------------------

def _rerope(m, n, w, k=None):
    d = m - n
    return d if d < w else (w if k is None else w + (d - w) / k)


def _self_extend(m, n, g, w):
    d = m - n
    return d if d < w else m // g - n // g + w - w // g


def _dca(m, n, c, w):
    s = c - w
    if m // s == n // s:
        return (m % s) - (n % s)
    if m // s == n // s + 1:
        return min(m % s + s, c) - (n % s)
    return c - (n % s)


def _lm_infinite(m, n, n_global, n_local, limit):
    d = m - n
    return min(d, limit) if (d < n_local or n < n_global) else None


PY = {
    "rerope": lambda m, n, p: _rerope(m, n, p["window"], p.get("leaky")),
    "self_extend": lambda m, n, p: _self_extend(m, n, p["group_size"], p["window"]),
    "dca": lambda m, n, p: _dca(m, n, p["chunk_size"], p["local_window"]),
    "lm_infinite": lambda m, n, p: _lm_infinite(m, n, p["n_global"], p["n_local"], p["distance_limit"]),
    "plain": lambda m, n, p: m - n,
}


@pytest.mark.parametrize("case", list(APPLY_CASES))
def test_rel_matches_paper_definition(case):
    name, params = APPLY_CASES[case]
    got = _matrix(method_of(case), 50)
    expected = [[PY[name](m, n, params) for n in range(m + 1)] for m in range(50)]
    assert got == expected


def test_draw_matrix_marks_masked_keys():
    text = draw_matrix(LMInfiniteMethod(n_global=1, n_local=2, distance_limit=3), 4)
    assert text.splitlines()[3] == "3 . 1 0"
