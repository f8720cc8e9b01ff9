"""Compile a segment table (``ropeshift.methods.table``) into the Triton kernels' scalar arguments.

The kernels serve tables of at most two regions, with one shape (every attention-level method has it)::

    region 0  band [0, hi0)  ∩ rule   maps identity            ("near": scores from q and k as cached)
    region 1  band [lo1, ∞)  ∩ rule   q map, k map any form    ("far": q re-rotated per row, k per key)

    rules: none (lo1 == hi0: the bands partition d); chunk_near / chunk_far (same s, w; the bands may
    overlap, the rule decides where they do); lambda in both regions (same n_local, n_global: a visibility
    mask, lo1 == hi0)

A map pos' = a pos + c floor(pos / G) + b is passed as (kind, a, c, G, b) with kind 0 identity, 1 constant
shift (one rotation for every position: STRING), 2 general (per position). A constant key shift is folded into
the query map. ``unsupported_reason`` says why a table is not served (None when it is); this module never
imports triton.

Spec layout (a flat list of floats, the custom op's argument)::

    [has_r1, lo1, hi0, rule, ra, rb, q_kind, qa, qc, qg, qb, k_kind, ka, kc, kg, kb]
"""
from __future__ import annotations

from dataclasses import dataclass

INF = 1 << 30  # "unbounded" band edge: beyond any key index the kernels see
RULE_NONE, RULE_CHUNK, RULE_LAMBDA = 0, 1, 2
MAP_IDENTITY, MAP_CONSTANT, MAP_GENERAL = 0, 1, 2


@dataclass(frozen=True)
class KernelSpec:
    has_r1: bool
    lo1: int
    hi0: int
    rule: int
    ra: int
    rb: int
    q_map: tuple  # (kind, a, c, g, b)
    k_map: tuple

    def to_list(self) -> list[float]:
        return [float(self.has_r1), float(self.lo1), float(self.hi0), float(self.rule), float(self.ra),
                float(self.rb), *map(float, self.q_map), *map(float, self.k_map)]

    @staticmethod
    def from_list(x) -> "KernelSpec":
        i = [int(v) for v in x[:6]]
        return KernelSpec(bool(i[0]), i[1], i[2], i[3], i[4], i[5], _map_args(x[6:11]), _map_args(x[11:16]))

    @property
    def positional(self) -> bool:
        """The kernels need absolute positions (not only distances)."""
        return self.has_r1 and (self.q_map[0] == MAP_GENERAL or self.k_map[0] == MAP_GENERAL) or \
            self.rule != RULE_NONE

    def for_keys(self, lk: int) -> "KernelSpec":
        """Drop region 1 when no pair of an lk-key call reaches its band (e.g. STRING with S >= lk)."""
        if self.has_r1 and self.lo1 >= lk:
            rule = RULE_NONE if self.rule == RULE_CHUNK else self.rule
            return KernelSpec(False, INF, INF, rule, self.ra, self.rb, _IDENT, _IDENT)
        return self


def _map_args(x):
    kind, a, c, g, b = x
    return (int(kind), float(a), int(c), int(g), float(b))


_IDENT = (MAP_IDENTITY, 1.0, 0, 1, 0.0)
PLAIN = KernelSpec(False, INF, INF, RULE_NONE, 0, 0, _IDENT, _IDENT)


def _pack(m, fold=0.0):
    if m.is_identity and fold == 0:
        return _IDENT
    kind = MAP_CONSTANT if m.is_constant_shift else MAP_GENERAL
    if not float(m.c).is_integer() or not float(m.g).is_integer() or m.g < 1:
        raise ValueError("map needs integer c and G >= 1")
    return (kind, float(m.a), int(m.c), int(m.g), float(m.b) - fold)


def compile_table(table) -> KernelSpec | str:
    """The kernel spec of a table, or a one-line reason it is not served."""
    regs = table.regions
    if len(regs) > 2:
        return f"the triton kernels serve tables of at most 2 regions, this one has {len(regs)}"
    r0 = regs[0]
    if r0.lo != 0 or not (r0.q_map.is_identity and r0.k_map.is_identity):
        return "the triton kernels need region 0 to be a band from d = 0 with identity maps"
    if len(regs) == 1:
        if r0.hi is not None or r0.rule not in ("all", "lambda"):
            return "a one-region table must be the whole causal band (rule 'all' or 'lambda')"
        rule = RULE_LAMBDA if r0.rule == "lambda" else RULE_NONE
        return KernelSpec(False, INF, INF, rule, r0.r1, r0.r2, _IDENT, _IDENT)
    r1 = regs[1]
    if r1.hi is not None or r0.hi is None:
        return "the triton kernels need region 0 = [0, hi) and region 1 = [lo, unbounded)"
    pair = (r0.rule, r1.rule)
    if pair == ("all", "all"):
        rule = RULE_NONE
    elif pair == ("chunk_near", "chunk_far") and (r0.r1, r0.r2) == (r1.r1, r1.r2):
        rule = RULE_CHUNK
    elif pair == ("lambda", "lambda") and (r0.r1, r0.r2) == (r1.r1, r1.r2):
        rule = RULE_LAMBDA
    else:
        return f"the triton kernels do not serve the rule pair {pair}"
    if rule != RULE_CHUNK and r1.lo != r0.hi:
        return "the triton kernels need adjacent bands (region 1 starts where region 0 ends)"
    if rule == RULE_CHUNK and not r1.lo <= r0.hi:
        return "chunk regions must overlap or touch"
    km = r1.k_map
    fold = km.b if (km.is_constant_shift and not km.is_identity) else 0.0
    try:
        q_map = _pack(r1.q_map, fold)
        k_map = _IDENT if km.is_constant_shift else _pack(km)
    except ValueError as e:
        return f"the triton kernels cannot apply this map: {e}"
    return KernelSpec(True, int(r1.lo), int(min(r0.hi, INF)), rule, int(r0.r1), int(r0.r2), q_map, k_map)
