"""Self-Extend (LongLM; Jin et al., ICML 2024, arXiv 2401.01325): grouped attention beyond a neighbour window.

For query position m, key position n, d = m - n >= 0, neighbour window w_n and group size G::

    rel(m, n) = d                                     if d < w_n
    rel(m, n) = m // G - n // G + w_n - w_n // G      if d >= w_n

Distant keys are seen through floor-divided ("grouped") positions, shifted so the grouped distances continue
where the neighbour window ends. L = 12, G = 2, w_n = 4 (rows: queries)::

    0
    1 0
    2 1 0
    3 2 1 0
    4 3 2 1 0
    4 4 3 2 1 0
    5 5 4 3 2 1 0
    5 5 4 4 3 2 1 0
    6 6 5 5 4 3 2 1 0
    6 6 5 5 4 4 3 2 1 0
    7 7 6 6 5 5 4 3 2 1 0
    7 7 6 6 5 5 4 4 3 2 1 0

Implementation: neighbour keys (d < w_n) are plain RoPE; grouped keys (d >= w_n) see the query re-rotated to
m // G + w_n - w_n // G and the key re-rotated to n // G (re-rotated per tile from the post-RoPE cache, so
prefill and decode agree). With G = 1 this is plain RoPE.

Defaults: G = 8 and w_n = 1024 (the defaults of LongLM's ``SelfExtend.apply``; its README recommends G in
2..64 and w_n in 512..1536 for Llama 2), with w_n capped at L // 4 rounded down to a multiple of G for models
trained on short contexts; when L // 4 < G (L < 32 with G = 8) the default G shrinks to max(1, L // 4) and
w_n = G. w_n must be a multiple of G: the official prefill uses w_n - w_n / G (float) and
its decode w_n - w_n // G, which agree only then. The optional log-n query scaling of the paper is not
implemented (off by default upstream); ``logit_scale`` (default 1) is a constant logit multiplier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..params import LOGIT_SCALE, TRAIN_LENGTH, Param
from ._validate import check_fields, check_int, check_length_at_least, check_logit_scale, resolve_length
from .base import ModelInfo, PositionMethod
from .table import PosMap, Region, SegmentTable

DEFAULT_GROUP_SIZE = 8
DEFAULT_WINDOW = 1024


@dataclass(frozen=True)
class SelfExtendMethod(PositionMethod):
    """Self-Extend with concrete group size G and neighbour window w_n (tokens); see the module docstring."""

    group_size: int
    window: int
    train_length: int | None = None
    logit_scale: float = 1.0

    name: ClassVar[str] = "self_extend"
    summary: ClassVar[str] = "grouped positions beyond a neighbour window: rel = d (d < w_n), m//G - n//G + w_n - w_n//G"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("group_size", "int", "group size G (1 = plain RoPE; LongLM recommends 2..64)",
              default="8 (L // 4 if L < 32)", low=1),
        Param("window", "int", "neighbour window w_n in tokens, a multiple of G (w_n < L)",
              default="min(1024, L // 4) rounded down to a multiple of G", low=1),
        TRAIN_LENGTH,
        LOGIT_SCALE,
    )

    def __post_init__(self):
        check_fields(self)
        check_int("self_extend", "group_size", self.group_size, low=1)
        check_int("self_extend", "window", self.window, low=1)
        if self.window % self.group_size:
            raise ValueError(
                f"self_extend: neighbour window w_n must be a multiple of group_size G, got w_n={self.window}, "
                f"G={self.group_size}"
            )
        if self.train_length is not None and self.window >= self.train_length:
            raise ValueError(
                f"self_extend: neighbour window w_n must be < the training length L={self.train_length} "
                f"(1 <= w_n < L), got {self.window}"
            )
        check_logit_scale("self_extend", self.logit_scale)

    @classmethod
    def resolve(cls, info: ModelInfo, *, group_size=None, window=None, train_length=None, logit_scale=1.0):
        length = resolve_length("self_extend", info, train_length)
        check_length_at_least("self_extend", length, 2, "1 <= w_n < L")
        if group_size is None:
            group_size = DEFAULT_GROUP_SIZE
            if window is None and length is not None and length // 4 < group_size:
                group_size = max(1, length // 4)
        if window is None:
            window = DEFAULT_WINDOW
            check_int("self_extend", "group_size", group_size, low=1)
            if length is not None and window > length // 4:
                window = max(group_size, (length // 4) // group_size * group_size)
        return cls(group_size=group_size, window=window, train_length=length, logit_scale=float(logit_scale))

    def rel(self, d, qpos, kpos):
        g, w = self.group_size, self.window
        grouped = qpos // g - kpos // g + (w - w // g)
        return (d < w) * d + (d >= w) * grouped

    def table(self) -> SegmentTable:
        g, w = self.group_size, self.window
        return SegmentTable((
            Region("neighbour", 0, w),
            # query at m // G + w_n - w_n // G, key at n // G
            Region("grouped", w, None, q_map=PosMap(a=0, c=1, g=g, b=w - w // g), k_map=PosMap(a=0, c=1, g=g)),
        ))
