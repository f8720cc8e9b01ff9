"""The one abstraction every attention-level method implements: a position matrix.

A method says, for query position m and key position n (d = m - n >= 0):
  * ``rel(d, qpos, kpos)``: the relative distance RoPE must see;
  * ``visible(d, qpos, kpos)``: which causal keys are attended (None: all of them);
  * ``logit_scale``: a constant multiplying q.k before the softmax.
That definition is the source of truth: ``ropeshift.attention.reference`` implements it literally.

For fast paths a method compiles to a ``SegmentTable`` (``table()``, ``ropeshift.methods.table``): disjoint regions
of the (m, n) plane covering the visible causal area, each a distance band with an optional index/visibility
rule and a query map and key map pos' = a * pos + c * floor(pos / G) + b with rel = q_map(m) - k_map(n) inside.
The tiled path and the Triton kernels consume only the table; ``rel``/``visible`` stay the oracle's definition.

Tensors passed to these callables broadcast: d/qpos/kpos are int64, e.g. d [b, lq, lk], qpos [b, lq, 1],
kpos [b, 1, lk].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .table import SegmentTable

@dataclass(frozen=True)
class ModelInfo:
    """Facts about the patched model that methods resolve their defaults against."""

    model_type: str
    train_length: int | None  # L: config.max_position_embeddings unless overridden
    rope_type: str
    head_dim: int
    rotary_dim: int


class PositionMethod:
    """Base class of attention-level methods (frozen dataclasses)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    logit_scale: float = 1.0

    def rel(self, d, qpos, kpos):  # pragma: no cover - abstract
        raise NotImplementedError

    def visible(self, d, qpos, kpos):
        return None

    def table(self) -> SegmentTable:  # pragma: no cover - abstract
        """The method's segment table (``ropeshift.methods.table``)."""
        raise NotImplementedError

    def params(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def draw_matrix(method: PositionMethod, length: int, *, full: bool = True) -> str:
    """ASCII drawing of rel(m, n) for positions 0..length-1 ('.' = not attended), rows = queries.

    Fractional distances (leaky ReRoPE) print with two decimals; ``full=False`` stops each row at the diagonal."""
    pos = torch.arange(length)
    d = pos[:, None] - pos[None, :]
    qp, kp = pos[:, None].expand(length, length), pos[None, :].expand(length, length)
    rel = method.rel(d, qp, kp)
    vis = d >= 0
    extra = method.visible(d, qp, kp)
    if extra is not None:
        vis = vis & extra

    def cell(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0")

    cells = [[cell(float(rel[m, n])) if vis[m, n] else "." for n in range(length if full else m + 1)]
             for m in range(length)]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)
