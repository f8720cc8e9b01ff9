#!/usr/bin/env bash
# Issue 9, a short check after a kernel or dispatch change (~4 min): the Hopper kernel's GPU tests and generate()
# through the kernels vs the tiled path, then end to end (bench_generate --graphs, 32k, every method vs SDPA).
# Run: OUT=$OUT LIMIT=240 bash scripts/gpu_verify9.sh      (files back: tests.log, e2e.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 240
timeout $(( LIMIT / 2 )) python3 -m pytest -v -p no:cacheprovider -n 14 tests/kernels/test_hopper.py \
  tests/test_generate_gpu.py -rs > "$OUT/tests.log" 2>&1
grep -E "passed|failed|error" "$OUT/tests.log" | tail -2; grep -E "^FAILED|^ERROR" "$OUT/tests.log" | head -20
LIMIT=$(( LIMIT - ($(date +%s) - start) - 5 )) bash scripts/gpu_e2e.sh > /dev/null 2>&1
grep "^| \|^#" "$OUT/e2e.log" | tail -9
echo "done in $(( $(date +%s) - start )) s"
