"""Per-sample result records: the typed ``Record``, layout on disk, crash-safe appends, merged reads.

Layout (``design.md``):  ``<out>/<model>/<task>/<method label>/<length>.<writer>.jsonl``, one JSON object a
                         line; each writing process owns its own file (``w0``, ``w1``, ... by rank, locked with
                         ``flock`` so two evals into one folder never share a file); ``<length>.jsonl`` (the
                         layout before writer files) is still read;
stored prompts:          ``<out>/<model>/_prompts/<task>/<length>.jsonl`` (header line + samples);
run manifest:            ``<out>/<model>/run.json`` (model path, training length, ...).

Reads merge every file of a cell and keep one record per sample key (``Record.key``: model, task, length,
method label (= method + its parameters), sample index, prompt hash), so two evals that ran the same samples
into one folder are counted once. Appends are ``write + flush + fsync`` per record, so a killed process
loses at most the record being written; a torn last line is cut off by ``repair`` before the next append.

    rec = Record.from_dict(json.loads(line))     # also reads records written before Record existed
    rec.kind, rec.score, rec["needle_hits"]      # typed fields; a Record also reads as a mapping
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")

GENERATION = "generation"   # a prompt, a generated prediction, a score in [0, 1]
LIKELIHOOD = "likelihood"   # a scored document: nll (sum over n_scored tokens); score = exp(nll / n_scored)
KINDS = (GENERATION, LIKELIHOOD)


@dataclass(frozen=True)
class Record(Mapping):
    """One scored sample of one method.

    ``kind`` is ``generation`` or ``likelihood``; ``nll``/``n_scored`` are set exactly for likelihood
    records. ``details`` holds task-specific extras (e.g. niah4's ``needle_hits``), stored flat in the
    JSON line. A Record is also a read-only mapping over its JSON form (``r["task"]``, ``r.get("depth")``)
    so table code written over plain dicts keeps working.
    """

    kind: str
    model: str
    task: str
    length: int
    index: int
    method: str
    prompt_hash: str
    score: float
    seed: int = 0
    method_name: str = ""
    params: dict = field(default_factory=dict)
    impl: str | None = None
    haystack: str = ""
    n_tokens: int = 0
    depth: float | None = None
    depths: tuple[float, ...] | None = None
    prediction: str | None = None
    references: tuple[str, ...] = ()
    seconds: float | None = None
    nll: float | None = None
    n_scored: int | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"record kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.kind == LIKELIHOOD) != (self.nll is not None and self.n_scored is not None):
            need = "needs" if self.kind == LIKELIHOOD else "has no"
            raise ValueError(f"a {self.kind} record {need} nll and n_scored")

    @property
    def key(self) -> tuple:
        """The sample key: one record per key is counted (the method label carries the method's parameters)."""
        return (self.model, self.task, self.length, self.method, self.index, self.prompt_hash)

    def to_dict(self) -> dict:
        """The JSON form: every field, ``details`` spread at the top level, nll/n_scored only when set."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        d["depths"] = list(self.depths) if self.depths is not None else None
        d["references"] = list(self.references)
        if self.kind == GENERATION:
            del d["nll"], d["n_scored"]
        return {**d, **self.details}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """Read a JSON record, including the format before ``kind`` existed (likelihood records carried nll)."""
        if not isinstance(d, dict):
            raise ValueError(f"not a record: {str(d)[:60]}")
        d = dict(d)
        d.setdefault("kind", LIKELIHOOD if d.get("nll") is not None else GENERATION)  # records before v2
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"not a record: missing {', '.join(missing)}")
        known = {k: d.pop(k) for k in list(d) if k in _FIELDS}
        if known.get("depths") is not None:
            known["depths"] = tuple(known["depths"])
        known["references"] = tuple(known.get("references") or ())
        return cls(**known, details=d)

    # -- read-only mapping over the JSON form -----------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name in _FIELDS and name != "details":
            if self.kind == GENERATION and name in ("nll", "n_scored"):
                raise KeyError(name)
            return getattr(self, name)
        return self.details[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __hash__ = None  # type: ignore[assignment]  (dict fields)


_FIELDS = {f.name for f in fields(Record)}
_REQUIRED = ("model", "task", "length", "index", "method", "prompt_hash", "score")


def safe_name(text: str) -> str:
    """A path-safe folder name (task specs like ``qa:/data/squad.json`` become ``qa_data_squad.json``)."""
    return _SAFE.sub("_", text).strip("_") or "_"


def model_dir(out: Path, model: str) -> Path:
    return Path(out) / safe_name(model)


def cell_dir(out: Path, model: str, task: str, method: str) -> Path:
    return model_dir(out, model) / safe_name(task) / safe_name(method)


def record_path(out: Path, model: str, task: str, method: str, length: int, writer: str | None = None) -> Path:
    """The records file of one writer (``w0``, ``w1``, ...), or with ``writer=None`` the pre-writer-file one."""
    name = f"{length}.jsonl" if writer is None else f"{length}.{safe_name(writer)}.jsonl"
    return cell_dir(out, model, task, method) / name


def cell_files(out: Path, model: str, task: str, method: str, length: int) -> list[Path]:
    """Every records file of one (task, method, length) cell, in a fixed order."""
    d = cell_dir(out, model, task, method)
    legacy = d / f"{length}.jsonl"
    return ([legacy] if legacy.exists() else []) + sorted(d.glob(f"{length}.*.jsonl"))


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


def read_records(path: Path) -> list[Record]:
    """The records of one file; a line that is JSON but not a record is an error naming file and line."""
    out = []
    for i, d in enumerate(read_jsonl(path), 1):
        try:
            out.append(Record.from_dict(d))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path} line {i}: {e}") from None
    return out


def merge(records: Iterable[Record]) -> list[Record]:
    """One record per sample key, the first one met (files are read in a fixed order)."""
    seen, out = set(), []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            out.append(r)
    return out


def read_cell(out: Path, model: str, task: str, method: str, length: int) -> list[Record]:
    """Every writer's records of one cell, merged and de-duplicated."""
    return merge(r for p in cell_files(out, model, task, method, length) for r in read_records(p))


class Locked(OSError):
    """Another live process holds the records file."""


class Appender:
    """Append JSON records to one file, each flushed and fsynced before ``write`` returns.

    The file is locked (``flock``, released when the process ends, even by SIGKILL) so that no two
    processes append to, or repair, the same file; ``Locked`` is raised when another process holds it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one writer per file is then the caller's duty
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._f.close()
                raise Locked(f"{self.path} is being written by another process") from None
        repair(self.path)

    def write(self, record: Record | dict) -> None:
        d = record.to_dict() if isinstance(record, Record) else record
        self._f.write((json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()  # closing the file releases the lock

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_writer(out: Path, model: str, task: str, method: str, length: int, rank: int = 0) -> Appender:
    """An ``Appender`` on this process's own file of a cell: ``w<rank>``, or ``w<rank>-1``, ``w<rank>-2``, ...
    while another process (a second eval into the same folder) holds it."""
    for k in range(1000):
        writer = f"w{rank}" if k == 0 else f"w{rank}-{k}"
        try:
            return Appender(record_path(out, model, task, method, length, writer))
        except Locked:
            continue
    raise RuntimeError(f"1000 writers hold the records of {cell_dir(out, model, task, method)}")


def write_atomic(path: Path, lines: Iterable[dict]) -> None:
    """Write a JSONL file through a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")  # one per process: concurrent writers never mix
    with open(tmp, "w", encoding="utf-8") as f:
        for d in lines:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


BATCH_LOG = "_batches"  # the runner's batch log (``batch_log``)
NOT_RECORDS = ("_prompts", "_progress", BATCH_LOG)  # folders under a model folder that hold no records


def iter_records(root: Path) -> Iterator[Record]:
    """Every record under ``root`` (a run folder or a model folder), one per sample key, skipping prompts."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no results folder {root}")
    seen = set()
    for p in record_files(root):
        for r in read_records(p):
            if r.key not in seen:
                seen.add(r.key)
                yield r


def record_files(root: Path) -> list[Path]:
    """The records files under ``root``, in the order ``iter_records`` reads them (prompts, progress and batch
    logs left out)."""
    root = Path(root)
    found = (p for p in root.rglob("*.jsonl") if not any(part in NOT_RECORDS for part in p.relative_to(root).parts))
    return sorted(found, key=_file_order)


def _file_order(p: Path) -> tuple:
    # within a folder: the pre-writer-file <length>.jsonl first, then the writers in name order
    return (str(p.parent), p.name.count("."), p.name)


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
