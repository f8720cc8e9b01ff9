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


def encode_many(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    """``encode`` of each text, in one tokenizer call (a fast tokenizer encodes a list in parallel)."""
    return tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]


def count_tokens(tokenizer, text: str, add_special_tokens: bool) -> int:
    return len(encode(tokenizer, text, add_special_tokens))


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def fit_largest(count: Callable[[int], int], budget: int, lo: int, hi: int, hint: int | None = None) -> int:
    """Largest ``n`` in ``[lo, hi]`` with ``count(n) <= budget`` (``count`` non-decreasing).

    A prompt's token count grows nearly linearly with its filler (words, lines, pairs), so the search probes
    where the line through two counted points meets the budget: the bracket's ends once a count above the
    budget is known (regula falsi), else the last two counts within it, probing one past the crossing to close
    the bracket. A line probe that fits is followed by its next ``n`` (the boundary, when the line was right);
    two probes in a row (that check not counted) that do not halve the bracket are followed by a bisection. From ``hint`` (the
    previous sample's answer) a search is usually 3 counts (``lo``, a short prompt; the hint; its next n) where
    the galloping search before took ~6: ruler-lite's 2,250 generation prompts in 8,320 tokenisations instead of
    13,136, 1.9x faster, the same prompts (``benchmarks/bench_prompts.py``; making them held every core of the
    H100 host for 8-11 s of the study's start-up, 2026-12-06). The answer is the one boundary of a
    non-decreasing ``count``, whatever the search.
    Raises ValueError when even ``lo`` does not fit.
    """
    c_lo = count(lo)
    if c_lo > budget:
        raise ValueError(f"budget of {budget} tokens is too small: the prompt alone needs {c_lo}")
    good, c_good, prev = lo, c_lo, None   # count(good) <= budget; prev: the good point before it (n, count)
    bad, c_bad = hi + 1, None             # count(bad) > budget once counted (hi + 1: an open end)
    probe = hint if hint is not None and lo < hint <= hi else None
    confirm, stalls, step = False, 0, 0   # after a fitting line probe; probes that did not halve; open step
    while bad - good > 1:
        opened = False
        if probe is None:
            if confirm:
                probe = good + 1
            elif c_bad is None:  # open end: one past the line's crossing (first: bisect), at least twice the last
                if prev is None or c_good <= prev[1]:
                    probe = good + max(1, (bad - good) // 2)
                else:
                    cross = good + (budget - c_good) * (good - prev[0]) // (c_good - prev[1])
                    probe, opened = max(cross + 1, good + 2 * step), True
            elif stalls >= 2:
                probe, stalls = (good + bad) // 2, 0
            else:
                probe = good + (budget - c_good) * (bad - good) // (c_bad - c_good)  # the line's last n in budget
        probe = min(max(probe, good + 1), bad - 1)
        width, checked = bad - good, confirm
        c = count(probe)
        if c <= budget:
            step = probe - good if opened else 0
            prev, good, c_good = (good, c_good), probe, c
        else:
            bad, c_bad = probe, c
        stalls = stalls + 1 if not checked and 2 * (bad - good) > width else 0
        confirm = not checked and c <= budget and c_bad is not None
        probe = None
    return good
