"""Where an evaluation's time goes, batch by batch: one JSON line per generate() / evaluate() call, per rank.

    <out>/<model>/_batches/rank<R>.jsonl     (appended; not records: ``iter_records`` skips the folder)

    {"t": 1764900000.1, "rank": 0, "method": "string", "length": 8192, "tasks": {"niah_single_1": 17, ...},
     "kind": "generation", "rows": 97, "tokens": 790000, "wall_s": 1.31, "tokenize_s": 0.04, "post_s": 0.01,
     "decode": "graphs", "prefill_s": 0.52, "capture_s": 0.08, "decode_s": 0.66, "check_s": 0.01, "steps": 127}

and once per rank, after its first batch, its start-up (``parallel.StartupClock``)::

    {"t": ..., "kind": "startup", "rank": 0, "total_s": 41.3, "phases": {"process": 6.2, "model": 9.8, ...}}

``tokens``: the batch's prompt tokens (likelihood batches: the rows' document tokens, once); the ``*_s``
phases end at host syncs, so on a GPU shared by several ranks they include the other ranks' time slices.
``benchmarks/batch_profile.py`` sums them per task bucket and length. Diagnostic data: no result reads it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .records import BATCH_LOG, model_dir

FOLDER = BATCH_LOG


def log_path(out: Path, model: str, rank: int) -> Path:
    return model_dir(out, model) / FOLDER / f"rank{rank}.jsonl"


class BatchLog:
    """Appends one line per batch to this rank's file (opened lazily, line-buffered; ``None`` path: off)."""

    def __init__(self, path: Path | None):
        self.path, self._f = path, None

    def write(self, **fields) -> None:
        if self.path is None:
            return
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8", buffering=1)
        self._f.write(json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), **fields}) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "BatchLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def counts(names) -> dict[str, int]:
    """Rows per task name, in first-seen order."""
    out: dict[str, int] = {}
    for name in names:
        out[name] = out.get(name, 0) + 1
    return out


def read_batches(root: Path) -> list[dict]:
    """Every line under ``root`` (a run folder or a model folder): batches and ``kind: startup`` lines."""
    out = []
    for p in sorted(Path(root).rglob(f"{FOLDER}/*.jsonl")):
        with open(p, encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out
