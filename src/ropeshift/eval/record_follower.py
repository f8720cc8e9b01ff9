"""The records of a run folder read while the run writes them, so that its closing summary need not read them all.

    follow = RecordFollower(model_dir(out, model))
    ...                       # while the ranks run: follow.poll() now and then (the launcher's wait)
    records = follow.records()  # == list(records.iter_records(folder)), only the newest bytes parsed now

Why: ``ropeshift eval --workers N`` prints its summary once every rank has exited, and reading the 35,750
records of ``ruler-lite`` took its launcher ~0.9 s there (H100 host, 2026-12-07; 0.65-0.75 s on a 2-core CPU),
on the study's critical path, while the launcher had idled through the whole run::

    ranks      [start-up][batches .........................................][exit]
    launcher   [spawn][checks][wait: poll, poll, poll, ...                ]      [records: last bytes][summary]

Same answer as a fresh read, always: each file's bytes consumed so far are kept (a poll reads the new bytes and
the last 4 KiB of those), and ``records`` re-reads every file whole and parses only what follows them when the
file still starts with them (a records file is only appended
to, but a writer opening it first cuts a torn or unparsable last line: ``records.repair``), else parses it again
from its first byte; a file with a line that was JSON but not a record is left to ``read_records``, which raises
naming file and line. Files are taken in ``iter_records``' order and a sample key's first record wins, as there.
``poll`` never raises (the launcher's wait must not stop a run); after an unexpected error it stops following and
``records`` is ``iter_records``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .records import Record, iter_records, read_records, record_files


_TAIL = 4096  # bytes of a file's consumed part a poll reads again (a cut and rewritten file shows there)


@dataclass
class _File:
    """What one records file gave so far: its complete lines' bytes (``raw``), their records in order."""

    raw: bytearray = field(default_factory=bytearray)
    records: list[Record] = field(default_factory=list)
    followed: bool = True  # False: a line was not a record; the file is left to ``read_records``


class RecordFollower:
    """Every record under ``root`` (a model folder of a run), parsed as the run appends them (module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._files: dict[Path, _File] = {}
        self.failed: Exception | None = None  # what stopped ``poll``; ``records`` then reads every file anew

    def _paths(self) -> list[Path]:
        return record_files(self.root) if self.root.exists() else []

    def poll(self) -> list[Record]:
        """Parse what the files gained since the last call; returns the new records (all files, before
        de-duplication). Never raises: a file that changed under it or holds a line that is not a record is read
        whole by ``records``; a folder walk that failed (rank 0 removes its progress folder at the end) is tried
        again at the next call; anything else stops the following (``failed``)."""
        if self.failed is not None:
            return []
        try:
            paths = self._paths()
        except OSError:
            return []
        new = []
        try:
            for p in paths:
                f = self._files.setdefault(p, _File())
                if f.followed:
                    new.extend(self._advance(p, f))
        except Exception as e:  # noqa: BLE001 - the launcher's wait must not stop a run; records() reads anew
            self.failed = e
            return []
        return new

    def _advance(self, path: Path, f: _File, whole: bool = False) -> list[Record]:
        """Parse the complete lines ``path`` gained after ``f.raw``; returns their records. ``whole``
        (``records``): the file is read from its first byte and must start with all of ``f.raw``; else (``poll``)
        only the last ``_TAIL`` bytes of ``f.raw`` are read again and compared, so a poll reads what is new. A file
        that fails the comparison was cut and rewritten (``repair``): it is parsed again from its first byte."""
        start = 0 if whole else max(0, len(f.raw) - _TAIL)
        try:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read()
        except OSError:
            return []
        if not data.startswith(memoryview(f.raw)[start:]):
            f.raw, f.records = bytearray(), []
            if start:
                return self._advance(path, f)  # f.raw empty now: from the first byte
        end = data.rfind(b"\n") + 1  # complete lines only; a torn last line waits for its end
        fresh = data[len(f.raw) - start:end]
        if not fresh:
            return []
        out = []
        for line in fresh.split(b"\n")[:-1]:  # ``read_jsonl``'s lines
            try:
                d = json.loads(line)
            except ValueError:
                continue  # as ``read_jsonl``: a line that is not JSON is skipped
            try:
                out.append(Record.from_dict(d))
            except (ValueError, TypeError):
                f.followed = False  # ``read_records`` names the file and line when ``records`` reads it
                return []
        f.raw += fresh
        f.records.extend(out)
        return out

    def records(self) -> list[Record]:
        """``list(iter_records(root))``: every file brought up to date (read whole where following it failed),
        one record per sample key, the first met in ``iter_records``' file order."""
        if self.failed is not None or not self.root.exists():
            return list(iter_records(self.root))
        seen, out = set(), []
        for p in self._paths():
            f = self._files.setdefault(p, _File())
            if f.followed:
                self._advance(p, f, whole=True)
            recs = f.records if f.followed else read_records(p)
            for r in recs:
                if r.key not in seen:
                    seen.add(r.key)
                    out.append(r)
        return out
