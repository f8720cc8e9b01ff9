"""Public API: patch a Hugging Face model in place with a context method, inspect it, undo it.

    import ropeshift
    model, tok = ropeshift.load_model("smollm2-135m")
    ropeshift.apply(model, "string")               # S = round(0.33 L), W = min(128, S // 4)
    ropeshift.describe(model)                      # {'method': 'string', 'params': {...}, 'impl': 'auto', ...}
    ropeshift.remove(model)                        # exactly the original model again

The record in ``model.config.ropeshift`` is saved by ``save_pretrained``; ``ropeshift.load_model(folder)``
re-applies it. A model loaded with plain ``from_pretrained`` keeps RoPE scaling (it lives in the saved
``rope_parameters``) but not the attention method: ``describe`` reports only what is in force and lists the
rest under ``not_in_force``.

Attention-level methods go through one function registered with transformers' ``AttentionInterface`` (plus
the matching mask registration) and ``model.set_attn_implementation``; RoPE-scaling methods go through
``config.rope_parameters``. Nothing else about the model changes.
"""
from __future__ import annotations

from .attention.dispatch import IMPLS, triton_unsupported_reason
from .attention.interface import ATTN_NAME, register
from .params import resolve_method
from .methods.registry import METHODS, is_rope_scaling
from .rope import LENGTH_DEPENDENT_ROPE_TYPES, model_info, rope_info
from .state import RuntimeState, drop_state, get_state, set_state

RECORD = "ropeshift"  # attribute on model.config holding the serialisable record
IDENTITY_METHODS = ("rope",)  # the unpatched model


def methods() -> list[str]:
    """Names accepted by ``apply``: "rope" (unpatched) and every registered method."""
    return [*IDENTITY_METHODS, *METHODS.names()]


def _record(model) -> dict:
    return dict(getattr(model.config, RECORD, None) or {})


def check_model(model) -> None:
    """TypeError unless ``model`` looks like a transformers model (a ``config`` and ``set_attn_implementation``)."""
    if not (hasattr(model, "config") and hasattr(model, "set_attn_implementation") and hasattr(model, "modules")):
        raise TypeError(
            f"model must be a transformers PreTrainedModel (e.g. from ropeshift.load_model or "
            f"AutoModelForCausalLM.from_pretrained), got {type(model).__name__}"
        )


def method_class(method):
    """The registered class for a method name (TypeError for a non-string; KeyError with 'did you mean')."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name (str), one of {', '.join(methods())}; got {method!r}")
    return METHODS[method]


def check_supported(model) -> None:
    """Raise ValueError when the model's attention cannot take a position method (before any model work)."""
    cfg = model.config
    model_type = getattr(cfg, "model_type", type(model).__name__)
    if not getattr(cfg, "is_causal", True):
        raise ValueError(f"unsupported: {model_type!r} is not a causal LM")
    if getattr(cfg, "attn_logit_softcapping", None) is not None:
        raise ValueError(f"unsupported: {model_type!r} uses attention logit soft-capping")
    window = getattr(cfg, "sliding_window", None)
    layer_types = getattr(cfg, "layer_types", None)
    if window is not None and (layer_types is None or "sliding_attention" in layer_types):
        raise ValueError(
            f"unsupported: {model_type!r} has sliding-window attention on (sliding_window={window}); "
            "set model.config.sliding_window = None (and full-attention layer_types) before applying"
        )


_resolve = resolve_method  # kept for callers of the old private name


_FROM_CONFIG = object()  # apply's default method: "string", or the one a settings file names


def apply(model, method: str = _FROM_CONFIG, *, config=None, shift=None, window=None, train_length=None,
          impl: str = "auto", **params):
    """Patch ``model`` in place with ``method`` and return it.

    Args:
        method: a name from ``ropeshift.methods()`` (default "string"); "rope" restores the unpatched model.
        config: a settings file (``ropeshift tune`` writes one): ``{"method": {param: value}}``; the method and
            parameters come from it (explicit keywords win).
        shift: STRING's S: int tokens, or float ratio of L in (0, 1) (default 0.33).
        window: STRING's local window W in tokens (default min(128, S // 4), so the defaults work for any L >= 2);
            other methods' windows by their own names.
        train_length: L, the training length (default ``config.max_position_embeddings``).
        impl: "auto" | "torch" | "reference" | "triton" (attention-level methods). An explicit impl never
            falls back silently.
        **params: method-specific parameters (see ``ropeshift ls``; declared in each method's ``PARAMS``). Types,
            finiteness and ranges are checked before the model is touched (one-line ValueError naming them).
    Applying an attention method twice replaces the first application; a RoPE-scaling method composes with it.
    """
    check_model(model)
    user = {k: v for k, v in dict(shift=shift, window=window, train_length=train_length).items() if v is not None}
    user.update(params)
    if config is not None:
        from .settings import method_settings

        method, saved = method_settings(config, None if method is _FROM_CONFIG else method)
        user = {**saved, **user}
    if method is _FROM_CONFIG:
        method = "string"
    if isinstance(method, str) and method in IDENTITY_METHODS:
        return remove(model)
    cls = method_class(method)
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if is_rope_scaling(cls):
        from .methods.rope_scaling import apply_rope_scaling

        apply_rope_scaling(model, cls, user)
        _refresh_attention_state(model)
        return model
    check_supported(model)
    info = model_info(model, user.get("train_length"))
    if info.rope_type in LENGTH_DEPENDENT_ROPE_TYPES:
        raise ValueError(
            f"unsupported: rope_type {info.rope_type!r} changes its frequencies with the input length, so cached "
            f"keys and shifted queries would use different angles; {method} needs fixed frequencies"
        )
    resolved = resolve_method(cls, info, user)
    if impl == "triton":
        reason = triton_unsupported_reason(resolved, next(model.parameters()).device)
        if reason:
            raise ValueError(f"impl='triton': {reason}")
    record = _record(model)
    original = record.get("original_attn_implementation", model.config._attn_implementation)
    register()
    set_state(model.config, RuntimeState(resolved, impl, rope_info(model).inv_freq, info.train_length))
    record.update(
        attention={"method": method, "params": resolved.params(), "impl": impl},
        original_attn_implementation=original,
    )
    setattr(model.config, RECORD, record)
    model.set_attn_implementation(ATTN_NAME)
    return model


def _refresh_attention_state(model) -> None:
    """After a RoPE change, rebuild the attention state so shifted queries use the new frequencies."""
    record = _record(model)
    att = record.get("attention")
    if att and _attention_in_force(model):
        apply(model, att["method"], impl=att["impl"], **att["params"])


def remove(model):
    """Undo every ropeshift change on ``model`` (attention implementation and RoPE parameters); return it."""
    check_model(model)
    record = _record(model)
    if not record:
        return model
    if record.get("rope"):
        from .methods.rope_scaling import remove_rope_scaling

        remove_rope_scaling(model, record["rope"])
    if record.get("original_attn_implementation"):
        model.set_attn_implementation(record["original_attn_implementation"])
    drop_state(model.config)
    if hasattr(model.config, RECORD):
        delattr(model.config, RECORD)
    return model


def _attention_in_force(model) -> bool:
    """The attention method runs: the model's attention is ours and this process holds its state."""
    if getattr(model.config, "_attn_implementation", None) != ATTN_NAME:
        return False
    try:
        get_state(model.config)
    except RuntimeError:
        return False
    return True


def _rope_in_force(model, rope: dict) -> bool:
    """The recorded RoPE scaling is what the config says (true after save_pretrained + from_pretrained too)."""
    current = getattr(model.config, "rope_parameters", None)
    expected = rope.get("rope_parameters")
    return expected is None or (isinstance(current, dict) and dict(current) == expected)


def describe(model) -> dict:
    """The model's ropeshift settings in force, as plain data (written into every result record).

    A saved record whose method does not run in this process (a model saved patched and reloaded with plain
    ``from_pretrained``) is not reported as applied: it is listed under ``not_in_force``; ``ropeshift.load_model``
    re-applies it."""
    check_model(model)
    record = _record(model)
    rope, att = record.get("rope"), record.get("attention")
    stale = []
    if rope and not _rope_in_force(model, rope):
        stale.append(rope["method"])
        rope = None
    if att and not _attention_in_force(model):
        stale.append(att["method"])
        att = None
    parts = [p for p in (rope, att) if p]
    out: dict = {"method": "rope", "params": {}, "impl": None}
    if parts:
        params: dict = {}
        for p in parts:
            params.update(p.get("params", {}))
        out = {"method": "+".join(p["method"] for p in parts), "params": params,
               "impl": (att or {}).get("impl"), "rope": rope, "attention": att}
    if stale:
        out["not_in_force"] = stale
    return out
