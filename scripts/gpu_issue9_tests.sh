#!/usr/bin/env bash
# Issue 9, fourth session, the first device call (no model file needed; it also carries part 1 of the second
# model, see scripts/stage_second_model.sh): the GPU tests written in the third session and not yet run
#   tests/kernels/test_hopper.py::test_dca_chunk_settings  (Hopper DCA chunk zones vs the portable fp32 kernel)
#   tests/eval/test_graph_decode_memory.py                 (memory after the graph loop <= an eager forward's)
# then LM-Infinite's decode under the final split rule (Lambda tables keep "sms4"; the third session measured
# 361.6 us with it and 410.7 with "wave" before the switch landed), beside plain, at 64k, B = 1 and 8.
# Run: OUT=$OUT LIMIT=200 bash scripts/gpu_issue9_tests.sh   (files back: tests.log, lminf.md/.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 200

echo "== tests ($(left) s left)"
run_tests 150 45 -v tests/kernels/test_hopper.py tests/eval/test_graph_decode_memory.py \
  -k "dca_chunk_settings or memory or allocation or workspaces"

echo "== LM-Infinite decode, 64k ($(left) s left)"
timeout "$(cap 60 3)" python3 benchmarks/bench_attention.py --no-prefill --decode-lengths 64k --decode-batches 1,8 \
  --methods lm_infinite --budget "$(cap 50 10)" --md "$OUT/lminf.md" > "$OUT/lminf.log" 2>&1
grep "^| " "$OUT/lminf.md" 2>/dev/null || tail -5 "$OUT/lminf.log"
echo "done in $(( $(date +%s) - start )) s"
