"""Registry of user-facing method names -> method classes (``ropeshift.methods()`` lists them).

Attention-level methods (``ropeshift.methods.base.PositionMethod``) and RoPE-scaling baselines
(``ropeshift.methods.rope_scaling``, class var ``kind = "rope_scaling"``) share one namespace.
"""
from __future__ import annotations

from ..registry import Registry
from .rope_scaling import ROPE_SCALING_METHODS
from .dca import DualChunkMethod
from .lm_infinite import LMInfiniteMethod
from .plain import PlainMethod
from .rerope import ReRopeMethod
from .self_extend import SelfExtendMethod
from .string import StringMethod

METHODS: Registry = Registry("method")
for _cls in (StringMethod, ReRopeMethod, SelfExtendMethod, DualChunkMethod, LMInfiniteMethod, PlainMethod,
             *ROPE_SCALING_METHODS):
    METHODS.register(_cls.name, _cls)


def is_rope_scaling(method) -> bool:
    """True for a RoPE-scaling method (a registered name or class): it changes ``config.rope_parameters``, not the
    attention's positions."""
    cls = METHODS[method] if isinstance(method, str) else method
    return getattr(cls, "kind", "attention") == "rope_scaling"
