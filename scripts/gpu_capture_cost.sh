#!/usr/bin/env bash
# Issue 10, third session, one H200 call (~4 min, no model file needed): the decode loop's per-batch cost.
#   1. the decode loop's GPU tests (graph vs generate, replay vs eager, compaction, memory, the model-level static
#      decode through the kernels);
#   2. benchmarks/profile_graph_step.py --overhead: prefill, per-step and fixed per-batch seconds of
#      static_generate at the study's batch shapes.
# (Run 2026-12-03 at commit ee9a47d with a "lean" capture variant side by side; it made no difference and
# was removed: benchmarks/RESULTS.md.)
# Run: OUT=$OUT LIMIT=240 bash scripts/gpu_capture_cost.sh   (files back: tests.log, overhead.md/.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 240
echo "== tests ($(left) s left)"
timeout 80 python3 -m pytest -q -p no:cacheprovider -n 6 tests/eval/test_graph_decode.py tests/eval/test_row_compaction.py \
  tests/eval/test_graph_decode_memory.py tests/kernels/test_static_decode_model.py -rs > "$OUT/tests.log" 2>&1
tail -3 "$OUT/tests.log"; grep -E "^FAILED|^ERROR" "$OUT/tests.log" | head
echo "== per-batch cost ($(left) s left)"
timeout "$(( $(left) - 5 ))" python3 benchmarks/profile_graph_step.py --overhead --shapes "${SHAPES:-48x8k,64x4k,192x2k}" \
  --methods "${METHODS:-plain,string}" --out "$OUT/overhead.md" > "$OUT/overhead.log" 2>&1
grep "^| " "$OUT/overhead.md" 2>/dev/null || tail -5 "$OUT/overhead.log"
echo "done in $(( $(date +%s) - start )) s"
