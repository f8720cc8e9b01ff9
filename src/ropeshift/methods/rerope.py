"""ReRoPE, Rectified RoPE (Su Jianlin 2023, github.com/bojone/rerope), and its leaky variant.

For query position m, key position n, d = m - n >= 0, window w (and leaky factor k > 1)::

    rel(m, n) = d                  if d < w
    rel(m, n) = w                  if d >= w          (ReRoPE)
    rel(m, n) = w + (d - w) / k    if d >= w          (leaky ReRoPE; fractional distances)

Every distance beyond the window collapses onto w, so no distance larger than w is ever seen. L = 12, w = 3
(rows: queries)::

    0
    1 0
    2 1 0
    3 2 1 0
    3 3 2 1 0
    3 3 3 2 1 0
    3 3 3 3 2 1 0
    3 3 3 3 3 2 1 0
    3 3 3 3 3 3 2 1 0
    3 3 3 3 3 3 3 2 1 0
    3 3 3 3 3 3 3 3 2 1 0
    3 3 3 3 3 3 3 3 3 2 1 0

Implementation: near keys (d < w) are plain RoPE. Far keys (d >= w) see the query re-rotated to position w
(q delta w - m) and the key re-rotated to position 0 (k delta -n): "query at w, key un-rotated", exactly the
official prefill. Leaky: query at m/k + w(1 - 1/k), key at n/k. Keys are re-rotated per tile from the
post-RoPE cache, so prefill and step-by-step decode compute the same thing.

Defaults: w = L // 4 with L = ``config.max_position_embeddings`` (the official code uses w = 512 for L = 4096,
i.e. L/8, and its README results w = 1024 = L/4; we take L/4). ``leaky`` (k) is off by default; the official
leaky patch uses k = 16. The official code's always-on log-n query scaling ``max(1, log(m+1)/log L)`` is the
identity for m < L and is not implemented; ``logit_scale`` (default 1) is a constant logit multiplier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..params import LOGIT_SCALE, TRAIN_LENGTH, Param
from ._validate import (check_fields, check_int, check_length_at_least, check_logit_scale, ratio_or_tokens,
                        resolve_length)
from .base import ModelInfo, PositionMethod
from .table import PosMap, Region, SegmentTable

DEFAULT_WINDOW_RATIO = 0.25


@dataclass(frozen=True)
class ReRopeMethod(PositionMethod):
    """ReRoPE with concrete window w (tokens) and optional leaky factor k; see the module docstring."""

    window: int
    leaky: float | None = None
    train_length: int | None = None
    logit_scale: float = 1.0

    name: ClassVar[str] = "rerope"
    summary: ClassVar[str] = "clamp distances at a window: rel = min(d, w); leaky: w + (d - w)/k beyond w"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("window", "tokens", "window w: int tokens (1 <= w < L), or a ratio of L in (0, 1]", default="L / 4",
              low=1),
        Param("leaky", "float", "leaky factor k > 1 (official leaky patch: 16); off: plain ReRoPE", default=None,
              low=1, low_open=True),
        TRAIN_LENGTH,
        LOGIT_SCALE,
    )

    def __post_init__(self):
        check_fields(self)
        check_int("rerope", "window", self.window, low=1)
        if self.train_length is not None and self.window >= self.train_length:
            raise ValueError(
                f"rerope: window w must be < the training length L={self.train_length} (1 <= w < L), got {self.window}"
            )
        if self.leaky is not None:
            if isinstance(self.leaky, bool) or not isinstance(self.leaky, (int, float)) or not self.leaky > 1:
                raise ValueError(f"rerope: leaky factor k must be a number > 1 (or None for plain ReRoPE), got {self.leaky!r}")
        check_logit_scale("rerope", self.logit_scale)

    @classmethod
    def resolve(cls, info: ModelInfo, *, window=None, leaky=None, train_length=None, logit_scale=1.0):
        """``window``: int tokens, or float ratio of L (default 0.25); ``leaky``: k > 1 or None."""
        length = resolve_length("rerope", info, train_length)
        check_length_at_least("rerope", length, 2, "1 <= w < L")
        window = ratio_or_tokens("rerope", "window", window, length, DEFAULT_WINDOW_RATIO)
        leaky = float(leaky) if isinstance(leaky, int) and not isinstance(leaky, bool) else leaky
        return cls(window=window, leaky=leaky, train_length=length, logit_scale=float(logit_scale))

    def rel(self, d, qpos=None, kpos=None):
        w = self.window
        if self.leaky is None:
            return torch.clamp(d, max=w)
        return torch.where(d < w, d.double(), w + (d - w).double() / self.leaky)

    def table(self) -> SegmentTable:
        w, k = self.window, self.leaky
        if k is None:  # query at w, key at 0
            q_map, k_map = PosMap(a=0, b=w), PosMap(a=0)
        else:  # query at m/k + w(1 - 1/k), key at n/k
            q_map, k_map = PosMap(a=1.0 / k, b=w * (1.0 - 1.0 / k)), PosMap(a=1.0 / k)
        return SegmentTable((Region("near", 0, w), Region("far", w, None, q_map=q_map, k_map=k_map)))
