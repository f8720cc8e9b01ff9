#!/usr/bin/env bash
# Issue 10, ninth session: the evaluation with its decoder layers compiled, attention eager (eval/dense_compile.py:
# "layers", the default on CUDA, and "blocks", norms and MLPs only), against eager and against compiling the whole
# model (SmolLM2-135M's shape, random weights: no model file needed).
#   1. GPU tests: tests/eval/test_dense_compile.py (inductor on CUDA, the CUDA-graph loop's texts unchanged),
#      tests/eval/test_graph_decode.py;
#   2. benchmarks/profile_prefill.py --compile: eager / blocks / whole model, 48 x 8k, 96 x 4k, 384 x 1k;
#   3. benchmarks/profile_graph_step.py --overhead --compile layers,blocks: prefill, per decode step and per batch,
#      48 x 8k and 192 x 2k.
# Run: OUT=$OUT LIMIT=420 bash scripts/gpu_issue10_blocks.sh   (tables printed and in $OUT)
# Environment: PREFILL_SHAPES (48x8k,384x1k; empty: no prefill table), DECODE_SHAPES (48x8k,192x2k),
#   DECODE_COMPILE (layers,blocks: the compiled loops timed against eager)
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh" 420
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" \
  | tee "$OUT/versions.txt"
echo "== tests ($(left) s left)"
run_tests 100 "${TEST_RESERVE:-250}" tests/eval/test_dense_compile.py tests/eval/test_graph_decode.py
if [ "${PREFILL_SHAPES-48x8k,384x1k}" != "" ]; then  # PREFILL_SHAPES= (empty): no prefill table
  echo "== prefill: eager / layers / blocks / whole model ($(left) s left)"
  timeout "$(cap 170 100)" python3 benchmarks/profile_prefill.py --shapes "${PREFILL_SHAPES:-48x8k,384x1k}" \
    --methods plain,string \
    --compile --out "$OUT/prefill.md" 2> "$OUT/prefill.err" | grep "^|\|^#"
  tail -2 "$OUT/prefill.err"
fi
echo "== decode: eager vs compiled layers / blocks ($(left) s left)"
timeout "$(cap 150 5)" python3 benchmarks/profile_graph_step.py --overhead --compile "${DECODE_COMPILE:-layers,blocks}" \
  --shapes "${DECODE_SHAPES:-48x8k,192x2k}" \
  --methods plain,string --out "$OUT/decode.md" 2> "$OUT/decode.err" | grep "^|\|^#"
tail -2 "$OUT/decode.err"
echo "done in $(( $(date +%s) - start )) s"
