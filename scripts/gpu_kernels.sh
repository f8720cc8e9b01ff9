#!/usr/bin/env bash
# Issue 9 on one GPU: the kernel tests (every method, full CUDA grid) and then the attention benchmark
# (every method + cuDNN causal + our causal in one table), within ~8 minutes in total.
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_kernels.sh
# Environment:
#   OUT          output folder (required): kernel_tests.xml/.log, bench.md, bench.log, versions.txt
#   TEST_LIMIT   seconds for the kernel tests (default 300; compiles dominate on a fresh machine)
#   TOTAL_LIMIT  seconds for the whole script (default 480); the benchmark gets what the tests leave
#   WORKERS      pytest-xdist workers when xdist is installed (default 8: Triton compiles dominate, in parallel)
#   BENCH_ARGS   extra arguments for benchmarks/bench_attention.py (e.g. "--sweep 32k")
#   TESTS        test paths (default: tests/kernels tests/test_padding_cache_gpu.py)
#   TEST_K       a pytest -k expression selecting among them (default: all)
#   PYTHON       interpreter (default: python3)
# Exit status: the kernel tests' status (the benchmark's status when the tests passed). A second run is faster:
# Triton's compile cache (~/.triton) then holds every kernel variant.
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
TEST_LIMIT="${TEST_LIMIT:-300}"
TOTAL_LIMIT="${TOTAL_LIMIT:-480}"
BENCH_ARGS="${BENCH_ARGS:-}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
mkdir -p "$OUT"
cd "$ROOT" || exit 2
start=$(date +%s)

"$PYTHON" - <<'PY' | tee "$OUT/versions.txt"
import platform, torch
import triton
print("python", platform.python_version(), "torch", torch.__version__, "triton", triton.__version__,
      "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
PY

XDIST=()
if "$PYTHON" -c "import xdist" 2>/dev/null; then XDIST=(-n "${WORKERS:-8}"); fi
echo "== kernel tests (limit ${TEST_LIMIT}s; ${XDIST[*]:-no xdist})" | tee "$OUT/kernel_tests.log"
SELECT=()
if [ -n "${TEST_K:-}" ]; then SELECT=(-k "$TEST_K"); fi
# shellcheck disable=SC2086
timeout "$TEST_LIMIT" "$PYTHON" -m pytest ${TESTS:-tests/kernels tests/test_padding_cache_gpu.py} "${SELECT[@]}" --maxfail=25 -q \
    -p no:cacheprovider --durations=15 "${XDIST[@]}" --junitxml="$OUT/kernel_tests.xml" 2>&1 | tee -a "$OUT/kernel_tests.log"
test_rc=${PIPESTATUS[0]}
echo "== kernel tests exit status $test_rc ($(( $(date +%s) - start ))s)" | tee -a "$OUT/kernel_tests.log"

left=$(( TOTAL_LIMIT - ($(date +%s) - start) ))
if [ "$left" -lt 60 ]; then left=60; fi
echo "== benchmark (budget $(( left - 40 ))s, hard limit ${left}s)" | tee "$OUT/bench.log"
# shellcheck disable=SC2086
timeout "$left" "$PYTHON" benchmarks/bench_attention.py --budget $(( left - 40 )) --md "$OUT/bench.md" $BENCH_ARGS \
    2>&1 | tee -a "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "== benchmark exit status $bench_rc ($(( $(date +%s) - start ))s in total)" | tee -a "$OUT/bench.log"
[ "$test_rc" -ne 0 ] && exit "$test_rc"
exit "$bench_rc"
