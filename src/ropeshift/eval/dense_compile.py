"""Compile a model's dense blocks (its decoder layers' norms and MLPs) for evaluation, leaving attention eager.

In an eager forward of a small model most of the time goes to elementwise kernels, not to GEMMs or attention:
SmolLM2-135M, 48 x 8k prompt tokens on the H200 spent 414 of 781 ms in norms, activations and copies
(benchmarks/RESULTS.md, ninth session). ``torch.compile`` fuses an RMSNorm's six passes into one and SiLU x up
into one. Compiling the whole model would also trace ropeshift's attention function, whose eager path measures
the mask once per forward and picks kernels by it (under tracing it cannot), and would recompile for every
method (its state is guarded); so only the blocks beside attention are compiled::

    decoder layer (a module with an attention child)
      input_layernorm     -> compiled          self_attn (attention)  -> eager: q/k/v, RoPE, ropeshift's kernels
      post_attention_...  -> compiled          mlp                    -> compiled
      (residual adds: the layer's own forward, eager)

An attention module is one transformers calls the attention interface from: it has ``layer_idx``, ``scaling``
and ``is_causal``. Each block is compiled in place with ``nn.Module.compile`` (no class or forward is touched),
with dynamic shapes, so one compile serves every batch shape and the decode step. Numerics: the fused norms
round like the eager ones up to the order of a mean, so bf16 texts can differ as between two batch sizes.
"""
from __future__ import annotations

COMPILED = "_ropeshift_compiled"  # set on each compiled block, so a second call does nothing


def is_attention(module) -> bool:
    """A module that calls transformers' attention interface (Llama, Qwen2, Mistral, ... attention classes)."""
    return all(hasattr(module, a) for a in ("layer_idx", "scaling", "is_causal"))


def dense_blocks(model) -> list[tuple[str, object]]:
    """``[(qualified name, module)]``: every child of a decoder layer (a module with an attention child) that
    holds no attention module and has parameters: the layers' norms and MLPs."""
    out = []
    for name, parent in model.named_modules():
        children = list(parent.named_children())
        if not any(is_attention(c) for _, c in children):
            continue
        for attr, child in children:
            if any(is_attention(m) for m in child.modules()) or not any(True for _ in child.parameters()):
                continue
            out.append((f"{name}.{attr}" if name else attr, child))
    return out


def compile_dense_blocks(model, backend: str = "inductor") -> int:
    """Compile ``dense_blocks(model)`` in place (``nn.Module.compile``, dynamic shapes); returns how many were
    newly compiled (0 when already done or the model has none). ``backend="eager"``: dynamo's trace only (tests)."""
    n = 0
    for _, block in dense_blocks(model):
        if getattr(block, COMPILED, False):
            continue
        block.compile(backend=backend, dynamic=True)
        setattr(block, COMPILED, True)
        n += 1
    return n


def wanted(setting: str, model) -> bool:
    """``RunConfig.compile_blocks``: "auto" compiles on CUDA (on a CPU the eager forward is GEMM-bound and a
    compile costs more than it saves), "on" everywhere, "off" never."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile_blocks must be auto, on or off, got {setting!r}")
    if setting == "off":
        return False
    if setting == "on":
        return True
    dev = next(iter(model.parameters())).device
    return dev.type == "cuda"
