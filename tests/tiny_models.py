"""Tiny random-init causal LMs (2 layers, GQA) for fast tests; real sizes in trailing comments."""
from __future__ import annotations

import torch

COMMON = dict(
    hidden_size=64,  # 4096
    intermediate_size=128,  # 14336
    num_hidden_layers=2,  # 32
    num_attention_heads=4,  # 32
    num_key_value_heads=2,  # 8
    vocab_size=128,  # 128256
    max_position_embeddings=256,  # 131072
)


def _config(arch: str, **overrides):
    import transformers as tf

    kw = dict(COMMON)
    if arch == "llama":
        cfg = tf.LlamaConfig(**{**kw, **overrides})
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(**{**kw, **overrides})
    elif arch == "qwen3":
        cfg = tf.Qwen3Config(**{**kw, "head_dim": 16, **overrides})
    elif arch == "mistral":
        cfg = tf.MistralConfig(**{**kw, "sliding_window": None, **overrides})
    elif arch == "phi3":  # partial rotary: half of each head is rotated
        rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
        cfg = tf.Phi3Config(**{**kw, "rope_parameters": rope, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **overrides})
    elif arch == "gemma2":
        cfg = tf.Gemma2Config(**{**kw, "head_dim": 16, **overrides})
    elif arch == "gemma3":
        cfg = tf.Gemma3TextConfig(**{**kw, "head_dim": 16, **overrides})
    elif arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=256, bos_token_id=1, eos_token_id=2, **overrides)
    else:
        raise KeyError(arch)
    return cfg


def tiny_model(arch: str = "llama", dtype=torch.float32, **overrides):
    """A seeded tiny model in eval mode with SDPA attention."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1234)
    cfg = _config(arch, **overrides)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa" if arch != "gemma2" else "eager")
    return model.to(dtype).eval()


ARCHS = ("llama", "qwen2", "qwen3", "mistral", "phi3")


def with_cache(model, cache) -> dict:
    """Forward keywords passing a KV cache: ``cache`` in newer transformers, ``past_key_values`` before (5.17).

    An unknown keyword is swallowed by the model's ``**kwargs``, so the wrong name would silently run uncached."""
    import inspect

    name = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    return {name: cache}


def pad_rows(rows, side: str):
    """(ids, mask) [b, width] of 1-D token rows padded on ``side`` ("left" / "right"), on the rows' device."""
    width = max(len(r) for r in rows)
    device = rows[0].device
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl] = r, 1
    return ids, mask
