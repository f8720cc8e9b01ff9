"""Prompt rendering and token counting with the model's own tokenizer.

A prompt is the user message wrapped in the tokenizer's chat template (when asked and available),
followed by the task's answer prefix (RULER's "assistant prefill"). With a chat template the text
already carries the special tokens, so it is encoded with ``add_special_tokens=False``; without one
the tokenizer adds its usual specials (e.g. BOS). Lengths always count these exact ids.

    text, specials = render(tokenizer, "What is the pass key?", " The pass key is", chat=True)
    ids = encode(tokenizer, text, specials)
"""
from __future__ import annotations

import hashlib
from typing import Callable


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer, user: str, answer_prefix: str, *, chat: bool) -> tuple[str, bool]:
    """Return ``(prompt_text, add_special_tokens)`` for one user message and answer prefix."""
    if chat and has_chat_template(tokenizer):
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        return head + answer_prefix.lstrip(), False
    return user + answer_prefix, True


def encode(tokenizer, text: str, add_special_tokens: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def count_tokens(tokenizer, text: str, add_special_tokens: bool) -> int:
    return len(encode(tokenizer, text, add_special_tokens))


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fit_largest(count: Callable[[int], int], budget: int, lo: int, hi: int, hint: int | None = None) -> int:
    """Largest ``n`` in ``[lo, hi]`` with ``count(n) <= budget`` (``count`` non-decreasing).

    Starts from ``hint`` (the previous sample's answer) and gallops outwards, so re-fitting a sample
    of the same length costs a handful of tokenizations instead of a full binary search.
    Raises ValueError when even ``lo`` does not fit.
    """
    if count(lo) > budget:
        raise ValueError(f"budget of {budget} tokens is too small: the prompt alone needs {count(lo)}")
    good, bad = lo, hi + 1
    if hint is not None and lo < hint <= hi:
        step = max(1, (hi - lo) // 256)
        if count(hint) <= budget:
            good = hint
            probe = hint + step
            while probe <= hi and count(probe) <= budget:
                good, step, probe = probe, step * 2, probe + step * 2
            bad = min(probe, hi + 1)
        else:
            bad = hint
            probe = hint - step
            while probe > lo and count(probe) > budget:
                bad, step, probe = probe, step * 2, probe - step * 2
            good = max(probe, lo)
    while bad - good > 1:
        mid = (good + bad) // 2
        if count(mid) <= budget:
            good = mid
        else:
            bad = mid
    return good
