"""Method instances shared by the tests: every attention-level baseline (and plain) at settings whose region boundaries
fall inside and at the edges of small tiles (8 x 8) for sequences of ~40 tokens."""
from __future__ import annotations

from ropeshift.methods.dca import DualChunkMethod
from ropeshift.methods.lm_infinite import LMInfiniteMethod
from ropeshift.methods.plain import PlainMethod
from ropeshift.methods.rerope import ReRopeMethod
from ropeshift.methods.self_extend import SelfExtendMethod

# name -> (registry name, params for ropeshift.apply)
APPLY_CASES = {
    "rerope": ("rerope", dict(window=7)),
    "rerope_leaky": ("rerope", dict(window=8, leaky=4.0)),
    "self_extend": ("self_extend", dict(group_size=3, window=9)),
    "self_extend_g4": ("self_extend", dict(group_size=4, window=8)),
    "dca": ("dca", dict(chunk_size=12, local_window=3)),
    "dca_w0": ("dca", dict(chunk_size=9, local_window=0)),
    "lm_infinite": ("lm_infinite", dict(n_global=3, n_local=8, distance_limit=12)),
    "lm_infinite_cap": ("lm_infinite", dict(n_global=2, n_local=14, distance_limit=9)),
    "plain": ("plain", {}),
}

CLASSES = {
    "rerope": ReRopeMethod,
    "self_extend": SelfExtendMethod,
    "dca": DualChunkMethod,
    "lm_infinite": LMInfiniteMethod,
    "plain": PlainMethod,
}


def method_of(case: str):
    name, params = APPLY_CASES[case]
    return CLASSES[name](**params)
