#!/usr/bin/env bash
# Issue 9, fourth session: the K1 cache of static decode (kernels/key_cache.py, attention/far_cache.py) on one
# H200 call (no model file needed):
#   1. its GPU tests: the K1 kernel tests, the K1 decode loop, the graph decode loop;
#   2. decode at 64k, B = 1 and 8: every re-rotating method with and without a prebuilt K1 cache, beside our plain
#      decode (bench_attention --decode-variants k1);
#   3. end to end at 32k (bench_generate --graphs, 8 Llama-3-8B-width layers): decode tok/s and peak memory with
#      the K1 cache against SDPA, for rerope and self_extend (K1 was on by default when this ran, commit 148127f;
#      it is opt-in since: ROPESHIFT_K1_CACHE=1 below).
# Run: OUT=$OUT LIMIT=290 bash scripts/gpu_issue9_k1.sh   (files back: tests.log, k1.md/.log, e2e.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 290

echo "== tests ($(left) s left)"
run_tests 90 200 tests/kernels/test_decode_k1.py tests/kernels/test_k1_generate.py tests/eval/test_graph_decode.py

echo "== decode 64k with / without K1 ($(left) s left)"
timeout "$(cap 100 100)" python3 benchmarks/bench_attention.py --no-prefill --no-compose --decode-lengths 64k \
  --decode-batches 1,8 --decode-variants k1 --methods rerope,rerope_leaky,self_extend,dca,lm_infinite \
  --budget "$(cap 90 105)" --md "$OUT/k1.md" > "$OUT/k1.log" 2>&1
grep "^| " "$OUT/k1.md" | grep -v "^| D \|^|---"

echo "== end to end ($(left) s left)"
ROPESHIFT_K1_CACHE=1 LIMIT="$(cap 100 3)" bash scripts/gpu_e2e.sh --methods rerope,self_extend > /dev/null 2>&1
grep "^| 32k" "$OUT/e2e.log" | tail -2
echo "done in $(( $(date +%s) - start )) s"
