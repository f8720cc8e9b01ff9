"""Putting needles into a haystack at given depths (percent of the haystack, 0 = start, 100 = end).

    insert_lines(["a", "b", "c", "d"], ["N"], [50.0])   -> ["a", "b", "N", "c", "d"]
    insert_sentences("A. B. C. D.", ["N."], [50.0])      -> "A. B. N. C. D."

Text haystacks use the sentence boundary nearest to the depth's character offset, so long and
short sentences do not skew the depth.

Needles go between lines/sentences, never inside one. Several needles keep their given order when
their positions tie.
"""
from __future__ import annotations

from ..haystacks import split_sentences

# RULER's essay depths: round(linspace(0, 100, 40))
RULER_DEPTHS = tuple(round(100 * i / 39) for i in range(40))


def _positions(n_units: int, depths: list[float]) -> list[int]:
    return [min(n_units, max(0, round(n_units * d / 100))) for d in depths]


def insert_units(units: list[str], items: list[str], depths: list[float]) -> list[str]:
    """Insert ``items[j]`` before unit ``round(len(units) * depths[j] / 100)``."""
    if len(items) != len(depths):
        raise ValueError("one depth per item")
    order = sorted(range(len(items)), key=lambda j: (_positions(len(units), [depths[j]])[0], j))
    out, pos = [], 0
    for j in order:
        p = _positions(len(units), [depths[j]])[0]
        out.extend(units[pos:p])
        out.append(items[j])
        pos = p
    out.extend(units[pos:])
    return out


def insert_lines(lines: list[str], items: list[str], depths: list[float]) -> list[str]:
    return insert_units(lines, items, depths)


def insert_sentences(text: str, items: list[str], depths: list[float]) -> str:
    """Insert at the sentence boundary nearest to ``depth`` percent of the text's characters."""
    sents = split_sentences(text)
    starts, total = [], 0
    for s in sents:
        starts.append(total)
        total += len(s) + 1
    starts.append(total)
    pct = [100 * min(range(len(starts)), key=lambda i: abs(starts[i] - total * d / 100)) / max(1, len(sents))
           for d in depths]
    return " ".join(insert_units(sents, items, pct))
