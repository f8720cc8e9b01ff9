"""Data-parallel evaluation over ``torch.distributed``: ranks, sharding by sample, progress, ``--workers``.

    torchrun --nproc-per-node 4 -m ropeshift.cli.main eval ...     # ranks from RANK / WORLD_SIZE
    ropeshift eval --workers 4 ...                                  # the same, 4 processes spawned here

Rank 0 reads the finished records and sends every rank its plan (``parallel.post``: the pending samples by
index), so every rank works from the same list of pending samples; sample groups (task, length, index: every
method of one prompt) are cut into batch-sized chunks of one bucket x length, and each chunk's batches of one
method into items (``batching.claim_queues``), which the ranks claim one at a time as they go (``claims``). Each
rank appends to its own records files (``records.open_writer``), so a run resumed with any number of ranks
loses and duplicates nothing.
Rank 0 generates the prompts (the others wait for its plan, then read them) and draws the one progress
bar; the other ranks report their counts through small files under ``<model>/_progress/<run id>/``.
The process group is gloo (CPU tensors only: broadcasts and the closing barrier), whatever the model's device;
the claims go through a ``torch.distributed.FileStore`` beside the progress files.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run: ``rank`` in ``[0, world)``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def __post_init__(self):
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in [0, WORLD_SIZE), got rank {self.rank} of {self.world}")

    @classmethod
    def from_env(cls) -> "Ranks":
        """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun sets them (absent: one process)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
        return cls(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0


ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF"
ALLOC_DEFAULT = "expandable_segments:True"


def allocator_defaults() -> bool:
    """Give this process's CUDA caching allocator expandable segments (``PYTORCH_CUDA_ALLOC_CONF``), unless the
    user set that variable (an empty value keeps PyTorch's default) or CUDA is initialised already (too late to
    take effect). Returns whether it was set here. Called where evaluation processes start: ``ropeshift eval``
    (its single process, and the ranks it spawns inherit the variable) and ``launch.run_rank``.

    Why: the evaluation processes share one card, and each process's allocator keeps the blocks its batches
    freed; fixed-size segments fragment between batches of other shapes (a prefill's activations, a static KV
    cache, likelihood logits), so the reserved memory ran 3-9 GiB above the peak in use per process (2026-12-06,
    H100, three processes: peaks 19.4-19.8 GiB, reserved 22.6-28.8, 78 of 80 GB in use at the fullest) and one
    process's batch ran out of memory; ``batching.MemoryCap`` then cut that rank's later batches to 3/4 and it
    ended 38-67 s after the others. Expandable segments map memory into a growing segment instead, so freed
    blocks serve the next shape."""
    if ALLOC_ENV in os.environ:
        return False
    try:
        import torch

        if torch.cuda.is_initialized():
            return False
    except ImportError:
        pass
    os.environ[ALLOC_ENV] = ALLOC_DEFAULT
    return True


def device_for(ranks: Ranks, requested: str | None) -> str | None:
    """The device of this rank: ``cuda:<local rank>`` when CUDA is used, else ``cpu`` (one device each)."""
    if ranks.world == 1:
        return requested
    if requested is not None and ":" in requested:
        raise ValueError(f"--device {requested} names one device, but each of the {ranks.world} ranks takes its "
                         "own: use --device cuda (rank r uses cuda:r) or --device cpu")
    import torch

    if requested == "cpu" or (requested is None and not torch.cuda.is_available()):
        return "cpu"
    n = torch.cuda.device_count()
    if n == 0:
        raise ValueError("--device cuda: no CUDA device is visible")
    return f"cuda:{ranks.local_rank % n}"


def init_group(ranks: Ranks) -> bool:
    """Join the gloo process group from torchrun's environment; True when this call created it."""
    if ranks.world == 1:
        return False
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return False
    # long barriers: rank 0 generates every prompt while the others wait
    dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world,
                            timeout=datetime.timedelta(hours=12))
    _SEQ.update(post=0, take=0)  # a new group: ``post``'s messages numbered from 0 on every rank
    return True


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (after this rank's ``post``-ed values have gone out)."""
    if ranks.world > 1:
        import torch.distributed as dist

        settle()
        dist.barrier()


_POSTED: list = []  # (gloo work, its tensor) of this rank's ``post`` calls not yet waited for
_SEQ = {"post": 0, "take": 0}  # values posted / taken so far by this process: their messages' tags


def post(ranks: Ranks, value) -> None:
    """Rank 0 sends ``value`` to every other rank, which takes it with ``take``, without waiting for them: the
    sends complete in the background (gloo), and ``settle`` (or the next ``barrier``) waits for them.

    Why: rank 0 hands its tokenizer to the others as soon as its weights are loaded, but they take it only after
    their warm-up compile; a blocking ``broadcast`` held rank 0 there for 9-15 s (H100 studies of 2026-12-07)
    before it collected its prompts, which then came after the others were ready.

    One point-to-point message pair per rank (not a broadcast): gloo runs a process's collectives one after the
    other, so with broadcasts the plan could reach rank 2 only once the tokenizer before it had reached every
    rank; rank 2, its warm-up done first, waited 4.5 s for rank 1's in the H100 study of 2026-12-07 (run 10),
    and 4.0 s for a rank 1 that took the first value 4 s late on a CPU (2026-12-08); with messages, at once.

    Wire format (``take``'s): an int64 byte count, then the pickled bytes (uint8), tagged with the value's
    number (every rank posts or takes the values in the same order)."""
    if ranks.world == 1:
        return
    if not ranks.main:
        raise ValueError("post: only rank 0 sends")
    import pickle

    import torch
    import torch.distributed as dist

    data = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
    size = torch.tensor([data.numel()], dtype=torch.int64)
    tag = 2 * _SEQ["post"]
    _SEQ["post"] += 1
    for dst in range(1, ranks.world):
        for t, k in ((size, tag), (data, tag + 1)):
            _POSTED.append((dist.isend(t, dst=dst, tag=k), t))


def take(ranks: Ranks):
    """The value rank 0 ``post``-ed (ranks > 0; blocks until it has come)."""
    if ranks.main:
        raise ValueError("take: rank 0 posts, the others take")
    import pickle

    import torch
    import torch.distributed as dist

    tag = 2 * _SEQ["take"]
    _SEQ["take"] += 1
    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, src=0, tag=tag)
    data = torch.empty(int(size.item()), dtype=torch.uint8)
    dist.recv(data, src=0, tag=tag + 1)
    return pickle.loads(data.numpy().tobytes())


def settle() -> None:
    """Wait until this rank's ``post``-ed values have been sent."""
    while _POSTED:
        work, _ = _POSTED.pop(0)
        work.wait()


def claims(ranks: Ranks, folder: Path, sizes: list[int], first: int = 0):
    """``(queue, index)`` pairs, each yielded on exactly one rank: the first to ask for it. ``sizes[q]`` items make
    queue q; this rank asks for the next item of queue ``first`` whenever it is free, then, once that queue is
    empty, of the others in turn (one ``torch.distributed.FileStore`` counter per queue under ``folder``, shared by
    the ranks of one host or of hosts sharing the run's folder), so a rank that ran cheaper items takes more of
    them and the ranks end within about one item of each other, whatever the cost model's error::

        queue 0 index   0    1    2    3    4    5   ...   (batching.claim_queues: costliest first)
        rank            r0   r1   r0   r0   r1   r2  ...   (whoever is free first; r2 started on queue 1)

    A static deal of whole chunks by estimated cost (``batching.shard``) left the ranks of the H100 study of
    2026-12-06 (run h) with 308, 334 and 345 s of batches: the last ~37 s of the loop ran with fewer ranks.
    One rank (``world == 1``) takes every item, queue by queue, without a store."""
    order = [first] + [q for q in range(len(sizes)) if q != first]
    if ranks.world == 1:
        for q in order:
            yield from ((q, i) for i in range(sizes[q]))
        return
    import torch.distributed as dist

    folder.mkdir(parents=True, exist_ok=True)
    store = dist.FileStore(str(folder / "claims"), ranks.world)
    for q in order:
        while (i := store.add(f"next{q}", 1) - 1) < sizes[q]:
            yield q, i


class Progress:
    """One progress bar on rank 0 over every rank's finished samples; the others write their counts to files."""

    def __init__(self, ranks: Ranks, total: int, folder: Path, run_id: str, enabled: bool = True):
        """``run_id``: the progress files' folder name, the same on every rank (rank 0's plan carries it:
        ``runner._hand_plan``)."""
        from tqdm.auto import tqdm

        self.ranks, self.total, self.done = ranks, total, 0
        self.folder = Path(folder) / "_progress" / run_id
        self.bar = tqdm(total=total, desc="samples", unit="sample", disable=not (enabled and ranks.main))
        if ranks.world > 1:
            self._write()

    def _file(self, rank: int) -> Path:
        return self.folder / f"rank{rank}.json"

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._file(self.ranks.rank).with_suffix(".tmp")
        tmp.write_text(json.dumps({"done": self.done, "pid": os.getpid(), "host": socket.gethostname()}))
        os.replace(tmp, self._file(self.ranks.rank))

    def _all_done(self) -> int:
        n = self.done
        for r in range(1, self.ranks.world):
            try:
                n += json.loads(self._file(r).read_text())["done"]
            except (OSError, ValueError, KeyError):
                pass
        return n

    def others_started(self) -> bool:
        """Whether every other rank has made its ``Progress`` (each writes its file then): it has planned, and
        its start-up (a compile, ``eval/warm_up.py``) is behind it."""
        return all(self._file(r).exists() for r in range(1, self.ranks.world))

    def update(self, n: int, note: str = "") -> None:
        self.done += n
        if self.ranks.world > 1 and not self.ranks.main:
            self._write()
            return
        if note:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(self._all_done() - self.bar.n)

    def finish(self, poll_s: float = 0.1) -> None:
        """Rank 0 follows the others until every sample is done (its bar polled every ``poll_s``: the ranks of a
        study end within a second of each other, and rank 0 used to sleep up to 0.5 s past the last); then all
        ranks meet at a barrier."""
        if self.ranks.world > 1 and self.ranks.main:
            while (n := self._all_done()) < self.total:
                self.bar.update(n - self.bar.n)
                time.sleep(poll_s)
            self.bar.update(self.total - self.bar.n)
        self.bar.close()
        barrier(self.ranks)
        if self.ranks.world > 1 and self.ranks.main:
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        self.bar.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FORK_ENV = "ROPESHIFT_FORK_RANKS"  # "0": --workers starts fresh interpreters (spawn) instead of forking


def start_method() -> str:
    """How ``spawn`` starts its ranks: ``"fork"`` where the platform has it, this process has not initialised
    CUDA (a forked child could not use it) and ``ROPESHIFT_FORK_RANKS`` is not "0"; else ``"spawn"``.

    Why fork: a spawned rank is a new interpreter that imports torch, transformers and ropeshift again before
    its first line of work (its start-up clock's ``process`` phase: 3.3 s in the H100 study of 2026-12-07, the
    three ranks at once on a host busy with nothing else yet); a forked one starts with this process's modules."""
    import multiprocessing as mp
    import sys

    if os.environ.get(FORK_ENV, "1") == "0" or "fork" not in mp.get_all_start_methods() \
            or not sys.platform.startswith("linux"):
        return "spawn"
    import torch

    return "spawn" if torch.cuda.is_initialized() else "fork"


def spawn(fn, args: tuple, workers: int, meanwhile=None, idle=None, idle_s: float = 2.0) -> None:
    """Run ``fn(*args)`` in ``workers`` new processes (``start_method``) that see torchrun's environment (rank r
    of workers).

    ``torch.multiprocessing.start_processes`` joins them; when one dies the others are stopped and an exception
    names it, as torchrun does. ``meanwhile()`` (optional) runs here once they have started (the CLI's pre-flight
    checks, beside the ranks' start-up instead of before it); if it raises, the ranks are stopped and its
    exception propagates. ``idle()`` (optional) runs here every ``idle_s`` seconds after that while the ranks run
    (the CLI reads their records as they come: ``record_follower``); its exceptions propagate the same way."""
    import torch.multiprocessing as mp

    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(workers)}
    ctx = mp.start_processes(_entry, args=(env, fn, args), nprocs=workers, join=False, start_method=start_method())
    try:
        if meanwhile is not None:
            meanwhile()
        while idle is not None and not ctx.join(timeout=idle_s):
            idle()
    except BaseException as e:
        if type(e).__module__.startswith("torch.multiprocessing"):  # a rank failed: join stopped the others
            raise
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join()
        raise
    while not ctx.join():
        pass


def _entry(rank: int, env: dict, fn, args: tuple) -> None:
    """A rank ``spawn`` started: ``fn(*args)`` under torchrun's environment, then the process ends at once
    (``process_exit.exit_now``: its launcher joins it only once it has exited; a spawned rank's interpreter
    teardown took ~1 s on a 2-core CPU, a forked one ends through ``multiprocessing``'s ``os._exit`` anyway); an
    exception takes the ordinary path, so that ``torch.multiprocessing`` reports it to the launcher."""
    from .. import process_exit
    from . import startup_clock

    startup_clock.SPAWNED = True
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    fn(*args)
    process_exit.exit_now(0)


def cpu_threads(ranks: Ranks) -> int:
    """Intra-op threads per rank on CPU: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // ranks.world)
