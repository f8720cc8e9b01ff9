"""LM-Infinite (Han et al., NAACL 2024, arXiv 2308.16137): a Lambda-shaped mask with a distance limit.

For query position m, key position n, d = m - n >= 0, n_global starting tokens, n_local recent tokens and
distance limit L_d::

    visible(m, n) = d < n_local  or  n < n_global
    rel(m, n)     = min(d, L_d)

Keys outside both the local window and the first n_global tokens are not attended at all. L = 12,
n_global = 2, n_local = 4, L_d = 6 (rows: queries; '.' = masked)::

    0
    1 0
    2 1 0
    3 2 1 0
    4 3 2 1 0
    5 4 3 2 1 0
    6 5 . 3 2 1 0
    6 6 . . 3 2 1 0
    6 6 . . . 3 2 1 0
    6 6 . . . . 3 2 1 0
    6 6 . . . . . 3 2 1 0
    6 6 . . . . . . 3 2 1 0

Implementation (segment table): two regions carrying the Lambda rule (d < n_local or n < n_global):
"uncapped" (d < L_d, plain RoPE) and "capped" (d >= L_d: query re-rotated to L_d, key to 0). Fast paths skip
the key tiles no query sees (between the global keys and the local window). Keys are re-rotated from the
post-RoPE cache, so prefill and decode agree.

Defaults: n_global = 10, n_local = L and L_d = L with L = ``config.max_position_embeddings`` (the drop-in
``convert_llama_model(model, 4096, 10)``). The official code gives the global keys the constant distance
min(L_d, kv_len - 1), which depends on the sequence length and differs between prefill and decode; we use the
paper's per-pair cap min(d, L_d). The optional top-k middle-token extension is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..params import LOGIT_SCALE, TRAIN_LENGTH, Param
from ._validate import check_fields, check_int, check_logit_scale, resolve_length
from .base import ModelInfo, PositionMethod
from .table import PosMap, Region, SegmentTable

DEFAULT_N_GLOBAL = 10


@dataclass(frozen=True)
class LMInfiniteMethod(PositionMethod):
    """LM-Infinite with concrete n_global, n_local and distance limit (tokens); see the module docstring."""

    n_local: int
    distance_limit: int
    n_global: int = DEFAULT_N_GLOBAL
    train_length: int | None = None
    logit_scale: float = 1.0

    name: ClassVar[str] = "lm_infinite"
    summary: ClassVar[str] = "Lambda mask (first n_global + last n_local keys) with distances capped at L"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("n_global", "int", "number of leading tokens every query attends", default=10, low=0),
        Param("n_local", "int", "number of recent tokens every query attends", default="L", low=1),
        Param("distance_limit", "int", "largest relative distance L_d (<= L)", default="L", low=1),
        TRAIN_LENGTH,
        LOGIT_SCALE,
    )

    def __post_init__(self):
        check_fields(self)
        check_int("lm_infinite", "n_global", self.n_global, low=0)
        check_int("lm_infinite", "n_local", self.n_local, low=1)
        check_int("lm_infinite", "distance_limit", self.distance_limit, low=1)
        if self.train_length is not None and self.distance_limit > self.train_length:
            raise ValueError(
                f"lm_infinite: distance_limit must be <= the training length L={self.train_length} "
                f"(1 <= limit <= L), got {self.distance_limit}"
            )
        check_logit_scale("lm_infinite", self.logit_scale)

    @classmethod
    def resolve(cls, info: ModelInfo, *, n_global=None, n_local=None, distance_limit=None, train_length=None,
                logit_scale=1.0):
        length = resolve_length("lm_infinite", info, train_length)
        if (n_local is None or distance_limit is None) and length is None:
            raise ValueError("lm_infinite: n_local and distance_limit default to L; pass train_length= or both")
        return cls(
            n_local=length if n_local is None else n_local,
            distance_limit=length if distance_limit is None else distance_limit,
            n_global=DEFAULT_N_GLOBAL if n_global is None else n_global,
            train_length=length,
            logit_scale=float(logit_scale),
        )

    def visible(self, d, qpos, kpos):
        return (d < self.n_local) | (kpos < self.n_global)

    def rel(self, d, qpos=None, kpos=None):
        return torch.clamp(d, max=self.distance_limit)

    def table(self) -> SegmentTable:
        # both regions carry the Lambda rule (d < n_local or n < n_global); distances beyond L_d see the query
        # at L_d and the key at 0
        g, loc, limit = self.n_global, self.n_local, self.distance_limit
        lam = dict(rule="lambda", r1=loc, r2=g)
        return SegmentTable((
            Region("uncapped", 0, limit, **lam),
            Region("capped", limit, None, q_map=PosMap(a=0, b=limit), k_map=PosMap(a=0), **lam),
        ))
