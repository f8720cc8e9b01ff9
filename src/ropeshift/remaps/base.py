"""The one abstraction every attention-level method implements: a position matrix.

A method says, for query position m and key position n (d = m - n >= 0):
  * ``rel(d, qpos, kpos)``: the relative distance RoPE must see;
  * ``visible(d, qpos, kpos)``: which causal keys are attended (None: all of them);
  * ``logit_scale``: a constant multiplying q.k before the softmax.
That definition is the source of truth: ``ropeshift.attention.reference`` implements it literally.

For fast paths a method also lists ``segments()``: disjoint regions of the (m, n) plane that together cover the
visible causal area, each with a query position delta dq(m) and a key position delta dk(n) such that
rel = d + dq(m) - dk(n) inside the region. Post-RoPE queries/keys are re-rotated by these deltas
(``ropeshift.rope.rotate``) and the per-segment partial attentions merge by log-sum-exp.
``d_range = (lo, hi)`` marks a region that is exactly lo <= d < hi (hi None: unbounded), which lets the tiled
path classify tiles in O(1); other regions are evaluated element-wise.

Tensors passed to these callables broadcast: d/qpos/kpos are int64, e.g. d [b, lq, lk], qpos [b, lq, 1],
kpos [b, 1, lk].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Union

import torch

Delta = Union[int, Callable[[torch.Tensor], torch.Tensor], None]


@dataclass(frozen=True)
class Segment:
    name: str
    region: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    q_delta: Delta = None  # int (constant rotation), callable qpos -> delta, or None (no rotation)
    k_delta: Delta = None  # callable kpos -> delta, or None
    d_range: tuple[int, int | None] | None = None


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

    def segments(self) -> list[Segment]:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def plain_rope_segment() -> Segment:
    """The unmodified causal region (rel = d)."""
    return Segment("rope", lambda d, qp, kp: d >= 0, d_range=(0, None))


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
