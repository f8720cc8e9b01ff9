"""``ropeshift.process_exit``: what is written reaches its reader, the exit code is kept, teardown is skipped."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

SCRIPT = """
import atexit, logging, sys
from ropeshift.process_exit import exit_now
atexit.register(lambda: print("atexit ran", file=sys.stderr, flush=True))
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
logging.getLogger("t").info("logged line")
print("out", end="")          # buffered: no newline, no flush
sys.stderr.write("err")
exit_now(3)
print("not reached")
"""


def _run(tmp_path, fast: str):
    log = tmp_path / f"log_{fast}.txt"
    env = {**os.environ, "PYTHONPATH": SRC, "ROPESHIFT_FAST_EXIT": fast}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], env=env, capture_output=True, text=True,
                       timeout=120)
    return r, log.read_text()


@pytest.mark.parametrize("fast", ["1", "0"])
def test_exit_now_flushes_everything_and_keeps_the_code(tmp_path, fast):
    r, logged = _run(tmp_path, fast)
    assert r.returncode == 3
    assert r.stdout == "out"
    assert r.stderr.startswith("err")
    assert "logged line" in logged
    # the fast path skips the interpreter's teardown (atexit handlers included); the switched-off one runs it
    assert ("atexit ran" in r.stderr) == (fast == "0")


def test_the_command_ends_with_its_subcommands_code():
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run([sys.executable, "-m", "ropeshift.cli.main", "ls"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "string" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ropeshift.cli.main", "matrix", "strnig"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "did you mean: string" in r.stderr.lower()
