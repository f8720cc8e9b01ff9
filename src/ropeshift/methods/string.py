"""STRING: ShifTed Rotary position embeddING (An et al. 2024, arXiv 2410.18745), Eq. 4 of the paper.

For query position m, key position n, d = m - n >= 0, shift S and local window W < S::

    rel(m, n) = d            if d < S
    rel(m, n) = d - S + W    if d >= S

Well-trained small distances overwrite the rarely-trained tail: the largest distance ever used is
N - 1 - S + W instead of N - 1. The paper's Figure 5, L = 9, S = 3, W = 1 (rows: queries)::

    0
    1 0
    2 1 0
    1 2 1 0
    2 1 2 1 0
    3 2 1 2 1 0
    4 3 2 1 2 1 0
    5 4 3 2 1 2 1 0
    6 5 4 3 2 1 2 1 0

Implementation: near keys (d < S) see the query as rotated by the model; far keys (d >= S) see the query
rotated by the constant delta -(S - W). Keys keep their cached post-RoPE positions, so the KV cache is
unchanged. With input length <= S, STRING is exactly the unpatched model.

Defaults: S = round(0.33 L) with L = ``config.max_position_embeddings`` (override with ``train_length``);
W = min(128, S // 4), i.e. the paper's 128 once S >= 512 and a quarter of S for short models, so the defaults
work for every L >= 2. ``logit_scale`` defaults to 1; the official code multiplies q and k by 0.1 ln 2 + 1, i.e. logits by
``OFFICIAL_LOGIT_SCALE`` ~= 1.1434 -- pass ``logit_scale=OFFICIAL_LOGIT_SCALE`` to reproduce that choice.
The official prefill's double count of the key at d = S is deliberately not reproduced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..params import LOGIT_SCALE, TRAIN_LENGTH, Param
from ._validate import check_fields, check_length_at_least
from .base import ModelInfo, PositionMethod
from .table import PosMap, Region, SegmentTable

OFFICIAL_LOGIT_SCALE = (0.1 * math.log(2) + 1) ** 2
DEFAULT_SHIFT_RATIO = 0.33
DEFAULT_WINDOW = 128


@dataclass(frozen=True)
class StringMethod(PositionMethod):
    """STRING with concrete shift S and window W (tokens); see the module docstring for the matrix."""

    shift: int
    window: int = DEFAULT_WINDOW
    train_length: int | None = None
    logit_scale: float = 1.0

    name: ClassVar[str] = "string"
    summary: ClassVar[str] = "shift well-trained distances over the untrained tail: rel = d (d < S), d - S + W (d >= S)"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("shift", "tokens", "shift S: int tokens (0 < S < L), or a ratio of L in (0, 1)", default="0.33 L",
              low=1),
        Param("window", "int", "local window W in tokens (0 <= W < S)", default="min(128, S // 4)", low=0),
        TRAIN_LENGTH,
        LOGIT_SCALE,
    )

    def __post_init__(self):
        check_fields(self)
        for field in ("shift", "window"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"string: {field} must be an int number of tokens, got {value!r}")
        if self.shift <= 0:
            raise ValueError(f"string: shift S must be > 0 tokens, got {self.shift}")
        if self.window < 0:
            raise ValueError(f"string: window W must be >= 0, got {self.window}")
        if self.window >= self.shift:
            raise ValueError(f"string: window W must be < shift S (0 <= W < S), got W={self.window}, S={self.shift}")
        if self.train_length is not None and self.shift >= self.train_length:
            raise ValueError(
                f"string: shift S must be < the training length L={self.train_length} (0 < S < L), got {self.shift}"
            )
        if not (isinstance(self.logit_scale, (int, float)) and self.logit_scale > 0):
            raise ValueError(f"string: logit_scale must be a positive number, got {self.logit_scale!r}")

    @classmethod
    def resolve(cls, info: ModelInfo, *, shift=None, window=None, train_length=None, logit_scale=1.0):
        """Build from user parameters: ``shift`` int tokens or float ratio of L in (0, 1); W defaults to
        min(128, S // 4)."""
        if train_length is not None and (isinstance(train_length, bool) or not isinstance(train_length, int) or train_length <= 0):
            raise ValueError(f"string: train_length must be a positive int, got {train_length!r}")
        length = train_length if train_length is not None else info.train_length
        check_length_at_least("string", length, 2, "0 < S < L")
        if shift is None:
            shift = DEFAULT_SHIFT_RATIO
        if isinstance(shift, float):
            if not 0.0 < shift < 1.0:
                raise ValueError(f"string: a float shift is a ratio of L and must be in (0, 1), got {shift}")
            if length is None:
                raise ValueError("string: a shift ratio needs the training length; pass train_length= or an int shift")
            shift = max(1, int(round(shift * length)))
        if window is None:
            window = min(DEFAULT_WINDOW, shift // 4) if isinstance(shift, int) else DEFAULT_WINDOW
        return cls(shift=shift, window=window, train_length=length, logit_scale=float(logit_scale))

    def rel(self, d, qpos=None, kpos=None):
        return torch.where(d < self.shift, d, d - self.shift + self.window)

    def table(self) -> SegmentTable:
        s, w = self.shift, self.window
        return SegmentTable((
            Region("near", 0, s),
            Region("far", s, None, q_map=PosMap(b=w - s)),  # query at m - (S - W), key unchanged
        ))
