#!/usr/bin/env bash
# Issue 9, fourth session, last call: the K1 cache with its writes as one kernel launch (key_cache._write_kernel)
# instead of ~20 small torch kernels per decode step and layer (the first K1 call measured end-to-end decode
# slower with K1 than without: rerope 287.7 vs 318.7 tok/s). GPU tests of the K1 path, then end to end at 32k
# (bench_generate --graphs, 8 Llama-3-8B-width layers) for rerope and self_extend with K1 on (the default on
# CUDA when this ran, commit 56a70f4; ROPESHIFT_K1_CACHE=1 below since it is opt-in) and, for rerope, off
# (ROPESHIFT_K1_CACHE=0), against SDPA. Since then: bench_generate --k1-variants measures both in one run.
# Run: OUT=$OUT LIMIT=150 bash scripts/gpu_issue9_k1_write.sh   (files back: tests.log, e2e.log, e2e_off.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 150

echo "== tests ($(left) s left)"
run_tests 55 90 tests/kernels/test_decode_k1.py tests/kernels/test_k1_generate.py tests/eval/test_graph_decode.py

echo "== end to end, K1 on ($(left) s left)"
ROPESHIFT_K1_CACHE=1 LIMIT="$(cap 55 35)" bash scripts/gpu_e2e.sh --methods rerope,self_extend > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log" | tail -2
echo "== end to end, K1 off ($(left) s left)"
cp "$OUT/e2e.log" "$OUT/e2e_on.log"
ROPESHIFT_K1_CACHE=0 LIMIT="$(cap 35 2)" bash scripts/gpu_e2e.sh --methods rerope > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log" | tail -1
echo "done in $(( $(date +%s) - start )) s"
