#!/usr/bin/env bash
# Issues 9 and 10, third session, one H200 call (~8 min, no model file needed):
#   1. the Hopper launcher tests that run the prologue kernel on the GPU (q1 / q's copy inside out, the STRING
#      fold) and the decode loop's memory test;
#   2. prefill at 32k, D = 128 and 64, every method against cuDNN causal in interleaved rounds, with a longer
#      budget than the first call of the day (more rounds: the 1.10 line is within run-to-run spread);
#   3. benchmarks/profile_graph_step.py: one CUDA-graph decode step of a SmolLM2-135M-shaped model, kernel by
#      kernel, at the study's batch shapes (why the study's decode is not faster).
# Run: OUT=$OUT LIMIT=480 bash scripts/gpu_step_profile.sh   (files back: tests.log, bench32k.md/.log, step.md/.log)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 480

echo "== tests ($(left) s left)"
run_tests 80 380 tests/kernels/test_hopper.py tests/eval/test_graph_decode_memory.py \
  -k "constant_shift or operands or memory or allocated"

echo "== prefill 32k ($(left) s left)"
timeout "$(cap 200 190)" python3 benchmarks/bench_attention.py --lengths 32k --d64-lengths 32k --extra-lengths= \
  --no-decode --no-portable --no-compose --budget "$(cap 185 200)" --md "$OUT/bench32k.md" > "$OUT/bench32k.log" 2>&1
grep "^| " "$OUT/bench32k.md" | grep -v "^| N \|^|---\|^| D "

echo "== graph decode step ($(left) s left)"
timeout "$(cap 600 5)" python3 benchmarks/profile_graph_step.py --out "$OUT/step.md" > "$OUT/step.log" 2>&1
grep "^| " "$OUT/step.md" 2>/dev/null || tail -5 "$OUT/step.log"
echo "done in $(( $(date +%s) - start )) s"
