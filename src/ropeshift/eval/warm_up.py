"""Compile before the evaluation loop what its first batches would compile inside it, while rank 0 still builds
the prompts (``runner.run``; CUDA with compiled layers only).

Measured on the H200 (issue 10, tenth session, batch log): each rank's first batch took 17-19 s (the decoder
layers' compile for the prefill and for the one-token decode step, then the step's capture), its first
perplexity batch 7-16 s (the layers again, without a cache), and its first batch of each re-rotating method 2-4 s
(that method's Triton kernels), all inside the loop, with every rank compiling the same code at the same time.
Here each rank runs, for every row of the run, one tiny generation (two left-padded rows as long as the run's
longest length, three new tokens: prefill, warm-up steps, capture, replay) and one cache-less forward with
several logits kept (perplexity's call)::

    rank 0   [ prompts (worker processes) ...................... ]
             [ model ] [ warm-up: layers compiled, kernels built ] -> barrier -> loop
    rank 1   [ model ] [ warm-up ...                             ] -> barrier -> loop

The two rows are as long as the longest length so that every method's own kernels run (a method that is exactly
RoPE below its threshold, e.g. STRING under S = L/3, would otherwise take the plain path). The compiled graphs
and kernels land in the process's own caches and in the on-disk Inductor and Triton caches, which the other ranks
may then read (expected, not yet measured). Work added: ~2 x length tokens of prefill and three decode steps per
row; the compile time it moves out of the loop is the point, and is what a GPU run must show.

Off by default until measured on the GPU (written in the eleventh session, when no device could be had):
``ROPESHIFT_WARM_UP=1`` turns it on. Whether it pays depends on the compiled graphs it leaves being the ones the
loop's batches reuse (dynamic shapes: no recompile for other batch sizes), which only a GPU run shows.
"""
from __future__ import annotations

import os
import time

WARM_ENV = "ROPESHIFT_WARM_UP"
NEW_TOKENS = 3  # the prefill's token, one eager warm-up step and a replay of the captured step (graph_decode)
KEEP = 17  # logits kept by the cache-less forward (perplexity keeps trg + 1 > 1 of them)


def enabled(model, compile_mode: str | None) -> bool:
    """Warm up when asked (``ROPESHIFT_WARM_UP=1``; off by default, module docstring) where it can pay: CUDA and
    compiled layers."""
    if os.environ.get(WARM_ENV, "0") != "1" or not compile_mode:
        return False
    return next(model.parameters()).device.type == "cuda"


def warm_up(model, tokenizer, methods, length: int, impl: str | None = None, plain_attention: str = "model",
            start: int = 0) -> dict:
    """Run every method of ``methods`` once on two dummy rows of ``length`` tokens (see the module docstring),
    beginning with ``methods[start]`` (rank r of w starts at r/w of the list, so the ranks build different
    kernels first and find the others' in the on-disk caches); returns ``{"warm_up_s": seconds, "methods": n}``.
    The model is left without a method."""
    import torch

    from .generation import activate, deactivate, generate

    t0 = time.perf_counter()
    vocab = getattr(tokenizer, "vocab_size", None) or len(tokenizer)
    base = torch.arange(length, dtype=torch.long) % max(2, min(vocab, 1000) - 1) + 1  # ordinary token ids
    rows = [base[: length - length // 8], base]  # unequal: left padding, as in real batches
    ids = torch.stack([base, base.roll(1)]).to(next(model.parameters()).device)
    n, methods = 0, list(methods)
    start %= max(1, len(methods))
    for spec in methods[start:] + methods[:start]:
        activate(model, spec, impl, plain_attention)
        try:
            generate(model, tokenizer, rows, NEW_TOKENS)
            with torch.inference_mode():
                model(input_ids=ids, logits_to_keep=KEEP, use_cache=False)
            n += 1
        finally:
            deactivate(model)
    if ids.is_cuda:
        torch.cuda.synchronize()
    return {"warm_up_s": round(time.perf_counter() - t0, 3), "methods": n}
