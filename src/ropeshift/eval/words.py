"""Random keys and values for needle tasks (RULER generators), from the MIT ``wonderwords`` word lists.

The word lists are read from the installed package's asset files (no import of wonderwords itself).

    rng = random.Random(0)
    word_key(rng)     # "ancient-harbor"   (adjective-noun, RULER "words")
    number(rng)       # "4829301"          (7 digits, RULER "numbers")
    uuid_str(rng)     # RULER "uuids"
"""
from __future__ import annotations

import importlib.util
import random
import uuid
from functools import lru_cache
from pathlib import Path


def _asset(name: str) -> list[str]:
    spec = importlib.util.find_spec("wonderwords")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("RULER keys need the package wonderwords: pip install 'ropeshift[eval]'")
    for folder in spec.submodule_search_locations:
        p = Path(folder) / "assets" / name
        if p.is_file():
            return [w.strip() for w in p.read_text(encoding="utf-8").splitlines() if w.strip()]
    raise FileNotFoundError(f"wonderwords is installed but assets/{name} is missing")


@lru_cache(maxsize=None)
def nouns() -> tuple[str, ...]:
    return tuple(sorted(set(_asset("nounlist.txt"))))


@lru_cache(maxsize=None)
def adjectives() -> tuple[str, ...]:
    return tuple(sorted(set(_asset("adjectivelist.txt"))))


@lru_cache(maxsize=None)
def verbs() -> tuple[str, ...]:
    return tuple(sorted(set(_asset("verblist.txt"))))


@lru_cache(maxsize=None)
def vocabulary() -> tuple[str, ...]:
    """Nouns, adjectives and verbs, de-duplicated and sorted (RULER's CWE vocabulary before its shuffle)."""
    return tuple(sorted(set(nouns()) | set(adjectives()) | set(verbs())))


def word_key(rng: random.Random) -> str:
    """An adjective-noun pair drawn uniformly from all pairs (RULER's "words")."""
    return f"{rng.choice(adjectives())}-{rng.choice(nouns())}"


def number(rng: random.Random, digits: int = 7) -> str:
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def digit_string(rng: random.Random, digits: int) -> str:
    """``digits`` random digits, each 0-9 (a leading zero is possible; InfiniteBench passkey)."""
    return "".join(rng.choice("0123456789") for _ in range(digits))


def uuid_str(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def distinct(rng: random.Random, make, n: int, exclude: set[str] = frozenset()) -> list[str]:
    """``n`` distinct values from ``make(rng)``, none in ``exclude``."""
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        v = make(rng)
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
