"""The attention function registered with transformers' ``AttentionInterface`` under the name "ropeshift".

transformers calls it from every attention layer with post-RoPE query/key and the cache-extended key/value::

    ropeshift_attention(module, query [b, h, lq, d], key [b, h_kv, lk, d], value [b, h_kv, lk, d],
                        attention_mask [b, n <= lk] bool or None, scaling=float, position_ids=[b, lq], ...)
    -> (attn_output [b, lq, h, d], None)

The mask comes from ``key_valid_mask``, registered under the same name with ``AttentionMaskInterface``: a 2D
key-valid mask [b, n] over the n key slots written so far (cache + new), or None when all lk keys are valid.
A static cache's key tensor is longer than what was written (lk > n): its empty slots are cut off here, so
no implementation ever sees them. Positions are derived from the mask (``positions``). The method and
implementation are read from the runtime state that ``ropeshift.apply`` attached to ``module.config``; no
model class is touched.

Static decode (CUDA graphs): when the runtime state's ``static_decode`` is set (or a CUDA graph is being
captured), a one-query forward instead gets the mask over the static cache's whole buffer, n = lk, with the
unwritten slots False, built on the device from the cache's offset tensor; the attention keeps the full-length
key/value and passes the kernels ``key_end`` [b] (written keys per row) as a device tensor. No host sync, no
shape that depends on the step. Methods that re-rotate far keys keep a per-layer K1 (ROPESHIFT_K1_CACHE=0: off)
cache of pre-rotated keys meanwhile (``far_cache``: written by every forward into the buffer, dropped when static
decode ends). The caller's mask must cover the whole buffer, and its ``position_ids`` must
number each row's valid tokens from 0 (``attention_mask.cumsum(-1) - 1``, as ``generate`` does)::

    slot       0 1 2 3 4 5 6 7        written = q_offset + 1 = 6 (the new token in slot 5)
    user mask  0 0 1 1 1 1 1 1        (left padding, then ones for every later step)
    key mask   0 0 1 1 1 1 0 0        key_end = 6

Under ``torch.compile`` the function is traced and the kernels run as an opaque custom op. An attention module
carrying ``EAGER_UNDER_COMPILE`` (set by ``eval.dense_compile`` when it compiles whole decoder layers) is instead
left out of the trace: the call is a graph break and runs eagerly, exactly as without compile (the mask measured
once per forward, the kernel chosen by it, no guard on the method's state, so no recompile per method).
"""
from __future__ import annotations

import functools
import math

import torch

from . import far_cache
from .dispatch import attend, mask_layout
from .positions import inconsistent_rows, positions_from

ATTN_NAME = "ropeshift"
EAGER_UNDER_COMPILE = "_ropeshift_eager_attention"  # an attention module's attribute: see the module docstring


def key_valid_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None, device="cpu",
                   **kwargs):
    """The mask function transformers calls once per forward (``create_causal_mask``).

    ``q_offset`` is the number of tokens already in the cache (a 0-d tensor for a ``StaticCache``),
    ``kv_length`` the cache's key length (a static cache's full size), ``attention_mask`` the user's 2D
    padding mask over every token seen (cache + new) or None. Returns bool [batch, q_offset + q_length]
    (key slots written so far; slots beyond are empty), or None when every one of the kv_length keys is
    valid. Causality and the method's own mask are applied by the attention function.
    """
    if kv_offset:
        raise ValueError(
            "ropeshift: this cache has dropped its oldest tokens (a sliding-window cache, "
            f"kv_offset={int(kv_offset)}); position methods need every key: use a dynamic or static cache"
        )
    if q_length == 1 and static_decode(kwargs.get("config")):
        return _whole_buffer_mask(batch_size, kv_length, q_offset, attention_mask, device)
    written = int(q_offset) + q_length  # one host sync per forward for a StaticCache's tensor offset
    if attention_mask is None:
        if written == kv_length:
            return None
        return torch.ones(batch_size, written, dtype=torch.bool, device=device)
    if attention_mask.dim() != 2:
        return attention_mask  # a custom 4D mask: refused by the attention function
    mask = attention_mask.to(device=device, dtype=torch.bool)
    if mask.shape[1] < written:
        raise ValueError(
            f"ropeshift: attention_mask has {mask.shape[1]} columns but the model has seen {written} tokens "
            f"({int(q_offset)} cached + {q_length} new); pass a mask over every token seen"
        )
    mask = mask[:, mask.shape[1] - written :]
    if written == kv_length and not torch.compiler.is_compiling() and bool(mask.all()):
        return None
    return mask


def static_decode(config) -> bool:
    """True when one-query forwards of this model run in static decode mode (see the module docstring): its
    runtime state asks for it, or the current CUDA stream is capturing a graph."""
    from ..state import get_state

    if config is not None:
        try:
            if get_state(config).static_decode:
                return True
        except RuntimeError:  # not patched in this process: the attention function will say so
            pass
    if torch.compiler.is_compiling():  # traced code is not captured by hand here (cudagraph trees re-run none of it)
        return False
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _whole_buffer_mask(batch_size, kv_length, q_offset, attention_mask, device):
    """bool [batch, kv_length]: the user's mask over the whole static buffer, False from slot q_offset + 1 on
    (``q_offset`` a 0-d device tensor or an int; no host sync)."""
    written = torch.as_tensor(q_offset, device=device) + 1
    mask = torch.arange(kv_length, device=device)[None, :] < written
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[1] != kv_length:
            raise ValueError(
                f"ropeshift: static decode needs a 2D attention_mask over the whole cache ({kv_length} columns), "
                f"got shape {tuple(attention_mask.shape)}"
            )
        mask = mask & attention_mask.to(device=device, dtype=torch.bool)
    return mask.expand(batch_size, kv_length)


def ropeshift_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    from ..state import get_state

    if torch.compiler.is_compiling() and getattr(module, EAGER_UNDER_COMPILE, False):
        return _eager_attention()(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                  **kwargs)
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
    if attention_mask is not None and attention_mask.shape[1] < lk:  # empty static-cache slots: cut them off
        lk = attention_mask.shape[1]
        key, value = key[:, :, :lk], value[:, :, :lk]
    position_ids = kwargs.get("position_ids")
    qpos, kpos, kvalid, per_forward = _positions(state, position_ids, attention_mask, b, lq, lk, query.device)
    mask_given = attention_mask is not None
    static = lq == 1 and mask_given and static_decode(module.config)
    if getattr(module, "layer_idx", 0) == 0 and (lq > 1 or not query.is_cuda) and not static:  # no sync per step
        if not torch.compiler.is_compiling():
            _check_positions(position_ids, attention_mask, b, lq, lk, query.device)
            state.left_padded, state.unpadded = mask_layout(kvalid) if mask_given else (True, True)
        state.check_length(qpos)
    if mask_given and lq > 1 and state.unpadded and not torch.compiler.is_compiling():
        mask_given = False  # an all-ones mask (measured at layer 0 of this forward): the calls a maskless one takes
    scale = scaling if scaling is not None else 1.0 / math.sqrt(dim)
    layer = getattr(module, "layer_idx", None)
    layer = id(module) if layer is None else layer
    if state.far_keys and not static:  # a live K1 follows every write into its key buffer
        _follow_far_keys(state, layer, key, qpos)
    k1_store = (state.far_keys, layer) if static and far_cache.k1_wanted() else None
    out, _ = attend(
        state.impl, query, key, value, state.method, state.inv_freq_on(query.device),
        scale=scale, qpos=qpos, kpos=kpos, kvalid=kvalid, mask_given=mask_given,
        left_padded=state.left_padded, memo=per_forward,
        **({"key_end": _key_end(kvalid, per_forward), "k1_store": k1_store} if static else {}),
    )
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _eager_attention():
    """The same function, which dynamo does not trace: a call to it from compiled code is a graph break (made at
    first use, not at import)."""
    return torch.compiler.disable(ropeshift_attention)


def _positions(state, position_ids, attention_mask, b, lq, lk, device):
    """``positions_from`` plus a dict for what the implementations derive from them (``attend``'s ``memo``),
    computed once per forward: every layer of one forward gets the same mask and position_ids objects, so the
    later layers reuse the first one's (no per-layer host work or launches; a new forward brings new objects).
    Not cached under torch.compile."""
    if torch.compiler.is_compiling():
        return (*positions_from(position_ids, attention_mask, b, lq, lk, device), None)
    key = (b, lq, lk, str(device))
    last = state.last_positions
    if last is not None and last[0] is position_ids and last[1] is attention_mask and last[2] == key:
        return last[3]
    out = (*positions_from(position_ids, attention_mask, b, lq, lk, device), {})
    state.last_positions = (position_ids, attention_mask, key, out)
    return out


def _follow_far_keys(state, layer, key, qpos):
    """K1 slots of the keys this forward wrote (``far_cache.follow_new_keys``), for a method K1 serves."""
    from ..kernels.key_cache import needs_far_keys
    from .dispatch import _compiled

    spec = _compiled(state.method)
    if not isinstance(spec, str) and needs_far_keys(spec):
        far_cache.follow_new_keys(state.far_keys, layer, key, spec, state.inv_freq_on(key.device), qpos)


def _key_end(kvalid, memo):
    """[b] int32: one past each row's last valid key slot (static decode: the written keys), once per forward."""
    if memo is not None and "key_end" in memo:
        return memo["key_end"]
    slots = torch.arange(1, kvalid.shape[1] + 1, device=kvalid.device, dtype=torch.int32)
    key_end = torch.where(kvalid, slots, 0).amax(dim=1)
    if memo is not None:
        memo["key_end"] = key_end
    return key_end


def _check_positions(position_ids, attention_mask, b, lq, lk, device) -> None:
    bad = inconsistent_rows(position_ids, attention_mask, b, lq, lk, device)
    if bad:
        raise ValueError(
            f"ropeshift: the positions of batch row {bad[0]} do not number its valid (mask=1) tokens "
            "consecutively (a mask with holes under default position_ids, e.g. decoding after right padding, "
            "or packed sequences), so key positions are ambiguous; pass "
            "position_ids = attention_mask.cumsum(-1) - 1, or one sequence per row"
        )


def register() -> None:
    """Register the attention function and its mask function with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, ropeshift_attention)
    AttentionMaskInterface.register(ATTN_NAME, key_valid_mask)


__all__ = ["ATTN_NAME", "key_valid_mask", "register", "ropeshift_attention", "static_decode"]
