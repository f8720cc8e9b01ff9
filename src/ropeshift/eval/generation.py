"""Batched greedy generation with left padding, per-row stopping, and method activation on a loaded model.

    ids = prompt_ids(tokenizer, sample.prompt, sample.add_special_tokens)      # tokenised once, cached
    texts = generate(model, tokenizer, [ids_a, ids_b], max_new_tokens=32,
                     stop=[answer_end(task, a), answer_end(task, b)])            # rows stop at their answer's end
    info = activate(model, MethodSpec("string", {"shift": 2048}))   # -> describe(model)

Rows are left-padded with the tokenizer's pad id and carry an attention mask, so every method
(which reads positions from ``position_ids`` / the mask) sees each row exactly as it would alone.
A row stops at EOS, at ``max_new_tokens``, or when its ``stop`` predicate says its answer is over; the batch
stops when every row has, and each row's text is cut where it stopped (greedy decoding makes the cut text a
prefix of what the row would have generated without stopping). On CUDA, a model on ropeshift's attention
decodes with one captured CUDA graph per step (``graph_decode``; ROPESHIFT_CUDA_GRAPHS=0: ``model.generate``),
optionally dropping a batch's ended rows once at most half of them are open (``row_compaction``;
ROPESHIFT_COMPACT_ROWS=1: on; off by default, measured no faster on the H200).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from functools import lru_cache
from typing import Callable, Sequence

from .options import MethodSpec

Stop = Callable[[str], bool]  # new text of one row so far -> its answer is over


_IDS: "OrderedDict[tuple, object]" = OrderedDict()   # (tokenizer, prompt, special) -> ids; most recent last
IDS_CACHED = 2048   # prompts (~64 MB of 8k-token prompts as int32)


def prompt_ids(tokenizer, text: str, add_special_tokens: bool):
    """The prompt's token ids as an int32 tensor ``[n]``, tokenised once per (tokenizer, prompt) and cached,
    so every method of a run reuses them (the ``IDS_CACHED`` most recent prompts)."""
    return batch_prompt_ids(tokenizer, [text], [add_special_tokens])[0]


def batch_prompt_ids(tokenizer, texts: Sequence[str], specials: Sequence[bool]) -> list:
    """``prompt_ids`` of many prompts: the ones not cached are tokenised in one call per ``add_special_tokens``
    value (``prompts.encode_many``: a fast tokenizer encodes a list in parallel; the same ids as one by one).
    With several ranks each rank tokenises the prompts of the items it claims (``batching.claim_queues``): one at
    a time they took 57 process-s of the H100 study of 2026-12-07, 4x the 2026-12-06 study's, where one rank ran
    all of a prompt's methods."""
    import torch

    from .prompts import encode_many

    keys = [(tokenizer, t, bool(a)) for t, a in zip(texts, specials)]   # the tokenizer itself, as lru_cache kept
    for special in (False, True):
        todo = list(dict.fromkeys(k for k in keys if k[2] == special and k not in _IDS))
        if todo:
            ids = encode_many(tokenizer, [k[1] for k in todo], special)
            _IDS.update((k, torch.tensor(i, dtype=torch.int32)) for k, i in zip(todo, ids))
    out = []
    for k in keys:
        _IDS.move_to_end(k)
        out.append(_IDS[k])
    while len(_IDS) > max(IDS_CACHED, len(set(keys))):
        _IDS.popitem(last=False)
    return out


class AnswerEnd:
    """Stop predicate for one sample (``answer_end``); ``needs_newline``: it can hold only for a text that holds a
    newline, so the generation loop checks it only on rows that have produced one (no per-step decode of every
    row)."""

    needs_newline = True

    def __init__(self, references):
        self.refs = [r.lower() for r in references]

    def __call__(self, text: str) -> bool:
        _, newline, _ = text.lstrip().partition("\n")
        if not newline:
            return False
        low = text.lower()
        return len(self.refs) <= 1 or all(r in low for r in self.refs)


def answer_end(task, sample) -> Stop:
    """Stop predicate for one sample: the answer is over once a newline closes a line with content and either
    the sample asks for one item (one reference) or every reference already occurs in the text.

    With several references the stop changes neither the score nor the per-reference details (niah4's hits and
    recall): the multi-reference scorers here count substrings, and every one is already found. With one
    reference the answer line is taken as the answer (a model that writes the item on a later line after a line
    of other text loses it); ``benchmarks/bench_eval.py --compare-full`` counts how often that changes a score.
    ``task`` is accepted so that a task may later define its own end; this rule reads only the sample.
    """
    return AnswerEnd(sample.references)


@lru_cache(maxsize=8)
def newline_token_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the tokens whose text holds a newline (one decode per vocabulary entry, cached per tokenizer).

    A newline is one byte (0x0A) that no multi-byte character contains, so a decoded text holds one exactly
    when one of its tokens' own texts does."""
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=True)
    return tuple(i for i, t in enumerate(texts) if "\n" in t)


def left_pad(rows: Sequence, pad_id: int):
    """``(input_ids, attention_mask)`` LongTensors ``[b, max_len]`` with padding on the left.

    ``rows``: token id lists or 1-D integer tensors."""
    import torch

    rows = [torch.as_tensor(r, dtype=torch.long) for r in rows]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def _row_stopper(tokenizer, prompt_len: int, stops: Sequence[Stop | None], eos_ids: set[int],
                 max_new: Sequence[int]):
    """A transformers ``StoppingCriteria`` that marks rows finished; ``.ends[i]`` = new tokens kept for row i.

    A row ends at EOS, at its own ``max_new[i]`` tokens, or when its predicate holds. Per step the newest token
    of every row goes to the host once (one small copy; generate syncs every step anyway); a row's text is
    decoded only when its predicate must be asked: every step for plain predicates, and for ``needs_newline``
    ones (``AnswerEnd``) only once the row has produced a newline token."""
    import torch
    from transformers import StoppingCriteria

    lazy = [getattr(s, "needs_newline", False) for s in stops]
    newline = set(newline_token_ids(tokenizer)) if any(lazy) else set()

    class RowStop(StoppingCriteria):
        def __init__(self):
            self.ends: list[int | None] = [None] * len(stops)
            self.armed = [not z for z in lazy]  # rows whose predicate is asked this step

        def __call__(self, input_ids, scores, **kwargs):
            n = input_ids.shape[1] - prompt_len
            last = input_ids[:, -1].tolist()
            ask = []
            for i, e in enumerate(self.ends):
                if e is not None:
                    continue
                if last[i] in eos_ids or n >= max_new[i]:
                    self.ends[i] = n
                elif stops[i] is not None:
                    self.armed[i] = self.armed[i] or last[i] in newline
                    if self.armed[i]:
                        ask.append(i)
            if ask:
                texts = tokenizer.batch_decode(input_ids[ask, prompt_len:].tolist(), skip_special_tokens=True)
                for i, text in zip(ask, texts):
                    if stops[i](text):
                        self.ends[i] = n
            return torch.tensor([e is not None for e in self.ends], device=input_ids.device)

    return RowStop()


DECODES = ("auto", "generate", "loop")
# steps between stop checks of the CUDA-graph loop (one device-to-host copy each; up to 3 steps past the end)
STOP_CHECK_EVERY = 4


def generate(model, tokenizer, rows: Sequence, max_new_tokens: int | Sequence[int],
             stop: Sequence[Stop | None] | None = None, *, decode: str = "auto",
             stats: dict | None = None) -> list[str]:
    """Greedy continuation of each row (decoded without special tokens).

    Args:
        rows: prompt token ids per row (lists or 1-D tensors).
        max_new_tokens: one budget for every row, or one per row (rows of several tasks in one batch): the
            batch runs to the largest, and each row's text is cut at its own.
        stop: one predicate per row (or None): given the row's new text so far, True ends that row. Without it
            rows end at EOS or their ``max_new_tokens`` only.
        decode: "auto": on CUDA the static-cache loop with one captured CUDA graph per step
            (``graph_decode``) when it serves the model (ropeshift's attention on the Triton kernels, and
            ROPESHIFT_CUDA_GRAPHS is not 0), else ``model.generate`` (static cache on CUDA); "generate":
            always ``model.generate``; "loop": always the static-cache loop (graphs where served, else eager;
            the CPU tests compare it with ``model.generate``). Texts are the same on every path.
        stats: a dict that gets the decode path (``decode``), ``static_generate``'s phase seconds and steps on
            the static-cache loop, ``generate_s`` on ``model.generate``.
    """
    import torch

    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = left_pad(rows, pad_id)
    device = next(model.parameters()).device
    budgets = [max_new_tokens] * len(rows) if isinstance(max_new_tokens, int) else max_new_tokens
    per_row = [int(m) for m in budgets]
    if len(per_row) != len(rows):
        raise ValueError(f"max_new_tokens needs one budget per row: {len(per_row)} for {len(rows)} rows")
    if stop is not None and len(stop) != len(rows):
        raise ValueError(f"stop needs one predicate per row: {len(stop)} for {len(rows)} rows")
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    own_stop = stop is not None or len(set(per_row)) > 1
    if own_stop and tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    stops = list(stop or [None] * len(rows))
    reason = None
    if decode != "generate":
        from .graph_decode import graph_decode_reason, static_generate

        reason = graph_decode_reason(model)
    if decode == "loop" or (decode == "auto" and reason is None):
        graphs = reason is None
        stopper = _row_stopper(tokenizer, 0, stops, eos_ids, per_row)  # generate's own EOS rule without `stop`
        if stats is not None:
            stats["decode"] = "graphs" if graphs else "loop"
        from . import shared_prefill

        prefix = shared_prefill.plan(rows) if shared_prefill.enabled() else None   # the host's ids, no copy back
        new = static_generate(model, ids.to(device), mask.to(device), stopper, max_new=max(per_row), graphs=graphs,
                              check_every=STOP_CHECK_EVERY if graphs else 1, stats=stats, prefix=prefix)
        return [tokenizer.decode(r[:e if e is not None else m], skip_special_tokens=True)
                for r, e, m in zip(new, stopper.ends, per_row)]
    extra = {}
    stopper = None
    if own_stop:
        stopper = _row_stopper(tokenizer, ids.shape[1], stops, eos_ids, per_row)
        extra["stopping_criteria"] = [stopper]
    if device.type == "cuda":
        # preallocated KV cache: a dynamic cache concatenates every layer's whole cache per step (a third of the
        # GPU time of an 8k batch's decode, measured: benchmarks/RESULTS.md); not compiled (kernels are eager)
        extra.update(cache_implementation="static", disable_compile=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max(per_row),
            do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad_id, **extra,
        )
    new = out[:, ids.shape[1]:].cpu()
    if stats is not None:
        stats.update(decode="generate", generate_s=time.perf_counter() - t0, steps=new.shape[1])
    ends = stopper.ends if stopper is not None else [None] * len(rows)
    return [tokenizer.decode(r[:e if e is not None else m], skip_special_tokens=True)
            for r, e, m in zip(new, ends, per_row)]


def activate(model, spec: MethodSpec, impl: str | None = None, plain_attention: str = "model") -> dict:
    """Apply ``spec`` to ``model`` (``rope`` = unpatched) and return ``describe(model)``.

    ``plain_attention="ropeshift"``: a spec without an attention method (rope, RoPE-scaling rows) also gets
    ``plain`` (rel = d, the same maths) so its attention runs on ropeshift's path like every other row; the
    returned info keeps the spec's method and says ``impl="plain:<impl>"``."""
    from ropeshift.api import apply, describe
    from ropeshift.methods.registry import METHODS, is_rope_scaling

    from .suites import parts, resolve_relative

    def scaling(name):
        return name in METHODS and is_rope_scaling(name)

    steps = parts(spec)  # "a+b": RoPE-scaling parts first, then the attention method
    steps.sort(key=lambda p: not scaling(p[0]))
    plain = plain_attention == "ropeshift" and all(n == "rope" or scaling(n) for n, _ in steps)
    if plain:
        steps = [s for s in steps if s[0] != "rope"] + [("plain", {})]
    train_length = getattr(model.config, "max_position_embeddings", None)
    for name, params in steps:
        kwargs = resolve_relative(params, train_length)
        if impl is not None and name != "rope":
            kwargs["impl"] = impl
        apply(model, name, **kwargs)
    info = describe(model) or {}
    if plain:
        rope = info.get("rope") or {}
        return {"method": spec.name, "params": rope.get("params", spec.params), "impl": f"plain:{info.get('impl')}"}
    return {"method": info.get("method", spec.name), "params": info.get("params", spec.params),
            "impl": info.get("impl")}


def deactivate(model) -> None:
    """Restore the unpatched model (no-op when nothing is applied)."""
    from ropeshift.api import remove

    remove(model)
