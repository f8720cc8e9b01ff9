"""Where rank 0's first start-up phase goes: building the model's tokenizer (``loader.load_tokenizer``), profiled.

Run (any machine, ~10 s):  PYTHONPATH=src python benchmarks/profile_tokenizer.py [--model smollm2-135m]

Rank 0 of a study builds the tokenizer first (``eval/launch.py``: the start-up table's "tokenizer" column). On
the H100 hosts this took 10-14 s in a cold study (twenty-eighth/twenty-ninth sessions, benchmarks/RESULTS.md)
against ~4 s on the 2-core CPU machine, so this script says which part is slow on a given host: the imports
transformers makes lazily, the GGUF file's parse, the tokenizer's conversion. It runs in a fresh process with an
empty ``$ROPESHIFT_CACHE`` (a GGUF model is converted as on a cold machine) and prints the phases' seconds, the
functions that cost the most (cProfile, by own time and by cumulative time), and whether the installed
transformers has compiled bytecode beside its sources (without it every process compiles the modules again).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--top", type=int, default=15, help="functions listed per ordering")
    args = p.parse_args(argv)
    os.environ["ROPESHIFT_CACHE"] = tempfile.mkdtemp(prefix="ropeshift_tok_")  # cold: no converted folder
    t0 = time.perf_counter()
    import torch  # noqa: F401 - the launcher has it before rank 0 starts
    t1 = time.perf_counter()
    import transformers
    t2 = time.perf_counter()
    from ropeshift.loader import load_tokenizer

    prof = cProfile.Profile()
    prof.enable()
    tok = load_tokenizer(args.model)
    prof.disable()
    t3 = time.perf_counter()
    root = Path(transformers.__file__).parent
    pyc = list((root / "__pycache__").glob("*.pyc")) if (root / "__pycache__").is_dir() else []
    print(f"transformers {transformers.__version__} at {root}: {len(pyc)} .pyc files in its __pycache__, "
          f"writable {os.access(root, os.W_OK)}")
    print(f"import torch {t1 - t0:.2f} s, import transformers {t2 - t1:.2f} s, load_tokenizer {t3 - t2:.2f} s "
          f"(vocabulary {len(tok)})")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(args.top)
        print(f"\n## by {order}\n" + "\n".join(out.getvalue().splitlines()[6:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
