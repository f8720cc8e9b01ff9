"""Plain: the model's own positions on ropeshift's attention path (no position change).

For query position m and key position n, d = m - n >= 0::

    rel(m, n) = d        every causal key visible

L = 5 (rows: queries; '.' = masked)::

    0 . . . .
    1 0 . . .
    2 1 0 . .
    3 2 1 0 .
    4 3 2 1 0

The unpatched model's attention, computed by the same implementations (tiled path, Triton kernels) as every
other method: a control whose numerics match the methods' own, and a fast path where the model's attention is
slow (SDPA on left-padded 8k batches: benchmarks/RESULTS.md, issue 10). Composes with
RoPE scaling like any attention method (``apply(apply(model, "yarn", factor=2), "plain")``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..params import LOGIT_SCALE, Param
from ._validate import check_fields
from .base import ModelInfo, PositionMethod
from .table import Region, SegmentTable


@dataclass(frozen=True)
class PlainMethod(PositionMethod):
    """rel(m, n) = m - n for every causal pair; see the module docstring."""

    logit_scale: float = 1.0

    name: ClassVar[str] = "plain"
    summary: ClassVar[str] = "the model's own positions (rel = d) on ropeshift's attention: a control, same kernels"
    PARAMS: ClassVar[tuple[Param, ...]] = (LOGIT_SCALE,)

    def __post_init__(self):
        check_fields(self)  # logit_scale: type, finiteness, range (its Param)

    @classmethod
    def resolve(cls, info: ModelInfo, *, logit_scale=1.0):
        return cls(logit_scale=float(logit_scale))

    def rel(self, d, qpos=None, kpos=None):
        return d

    def table(self) -> SegmentTable:
        return SegmentTable((Region("all", 0, None),))
