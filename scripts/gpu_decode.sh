#!/usr/bin/env bash
# Decode kernel on one GPU, within ~200 s: the decode kernel tests (every key-map path compiled with 16-key tiles
# and the default tiles, the CUDA grid's lq = 1 cases, padding, fp32, int64 offsets), then the decode benchmark
# (64k and 128k caches, B = 1 and 8) with the previous kernel timed side by side ("<impl> (old)" rows).
#
# Run (on the GPU machine, from the repository root):
#   OUT=/path/to/out bash scripts/gpu_decode.sh
# Environment:
#   OUT          output folder (required): decode_tests.log/.xml, decode.md, decode_bench.log
#   TEST_LIMIT   seconds for the tests (default 110)     TOTAL_LIMIT  seconds for the whole script (default 195)
#   WORKERS      pytest-xdist workers (default 8)        PYTHON       interpreter (default python3)
#   BENCH_ARGS   extra benchmark arguments; ROPESHIFT_DECODE_CONFIG="BLOCK_N,warps,stages" overrides the tiles
# Exit status: the tests' status (the benchmark's when the tests passed).
set -uo pipefail

OUT="${OUT:?set OUT to the output folder}"
TEST_LIMIT="${TEST_LIMIT:-110}"
TOTAL_LIMIT="${TOTAL_LIMIT:-195}"
BENCH_ARGS="${BENCH_ARGS:-}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
mkdir -p "$OUT"
cd "$ROOT" || exit 2
start=$(date +%s)

XDIST=()
if "$PYTHON" -c "import xdist" 2>/dev/null; then XDIST=(-n "${WORKERS:-8}"); fi
SEL="decode or 1x4097x32x4x128 or 1x1025x8x8x64 or 1x97x32x8x128 or gpu_fp32 or (padding_batch and -1])"
echo "== decode tests (limit ${TEST_LIMIT}s; ${XDIST[*]:-no xdist}): -k '$SEL'" | tee "$OUT/decode_tests.log"
timeout "$TEST_LIMIT" "$PYTHON" -m pytest tests/kernels -q -p no:cacheprovider "${XDIST[@]}" -k "$SEL" \
    --maxfail=20 --durations=8 --junitxml="$OUT/decode_tests.xml" 2>&1 | tee -a "$OUT/decode_tests.log"
test_rc=${PIPESTATUS[0]}
echo "== decode tests exit status $test_rc ($(( $(date +%s) - start ))s)" | tee -a "$OUT/decode_tests.log"

left=$(( TOTAL_LIMIT - ($(date +%s) - start) ))
if [ "$left" -lt 45 ]; then left=45; fi
echo "== decode benchmark (budget $(( left - 15 ))s, hard limit ${left}s)" | tee "$OUT/decode_bench.log"
# shellcheck disable=SC2086
timeout "$left" "$PYTHON" benchmarks/bench_attention.py --no-prefill --no-compose \
    --lengths "" --d64-lengths "" --extra-lengths "" --decode-lengths 64k,128k --decode-batches 1,8 \
    --budget $(( left - 15 )) --md "$OUT/decode.md" $BENCH_ARGS 2>&1 | tee -a "$OUT/decode_bench.log"
bench_rc=${PIPESTATUS[0]}
echo "== decode benchmark exit status $bench_rc ($(( $(date +%s) - start ))s in total)" | tee -a "$OUT/decode_bench.log"
[ "$test_rc" -ne 0 ] && exit "$test_rc"
exit "$bench_rc"
