"""Batched greedy generation with left padding, and method activation on a loaded model.

    texts = generate(model, tokenizer, [ids_a, ids_b], max_new_tokens=32)
    info = activate(model, MethodSpec("string", {"shift": 2048}))   # -> describe(model)

Rows are left-padded with the tokenizer's pad id and carry an attention mask, so every method
(which reads positions from ``position_ids`` / the mask) sees each row exactly as it would alone.
"""
from __future__ import annotations

from .options import MethodSpec


def left_pad(rows: list[list[int]], pad_id: int):
    """``(input_ids, attention_mask)`` LongTensors ``[b, max_len]`` with padding on the left."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def generate(model, tokenizer, rows: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy continuation of each row (decoded without special tokens)."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = left_pad(rows, pad_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad_id,
        )
    new = out[:, ids.shape[1]:].cpu()
    return [tokenizer.decode(r, skip_special_tokens=True) for r in new]


def activate(model, spec: MethodSpec, impl: str | None = None) -> dict:
    """Apply ``spec`` to ``model`` (``rope`` = unpatched) and return ``describe(model)``."""
    from ropeshift.api import apply, describe
    from ropeshift.remaps.registry import METHODS

    from .suites import parts, resolve_relative

    steps = parts(spec)  # "a+b": RoPE-scaling parts first, then the attention method
    steps.sort(key=lambda p: p[0] not in METHODS or getattr(METHODS[p[0]], "kind", "attention") != "rope_scaling")
    train_length = getattr(model.config, "max_position_embeddings", None)
    for name, params in steps:
        kwargs = resolve_relative(params, train_length)
        if impl is not None and name != "rope":
            kwargs["impl"] = impl
        apply(model, name, **kwargs)
    info = describe(model) or {}
    return {"method": info.get("method", spec.name), "params": info.get("params", spec.params),
            "impl": info.get("impl")}


def deactivate(model) -> None:
    """Restore the unpatched model (no-op when nothing is applied)."""
    from ropeshift.api import remove

    remove(model)
