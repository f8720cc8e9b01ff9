"""Compile the evaluation's layers before the first batch, while a rank waits for rank 0's prompts.

    seconds = warm_up(model, tokenizer, "generation")   # one small batch of that kind ("likelihood" too), dropped

Why: ``dense_compile`` compiles lazily, at the first forward of each path (the prompt forward with a static cache
and the one-token decode step for generation; the cache-less forward for likelihood). In the H100 study of
2026-12-07 ranks 1 and 2 waited 10-13 s for rank 0's prompts with their models loaded and the GPU idle, then
compiled inside their first batch (10.3 s of a 21-s first batch on rank 1; the last rank ran eager batches first
and compiled later: ``dense_compile.eager_lead``). Here a rank that waits spends the wait compiling::

    rank 0        [tokenizer][model ....][wait for its prompt workers][first batch: compile ...][batches ...]
    rank 1, 2     [model ........][warm up: compile ..][barrier]  [batches (compiled) ......................]

(since the twenty-sixth session ranks 1, 2 build their model without weights, warm up on it, and copy the
weights in after: ``ropeshift/skeleton.py``, ``launch.run_rank``; since the twenty-eighth rank 0 does not wait
for them: it sends its plan and runs eager batches until they have started, ``dense_compile.lead_others``.)

How: one left-padded batch of ``rows`` x ``tokens`` through the same calls as a real batch: ``generation.generate``
(on CUDA the prompt forward into a static cache, the eager decode steps and one captured step), or the cache-less
forward that scores a document (``tasks.perplexity``); the method active is the one the caller activated. The
layers are compiled with dynamic shapes, so the graphs serve every later batch provided the dummy sizes specialise
nothing: dynamo gives sizes equal to each other one symbol ("duck sizing") and sizes 0
and 1 their own graphs, so the batch's sizes (rows, prompt tokens, cache slots) are chosen distinct from each
other and from every integer of the model's config (a batch of 2 rows in a model with 2 key-value heads would
bind the two, and the next real batch would compile again). Off with ``ROPESHIFT_WARM_UP=0``.

Measured (H100 study of 2026-12-07, benchmarks/RESULTS.md): with it the GPU was 84-100 % busy from 50 s on, where
it had been 30-65 % busy until 90 s, and the study took 332 s instead of 353 (with other changes). Not every compile
left the loop: the rank that warmed up likelihood still compiled 4.2 s in its first likelihood batch, which the
CPU trace does not show (``benchmarks/check_warm_up.py`` names the failed guard on a GPU).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .records import GENERATION, KINDS, LIKELIHOOD

ENV = "ROPESHIFT_WARM_UP"  # "0": no warm-up (ranks compile in their first batch)
DECODE_STEPS = 4            # max_new of the generation batch: the eager warm-up steps, one capture, one replay


def enabled() -> bool:
    """``ROPESHIFT_WARM_UP`` is not "0"."""
    return os.environ.get(ENV, "1") != "0"


def config_ints(config) -> set[int]:
    """Every integer of ``config`` (its ``to_dict``, nested dicts and lists included)."""
    out: set[int] = set()

    def walk(v):
        if isinstance(v, bool):
            return
        if isinstance(v, int):
            out.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(config.to_dict())
    return out


def batch_sizes(config) -> tuple[int, int, int]:
    """``(rows, tokens, max_new)`` of the warm-up batch: rows >= 5, tokens >= 37, max_new >= ``DECODE_STEPS``,
    such that rows, tokens, max_new and tokens + max_new (the cache's slots) differ from each other and from every
    integer of ``config``: sizes dynamo will not bind to one another or to the model's dimensions."""
    taken = config_ints(config) | {0, 1}

    def free(n: int) -> int:
        while n in taken:
            n += 1
        taken.add(n)
        return n

    rows, tokens = free(5), free(37)
    max_new = DECODE_STEPS
    while max_new in taken or tokens + max_new in taken:
        max_new += 1
    taken.update((max_new, tokens + max_new))
    return rows, tokens, max_new


@dataclass(frozen=True)
class SpecialIds:
    """All that ``generation.generate`` asks of a tokenizer when no row has a stop predicate and the texts are
    dropped: the pad and EOS ids, and ``decode`` (here an empty text). The warm-up of a model whose tokenizer has
    not come yet (``launch.run_rank``: a rank > 0 gets rank 0's with its weights) takes them from the model's
    generation config; values do not enter the compiled graphs (the padding is the attention mask's)."""

    pad_token_id: int | None
    eos_token_id: int | None

    @classmethod
    def of(cls, model) -> "SpecialIds":
        gen = model.generation_config
        eos = gen.eos_token_id[0] if isinstance(gen.eos_token_id, (list, tuple)) else gen.eos_token_id
        return cls(gen.pad_token_id if gen.pad_token_id is not None else eos, eos)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return ""


def warm_up(model, tokenizer, kind: str, decode: str = "auto", sizes: tuple[int, int, int] | None = None) -> float:
    """Run one small batch of ``kind`` (``records.KINDS``) through the model as the runner's batches do, so that
    its compiled layers compile now; returns the seconds it took. Generation goes through
    ``generation.generate`` (``decode`` as there: on CUDA the static cache and a captured step), ``max_new``
    tokens a row, row i of ``tokens - i`` prompt tokens (left padding to ``tokens``); likelihood through the
    cache-less forward that ``tasks.perplexity`` scores with. Outputs are dropped. ``tokenizer`` None: the
    model's own ids (``SpecialIds``). ``sizes``: ``(rows, tokens, max_new)`` instead of ``batch_sizes``' (for
    ``kernel_warm``, which runs the attention at a run's lengths)."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    t0 = time.perf_counter()
    rows, tokens, max_new = sizes or batch_sizes(model.config)
    device = next(model.parameters()).device
    span = model.config.vocab_size - 2
    ids = [[(i * 7919 + j * 104729 + 11) % span + 1 for j in range(tokens)] for i in range(rows)]
    if kind == GENERATION:
        from .generation import generate

        generate(model, tokenizer or SpecialIds.of(model), [r[i:] for i, r in enumerate(ids)], max_new,
                 decode=decode)  # left padding
    else:
        with torch.inference_mode():
            model(input_ids=torch.tensor(ids, device=device), logits_to_keep=tokens // 2, use_cache=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def for_rank(cfg, model, tokenizer, ranks) -> None:
    """``warm_up`` for the kind this rank of a run (``runner.RunConfig``, ``parallel.Ranks``) will most likely
    start with (``batching.claim_queues``: the last rank takes likelihood first when the run has likelihood tasks,
    the others generation), under the run's second method (the first, the rope row, may run on the model's own
    attention: ``plain_attention="model"``)."""
    from .generation import activate, deactivate
    from .tasks import resolve_task

    likelihood = any(resolve_task(t).kind == LIKELIHOOD for t in cfg.tasks)
    kind = LIKELIHOOD if likelihood and ranks.rank == ranks.world - 1 else GENERATION
    activate(model, cfg.methods[min(1, len(cfg.methods) - 1)], cfg.impl, cfg.plain_attention)
    try:
        warm_up(model, tokenizer, kind)
    finally:
        deactivate(model)
