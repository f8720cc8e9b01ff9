"""The attention function registered with transformers' ``AttentionInterface`` under the name "ropeshift".

transformers calls it from every attention layer with post-RoPE query/key and the cache-extended key/value::

    ropeshift_attention(module, query [b, h, lq, d], key [b, h_kv, lk, d], value [b, h_kv, lk, d],
                        attention_mask [b, lk] bool or None, scaling=float, position_ids=[b, lq], ...)
    -> (attn_output [b, lq, h, d], None)

The mask comes from ``flash_attention_mask`` registered under the same name with ``AttentionMaskInterface``:
a 2D key-valid mask, or None when nothing is padded. The method and implementation are read from the runtime
state that ``ropeshift.apply`` attached to ``module.config``; no model class is touched.
"""
from __future__ import annotations

import math

from .dispatch import attend
from .positions import positions_from

ATTN_NAME = "ropeshift"


def ropeshift_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from ..state import get_state

    state = get_state(module.config)
    if kwargs.get("sliding_window") is not None:
        raise ValueError(
            "ropeshift: this layer uses sliding-window attention (sliding_window="
            f"{kwargs['sliding_window']}); disable it (config.sliding_window = None) to use position methods"
        )
    if kwargs.get("softcap") is not None:
        raise ValueError("ropeshift: attention logit soft-capping is not supported")
    if dropout:
        raise ValueError("ropeshift: attention dropout is not supported (use model.eval())")
    b, h, lq, dim = query.shape
    lk = key.shape[2]
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(
            f"ropeshift: expected a 2D key mask, got shape {tuple(attention_mask.shape)} "
            "(custom 4D masks are not supported)"
        )
    qpos, kpos, kvalid = positions_from(kwargs.get("position_ids"), attention_mask, b, lq, lk, query.device)
    if getattr(module, "layer_idx", 0) == 0 and (lq > 1 or not query.is_cuda):  # no host sync per decode step
        state.check_length(qpos)
    scale = scaling if scaling is not None else 1.0 / math.sqrt(dim)
    out, _ = attend(
        state.impl, query, key, value, state.method, state.inv_freq_on(query.device),
        scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid, mask_given=attention_mask is not None,
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register the attention function and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(ATTN_NAME, ropeshift_attention)
    AttentionMaskInterface.register(ATTN_NAME, flash_attention_mask)


__all__ = ["ATTN_NAME", "register", "ropeshift_attention"]
