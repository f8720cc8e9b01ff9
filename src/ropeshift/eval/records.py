"""Per-sample result records: layout on disk, crash-safe appends, tolerant reads.

Layout (``design.md``):  ``<out>/<model>/<task>/<method label>/<length>.jsonl``, one JSON object a line;
stored prompts:          ``<out>/<model>/_prompts/<task>/<length>.jsonl`` (header line + samples);
run manifest:            ``<out>/<model>/run.json`` (model path, training length, ...).

Appends are ``write + flush + fsync`` per record, so a killed process loses at most the record being
written; a torn last line (no newline, or not JSON) is cut off by ``repair`` before the next append.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def safe_name(text: str) -> str:
    """A path-safe folder name (task specs like ``qa:/data/squad.json`` become ``qa_data_squad.json``)."""
    return _SAFE.sub("_", text).strip("_") or "_"


def model_dir(out: Path, model: str) -> Path:
    return Path(out) / safe_name(model)


def record_path(out: Path, model: str, task: str, method: str, length: int) -> Path:
    return model_dir(out, model) / safe_name(task) / safe_name(method) / f"{length}.jsonl"


def prompts_path(out: Path, model: str, task: str, length: int) -> Path:
    return model_dir(out, model) / "_prompts" / safe_name(task) / f"{length}.jsonl"


def repair(path: Path) -> int:
    """Cut a torn last line off ``path``; return the number of bytes removed (0 when intact)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    # a complete but unparsable last line (torn write that happened to end in a newline) goes too
    while keep:
        start = data.rfind(b"\n", 0, keep - 1) + 1
        try:
            json.loads(data[start:keep])
            break
        except ValueError:
            keep = start
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return len(data) - keep


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON line of ``path``; a torn last line is skipped (not an error)."""
    out = []
    if not Path(path).exists():
        return out
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class Appender:
    """Append JSON records to one file, each flushed and fsynced before ``write`` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self._f = open(self.path, "ab")

    def write(self, record: dict) -> None:
        self._f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_atomic(path: Path, lines: Iterable[dict]) -> None:
    """Write a JSONL file through a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in lines:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def iter_records(root: Path) -> Iterator[dict]:
    """Every record under ``root`` (a run folder or a model folder), skipping stored prompts."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no results folder {root}")
    for p in sorted(root.rglob("*.jsonl")):
        if "_prompts" in p.parts:
            continue
        yield from read_jsonl(p)


def read_manifests(root: Path) -> dict[str, dict]:
    """``run.json`` of every model folder under ``root`` (keyed by model name)."""
    out = {}
    for p in sorted(Path(root).rglob("run.json")):
        try:
            d = json.loads(p.read_text())
        except ValueError:
            continue
        out[d.get("model", p.parent.name)] = d
    return out
