"""Compile and capture before the first batch, while the prompts are still being made (issue 10's start-up).

    seconds = warm_up(model, tokenizer, cfg.methods[0], cfg, likelihood=True)   # CUDA only; 0.0 when skipped

Why: a rank's first batch paid every one-off cost of the evaluation loop at once: torch.compile of the decoder
layers (``dense_compile``: one dynamic-shape graph for prompts, one for the one-token decode step), the Triton
kernels' JIT, the first CUDA-graph capture, and (at its first likelihood batch) the no-mask forward's graphs.
On the H100 (2026-12-05, 3 ranks) that first batch took 25.5 s, after rank 0 had already waited ~9 s for its
prompt workers and ranks 1 and 2 ~10 s at the prompts' barrier, so the GPU did nothing useful for ~35 s::

    rank 0   tokenizer | model | wait for prompt workers ...... | first batch (compile, capture) ...... | loop
    rank 1   model ........... | wait at the prompts' barrier . | first batch (compile, capture) ...... | loop
    now:     tokenizer | model | warm-up (compile, capture) .... | first batch | loop   (the wait is used)

The warm-up runs the loop's own calls on two short random rows (64 and 48 tokens, left-padded) with the run's
first method active: ``generation.generate`` (prefill, graph warm-up steps, capture, replays) and, when the run
has likelihood tasks, the forward ``Perplexity.evaluate`` makes (no mask, every position's logits, no cache).
Nothing it computes is kept: the method is removed after it, and the compiled graphs (dynamic shapes) and the
kernels' caches are what the loop then finds. Off with ROPESHIFT_WARM_UP=0; skipped on CPU (no compile there).
"""
from __future__ import annotations

import os
import time

WARM_ENV = "ROPESHIFT_WARM_UP"  # "0": no warm-up (the first batch compiles, as before)
ROWS = (64, 48)                  # prompt tokens of the warm-up's two rows (the second left-padded)


def wanted(model) -> bool:
    """Whether the runner warms ``model`` up: on CUDA, unless ROPESHIFT_WARM_UP=0."""
    return os.environ.get(WARM_ENV, "1") != "0" and next(model.parameters()).device.type == "cuda"


def _rows(model, tokenizer) -> list[list[int]]:
    """Random token ids (seeded, away from special ids) for ``ROWS``."""
    import torch

    vocab = model.get_output_embeddings().weight.shape[0]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    g = torch.Generator().manual_seed(0)
    out = []
    for n in ROWS:
        ids = torch.randint(min(1000, vocab // 2), vocab, (n,), generator=g).tolist()
        out.append([t if t not in special else min(1000, vocab // 2) for t in ids])
    return out


def warm_up(model, tokenizer, method, cfg, *, likelihood: bool, generation: bool = True,
            decode: str = "auto") -> float:
    """Run the loop's calls once on ``ROWS`` with ``method`` (a ``MethodSpec``) applied as the run applies it
    (``cfg.impl``, ``cfg.plain_attention``); returns the seconds spent. ``generation``: a ``generate`` call that
    decodes past ``graph_decode.WARMUP_STEPS`` (so a step is captured and replayed); ``likelihood``: one
    no-mask forward over every position. ``decode``: ``generate``'s (tests use "loop" on a CPU)."""
    import torch

    from .generation import activate, deactivate, generate
    from .graph_decode import WARMUP_STEPS

    t0 = time.perf_counter()
    rows = _rows(model, tokenizer)
    activate(model, method, cfg.impl, cfg.plain_attention)
    try:
        if generation:
            generate(model, tokenizer, rows, WARMUP_STEPS + 4, decode=decode)
        if likelihood:
            device = next(model.parameters()).device
            ids = torch.tensor([r[:min(ROWS)] for r in rows], device=device)
            with torch.inference_mode():
                model(input_ids=ids, logits_to_keep=ids.shape[1], use_cache=False)
        if next(model.parameters()).device.type == "cuda":
            torch.cuda.synchronize()
    finally:
        deactivate(model)
    return time.perf_counter() - t0
