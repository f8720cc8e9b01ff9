"""Scorers and aggregate statistics. Scores are fractions in [0, 1]; tables show percent.

    string_match_all("... 123 and 456", ["123", "456"])   -> 1.0   (RULER: fraction of refs found)
    string_match_part("... 123", ["123", "999"])          -> 1.0   (RULER QA: any ref found)
    first_int("The pass key is 04521.")                    -> "04521"
    binomial_ci(0.8, 100)                                  -> (0.711, 0.867)   Wilson 95 %
    effective_length({1024: 90, 2048: 70}, 85)             -> (1024, 1024)

Perplexity is a sum divided once, ``exp(sum nll / sum tokens)`` over every scored token of a length
bucket, so long and short windows weigh by their token counts and no mean of means creeps in.
"""
from __future__ import annotations

import math
import re

_CONTROL = re.compile(r"[\x00-\x1f]")
_INT = re.compile(r"\d+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def postprocess(pred: str) -> str:
    """RULER: strip, control characters -> newline, strip again."""
    return _CONTROL.sub("\n", pred.strip()).strip()


def string_match_all(pred: str, refs: list[str]) -> float:
    """Fraction of references that occur (case-insensitively) in the prediction."""
    if not refs:
        raise ValueError("string_match_all needs at least one reference")
    p = postprocess(pred).lower()
    return sum(r.lower() in p for r in refs) / len(refs)


def string_match_part(pred: str, refs: list[str]) -> float:
    """1.0 if any reference occurs (case-insensitively) in the prediction."""
    p = postprocess(pred).lower()
    return float(any(r.lower() in p for r in refs))


def first_int(pred: str) -> str | None:
    """The first run of digits in the prediction (InfiniteBench ``first_int_match``)."""
    m = _INT.search(pred)
    return m.group(0) if m else None


def first_number(pred: str) -> float | None:
    """The first int or decimal number (InfiniteBench math_find)."""
    m = _NUMBER.search(pred)
    return float(m.group(0)) if m else None


def kv_match(pred: str, value: str) -> float:
    """InfiniteBench kv_retrieval: the value is one of the prediction's words after punctuation -> space."""
    words = re.sub(r"[\n:\"'.,?!{}]", " ", pred).split()
    return float(value in words)


def binomial_ci(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` of ``n`` trials (95 % by default)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """``exp(sum nll / sum tokens)``; the caller sums over every window of a length bucket first."""
    if n_tokens <= 0:
        raise ValueError("perplexity over zero tokens")
    return math.exp(nll_sum / n_tokens)


def effective_length(scores: dict[int, float], threshold: float) -> tuple[int | None, int | None]:
    """RULER's effective length: ``(prefix, any)``.

    ``prefix`` is the largest length L such that every tested length <= L scores above ``threshold``
    (the conservative rule); ``any`` is the largest length scoring above it. ``None`` when none passes.
    """
    prefix = None
    for length in sorted(scores):
        if scores[length] > threshold:
            prefix = length
        else:
            break
    passing = [length for length, s in scores.items() if s > threshold]
    return prefix, (max(passing) if passing else None)
