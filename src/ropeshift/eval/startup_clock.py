"""A rank's start-up, phase by phase (``StartupClock``), from the command's own start where ``parallel.spawn``
started the rank (Linux process start times from /proc).

    clock = StartupClock(ranks)      # begins with "launcher" (spawned ranks) and "process" (this interpreter)
    clock.mark("model")              # ends a phase now
    clock.report(log)                # once, after the first batch: stderr and one ``kind: startup`` log line
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parallel import Ranks


def _started_at(pid: int | str = "self") -> float | None:
    """The epoch second process ``pid`` started (Linux: field 22 of /proc/<pid>/stat, clock ticks after boot, plus
    the boot time), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at field 3
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _process_age() -> float | None:
    """Seconds since this process started, else None."""
    start = _started_at()
    return None if start is None else max(0.0, time.time() - start)


def _launcher_s() -> float | None:
    """For a rank ``spawn`` started: the seconds its parent (the command that spawned it) ran before it started,
    else None."""
    if not SPAWNED:
        return None
    own, parent = _started_at(), _started_at(os.getppid())
    return None if own is None or parent is None else max(0.0, own - parent)


SPAWNED = False  # set in a rank ``spawn`` started (``_entry``)


class StartupClock:
    """Times a rank's start-up phases and prints them once, on stderr, after its first batch:

        rank 1 start-up 41.3 s: process 6.2 (interpreter, imports), model 9.8, prompts 14.1, plan 0.3,
        first batch 10.9 (compiles, CUDA graphs)

    A rank ``spawn`` started begins with ``launcher``: the seconds the command that started it ran before (its
    imports, the plan), so that a run's start-up adds up from the command's own start.
    """

    def __init__(self, ranks: "Ranks", enabled: bool = True):
        self.ranks, self.enabled = ranks, enabled
        age, launcher = _process_age(), _launcher_s()
        self.phases: list[tuple[str, float]] = [("launcher", launcher)] if launcher is not None else []
        self.phases += [("process", age)] if age is not None else []
        self.last, self.pending = time.perf_counter(), True

    def mark(self, phase: str) -> None:
        """End ``phase`` now (it began at the previous mark)."""
        now = time.perf_counter()
        self.phases.append((phase, now - self.last))
        self.last = now

    def report(self, log=None) -> None:
        """Print the phases (when enabled) and write them to ``log`` (a ``batch_log.BatchLog``) as one
        ``kind: startup`` line."""
        import sys

        self.pending = False
        if log is not None:
            log.write(kind="startup", rank=self.ranks.rank, total_s=round(sum(s for _, s in self.phases), 3),
                      phases={name: round(s, 3) for name, s in self.phases})
        if not self.enabled:
            return
        parts = ", ".join(f"{name} {s:.1f}" for name, s in self.phases)
        print(f"rank {self.ranks.rank} start-up {sum(s for _, s in self.phases):.1f} s: {parts}", file=sys.stderr,
              flush=True)
