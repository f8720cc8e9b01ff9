"""The segment table: what every attention-level method compiles to, and what every fast path consumes.

A method's position matrix rel(m, n) and mask are cut into disjoint regions of the (m, n) plane. Each region is
a distance band lo <= d < hi (d = m - n, hi None: unbounded) intersected with a rule, and carries a query map
and a key map of one affine-floor form::

    pos' = a * pos + c * floor(pos / G) + b            (PosMap; identity: a = 1, c = 0, b = 0)

    rel(m, n) = q_map(m) - k_map(n)    for (m, n) in the region

Rules: "all" (the band alone), "chunk_near" / "chunk_far" (DCA's index rule with chunk stride s and local
window w: near = same chunk, or next chunk with m mod s <= w; far = the rest), "lambda" (LM-Infinite's
visibility: d < n_local or n < n_global). Regions of a table never overlap; together they cover exactly the
visible causal pairs. STRING (S = 5, W = 1) as a table, keys -> (rows: queries)::

    n ->  0 1 2 3 4 5 6 7
    m=7   F F F N N N N N      N: "near", band [0, S),  maps identity            (rel = d)
    m=6   F F N N N N N .      F: "far",  band [S, inf), q_map(m) = m - (S - W)  (rel = d - S + W)
    m=5   F N N N N N . .
    m=4   N N N N N . . .      '.' = not causal

A re-rotation by delta = map(pos) - pos turns a post-RoPE vector at pos into one at map(pos) (RoPE composes), so
the tiled path and the kernels evaluate a region with q rotated by q_map(m) - m and k by k_map(n) - n; a map
with a = 1, c = 0 is a constant rotation (no per-position work), an identity map costs nothing.
``reference`` never uses the table: it evaluates ``rel``/``visible`` literally, and tests/methods/test_table.py
proves table == rel and mask for every method.

Tile bounds: ``Region.classify`` says from the (m, n) bounds of a tile whether the region is empty, covers every
causal pair of it, or is partial (element-wise), in O(1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

RULES = ("all", "chunk_near", "chunk_far", "lambda")


@dataclass(frozen=True)
class PosMap:
    """pos' = a * pos + c * floor(pos / g) + b."""

    a: float = 1
    c: int = 0
    g: int = 1
    b: float = 0

    @property
    def is_identity(self) -> bool:
        return self.a == 1 and self.c == 0 and self.b == 0

    @property
    def is_constant_shift(self) -> bool:
        """pos' = pos + b: one rotation for every position."""
        return self.a == 1 and self.c == 0

    def __call__(self, pos):
        if self.a == 1:
            out = pos
        elif float(self.a).is_integer():
            out = pos * int(self.a)
        else:  # fractional (leaky ReRoPE): fp64 so the table is exact to rounding
            out = (pos.double() if torch.is_tensor(pos) else pos) * self.a
        if self.c:
            out = out + self.c * torch.div(pos, self.g, rounding_mode="floor") if torch.is_tensor(pos) \
                else out + self.c * (pos // self.g)
        return out + self.b if self.b else out

    def delta(self, pos):
        """map(pos) - pos: the re-rotation of a vector at pos (int tensor when every coefficient is an int)."""
        if self.is_constant_shift:
            return self.b
        return self(pos) - pos


IDENTITY = PosMap()


@dataclass(frozen=True)
class Region:
    """band lo <= d < hi intersected with ``rule`` (args r1, r2), with its query and key maps."""

    name: str
    lo: int = 0
    hi: int | None = None
    rule: str = "all"
    r1: int = 0  # chunk rules: stride s; lambda: n_local
    r2: int = 0  # chunk rules: local window w; lambda: n_global
    q_map: PosMap = IDENTITY
    k_map: PosMap = IDENTITY

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"region {self.name}: rule must be one of {RULES}, got {self.rule!r}")

    @property
    def d_range(self) -> tuple[int, int | None] | None:
        """(lo, hi) when the region is exactly the band, else None."""
        return (self.lo, self.hi) if self.rule == "all" else None

    # element-wise -------------------------------------------------------------------------------------------
    def rule_mask(self, d, qpos, kpos):
        if self.rule == "all":
            return torch.ones_like(d, dtype=torch.bool)
        if self.rule == "lambda":
            return (d < self.r1) | (kpos < self.r2)
        s, w = self.r1, self.r2
        qc, kc = torch.div(qpos, s, rounding_mode="floor"), torch.div(kpos, s, rounding_mode="floor")
        near = (qc == kc) | ((qc == kc + 1) & (qpos - qc * s <= w))
        return near if self.rule == "chunk_near" else ~near

    def contains(self, d, qpos, kpos):
        """bool, broadcast of d [.., lq, lk], qpos [.., lq, 1], kpos [.., 1, lk]; causal pairs only (d >= 0)."""
        inside = (d >= max(self.lo, 0)) if self.hi is None else (d >= max(self.lo, 0)) & (d < self.hi)
        if self.rule != "all":
            inside = inside & self.rule_mask(d, qpos, kpos)
        return inside

    region = contains  # the tiled path's name

    @property
    def q_delta(self):
        """None (no rotation), a constant, or a callable qpos -> delta."""
        if self.q_map.is_identity:
            return None
        return self.q_map.b if self.q_map.is_constant_shift else self.q_map.delta

    @property
    def k_delta(self):
        """None or a callable kpos -> delta (a constant key shift is folded into q by ``SegmentTable``)."""
        if self.k_map.is_identity:
            return None
        return (lambda kp: torch.full_like(kp, self.k_map.b)) if self.k_map.is_constant_shift else self.k_map.delta

    # tile bounds --------------------------------------------------------------------------------------------
    def classify(self, qmin, qmax, kmin, kmax) -> str:
        """"empty", "full" (every pair with d >= 0 is inside) or "partial", from position bounds (ints)."""
        dmin, dmax = qmin - kmax, qmax - kmin
        if dmax < max(self.lo, 0) or (self.hi is not None and dmin >= self.hi):
            return "empty"
        full = dmin >= self.lo and (self.hi is None or dmax < self.hi)
        if self.rule == "lambda":
            if kmin >= self.r2 and dmin >= self.r1:
                return "empty"
            full = full and (dmax < self.r1 or kmax < self.r2)
        elif self.rule != "all":
            near = _chunk_near_bounds(qmin, qmax, kmin, kmax, self.r1, self.r2)
            if near is None:
                full = False
            elif near != (self.rule == "chunk_near"):
                return "empty"
        return "full" if full else "partial"


def _chunk_near_bounds(qmin, qmax, kmin, kmax, s, w):
    """True/False when every pair of the tile is chunk-near / chunk-far, else None."""
    if qmin < 0 or kmin < 0:
        return None
    qlo, qhi, klo, khi = qmin // s, qmax // s, kmin // s, kmax // s
    if qlo >= khi + 2:
        return False
    if qlo == qhi == klo == khi:
        return True
    if qlo == qhi and klo == khi and qlo == klo + 1:
        if qmax - qlo * s <= w:
            return True
        if qmin - qlo * s > w:
            return False
    return None


@dataclass(frozen=True)
class SegmentTable:
    """Disjoint regions covering exactly the visible causal pairs; see the module docstring."""

    regions: tuple[Region, ...]

    def __post_init__(self):
        if not self.regions:
            raise ValueError("a segment table needs at least one region")

    @property
    def position_dependent(self) -> bool:
        """True when some map or rule needs absolute positions (not only d)."""
        return any(r.rule != "all" or not r.q_map.is_constant_shift or not r.k_map.is_constant_shift
                   for r in self.regions)

    def rel(self, d, qpos, kpos):
        """rel over the covered pairs (float64; 0 elsewhere) and the covered mask, from the regions alone."""
        qpos, kpos = torch.as_tensor(qpos), torch.as_tensor(kpos)
        rel = torch.zeros(torch.broadcast_shapes(d.shape, qpos.shape, kpos.shape), dtype=torch.float64)
        covered = torch.zeros_like(rel, dtype=torch.int64)
        for r in self.regions:
            inside = r.contains(d, qpos, kpos) & (d >= 0)
            value = (torch.as_tensor(r.q_map(qpos)) - torch.as_tensor(r.k_map(kpos))).double()
            rel = torch.where(inside, value.expand_as(rel), rel)
            covered += inside.long()
        return rel, covered
