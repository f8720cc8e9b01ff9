"""Where an evaluation's time goes, batch by batch: one JSON line per generate() / evaluate() call, per rank.

    <out>/<model>/_batches/rank<R>.jsonl     (appended; not records: ``iter_records`` skips the folder)

    {"t": 1764900000.1, "rank": 0, "method": "string", "length": 8192, "tasks": {"niah_single_1": 17, ...},
     "kind": "generation", "rows": 97, "tokens": 790000, "wall_s": 1.31, "tokenize_s": 0.04, "post_s": 0.01,
     "decode": "graphs", "prefill_s": 0.52, "capture_s": 0.08, "decode_s": 0.66, "check_s": 0.01, "steps": 127}

and once per rank, after its first batch, its start-up (``startup_clock.StartupClock``)::

    {"t": ..., "kind": "startup", "rank": 0, "total_s": 41.3, "phases": {"process": 6.2, "model": 9.8, ...}}

``tokens``: the batch's prompt tokens (likelihood batches: the rows' document tokens, once); the ``*_s``
phases end at host syncs, so on a GPU shared by several ranks they include the other ranks' time slices.
On CUDA a batch also carries its process's memory (``gpu_memory``): ``peak_gib`` (most allocated during the
batch), ``reserved_gib`` (held by PyTorch's allocator after it) and ``free_gib`` (free on the device after it,
every process counted), which say how close the ranks sharing a card came to an out-of-memory split; and
``compile_s`` (``compile_seconds``) where ``torch.compile`` compiled during the batch.
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


def reset_peak_memory(device) -> None:
    """Start a batch's memory peak (a CUDA ``torch.device``; elsewhere nothing)."""
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def gpu_memory(device) -> dict:
    """``{"peak_gib", "reserved_gib", "free_gib"}`` of this process on a CUDA ``device`` since the last
    ``reset_peak_memory`` (one host sync), ``{}`` elsewhere."""
    if device.type != "cuda":
        return {}
    import torch

    gib = 2.0 ** 30
    free, _ = torch.cuda.mem_get_info(device)
    return {"peak_gib": round(torch.cuda.max_memory_allocated(device) / gib, 2),
            "reserved_gib": round(torch.cuda.memory_reserved(device) / gib, 2), "free_gib": round(free / gib, 2)}


def compile_seconds() -> float:
    """Seconds ``torch.compile`` has spent compiling in this process so far (dynamo's own
    ``compilation_time_metrics``, its whole-frame compiles, the backend's included; 0.0 before dynamo was imported
    or where the metric is missing). The runner logs each batch's difference as ``compile_s``: the first batch of
    a shape or a path the compiled layers had not seen pays it (Triton's JIT of ropeshift's own kernels is not in
    it)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    metrics = getattr(utils, "compilation_time_metrics", None) if utils is not None else None
    return float(sum(metrics.get("_compile.compile_inner", ()))) if isinstance(metrics, dict) else 0.0


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
