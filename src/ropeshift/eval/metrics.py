"""Scorers and aggregate statistics. Scores are fractions in [0, 1]; tables show percent.

    string_match_all("... 123 and 456", ["123", "456"])   -> 1.0   (RULER: fraction of refs found)
    string_match_part("... 123", ["123", "999"])          -> 1.0   (RULER QA: any ref found)
    first_int("The pass key is 04521.")                    -> "04521"
    binomial_ci(0.8, 100)                                  -> (0.711, 0.867)   Wilson 95 %
    effective_length({1024: 90, 2048: 70}, 85)             -> (1024, 1024)
    paired_difference([([1, 0, 1], [1, 1, 1])])             -> PairedDiff(mean=0.333, lo=-1.10, hi=1.77, n=3)

Perplexity is a sum divided once, ``exp(sum nll / sum tokens)`` over every scored token of a length
bucket, so long and short windows weigh by their token counts and no mean of means creeps in.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

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


# Two-sided 95 % quantiles of Student's t (t_0.975) by degrees of freedom; beyond 30 interpolated in 1/df.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    """Student's t 97.5 % quantile for ``df`` >= 1 degrees of freedom (table, 1/df interpolation past 30)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    knots = [30, 40, 60, 120, math.inf]
    vals = [_T975[30], _T975[40], _T975[60], _T975[120], 1.960]
    for (d0, v0), (d1, v1) in zip(zip(knots, vals), zip(knots[1:], vals[1:])):
        if d0 < df < d1:
            w = (1 / d0 - 1 / df) / (1 / d0 - (0 if d1 == math.inf else 1 / d1))
            return v0 + w * (v1 - v0)
    return 1.960


@dataclass(frozen=True)
class PairedDiff:
    """Mean of ``b - a`` over paired samples with a 95 % interval; ``n`` pairs in all."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def significant(self) -> bool:
        """True when the 95 % interval excludes 0."""
        return self.lo > 0 or self.hi < 0


def paired_difference(strata: list[tuple[list[float], list[float]]]) -> PairedDiff:
    """Paired difference ``b - a`` of two methods run on the same prompts, with a 95 % t interval.

    ``strata`` is a list of ``(a_scores, b_scores)``, aligned sample by sample (same prompt at the same
    position), one stratum per cell (e.g. per task x length). The estimate weighs strata equally, as a mean
    over task cells does: ``mean = (1/k) sum_c dbar_c`` with ``d = b - a``, standard error
    ``sqrt(sum_c s_c^2 / n_c) / k`` (``s_c`` the sample standard deviation of ``d`` in stratum c), and the
    interval ``mean +- t_0.975(df) * se`` with ``df = sum_c (n_c - 1)``. With one stratum this is the
    textbook paired-difference t interval. Pairing removes the prompt-to-prompt variance both methods
    share, so it is much tighter than comparing two independent intervals. The interval is NaN when
    ``df`` is 0 (a single pair per stratum).
    """
    if not strata:
        raise ValueError("paired_difference needs at least one stratum of paired scores")
    means, var, n, df = [], 0.0, 0, 0
    for a, b in strata:
        if len(a) != len(b) or not a:
            raise ValueError(f"paired_difference: each stratum needs equally many (>= 1) scores, got {len(a)} "
                             f"and {len(b)}")
        d = [float(y) - float(x) for x, y in zip(a, b)]
        m = sum(d) / len(d)
        means.append(m)
        if len(d) > 1:
            var += sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)
        n += len(d)
        df += len(d) - 1
    k = len(means)
    mean = sum(means) / k
    if df == 0:
        return PairedDiff(mean, float("nan"), float("nan"), n)
    half = t975(df) * math.sqrt(var) / k
    return PairedDiff(mean, mean - half, mean + half, n)
