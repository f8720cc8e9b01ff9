"""Subprocess entry for the resume tests: run the tiny model on the passkey task into OUT.

Run: python tests/eval/run_tiny.py OUT SAMPLES [WORKERS]
(WORKERS given: ``run_workers`` with that many CPU processes, as ``ropeshift eval --workers`` does.)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_load  # noqa: E402

from ropeshift.eval.options import MethodSpec  # noqa: E402
from ropeshift.eval.launch import run_workers  # noqa: E402
from ropeshift.eval.runner import RunConfig, run  # noqa: E402

METHODS = (MethodSpec("rope"),)


def config(out: Path, samples: int, methods=METHODS) -> RunConfig:
    return RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=methods, samples=samples, out=out,
                     workers=1)


def main() -> None:
    out, samples = Path(sys.argv[1]), int(sys.argv[2])
    methods = METHODS
    if len(sys.argv) > 3:
        methods = (MethodSpec("rope"), MethodSpec("string", {"shift": 100, "window": 16}))
        run_workers(config(out, samples, methods), tiny_load, int(sys.argv[3]), device="cpu", progress=False)
        print("done", flush=True)
        return
    model, tok = tiny_load()
    print("written", run(config(out, samples), model, tok, progress=False), flush=True)


if __name__ == "__main__":
    main()
