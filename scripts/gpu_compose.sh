#!/usr/bin/env bash
# Issue 9, speed route (b): composed vendor attention (ropeshift.kernels.compose) vs SDPA-cuDNN causal for every
# band method, after a correctness check against the fp64 oracle and the fp32 tiled path. H100, < 5 min.
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_compose.sh
# Environment:
#   OUT      output folder (required): OUT/compose.md (tables), OUT/compose.jsonl (records), OUT/compose.log
#   ARGS     extra arguments for benchmarks/bench_compose.py (e.g. "--quick" or "--lengths 32k")
#   LIMIT    seconds before the benchmark is stopped (default 290)
#   PYTHON   interpreter (default: python3)
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
PYTHON="${PYTHON:-python3}"
LIMIT="${LIMIT:-290}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

"$PYTHON" - <<'PY' | tee "$OUT/versions.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cudnn", torch.backends.cudnn.version())
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY

start=$(date +%s)
# shellcheck disable=SC2086
timeout --signal=INT --kill-after=15 "$LIMIT" "$PYTHON" "$ROOT/benchmarks/bench_compose.py" --out "$OUT" ${ARGS:-} \
  2>&1 | tee "$OUT/compose.log"
status=${PIPESTATUS[0]}
echo "bench_compose exit status $status (1: a correctness check failed), wall $(( $(date +%s) - start )) s" \
  | tee -a "$OUT/compose.log"
exit "$status"
