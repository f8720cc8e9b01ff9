"""DCA, Dual Chunk Attention (ChunkLlama; An et al., ICML 2024, arXiv 2402.17463), as in the official HF code.

Chunk size C, local window w, chunk length s = C - w. Keys sit at chunk-local positions n mod s; the query
position depends on how far the key's chunk is from the query's chunk (d = m - n >= 0)::

    intra chunk       (m // s == n // s):      query at m mod s               -> rel = d
    successive chunk  (m // s == n // s + 1):  query at min(m mod s + s, C)   -> rel = d, or C - (n mod s)
    inter chunk       (m // s >= n // s + 2):  query at C                     -> rel = C - (n mod s)

So every distance stays <= C while neighbouring tokens (the first w + 1 query slots of a chunk against the
previous chunk) keep their true distance. L = 12, C = 5, w = 1, s = 4 (rows: queries)::

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
    5 4 3 2 5 4 3 2 2 1 0
    5 4 3 2 5 4 3 2 3 2 1 0

Implementation (segment table): min(m mod s + s, C) = C exactly when m mod s >= w, so the matrix is two regions
with DCA's chunk rule: "plain" (intra chunk, and the first w query slots against the previous chunk; rel = d,
no rotation; for w >= 1 slot w, where both rules agree, counts as capped) and "capped" (query re-rotated to C,
key re-rotated per tile from the post-RoPE cache to n mod s, i.e. k delta -s * (n // s)); prefill and decode
therefore agree. With C >= N (and w <= C/2) it is plain RoPE.

Defaults: C = 3L/4 and w = L/16 with L = ``config.max_position_embeddings`` (``chunk_size = 3L/4`` in all
official files; ``local_window`` is L/8 in ``chunkllama_attn_replace.py`` but L/16 in the flash-decoding and
Qwen files -- we take L/16). The official temperature ``(0.05 ln(len/L) + 1)^2`` on the logits for inputs
longer than L depends on the input length and is off; pass a constant ``logit_scale`` to emulate it.
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

DEFAULT_CHUNK_RATIO = 0.75
DEFAULT_LOCAL_RATIO = 1 / 16


@dataclass(frozen=True)
class DualChunkMethod(PositionMethod):
    """DCA with concrete chunk size C and local window w (tokens); see the module docstring."""

    chunk_size: int
    local_window: int
    train_length: int | None = None
    logit_scale: float = 1.0

    name: ClassVar[str] = "dca"
    summary: ClassVar[str] = "dual chunk attention: chunk-local key positions, intra/successive/inter query rules"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("chunk_size", "tokens", "chunk size C: int tokens (2 <= C < L), or a ratio of L in (0, 1]",
              default="3L / 4", low=2),
        Param("local_window", "tokens", "local window w: int tokens (0 <= w < C), or a ratio of L in (0, 1]",
              default="L / 16", low=0),
        TRAIN_LENGTH,
        LOGIT_SCALE,
    )

    def __post_init__(self):
        check_fields(self)
        check_int("dca", "chunk_size", self.chunk_size, low=2)
        check_int("dca", "local_window", self.local_window, low=0)
        if self.local_window >= self.chunk_size:
            raise ValueError(
                f"dca: local_window w must be < chunk_size C (0 <= w < C), got w={self.local_window}, C={self.chunk_size}"
            )
        if self.train_length is not None and self.chunk_size >= self.train_length:
            raise ValueError(
                f"dca: chunk_size C must be < the training length L={self.train_length} (the largest distance "
                f"used is C), got {self.chunk_size}"
            )
        check_logit_scale("dca", self.logit_scale)

    @property
    def chunk_len(self) -> int:
        """s = C - w: the stride of the chunks."""
        return self.chunk_size - self.local_window

    @classmethod
    def resolve(cls, info: ModelInfo, *, chunk_size=None, local_window=None, train_length=None, logit_scale=1.0):
        """``chunk_size``/``local_window``: int tokens or float ratios of L (defaults 0.75 and 1/16)."""
        length = resolve_length("dca", info, train_length)
        check_length_at_least("dca", length, 3, "0 <= w < C < L with C >= 2")
        chunk_size = ratio_or_tokens("dca", "chunk_size", chunk_size, length, DEFAULT_CHUNK_RATIO)
        if local_window is None or isinstance(local_window, float):
            local_window = ratio_or_tokens("dca", "local_window", local_window, length, DEFAULT_LOCAL_RATIO)
        return cls(chunk_size=chunk_size, local_window=local_window, train_length=length, logit_scale=float(logit_scale))

    def rel(self, d, qpos, kpos):
        c, w, s = self.chunk_size, self.local_window, self.chunk_len
        qc, kc = qpos // s, kpos // s
        qm, km = qpos - qc * s, kpos - kc * s
        succ = torch.clamp(qm + s, max=c) - km
        inter = c - km
        return torch.where(qc == kc, d, torch.where(qc == kc + 1, succ, inter))

    def table(self) -> SegmentTable:
        # min(m mod s + s, C) = C exactly when m mod s >= w, so the successive rule is either rel = d or the
        # inter rule: two regions, "plain" (no rotation) and "capped" (query at C, key at n mod s). The slot
        # m mod s = w gets the same distance from both (d = s + w - n mod s = C - n mod s) and, for w >= 1, goes to
        # "capped" (rule window v = w - 1): with s and w at multiples of a kernel's query tile, no tile has rows on
        # both sides of the rule (the Hopper prefill at 32k: 176 two-dot tiles before, none after). Plain pairs
        # have d <= s + v; capped pairs d >= min(v + 2, s + 1): the bands let fast paths skip the rule outside.
        c, w, s = self.chunk_size, self.local_window, self.chunk_len
        v = w - 1 if w > 0 else w
        return SegmentTable((
            Region("plain", 0, s + v + 1, rule="chunk_near", r1=s, r2=v),
            Region("capped", min(v + 2, s + 1), None, rule="chunk_far", r1=s, r2=v,
                   q_map=PosMap(a=0, b=c), k_map=PosMap(c=-s, g=s)),
        ))
