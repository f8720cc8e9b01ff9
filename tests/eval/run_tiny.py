"""Subprocess entry for the resume test: run the tiny model on the needle task into OUT.

Run: python tests/eval/run_tiny.py OUT SAMPLES
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_model, tiny_tokenizer  # noqa: E402

from ropeshift.eval.options import MethodSpec  # noqa: E402
from ropeshift.eval.runner import RunConfig, run  # noqa: E402


def main() -> None:
    out, samples = Path(sys.argv[1]), int(sys.argv[2])
    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    cfg = RunConfig(model="tiny", tasks=("passkey",), lengths=(256,), methods=(MethodSpec("rope"),),
                    samples=samples, out=out)
    print("written", run(cfg, model, tok, progress=False), flush=True)


if __name__ == "__main__":
    main()
