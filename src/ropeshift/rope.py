"""RoPE helpers: where a model's rotary embeddings are, its head/rotary dims and inverse frequencies, and exact
re-rotation of post-RoPE vectors. The one place that inspects a model's RoPE (``rotary_sites``, ``head_dim``,
``rotary_dim``, ``rope_info``, ``model_info``).

Notation: x [..., l, d]; r = 2 * len(inv_freq) rotary dims (r < d for partial rotary), rotate_half layout
(pairs (i, i + r/2)) as in Hugging Face's ``apply_rotary_pos_emb``.

RoPE rotations in one plane commute, so R(a) R(b) = R(a + b): a query already rotated at position m and then
rotated by ``delta`` equals the query rotated at m + delta. Every position remap in ropeshift is built from
this, with angles computed in fp32 (fp64 for fp64 inputs) from ``inv_freq`` alone -- never from the model's
cos/sin, which may carry YaRN/longrope ``attention_scaling``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# rope types whose frequencies change with the input length: cached post-RoPE keys would carry stale angles
LENGTH_DEPENDENT_ROPE_TYPES = ("dynamic", "longrope")


def rotate(x: torch.Tensor, delta, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate the rotary dims of ``x`` by ``delta`` positions.

    Args:
        x: ``[..., l, d]`` post-RoPE vectors.
        delta: int, or integer tensor broadcastable to ``x.shape[:-1]`` (e.g. ``[b, 1, l]`` for per-row deltas).
        inv_freq: ``[r/2]`` inverse frequencies (fp32).
    Returns:
        Tensor like ``x`` (dtype kept; the rotation is computed in fp32, or fp64 for fp64 ``x``). Broadcasts
        ``x`` against ``delta`` when ``delta`` has extra dims.
    """
    if isinstance(delta, int) and delta == 0:
        return x
    comp = torch.float64 if x.dtype == torch.float64 else torch.float32
    half = inv_freq.numel()
    r = 2 * half
    if not torch.is_tensor(delta):
        delta = torch.tensor(delta, device=x.device)
    angle = delta.to(comp).unsqueeze(-1) * inv_freq.to(device=x.device, dtype=comp)  # [..., l, r/2]
    cos, sin = angle.cos(), angle.sin()
    x1 = x[..., :half].to(comp)
    x2 = x[..., half:r].to(comp)
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    if r < x.shape[-1]:
        tail = x[..., r:].to(comp)
        tail = tail.expand(*rotated.shape[:-1], tail.shape[-1])
        rotated = torch.cat((rotated, tail), dim=-1)
    return rotated.to(x.dtype)


@dataclass(frozen=True)
class RopeInfo:
    """What ropeshift needs to know about a model's rotary embedding."""

    inv_freq: torch.Tensor  # [r/2] fp32, CPU
    rope_type: str
    attention_scaling: float
    head_dim: int

    @property
    def rotary_dim(self) -> int:
        return 2 * self.inv_freq.numel()


def _is_rotary(module) -> bool:
    # per-layer-type rotary modules (Gemma 3) have a dict rope_type and no single inv_freq: found, then refused
    return hasattr(module, "rope_type") and hasattr(module, "config")


def rotary_sites(model) -> list:
    """``[(parent, attribute, module)]`` for every rotary embedding module (has ``rope_type`` and ``config``), so
    a caller can swap the module on its parent."""
    return [(parent, attr, child) for parent in model.modules() for attr, child in parent.named_children()
            if _is_rotary(child)]


def _rotary_modules(model):
    seen, out = set(), []
    for _, _, m in rotary_sites(model):
        if id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


def head_dim(config) -> int:
    """Per-head dim: ``config.head_dim`` when set, else hidden_size / num_attention_heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rotary_dim(config) -> int:
    """Rotated dims per head from the config: head_dim x partial_rotary_factor, rounded down to even."""
    params = getattr(config, "rope_parameters", None) or {}
    return int(head_dim(config) * params.get("partial_rotary_factor", 1.0)) // 2 * 2


def model_info(model, train_length: int | None = None):
    """``ModelInfo`` (model type, L, rope type, head/rotary dims) that methods resolve their defaults against."""
    from .methods.base import ModelInfo

    cfg = model.config
    info = rope_info(model)
    return ModelInfo(
        model_type=getattr(cfg, "model_type", type(model).__name__),
        train_length=train_length if train_length is not None else getattr(cfg, "max_position_embeddings", None),
        rope_type=info.rope_type,
        head_dim=info.head_dim,
        rotary_dim=info.rotary_dim,
    )


def rope_info(model) -> RopeInfo:
    """Find the model's rotary embedding and recompute its ``inv_freq`` in fp32 from the config.

    Raises ValueError for models without RoPE, with per-layer-type RoPE (e.g. Gemma 3), or several
    differing rotary embeddings.
    """
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    model_type = getattr(model.config, "model_type", type(model).__name__)
    modules = _rotary_modules(model)
    if not modules:
        raise ValueError(
            f"model type {model_type!r} has no rotary position embedding (RoPE); ropeshift only changes RoPE positions"
        )
    infos = []
    for mod in modules:
        rope_type = mod.rope_type
        if not isinstance(rope_type, str):
            raise ValueError(
                f"unsupported: {model_type!r} uses a different RoPE per layer type ({sorted(rope_type)}); "
                "ropeshift needs one rotary embedding for all attention layers"
            )
        fn = mod.compute_default_rope_parameters if rope_type == "default" else ROPE_INIT_FUNCTIONS[rope_type]
        inv_freq, scaling = fn(mod.config, device=torch.device("cpu"))
        infos.append((inv_freq.float(), rope_type, float(scaling)))
    first = infos[0]
    for other in infos[1:]:
        if other[0].shape != first[0].shape or not torch.equal(other[0], first[0]):
            raise ValueError(f"unsupported: {model_type!r} has several rotary embeddings with different frequencies")
    return RopeInfo(inv_freq=first[0], rope_type=first[1], attention_scaling=first[2],
                    head_dim=head_dim(modules[0].config))
