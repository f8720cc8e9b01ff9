"""End a process whose work is done without Python's interpreter teardown.

    exit_now(0)     # stdout, stderr and logging flushed, then os._exit(0); ROPESHIFT_FAST_EXIT=0: sys.exit(0)

Why: a process that has imported torch and transformers takes ~0.7 s to finish after its last statement, and
~1.0 s once it has run ``torch.compile`` (2-core CPU machine, 2026-12-08: module teardown and garbage collection
of a few thousand modules; atexit handlers 0.01 s of it); on the GPU hosts, whose CPU work runs 1.3-3x slower,
and with a CUDA context to release, more. A study with ``--workers`` pays it last, after its summary: between the
last batch of the H100 studies of 2026-12-07 and the command's exit passed 4-6 s (benchmarks/RESULTS.md)::

    rank r     [... last batch][records closed, group destroyed][exit]
    launcher                                                          [join][summary][teardown ~1 s+]

Its ranks, forked by default (``parallel.start_method``), already end through ``multiprocessing``'s own
``os._exit`` (0.01 s from their return to the launcher's join, CPU); spawned ones (``ROPESHIFT_FORK_RANKS=0``, or
CUDA initialised in the launcher) ran the whole teardown before the launcher could join them (1.05 s -> 0.02 s
here for two gloo ranks that had run ``torch.compile``).

Used at two places only, where everything the process wrote is closed: an evaluation rank after its ``run_rank``
returned (``parallel._entry``; an exception still takes the normal path, so its traceback reaches the launcher)
and the ``ropeshift`` command after its subcommand returned (``cli.main.entry``). Children are not waited for: the
ranks' are joined before (prompt workers, forked helpers); inductor's compile workers end when their parent's pipe
closes. ``ROPESHIFT_FAST_EXIT=0`` exits the ordinary way.
"""
from __future__ import annotations

import logging
import os
import sys

ENV = "ROPESHIFT_FAST_EXIT"  # "0": ordinary exit (interpreter teardown, atexit handlers)


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def exit_now(code: int = 0) -> None:
    """Flush stdout, stderr and the logging handlers, then end the process with ``code`` at once
    (``os._exit``); ``sys.exit(code)`` when ``ROPESHIFT_FAST_EXIT=0``. Never returns."""
    if not enabled():
        sys.exit(code)
    logging.shutdown()  # flushes and closes every handler (files too)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or stream: nothing more can be written
            pass
    os._exit(code)
